"""Stylometric attribution: which of the corpus's authors a text reads like, and how surely.

Cosine Delta (Smith & Aldridge 2011; Evert et al. 2017) in two views:

- words: relative frequencies of the most frequent words (MFW), z-scored with the mean
  and standard deviation over the training chunks;
- characters: the same for the most frequent character n-grams (spaces and punctuation
  included).

An author's profile is the centroid of their z-scored training chunks; a text's distance
to an author is the cosine distance between its z-vector and that centroid, in each
view; the ranking uses the mean of the two. Probabilities are softmax(−distance / T)
with T fitted by leave-one-work-out on the training chunks (see `docs/stylometry.md`).

The workspace model is cached in `style/model.json`, reused while the corpus is unchanged.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dvoinik.atomic import atomic_write_text
from dvoinik.corpus.build import DOCUMENTS_FILE, REPORT_JSON, load_documents, read_text_file
from dvoinik.tokens import corpus_fingerprint
from dvoinik.workspace import Workspace

FORMAT_VERSION = 1
STYLE_DIR = "style"
MODEL_FILE = "model.json"

# A word is a run of letters: digits (chapter numbers, dates) say nothing about style.
WORD = re.compile(r"[^\W\d_]+")
_COMBINING_ACCENTS = re.compile(r"[\u0300-\u036f]")  # stress marks some editions print
_SPACES = re.compile(r"\s+")

ALPHABET_BITS = 10  # characters are numbered 1..1023 (0 = any rarer one), so n-grams up to 6 fit an int64
OTHER_CHARACTER = "\ufffd"  # how an n-gram shows a character outside the alphabet
# Used when no author has two works, so there is nothing to calibrate on: the value fitted
# on the 13-author benchmark corpus with the default settings (docs/benchmarks.md).
DEFAULT_TEMPERATURE = 0.026
TEMPERATURE_RANGE = (1e-3, 10.0)
ECE_BINS = 10
SHORT_TEXT_WORDS = 1000  # below this, attribution among many authors is unreliable (benchmarks.md)

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)


class StyleError(Exception):
    """A user-facing problem with attribution (one line)."""


@dataclass(frozen=True)
class StyleSettings:
    """How texts become feature vectors; every field changes the fitted model."""

    mfw: int = 3000  # most frequent words in the word view
    char_n: int = 4  # character n-gram length in the character view
    char_features: int = 3000  # most frequent character n-grams
    chunk_words: int = 2000  # training documents are cut into chunks of about this many words
    min_words: int = 300  # shorter texts are refused: their frequencies are mostly noise

    def __post_init__(self) -> None:
        checks = {
            "mfw": self.mfw >= 1, "char_n": 1 <= self.char_n <= 6, "char_features": self.char_features >= 1,
            "chunk_words": self.chunk_words >= 1, "min_words": self.min_words >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid style settings: {', '.join(f'{n}={getattr(self, n)}' for n in bad)}")


@dataclass(frozen=True)
class Calibration:
    """How the temperature was fitted, and how well the fitted probabilities did on held-out works."""

    queries: int  # training chunks scored against centroids built without their own work
    works: int  # the works those chunks came from
    accuracy: float | None  # top-1 accuracy of those queries
    mean_confidence: float | None  # mean probability of the top author
    ece: float | None  # expected calibration error (10 equal-width bins of confidence)
    log_loss: float | None
    single_work_authors: tuple[str, ...] = ()  # candidates, but never queries (no other work to hold out)

    @property
    def calibrated(self) -> bool:
        return self.queries > 0


@dataclass(eq=False)
class StyleModel:
    """A fitted attribution model: vocabularies, z-score parameters, author centroids, temperature."""

    settings: StyleSettings
    authors: list[str]
    words: list[str]  # the MFW, most frequent first
    word_mean: np.ndarray
    word_std: np.ndarray
    word_centroids: np.ndarray  # authors × words, in z-scores
    alphabet: str  # characters numbered 1.. in n-gram codes, sorted by code point
    char_ngrams: list[str]
    char_mean: np.ndarray
    char_std: np.ndarray
    char_centroids: np.ndarray
    temperature: float
    calibration: Calibration
    training: dict[str, dict[str, int]]  # author -> works, chunks, words
    corpus_fingerprint: str | None = None  # set for a workspace model: the corpus it was fitted on

    def __post_init__(self) -> None:
        self._word_index = {w: i for i, w in enumerate(self.words)}
        self._alphabet_codes = np.array([ord(c) for c in self.alphabet], dtype=np.uint32)
        codes = np.array([_code_of(g, self.alphabet) for g in self.char_ngrams], dtype=np.int64)
        self._char_order = np.argsort(codes, kind="stable")
        self._char_sorted = codes[self._char_order]

    def to_json(self) -> str:
        data = {
            "format": FORMAT_VERSION,
            "settings": asdict(self.settings),
            "authors": self.authors,
            "temperature": self.temperature,
            "calibration": asdict(self.calibration),
            "training": self.training,
            "corpus_fingerprint": self.corpus_fingerprint,
            "words": self.words,
            "word_mean": self.word_mean.tolist(),
            "word_std": self.word_std.tolist(),
            "word_centroids": self.word_centroids.tolist(),
            "alphabet": self.alphabet,
            "char_ngrams": self.char_ngrams,
            "char_mean": self.char_mean.tolist(),
            "char_std": self.char_std.tolist(),
            "char_centroids": self.char_centroids.tolist(),
        }
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> StyleModel:
        """The model `to_json` wrote; ValueError for another format version or a damaged file."""
        data = json.loads(text)
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"style model format {data.get('format')!r}, expected {FORMAT_VERSION}")
        calibration = dict(data["calibration"])
        calibration["single_work_authors"] = tuple(calibration["single_work_authors"])
        n_authors = len(data["authors"])

        def matrix(key: str, columns: int) -> np.ndarray:
            return np.asarray(data[key], dtype=np.float64).reshape(n_authors, columns)

        return cls(
            settings=StyleSettings(**data["settings"]),
            authors=list(data["authors"]),
            words=list(data["words"]),
            word_mean=np.asarray(data["word_mean"], dtype=np.float64),
            word_std=np.asarray(data["word_std"], dtype=np.float64),
            word_centroids=matrix("word_centroids", len(data["words"])),
            alphabet=data["alphabet"],
            char_ngrams=list(data["char_ngrams"]),
            char_mean=np.asarray(data["char_mean"], dtype=np.float64),
            char_std=np.asarray(data["char_std"], dtype=np.float64),
            char_centroids=matrix("char_centroids", len(data["char_ngrams"])),
            temperature=float(data["temperature"]),
            calibration=Calibration(**calibration),
            training={a: dict(v) for a, v in data["training"].items()},
            corpus_fingerprint=data.get("corpus_fingerprint"),
        )

    def zscores(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Word z-vectors (texts × MFW), character z-vectors, and each text's word count."""
        word_counts = np.zeros((len(texts), len(self.words)))
        char_counts = np.zeros((len(texts), len(self.char_ngrams)))
        totals = np.zeros((len(texts), 2))
        n = self.settings.char_n
        for row, text in enumerate(texts):
            norm = normalize(text)
            ids = [self._word_index.get(w, -1) for w in WORD.findall(norm)]
            known = np.array([i for i in ids if i >= 0], dtype=np.int64)
            word_counts[row] = np.bincount(known, minlength=len(self.words))
            codes = ngram_codes(alphabet_indices(norm, self._alphabet_codes), n)
            pos = np.searchsorted(self._char_sorted, codes)
            pos[pos == len(self._char_sorted)] = 0
            hit = self._char_sorted[pos] == codes if len(self._char_sorted) else np.zeros(len(codes), bool)
            char_counts[row] = np.bincount(self._char_order[pos[hit]], minlength=len(self.char_ngrams))
            totals[row] = (len(ids), len(codes))
        safe = np.maximum(totals, 1)
        word_z = (word_counts / safe[:, :1] - self.word_mean) / self.word_std
        char_z = (char_counts / safe[:, 1:] - self.char_mean) / self.char_std
        return word_z, char_z, totals[:, 0].astype(np.int64)

    def distances(self, word_z: np.ndarray, char_z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cosine distances to every author (texts × authors) in the word view, the character view, combined."""
        dw = cosine_distances(word_z, self.word_centroids)
        dc = cosine_distances(char_z, self.char_centroids)
        return dw, dc, (dw + dc) / 2


@dataclass(frozen=True)
class AuthorScore:
    author: str
    word_distance: float  # cosine distance in the MFW view (0 = same direction, 1 = unrelated, 2 = opposite)
    char_distance: float  # the same in the character n-gram view
    distance: float  # their mean: what the ranking uses
    probability: float  # calibrated: softmax(−distance / T) over the corpus's authors


@dataclass(frozen=True)
class Attribution:
    ranking: list[AuthorScore]  # closest author first
    words: int  # words in the text (runs of letters)

    @property
    def best(self) -> AuthorScore:
        return self.ranking[0]

    @property
    def confidence(self) -> float:
        return self.ranking[0].probability


# ---------------------------------------------------------------- text to features


def normalize(text: str) -> str:
    """Lowercase, ё folded to е, combining accents dropped, whitespace runs as one space.

    Editions differ in whether they print ё and stress marks; without folding, the same
    author's "еще"/"ещё" would count as two words and split one feature into two.
    """
    text = unicodedata.normalize("NFC", text).lower().replace("ё", "е")
    text = _COMBINING_ACCENTS.sub("", text)
    return _SPACES.sub(" ", text).strip()


def code_points(text: str) -> np.ndarray:
    """One uint32 per character (a lone surrogate, which cannot be encoded, becomes "?")."""
    return np.frombuffer(text.encode("utf-32-le", errors="replace"), dtype=np.uint32)


def alphabet_indices(norm: str, alphabet_codes: np.ndarray) -> np.ndarray:
    """Each character's number in the alphabet (1-based; 0 for characters outside it), as int64."""
    points = code_points(norm)
    if len(alphabet_codes) == 0:
        return np.zeros(len(points), dtype=np.int64)
    pos = np.searchsorted(alphabet_codes, points)
    pos[pos == len(alphabet_codes)] = 0
    return np.where(alphabet_codes[pos] == points, pos + 1, 0).astype(np.int64)


def ngram_codes(indices: np.ndarray, n: int) -> np.ndarray:
    """The code of every character n-gram: its n alphabet numbers packed ALPHABET_BITS apart."""
    m = len(indices) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    indices = indices.astype(np.int64, copy=False)
    codes = np.zeros(m, dtype=np.int64)
    for k in range(n):
        codes = (codes << ALPHABET_BITS) | indices[k : k + m]
    return codes


def _code_of(ngram: str, alphabet: str) -> int:
    code = 0
    for ch in ngram:
        code = (code << ALPHABET_BITS) | (0 if ch == OTHER_CHARACTER else alphabet.index(ch) + 1)
    return code


def _ngram_of(code: int, n: int, alphabet: str) -> str:
    mask = (1 << ALPHABET_BITS) - 1
    numbers = [(code >> (ALPHABET_BITS * (n - 1 - k))) & mask for k in range(n)]
    return "".join(alphabet[i - 1] if i else OTHER_CHARACTER for i in numbers)


def cosine_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """1 − cosine similarity of every row of x with every centroid; 1 where a vector is all zeros."""
    xn = np.linalg.norm(x, axis=1, keepdims=True)
    cn = np.linalg.norm(centroids, axis=1, keepdims=True)
    sims = (x / np.where(xn == 0, 1, xn)) @ (centroids / np.where(cn == 0, 1, cn)).T
    return 1.0 - sims


# ---------------------------------------------------------------- training set


@dataclass
class TrainingSet:
    """Feature counts of every training chunk, before z-scoring.

    Holds the widest vocabularies asked for (`settings.mfw`, `settings.char_features`):
    a model with fewer features takes the leading columns, since both vocabularies are
    ordered by frequency. The benchmark uses that to try several sizes on one count.
    """

    settings: StyleSettings
    authors: list[str]
    works: list[tuple[int, str]]  # (author index, work id)
    chunk_work: np.ndarray  # index into works, per chunk
    chunk_words: np.ndarray  # words per chunk
    chunk_ngrams: np.ndarray  # character n-grams per chunk
    words: list[str]
    word_counts: np.ndarray  # chunks × words
    alphabet: str
    char_ngrams: list[str]
    char_counts: np.ndarray  # chunks × n-grams

    @property
    def chunk_author(self) -> np.ndarray:
        return np.array([a for a, _ in self.works], dtype=np.int64)[self.chunk_work]


def prepare_training(
    texts_by_author: Mapping[str, Sequence[tuple[str, str]]],
    settings: StyleSettings = StyleSettings(),
    on_progress: ProgressCallback | None = None,
) -> TrainingSet:
    """Cut every work (author -> [(work id, text)]) into chunks and count their features."""
    documents = []  # (author index, work index, normalized text)
    authors: list[str] = []
    works: dict[tuple[int, str], int] = {}  # (author index, work id) -> work index
    for author, items in texts_by_author.items():
        normalized = [(work, normalize(text)) for work, text in items]
        normalized = [(w, t) for w, t in normalized if WORD.search(t)]
        if not normalized:
            continue  # an author with no words is no candidate
        authors.append(author)
        for work, norm in normalized:
            key = (len(authors) - 1, work)
            documents.append((key[0], works.setdefault(key, len(works)), norm))
    if len(authors) < 2:
        found = f"; got {len(authors)}" + (f" ({authors[0]})" if authors else "")
        raise StyleError(f"attribution needs at least 2 authors with text{found}")

    alphabet = _choose_alphabet(norm for _, _, norm in documents)
    alphabet_codes = np.array([ord(c) for c in alphabet], dtype=np.uint32)
    n = settings.char_n
    word_index: dict[str, int] = {}
    parsed = []  # per document: chunk word bounds, word ids, alphabet indices, chunk character starts
    author_word_ids: list[list[np.ndarray]] = [[] for _ in authors]
    author_codes: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in authors]
    for done, (author, _, norm) in enumerate(documents):
        words = WORD.findall(norm)
        ids = np.fromiter((word_index.setdefault(w, len(word_index)) for w in words), dtype=np.int64, count=len(words))
        starts = _word_starts(norm)
        assert len(starts) == len(words)
        chunks = max(1, int(len(words) / settings.chunk_words + 0.5))
        bounds = np.linspace(0, len(words), chunks + 1).round().astype(np.int64)
        char_starts = starts[bounds[:-1]]
        char_starts[0] = 0
        indices = alphabet_indices(norm, alphabet_codes)
        codes = ngram_codes(indices, n)
        author_word_ids[author].append(ids)
        author_codes[author].append(np.unique(codes, return_counts=True))
        parsed.append((bounds, ids, indices.astype(np.uint16), char_starts))  # 1023 letters fit; a quarter of the memory
        if on_progress:
            on_progress("counting words and characters", done + 1, len(documents))

    # Vocabularies: ranked by the mean over authors of each author's relative frequency,
    # so one prolific author does not choose the features (or fill them with their heroes' names).
    word_score = np.zeros(len(word_index))
    for ids in author_word_ids:
        counts = np.bincount(np.concatenate(ids), minlength=len(word_index))
        word_score += counts / max(counts.sum(), 1)
    word_cols = _top(word_score, np.arange(len(word_index)), settings.mfw)
    by_id = {i: w for w, i in word_index.items()}
    vocabulary = [by_id[int(i)] for i in word_cols]
    column_of_word = np.full(len(word_index), -1, dtype=np.int64)
    column_of_word[word_cols] = np.arange(len(word_cols))

    all_codes = np.unique(np.concatenate([c for pairs in author_codes for c, _ in pairs] or [np.zeros(0, np.int64)]))
    char_score = np.zeros(len(all_codes))
    for pairs in author_codes:
        counts = np.zeros(len(all_codes))
        for codes, c in pairs:
            counts += np.bincount(np.searchsorted(all_codes, codes), weights=c, minlength=len(all_codes))
        char_score += counts / max(counts.sum(), 1)
    char_vocab = all_codes[_top(char_score, all_codes, settings.char_features)]
    char_order = np.argsort(char_vocab, kind="stable")
    char_sorted = char_vocab[char_order]

    chunk_rows = [len(bounds) - 1 for bounds, *_ in parsed]
    total = sum(chunk_rows)
    word_counts = np.zeros((total, len(vocabulary)))
    char_counts = np.zeros((total, len(char_vocab)))
    chunk_words = np.zeros(total, dtype=np.int64)
    chunk_ngrams = np.zeros(total, dtype=np.int64)
    chunk_work = np.zeros(total, dtype=np.int64)
    row = 0
    for (_, work, _), (bounds, ids, indices, char_starts), k in zip(documents, parsed, chunk_rows):
        rows = slice(row, row + k)
        chunk_work[rows] = work
        word_chunk = np.repeat(np.arange(k), np.diff(bounds))
        chunk_words[rows] = np.diff(bounds)
        cols = column_of_word[ids]
        keep = cols >= 0
        word_counts[rows] = np.bincount(word_chunk[keep] * len(vocabulary) + cols[keep],
                                        minlength=k * len(vocabulary)).reshape(k, len(vocabulary))
        codes = ngram_codes(indices, n)
        gram_chunk = np.searchsorted(char_starts, np.arange(len(codes)), side="right") - 1
        chunk_ngrams[rows] = np.bincount(gram_chunk, minlength=k)
        pos = np.searchsorted(char_sorted, codes)
        pos[pos == len(char_sorted)] = 0
        hit = char_sorted[pos] == codes
        cols = char_order[pos[hit]]
        char_counts[rows] = np.bincount(gram_chunk[hit] * len(char_vocab) + cols,
                                        minlength=k * len(char_vocab)).reshape(k, len(char_vocab))
        row += k

    return TrainingSet(
        settings=settings, authors=authors, works=list(works), chunk_work=chunk_work, chunk_words=chunk_words,
        chunk_ngrams=chunk_ngrams, words=vocabulary, word_counts=word_counts, alphabet=alphabet,
        char_ngrams=[_ngram_of(int(c), n, alphabet) for c in char_vocab], char_counts=char_counts,
    )


