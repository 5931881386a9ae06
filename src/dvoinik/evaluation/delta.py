"""Cosine Delta: how far a text is from each author's profile, in two views.

Cosine Delta (Smith & Aldridge 2011; Evert et al. 2017):

- words: relative frequencies of the most frequent words (MFW), z-scored with the mean
  and standard deviation over the training chunks;
- characters: the same for the most frequent character n-grams (spaces and punctuation
  included).

An author's profile is the centroid of their z-scored training chunks; a text's distance
to an author is the cosine distance between its z-vector and that centroid. Distances
are what the open-set answer needs ("how far is this text from everyone?"), and the two
views are two of the votes whose agreement `stylometry.py` reports.

Counting is done once for all training chunks (`count_delta`); a model for any subset of
the chunks (a calibration fold) is then a few numpy reductions (`fit_delta`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dvoinik.evaluation.ngrams import (
    ALPHABET_BITS,
    WORD,
    Work,
    alphabet_indices,
    choose_alphabet,
    code_points,
    shift_or,
)

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class DeltaSettings:
    mfw: int = 3000  # most frequent words in the word view
    char_n: int = 4  # character n-gram length in the character view
    char_features: int = 3000  # most frequent character n-grams
    chunk_words: int = 2000  # training works are cut into chunks of about this many words


@dataclass
class DeltaCounts:
    """Feature counts of every training chunk, before z-scoring, with the chunk's work and author."""

    chunk_work: np.ndarray  # index into the works given to count_delta
    chunk_author: np.ndarray
    chunk_words: np.ndarray  # words per chunk
    chunk_ngrams: np.ndarray  # character n-grams per chunk
    words: list[str]  # the MFW, most frequent first
    word_counts: np.ndarray  # chunks × words
    alphabet: str
    char_ngrams: list[str]
    char_counts: np.ndarray  # chunks × n-grams
    char_n: int