def _choose_alphabet(texts) -> str:
    """The 1023 most frequent characters (all of them, for any one language), sorted by code point."""
    counts: Counter = Counter()
    for text in texts:
        points, c = np.unique(code_points(text), return_counts=True)
        counts.update(dict(zip(points.tolist(), c.tolist())))
    counts.pop(ord(OTHER_CHARACTER), None)
    kept = sorted(counts, key=lambda p: (-counts[p], p))[: (1 << ALPHABET_BITS) - 1]
    return "".join(chr(p) for p in sorted(kept))


def _word_starts(norm: str) -> np.ndarray:
    """Character offset of every WORD match in `norm` (the same runs of letters `WORD.findall` gives)."""
    points = code_points(norm)
    distinct, inverse = np.unique(points, return_inverse=True)
    letter = np.fromiter((WORD.fullmatch(chr(p)) is not None for p in distinct.tolist()), dtype=bool, count=len(distinct))
    is_letter = letter[inverse.reshape(-1)]
    return np.flatnonzero(is_letter & ~np.concatenate(([False], is_letter[:-1])))


def _top(score: np.ndarray, tiebreak: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores (ties broken by `tiebreak`, so the choice is repeatable); zeros never."""
    order = np.lexsort((tiebreak, -score))
    order = order[score[order] > 0]
    return order[:k]


# ---------------------------------------------------------------- fitting


def fit_from_training(training: TrainingSet, settings: StyleSettings | None = None) -> StyleModel:
    """A model from counted chunks, keeping the first `settings.mfw` / `char_features` columns."""
    settings = settings or training.settings
    base = training.settings
    if (settings.chunk_words, settings.char_n) != (base.chunk_words, base.char_n) \
            or settings.mfw > base.mfw or settings.char_features > base.char_features:
        raise ValueError(f"settings {settings} need a training set counted with them (this one: {base})")
    words = training.word_counts[:, : settings.mfw] / np.maximum(training.chunk_words, 1)[:, None]
    chars = training.char_counts[:, : settings.char_features] / np.maximum(training.chunk_ngrams, 1)[:, None]
    word_mean, word_std, word_z = _zscore(words)
    char_mean, char_std, char_z = _zscore(chars)
    authors = training.chunk_author
    word_sums, per_author = _group_sums(authors, word_z, len(training.authors))
    char_sums, _ = _group_sums(authors, char_z, len(training.authors))
    word_centroids = word_sums / per_author[:, None]
    char_centroids = char_sums / per_author[:, None]

    distances, truth, works, single = _held_out_distances(training, word_z, char_z, settings.min_words)
    if len(truth):
        temperature = fit_temperature(distances, truth)
        calibration = calibration_stats(distances, truth, temperature, works, single)
    else:
        temperature = DEFAULT_TEMPERATURE
        calibration = Calibration(0, 0, None, None, None, None, single)

    summary = {}
    for a, name in enumerate(training.authors):
        mine = authors == a
        summary[name] = {
            "works": sum(1 for owner, _ in training.works if owner == a),
            "chunks": int(mine.sum()),
            "words": int(training.chunk_words[mine].sum()),
        }
    return StyleModel(
        settings=settings, authors=list(training.authors), words=training.words[: settings.mfw],
        word_mean=word_mean, word_std=word_std, word_centroids=word_centroids, alphabet=training.alphabet,
        char_ngrams=training.char_ngrams[: settings.char_features], char_mean=char_mean, char_std=char_std,
        char_centroids=char_centroids, temperature=temperature, calibration=calibration, training=summary,
    )


def fit_style_model(
    texts_by_author: Mapping[str, Sequence[tuple[str, str]]],
    settings: StyleSettings = StyleSettings(),
    on_progress: ProgressCallback | None = None,
) -> StyleModel:
    """Fit on author -> [(work id, text)]; works are the units the calibration holds out."""
    return fit_from_training(prepare_training(texts_by_author, settings, on_progress), settings)


def _zscore(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a feature constant over the training chunks carries no signal: z = 0
    return mean, std, (x - mean) / std


def _group_sums(labels: np.ndarray, x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the rows of x per label (n × features), and the number of rows per label."""
    sums = np.zeros((n, x.shape[1]))
    order = np.argsort(labels, kind="stable")
    ordered = labels[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))) if len(ordered) else ordered
    if len(starts):
        sums[ordered[starts]] = np.add.reduceat(x[order], starts, axis=0)
    return sums, np.bincount(labels, minlength=n)


def _held_out_distances(
    training: TrainingSet, word_z: np.ndarray, char_z: np.ndarray, min_words: int
) -> tuple[np.ndarray, np.ndarray, int, tuple[str, ...]]:
    """Combined distances of every eligible chunk to every author, its own author's centroid without its work.

    Eligible: the author has another work, and the chunk is at least `min_words` long
    (what `attribute` accepts). Other authors' centroids never contain the chunk's work,
    so they stay as fitted. The z-score parameters do include it: a small optimism.
    """
    authors = training.chunk_author
    work = training.chunk_work
    n_authors = len(training.authors)
    work_author = np.array([a for a, _ in training.works], dtype=np.int64)
    works_per_author = np.bincount(work_author, minlength=n_authors)
    single = tuple(name for a, name in enumerate(training.authors) if works_per_author[a] < 2)
    rows = np.flatnonzero((works_per_author[authors] >= 2) & (training.chunk_words >= min_words))
    if len(rows) == 0:
        return np.zeros((0, n_authors)), np.zeros(0, dtype=np.int64), 0, single
    combined = np.zeros((len(rows), n_authors))
    for z in (word_z, char_z):
        author_sum, author_n = _group_sums(authors, z, n_authors)
        work_sum, work_n = _group_sums(work, z, len(training.works))
        d = cosine_distances(z[rows], author_sum / author_n[:, None])
        owner = work_author[work[rows]]
        rest = (author_sum[owner] - work_sum[work[rows]]) / (author_n[owner] - work_n[work[rows]])[:, None]
        d[np.arange(len(rows)), authors[rows]] = 1.0 - _rowwise_cosine(z[rows], rest)
        combined += d / 2
    return combined, authors[rows], len(np.unique(work[rows])), single