@dataclass(eq=False)
class DeltaModel:
    """Vocabularies, z-score parameters and author centroids of both views."""

    words: list[str]
    word_mean: np.ndarray
    word_std: np.ndarray
    word_centroids: np.ndarray  # authors × words, in z-scores
    alphabet: str  # characters numbered 1.. in n-gram codes, sorted by code point
    char_n: int
    char_ngrams: list[str]
    char_mean: np.ndarray
    char_std: np.ndarray
    char_centroids: np.ndarray

    def __post_init__(self) -> None:
        self._word_index = {w: i for i, w in enumerate(self.words)}
        self._alphabet_codes = np.array([ord(c) for c in self.alphabet], dtype=np.uint32)
        codes = np.array([_code_of(g, self.alphabet) for g in self.char_ngrams], dtype=np.int64)
        self._char_order = np.argsort(codes, kind="stable")
        self._char_sorted = codes[self._char_order]

    def zscores(self, norms: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Word z-vectors (texts × MFW), character z-vectors, and each text's word count, of normalized texts."""
        word_counts = np.zeros((len(norms), len(self.words)))
        char_counts = np.zeros((len(norms), len(self.char_ngrams)))
        totals = np.zeros((len(norms), 2))
        for row, norm in enumerate(norms):
            ids = [self._word_index.get(w, -1) for w in WORD.findall(norm)]
            known = np.array([i for i in ids if i >= 0], dtype=np.int64)
            word_counts[row] = np.bincount(known, minlength=len(self.words))
            codes = shift_or(alphabet_indices(norm, self._alphabet_codes), self.char_n, ALPHABET_BITS)
            if len(self._char_sorted) and len(codes):
                pos = np.searchsorted(self._char_sorted, codes)
                pos[pos == len(self._char_sorted)] = 0
                hit = self._char_sorted[pos] == codes
                char_counts[row] = np.bincount(self._char_order[pos[hit]], minlength=len(self.char_ngrams))
            totals[row] = (len(ids), len(codes))
        safe = np.maximum(totals, 1)
        word_z = (word_counts / safe[:, :1] - self.word_mean) / self.word_std
        char_z = (char_counts / safe[:, 1:] - self.char_mean) / self.char_std
        return word_z, char_z, totals[:, 0].astype(np.int64)

    def distances(self, norms: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cosine distances to every author (texts × authors): the word view, the character view, and each text's words."""
        word_z, char_z, words = self.zscores(norms)
        return cosine_distances(word_z, self.word_centroids), cosine_distances(char_z, self.char_centroids), words

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "words": np.array("\n".join(self.words)), "word_mean": self.word_mean, "word_std": self.word_std,
            "word_centroids": self.word_centroids, "alphabet": np.array(self.alphabet), "char_n": np.array(self.char_n),
            "char_ngrams": _joined(self.char_ngrams, self.char_n), "char_mean": self.char_mean,
            "char_std": self.char_std, "char_centroids": self.char_centroids,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> DeltaModel:
        n = int(arrays["char_n"])
        ngrams = str(arrays["char_ngrams"])
        words = str(arrays["words"])
        return cls(
            words=words.split("\n") if words else [], word_mean=arrays["word_mean"], word_std=arrays["word_std"],
            word_centroids=arrays["word_centroids"], alphabet=str(arrays["alphabet"]), char_n=n,
            char_ngrams=[ngrams[i : i + n] for i in range(0, len(ngrams), n)], char_mean=arrays["char_mean"],
            char_std=arrays["char_std"], char_centroids=arrays["char_centroids"],
        )


def _joined(ngrams: list[str], n: int) -> np.ndarray:
    # Character n-grams may hold any character, newlines too: fixed width, no separator.
    assert all(len(g) == n for g in ngrams)
    return np.array("".join(ngrams))


def cosine_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """1 − cosine similarity of every row of x with every centroid; 1 where a vector is all zeros."""
    xn = np.linalg.norm(x, axis=1, keepdims=True)
    cn = np.linalg.norm(centroids, axis=1, keepdims=True)
    sims = (x / np.where(xn == 0, 1, xn)) @ (centroids / np.where(cn == 0, 1, cn)).T
    return 1.0 - sims


# ---------------------------------------------------------------- counting


def count_delta(works: Sequence[Work], settings: DeltaSettings = DeltaSettings(),
                on_progress: ProgressCallback | None = None) -> DeltaCounts:
    """Cut every work into chunks and count the features of each (the vocabularies chosen from all works)."""
    alphabet = choose_alphabet(w.text for w in works)
    alphabet_codes = np.array([ord(c) for c in alphabet], dtype=np.uint32)
    n = settings.char_n
    n_authors = max((w.author for w in works), default=-1) + 1
    word_index: dict[str, int] = {}
    parsed = []  # per work: chunk word bounds, word ids, alphabet indices, chunk character starts
    author_word_ids: list[list[np.ndarray]] = [[] for _ in range(n_authors)]
    author_codes: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(n_authors)]
    for done, work in enumerate(works):
        norm = work.text
        words = WORD.findall(norm)
        ids = np.fromiter((word_index.setdefault(w, len(word_index)) for w in words), dtype=np.int64, count=len(words))
        starts = _word_starts(norm)
        chunks = max(1, int(len(words) / settings.chunk_words + 0.5))
        bounds = np.linspace(0, len(words), chunks + 1).round().astype(np.int64)
        char_starts = starts[bounds[:-1]] if len(starts) else np.zeros(1, dtype=np.int64)
        char_starts[0] = 0
        indices = alphabet_indices(norm, alphabet_codes)
        author_word_ids[work.author].append(ids)
        author_codes[work.author].append(np.unique(shift_or(indices, n, ALPHABET_BITS), return_counts=True))
        parsed.append((bounds, ids, indices.astype(np.uint16), char_starts))  # 1023 letters fit; a quarter of the memory
        if on_progress:
            on_progress("counting frequent words and characters", done + 1, len(works))

    # Vocabularies: ranked by the mean over authors of each author's relative frequency,
    # so one prolific author does not choose the features (or fill them with their heroes' names).
    word_score = np.zeros(len(word_index))
    for ids in author_word_ids:
        if ids:
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
    for index, ((bounds, ids, indices, char_starts), k) in enumerate(zip(parsed, chunk_rows)):
        rows = slice(row, row + k)
        chunk_work[rows] = index
        word_chunk = np.repeat(np.arange(k), np.diff(bounds))
        chunk_words[rows] = np.diff(bounds)
        cols = column_of_word[ids]
        keep = cols >= 0
        word_counts[rows] = np.bincount(word_chunk[keep] * len(vocabulary) + cols[keep],
                                        minlength=k * len(vocabulary)).reshape(k, len(vocabulary))
        codes = shift_or(indices, n, ALPHABET_BITS)
        gram_chunk = np.searchsorted(char_starts, np.arange(len(codes)), side="right") - 1
        chunk_ngrams[rows] = np.bincount(gram_chunk, minlength=k)
        if len(char_sorted) and len(codes):
            pos = np.searchsorted(char_sorted, codes)
            pos[pos == len(char_sorted)] = 0
            hit = char_sorted[pos] == codes
            char_counts[rows] = np.bincount(gram_chunk[hit] * len(char_vocab) + char_order[pos[hit]],
                                            minlength=k * len(char_vocab)).reshape(k, len(char_vocab))
        row += k
    work_author = np.array([w.author for w in works], dtype=np.int64)
    return DeltaCounts(
        chunk_work=chunk_work, chunk_author=work_author[chunk_work], chunk_words=chunk_words,
        chunk_ngrams=chunk_ngrams, words=vocabulary, word_counts=word_counts, alphabet=alphabet,
        char_ngrams=[_ngram_of(int(c), n, alphabet) for c in char_vocab], char_counts=char_counts, char_n=n,
    )


def fit_delta(counts: DeltaCounts, n_authors: int, rows: np.ndarray | None = None,
              authors: np.ndarray | None = None) -> DeltaModel:
    """Z-score parameters and centroids from the chunks in `rows` (default: all).

    `authors` renumbers the chunks' authors (a calibration fold leaves some out); an author
    with no chunk gets a zero centroid, at distance 1 from everything.
    """
    rows = np.arange(len(counts.chunk_work)) if rows is None else rows
    labels = counts.chunk_author[rows] if authors is None else authors
    words = counts.word_counts[rows] / np.maximum(counts.chunk_words[rows], 1)[:, None]
    chars = counts.char_counts[rows] / np.maximum(counts.chunk_ngrams[rows], 1)[:, None]
    word_mean, word_std, word_z = _zscore(words)
    char_mean, char_std, char_z = _zscore(chars)
    word_sums, per_author = _group_sums(labels, word_z, n_authors)
    char_sums, _ = _group_sums(labels, char_z, n_authors)
    safe = np.maximum(per_author, 1)[:, None]
    return DeltaModel(
        words=counts.words, word_mean=word_mean, word_std=word_std, word_centroids=word_sums / safe,
        alphabet=counts.alphabet, char_n=counts.char_n, char_ngrams=counts.char_ngrams, char_mean=char_mean,
        char_std=char_std, char_centroids=char_sums / safe,
    )


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


def _code_of(ngram: str, alphabet: str) -> int:
    code = 0
    for ch in ngram:
        code = (code << ALPHABET_BITS) | (0 if ch == "\ufffd" else alphabet.index(ch) + 1)
    return code


def _ngram_of(code: int, n: int, alphabet: str) -> str:
    mask = (1 << ALPHABET_BITS) - 1
    numbers = [(code >> (ALPHABET_BITS * (n - 1 - k))) & mask for k in range(n)]
    return "".join(alphabet[i - 1] if i else "\ufffd" for i in numbers)


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