def _rowwise_cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    return np.einsum("ij,ij->i", x, y) / np.where(norms == 0, 1, norms)


def probabilities(distances: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(−distance / T) over authors, row by row."""
    logits = -distances / temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _log_loss(distances: np.ndarray, truth: np.ndarray, temperature: float, smoothing: float = 0.0) -> float:
    """Mean cross-entropy; `smoothing` moves that much of each target's weight evenly onto the other authors."""
    logits = -distances / temperature
    top = logits.max(axis=1, keepdims=True)
    log_p = logits - (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))
    rows = np.arange(len(truth))
    true_part = log_p[rows, truth]
    if smoothing == 0.0:
        return float(-np.mean(true_part))
    others = (log_p.sum(axis=1) - true_part) / max(distances.shape[1] - 1, 1)
    return float(-np.mean((1 - smoothing) * true_part + smoothing * others))


def fit_temperature(distances: np.ndarray, truth: np.ndarray) -> float:
    """The T in TEMPERATURE_RANGE that minimises the log loss (golden-section search over log T).

    The targets are smoothed by Laplace's rule of succession, 1/(queries + 2): a
    calibration with no errors among 14 queries then says "about 94%", not "certain",
    while on thousands of queries the smoothing is negligible. The loss is convex in 1/T,
    so it has one minimum along log T.
    """
    smoothing = 1.0 / (len(truth) + 2)
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = (_log_loss(distances, truth, math.exp(x), smoothing) for x in (a, b))
    for _ in range(80):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _log_loss(distances, truth, math.exp(a), smoothing)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _log_loss(distances, truth, math.exp(b), smoothing)
    return math.exp((lo + hi) / 2)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ over equal-width confidence bins of (share of samples) × |accuracy − mean confidence|."""
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def calibration_stats(distances: np.ndarray, truth: np.ndarray, temperature: float, works: int = 0,
                      single_work_authors: tuple[str, ...] = ()) -> Calibration:
    p = probabilities(distances, temperature)
    correct = p.argmax(axis=1) == truth
    confidence = p.max(axis=1)
    return Calibration(
        queries=len(truth), works=works, accuracy=float(correct.mean()), mean_confidence=float(confidence.mean()),
        ece=expected_calibration_error(confidence, correct), log_loss=_log_loss(distances, truth, temperature),
        single_work_authors=single_work_authors,
    )


# ---------------------------------------------------------------- attribution


def attribute_many(model: StyleModel, texts: Sequence[str]) -> list[Attribution]:
    """Attribute many texts at once (one matrix product per view); StyleError names a text too short."""
    word_z, char_z, words = model.zscores(texts)
    short = np.flatnonzero(words < model.settings.min_words)
    if len(short):
        i = int(short[0])
        which = "the text" if len(texts) == 1 else f"text {i + 1} of {len(texts)}"
        raise StyleError(f"{which} has {words[i]} words; attribution needs at least {model.settings.min_words}")
    dw, dc, d = model.distances(word_z, char_z)
    p = probabilities(d, model.temperature)
    results = []
    for row in range(len(texts)):
        order = np.lexsort((np.arange(len(model.authors)), d[row]))
        ranking = [AuthorScore(model.authors[a], float(dw[row, a]), float(dc[row, a]), float(d[row, a]),
                               float(p[row, a])) for a in order]
        results.append(Attribution(ranking=ranking, words=int(words[row])))
    return results


def attribute(model: StyleModel, text: str) -> Attribution:
    """Rank the model's authors by how much `text` reads like each."""
    return attribute_many(model, [text])[0]


# ---------------------------------------------------------------- workspace


def model_path(ws: Workspace) -> Path:
    return ws.root / STYLE_DIR / MODEL_FILE


def work_id(source: str) -> str:
    """Chapters of one book ("book.fb2#3") are one work: the calibration holds out the whole book."""
    return source.split("#", 1)[0]


def load_or_fit_workspace_model(
    ws: Workspace, settings: StyleSettings | None = None, on_progress: ProgressCallback | None = None
) -> StyleModel:
    """The workspace's model: `style/model.json` while the corpus and settings are unchanged, else fitted anew."""
    settings = settings or StyleSettings()
    corpus_dir = ws.corpus_dir
    if not (corpus_dir / DOCUMENTS_FILE).is_file() or not (corpus_dir / REPORT_JSON).is_file():
        raise StyleError(f"{corpus_dir}: no corpus built yet; run `dvoinik corpus` first")
    fingerprint = corpus_fingerprint(corpus_dir)
    path = model_path(ws)
    try:
        cached = StyleModel.from_json(path.read_text(encoding="utf-8"))
        if cached.corpus_fingerprint == fingerprint and cached.settings == settings:
            return cached
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing, from another version, or damaged: fit again
    texts: dict[str, list[tuple[str, str]]] = {}
    for doc in load_documents(corpus_dir):
        if doc.split == "train":
            texts.setdefault(doc.author, []).append((work_id(doc.source), doc.text))
    try:
        model = fit_style_model(texts, settings, on_progress)
    except StyleError as e:
        raise StyleError(f"{corpus_dir / DOCUMENTS_FILE}: {e} in the training split") from None
    model.corpus_fingerprint = fingerprint
    atomic_write_text(path, model.to_json())
    return model


def style_file(ws: Workspace, path: Path, settings: StyleSettings | None = None,
               on_progress: ProgressCallback | None = None, model: StyleModel | None = None) -> Attribution:
    """Which of the workspace corpus's authors the file at `path` reads like.

    `model` is the workspace model when the caller already has it (to print its
    calibration too); otherwise it is loaded or fitted here.
    """
    model = model or load_or_fit_workspace_model(ws, settings, on_progress)
    text = read_text_file(path, ws.language)  # CorpusError names the file when it cannot be read
    try:
        return attribute(model, text)
    except StyleError as e:
        raise StyleError(f"{path}: {e}") from None


def style_notes(model: StyleModel, attribution: Attribution) -> list[str]:
    """What a reader of an attribution should know: how the confidence was calibrated, and when to doubt it."""
    calibration = model.calibration
    if calibration.calibrated:
        notes = [f"calibration: leave-one-work-out, {calibration.queries} chunks from {calibration.works} works, "
                 f"accuracy {calibration.accuracy:.0%}, ECE {calibration.ece:.3f}"]
    else:
        notes = ["not calibrated: no author has two training works"]
    if calibration.single_work_authors:
        notes.append("one training work only (candidates, never calibration queries): "
                     + ", ".join(calibration.single_work_authors))
    if attribution.words < SHORT_TEXT_WORDS:
        notes.append(f"a short text ({attribution.words} words): among 13 authors, samples of 500 words were attributed "
                     "correctly about 72% of the time (docs/benchmarks.md)")
    by_words = min(attribution.ranking, key=lambda s: s.word_distance).author
    by_chars = min(attribution.ranking, key=lambda s: s.char_distance).author
    if by_words != by_chars:
        notes.append(f"the views disagree: words point to {by_words}, character n-grams to {by_chars}")
    return notes
