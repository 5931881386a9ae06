"""Stylometric attribution: which of the corpus's authors a text reads like, how surely, or none of them.

Four views of a text, each naming an author:

- characters: TF-IDF of character 1–4-grams and a linear SVM (`linear.py`);
- words: TF-IDF of word 1–2-grams and a linear SVM;
- Cosine Delta on the most frequent words, and on character 4-grams (`delta.py`).

The ranking combines the two SVM scores and Delta's mean distance in one calibrated
softmax: logit(author) = Σ_view (a_view + b_view · log(words / 1000)) · score_view(author),
its six weights fitted by log loss on samples of works the views never saw. The same
samples calibrate the open-set answer (`openset.py`): in each calibration fold some
authors are left out entirely and play the outsiders, the rest lose some works to
held-out samples, so both "whose is it?" and "is it anyone's?" are scored on text the
fold's model never saw. See docs/stylometry.md.

The workspace model is cached in `style/model.npz` (plain arrays and one JSON string;
no pickle), reused while the corpus and settings are unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from dvoinik.atomic import atomic_open
from dvoinik.corpus.build import DOCUMENTS_FILE, REPORT_JSON, load_documents, read_text_file
from dvoinik.evaluation.delta import DeltaModel, DeltaSettings, count_delta, fit_delta
from dvoinik.evaluation.linear import LinearView, fit_linear
from dvoinik.evaluation.ngrams import WORD, NgramSpec, Vocabulary, Work, chunk_texts, fit_vocabulary, normalize
from dvoinik.evaluation.openset import (
    FALSE_ALARM_RATE,
    FOREIGN_COVERAGE,
    CorpusForm,
    OpenSetCalibration,
    OutsiderDetector,
    corpus_form,
    evidence,
    fit_detector,
)
from dvoinik.tokens import corpus_fingerprint
from dvoinik.workspace import Workspace

__all__ = [
    "NONE_OF_THEM", "Attribution", "AuthorScore", "Calibration", "OpenSet", "StyleError", "StyleModel",
    "StyleSettings", "attribute", "attribute_many", "attributed_author", "fit_style_model",
    "load_or_fit_workspace_model", "model_path", "normalize", "style_file", "style_notes", "work_id",
]

FORMAT_VERSION = 2
STYLE_DIR = "style"
MODEL_FILE = "model.npz"
OLD_MODEL_FILE = "model.json"  # the Cosine Delta model of format 1, replaced
NONE_OF_THEM = "(none of the corpus authors)"
VIEWS = ("characters", "words", "Delta words", "Delta characters")
# Calibration samples: length in words (evaluation's samples are about 100) -> at most this many per author and
# fold, so a prolific author does not outweigh the rest (and scoring them costs about half a corpus per fold).
CALIBRATION_SAMPLES = {100: 24, 300: 16, 1000: 12, 3000: 8}
MAX_FOLDS = 4
SAMPLES_PER_WORK = 3  # per calibration length
ECE_BINS = 10
SHORT_TEXT_WORDS = 1000  # below this, attribution among many authors is less reliable (benchmarks.md)
# Used where nothing can be calibrated (no author with two works, or only two authors for
# the open-set answer): fitted on the 13-author benchmark corpus with the default settings
# by `python benchmarks/attribution.py` (docs/benchmarks.md).
DEFAULT_COMBINATION = (3.934, 6.1577, 5.0033, 0.4733, -0.7179, -2.9025)
DEFAULT_DETECTOR: dict = {
    "mean": [3.6481, -0.217, -0.3416, 0.9082, 0.7175, 0.0809, -0.9949],
    "scale": [3.4988, 0.3, 0.3037, 0.0581, 0.2807, 0.0407, 1.2337],
    "weights": [-0.446, -0.7107, -1.7978, 0.5781, -0.0928, 0.0702, 0.9831],
    "bias": -1.0562,
    "lengths": [-2.3026, -1.204, 0.0, 1.0986],
    "thresholds": [1.0903, 1.7761, 1.5357, 0.4599],
    "false_alarm_rate": 0.05,
}

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)


class StyleError(Exception):
    """A user-facing problem with attribution (one line)."""


@dataclass(frozen=True)
class StyleSettings:
    """How texts become features; every field changes the fitted model."""

    char_n_min: int = 1  # character n-grams of the SVM view: from …
    char_n_max: int = 4  # … to
    char_features: int = 200_000  # at most this many of them (those in `min_works` works, most frequent first)
    word_n_max: int = 2  # word 1-grams up to n-grams in the word SVM view
    word_features: int = 100_000
    chunk_words: int = 1000  # the SVM views train on chunks of about this many words
    min_works: int = 2  # an n-gram must occur in this many training works to be a feature
    mfw: int = 3000  # Cosine Delta: most frequent words …
    delta_char_n: int = 4  # … character n-gram length …
    delta_char_features: int = 3000  # … and most frequent character n-grams
    delta_chunk_words: int = 2000  # Delta's centroids are means of chunks of this many words
    min_words: int = 300  # shorter texts are refused: their frequencies are mostly noise
    seed: int = 0  # calibration folds and samples

    def __post_init__(self) -> None:
        checks = {
            "char_n_min": 1 <= self.char_n_min <= self.char_n_max, "char_n_max": 1 <= self.char_n_max <= 5,
            "char_features": self.char_features >= 1, "word_n_max": 1 <= self.word_n_max <= 3,
            "word_features": self.word_features >= 1, "chunk_words": self.chunk_words >= 1,
            "min_works": self.min_works >= 1, "mfw": self.mfw >= 1, "delta_char_n": 1 <= self.delta_char_n <= 6,
            "delta_char_features": self.delta_char_features >= 1, "delta_chunk_words": self.delta_chunk_words >= 1,
            "min_words": self.min_words >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid style settings: {', '.join(f'{n}={getattr(self, n)}' for n in bad)}")

    @property
    def delta(self) -> DeltaSettings:
        return DeltaSettings(self.mfw, self.delta_char_n, self.delta_char_features, self.delta_chunk_words)


@dataclass(frozen=True)
class Calibration:
    """How well the calibrated probabilities did on held-out works, and the open-set answer on left-out authors."""

    queries: int  # samples of held-out works scored (insiders)
    works: int  # the works they came from
    accuracy: float | None  # top-1 accuracy of those samples
    mean_confidence: float | None  # mean probability of the top author
    ece: float | None  # expected calibration error (10 equal-width bins of confidence)
    log_loss: float | None
    single_work_authors: tuple[str, ...] = ()  # candidates, but never held out (no other work to train on)
    folds: int = 0
    by_length: dict[str, float] = field(default_factory=dict)  # words -> top-1 accuracy
    open_set: OpenSetCalibration = field(default_factory=lambda: OpenSetCalibration(0, 0, None, None, None))

    @property
    def calibrated(self) -> bool:
        return self.queries > 0


@dataclass(eq=False)
class StyleModel:
    """A fitted attribution model: the four views, their combination, the outsider detector, what they were fitted on."""

    settings: StyleSettings
    authors: list[str]
    char: LinearView
    word: LinearView
    delta: DeltaModel
    combination: tuple[float, ...]  # (a_char, a_word, a_delta, b_char, b_word, b_delta)
    detector: OutsiderDetector
    form: CorpusForm
    calibration: Calibration
    training: dict[str, dict[str, int]]  # author -> works, chunks, words
    corpus_fingerprint: str | None = None  # set for a workspace model: the corpus it was fitted on

    @cached_property
    def covered_words(self) -> frozenset[str]:
        """Words of at least `min_works` training works: a text's coverage is its share of words among them."""
        return frozenset(self.word.vocabulary.words)

    def save(self, path: Path) -> None:
        """`path` (.npz) written atomically: numpy arrays, and the rest as one JSON string."""
        meta = {
            "format": FORMAT_VERSION, "settings": asdict(self.settings), "authors": self.authors,
            "combination": list(self.combination), "detector": self.detector.to_dict(), "form": asdict(self.form),
            "calibration": asdict(self.calibration), "training": self.training,
            "corpus_fingerprint": self.corpus_fingerprint,
        }
        arrays = {"meta": np.array(json.dumps(meta, ensure_ascii=False))}
        for prefix, part in (("char", self.char), ("word", self.word), ("delta", self.delta)):
            arrays.update({f"{prefix}.{k}": v for k, v in part.arrays().items()})
        with atomic_open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> StyleModel:
        """The model `save` wrote; ValueError for another format version or a damaged file."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"style model format {meta.get('format')!r}, expected {FORMAT_VERSION}")

        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + ".")}

        calibration = dict(meta["calibration"])
        calibration["single_work_authors"] = tuple(calibration["single_work_authors"])
        calibration["open_set"] = OpenSetCalibration(**calibration["open_set"])
        return cls(
            settings=StyleSettings(**meta["settings"]), authors=list(meta["authors"]),
            char=LinearView.from_arrays(part("char")), word=LinearView.from_arrays(part("word")),
            delta=DeltaModel.from_arrays(part("delta")), combination=tuple(meta["combination"]),
            detector=OutsiderDetector.from_dict(meta["detector"]), form=CorpusForm(**meta["form"]),
            calibration=Calibration(**calibration), training={a: dict(v) for a, v in meta["training"].items()},
            corpus_fingerprint=meta.get("corpus_fingerprint"),
        )


@dataclass(frozen=True)
class AuthorScore:
    author: str
    word_distance: float  # Cosine Delta, most frequent words (0 = same direction, 1 = unrelated, 2 = opposite)
    char_distance: float  # Cosine Delta, character 4-grams
    distance: float  # their mean
    probability: float  # calibrated, over the corpus's authors (the ranking)
    char_score: float = 0.0  # the character SVM's score (positive: on this author's side)
    word_score: float = 0.0  # the word SVM's score


@dataclass(frozen=True)
class OpenSet:
    """Whether the text reads like any corpus author at all."""

    outsider: bool  # True: reads like none of the corpus authors
    score: float | None  # the outsider score (None when a cheap check decided first)
    threshold: float | None  # the score at which the verdict flips, for a text of this length
    coverage: float  # share of the text's words that occur in two or more training works
    reason: str | None  # why it reads like none of them, in words
    calibrated: bool  # the detector was calibrated on this corpus (False: the benchmark corpus's defaults)


@dataclass(frozen=True)
class Attribution:
    ranking: list[AuthorScore]  # most probable author first
    words: int  # words in the text (runs of letters)
    views: dict[str, str] = field(default_factory=dict)  # view -> the author it names
    open_set: OpenSet | None = None

    @property
    def best(self) -> AuthorScore:
        return self.ranking[0]

    @property
    def confidence(self) -> float:
        return self.ranking[0].probability

    @property
    def agreement(self) -> float:
        """The share of the views naming the best author."""
        return sum(a == self.best.author for a in self.views.values()) / len(self.views) if self.views else 1.0

    @property
    def outsider(self) -> bool:
        return self.open_set is not None and self.open_set.outsider

    @property
    def author(self) -> str | None:
        """The best author, or None when the text reads like none of them."""
        return None if self.outsider else self.best.author


def attributed_author(result: Attribution) -> str:
    """Whom to count a text for: the best author, or NONE_OF_THEM."""
    return result.author or NONE_OF_THEM


# ---------------------------------------------------------------- scoring


@dataclass
class _Outputs:
    """What the views say of some texts, over some candidate authors."""

    char: np.ndarray  # texts × authors
    word: np.ndarray
    delta_words: np.ndarray
    delta_chars: np.ndarray
    words: np.ndarray  # per text
    uncovered: np.ndarray  # per text: share of words outside the coverage vocabulary

    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.char, self.word, -(self.delta_words + self.delta_chars) / 2


def _view_outputs(char: LinearView, word: LinearView, delta: DeltaModel, covered: set[str] | frozenset[str],
                  norms: Sequence[str]) -> _Outputs:
    dw, dc, words = delta.distances(norms)
    uncovered = np.array([_uncovered(norm, covered) for norm in norms])
    return _Outputs(char.scores(norms), word.scores(norms), dw, dc, words, uncovered)


def _uncovered(norm: str, covered: set[str] | frozenset[str]) -> float:
    words = WORD.findall(norm)
    return sum(w not in covered for w in words) / len(words) if words else 1.0


def combine(combination: Sequence[float], outputs: _Outputs) -> np.ndarray:
    """Calibrated logits (texts × authors)."""
    a, b = np.asarray(combination[:3]), np.asarray(combination[3:])
    length = np.log(np.maximum(outputs.words, 1) / 1000.0)[:, None]
    return sum((a[v] + b[v] * length) * s for v, s in enumerate(outputs.inputs()))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def attribute_many(model: StyleModel, texts: Sequence[str]) -> list[Attribution]:
    """Attribute many texts at once; StyleError names a text too short."""
    norms = [normalize(t) for t in texts]
    words = np.array([len(WORD.findall(n)) for n in norms], dtype=np.int64)
    short = np.flatnonzero(words < model.settings.min_words)
    if len(short):
        i = int(short[0])
        which = "the text" if len(texts) == 1 else f"text {i + 1} of {len(texts)}"
        raise StyleError(f"{which} has {words[i]} words; attribution needs at least {model.settings.min_words}")
    outputs = _view_outputs(model.char, model.word, model.delta, model.covered_words, norms)
    logits = combine(model.combination, outputs)
    p = softmax(logits)
    found = evidence(logits, outputs.char, outputs.word, outputs.delta_words, outputs.delta_chars,
                     outputs.uncovered, outputs.words)
    scores = model.detector.score(found)
    thresholds = model.detector.threshold(found)
    d = (outputs.delta_words + outputs.delta_chars) / 2
    results = []
    for row, text in enumerate(texts):
        order = np.lexsort((np.arange(len(model.authors)), -p[row]))
        ranking = [AuthorScore(model.authors[a], float(outputs.delta_words[row, a]), float(outputs.delta_chars[row, a]),
                               float(d[row, a]), float(p[row, a]), float(outputs.char[row, a]),
                               float(outputs.word[row, a])) for a in order]
        views = dict(zip(VIEWS, (model.authors[int(i)] for i in (
            outputs.char[row].argmax(), outputs.word[row].argmax(), outputs.delta_words[row].argmin(),
            outputs.delta_chars[row].argmin()))))
        coverage = 1.0 - float(outputs.uncovered[row])
        reason = model.form.mismatch(text)
        if reason is None and coverage < FOREIGN_COVERAGE:
            reason = f"only {coverage:.0%} of its words occur in the corpus: another language?"
        calibrated = model.detector.calibration.calibrated
        if reason is not None:
            verdict = OpenSet(True, None, None, coverage, reason, calibrated)
        else:
            flagged = bool(scores[row] >= thresholds[row])
            why = (f"further from every corpus author than {1 - model.detector.false_alarm_rate:.0%} of the corpus's "
                   "own held-out text of this length" if flagged else None)
            verdict = OpenSet(flagged, float(scores[row]), float(thresholds[row]), coverage, why, calibrated)
        results.append(Attribution(ranking=ranking, words=int(words[row]), views=views, open_set=verdict))
    return results


def attribute(model: StyleModel, text: str) -> Attribution:
    """Rank the model's authors by how much `text` reads like each, and say whether it reads like any."""
    return attribute_many(model, [text])[0]


# ---------------------------------------------------------------- fitting


@dataclass
class _Fold:
    outsiders: set[int]  # authors left out entirely
    held: set[int]  # works (indices) held out of the training, sampled as insiders


def fit_style_model(
    texts_by_author: Mapping[str, Sequence[tuple[str, str]]],
    settings: StyleSettings = StyleSettings(),
    on_progress: ProgressCallback | None = None,
) -> StyleModel:
    """Fit on author -> [(work id, text)]; works are the units calibration holds out."""
    progress = on_progress or (lambda stage, done, total: None)
    authors: list[str] = []
    works: list[Work] = []
    raw: list[str] = []
    for author, items in texts_by_author.items():
        normalized = [(work, normalize(text), text) for work, text in items]
        normalized = [item for item in normalized if WORD.search(item[1])]
        if not normalized:
            continue  # an author with no words is no candidate
        authors.append(author)
        for work, norm, text in normalized:
            works.append(Work(len(authors) - 1, work, norm))
            raw.append(text)
    if len(authors) < 2:
        found = f"; got {len(authors)}" + (f" ({authors[0]})" if authors else "")
        raise StyleError(f"attribution needs at least 2 authors with text{found}")
    n_authors = len(authors)

    progress("choosing n-grams", 0, 3)
    char_vocab = fit_vocabulary(NgramSpec("char", settings.char_n_min, settings.char_n_max), works,
                                settings.char_features, settings.min_works)
    progress("choosing n-grams", 1, 3)
    word_vocab = fit_vocabulary(NgramSpec("word", 1, settings.word_n_max), works, settings.word_features,
                                settings.min_works)
    progress("choosing n-grams", 2, 3)
    chunk_work, chunk_text = [], []
    for index, work in enumerate(works):
        for chunk in chunk_texts(work.text, settings.chunk_words):
            chunk_work.append(index)
            chunk_text.append(chunk)
    chunk_work_array = np.array(chunk_work, dtype=np.int64)
    char_counts = _counted(char_vocab, chunk_text, "counting character n-grams", progress)
    word_counts = _counted(word_vocab, chunk_text, "counting word n-grams", progress)
    delta_counts = count_delta(works, settings.delta, on_progress)
    work_author = np.array([w.author for w in works], dtype=np.int64)
    chunk_author = work_author[chunk_work_array]

    progress("fitting the views", 0, 1)
    char = fit_linear(char_counts, chunk_author, n_authors, char_vocab)
    word = fit_linear(word_counts, chunk_author, n_authors, word_vocab)
    delta = fit_delta(delta_counts, n_authors)
    word_sets = [set(WORD.findall(w.text)) for w in works]

    # Calibration: each fold leaves some authors out (outsiders) and holds some works out (insiders).
    folds = _fold_plan(works, n_authors, settings.seed)
    rng = np.random.default_rng(settings.seed)
    collected: list[tuple[_Outputs, np.ndarray, np.ndarray, np.ndarray]] = []  # outputs, truth (-1: outsider), length, work
    for number, fold in enumerate(folds):
        progress("calibrating on held-out works and authors", number, len(folds))
        collected.append(_score_fold(fold, works, word_sets, chunk_work_array, char_counts, word_counts, delta_counts,
                                     char_vocab, word_vocab, settings, rng))
    progress("calibrating on held-out works and authors", len(folds), len(folds))

    insiders = [(o, t, n) for o, t, n, _ in collected if (t >= 0).any()]
    combination = _fit_combination([(_select(o, t >= 0), t[t >= 0]) for o, t, _ in insiders]) if insiders \
        else DEFAULT_COMBINATION
    detector = _fit_open_set(collected, combination)
    calibration = _calibration(collected, combination, works, authors, len(folds), detector)
    summary = {}
    for a, name in enumerate(authors):
        mine = chunk_author == a
        summary[name] = {"works": int((work_author == a).sum()), "chunks": int(mine.sum()),
                         "words": int(sum(len(WORD.findall(w.text)) for w in works if w.author == a))}
    return StyleModel(
        settings=settings, authors=authors, char=char, word=word, delta=delta, combination=tuple(combination),
        detector=detector, form=corpus_form(raw), calibration=calibration, training=summary,
    )


def _counted(vocabulary: Vocabulary, texts: list[str], stage: str, progress: ProgressCallback) -> Any:
    """texts × features counts (a CSR matrix), in steps so the progress moves."""
    from scipy import sparse

    parts = []
    step = 256
    for first in range(0, len(texts), step):
        parts.append(vocabulary.counts(texts[first : first + step]))
        progress(stage, min(first + step, len(texts)), len(texts))
    return sparse.vstack(parts).tocsr() if parts else vocabulary.counts([])


def _fold_plan(works: Sequence[Work], n_authors: int, seed: int) -> list[_Fold]:
    """Calibration folds: with 3+ authors each author is the outsider of one fold; works held out round-robin.

    An author keeps at least one training work in every fold; an author with one work is
    never held out as an insider (only left out whole, as an outsider).
    """
    def order(key: str) -> str:
        return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()

    by_author: dict[int, list[int]] = {}
    for index, work in enumerate(works):
        by_author.setdefault(work.author, []).append(index)
    most = max(len(v) for v in by_author.values())
    if n_authors >= 3:
        count = min(MAX_FOLDS, n_authors)
    elif most >= 2:
        count = min(MAX_FOLDS, most)
    else:
        return []
    folds = [_Fold(set(), set()) for _ in range(count)]
    ranked = sorted(by_author, key=lambda a: order(f"author:{a}"))
    outsider_fold = {a: (i % count if n_authors >= 3 else -1) for i, a in enumerate(ranked)}
    for a, fold in outsider_fold.items():
        if fold >= 0:
            folds[fold].outsiders.add(a)
    for a, indices in by_author.items():
        if len(indices) < 2:
            continue
        targets = [f for f in range(count) if f != outsider_fold[a]]
        for k, index in enumerate(sorted(indices, key=lambda i: order(f"work:{works[i].id}:{i}"))):
            folds[targets[k % len(targets)]].held.add(index)
        for f in targets:  # never hold out all of an author's works
            mine = [i for i in indices if i in folds[f].held]
            if len(mine) == len(indices):
                folds[f].held.discard(mine[-1])
    return [f for f in folds if f.held or f.outsiders]


def _score_fold(fold: _Fold, works: Sequence[Work], word_sets: list[set[str]], chunk_work: np.ndarray, char_counts,
                word_counts, delta_counts, char_vocab, word_vocab, settings: StyleSettings, rng: np.random.Generator):
    """Fit the views without the fold's works and authors; score samples of what was left out."""
    train_works = [i for i, w in enumerate(works) if i not in fold.held and w.author not in fold.outsiders]
    inset = sorted({works[i].author for i in train_works})
    column = {a: k for k, a in enumerate(inset)}
    train_mask = np.isin(chunk_work, train_works)
    rows = np.flatnonzero(train_mask)
    labels = np.array([column[works[int(w)].author] for w in chunk_work[rows]], dtype=np.int64)
    char = fit_linear(char_counts[rows], labels, len(inset), char_vocab)
    word = fit_linear(word_counts[rows], labels, len(inset), word_vocab)
    delta_rows = np.flatnonzero(np.isin(delta_counts.chunk_work, train_works))
    delta_labels = np.array([column[int(a)] for a in delta_counts.chunk_author[delta_rows]], dtype=np.int64)
    delta = fit_delta(delta_counts, len(inset), delta_rows, delta_labels)
    seen_in: dict[str, int] = {}
    for i in train_works:
        for w in word_sets[i]:
            seen_in[w] = seen_in.get(w, 0) + 1
    covered = {w for w, c in seen_in.items() if c >= settings.min_works}

    norms, truth, lengths, sources = [], [], [], []
    left_out = [i for i, w in enumerate(works) if w.author in fold.outsiders]
    for group, label_of in ((sorted(fold.held), lambda i: column.get(works[i].author, -2)), (left_out, lambda i: -1)):
        group = [group[k] for k in rng.permutation(len(group))]  # samples spread over the author's works
        for length, cap in CALIBRATION_SAMPLES.items():
            taken: dict[int, int] = {}
            for i in group:
                if label_of(i) == -2 or taken.get(works[i].author, 0) >= cap:
                    continue
                for sample in _samples(works[i].text, length, SAMPLES_PER_WORK, rng):
                    if taken.get(works[i].author, 0) >= cap:
                        break
                    taken[works[i].author] = taken.get(works[i].author, 0) + 1
                    norms.append(sample)
                    truth.append(label_of(i))
                    lengths.append(length)
                    sources.append(i)
    outputs = _view_outputs(char, word, delta, covered, norms)
    return outputs, np.array(truth, dtype=np.int64), np.array(lengths, dtype=np.int64), np.array(sources, dtype=np.int64)


def _samples(text: str, length: int, count: int, rng: np.random.Generator) -> list[str]:
    """Up to `count` windows of `length` words at random places (none when the work is shorter)."""
    words = text.split(" ")
    if len(words) < length:
        return []
    starts = rng.choice(len(words) - length + 1, size=min(count, len(words) - length + 1), replace=False)
    return [" ".join(words[s : s + length]) for s in sorted(starts.tolist())]


def _select(outputs: _Outputs, mask: np.ndarray) -> _Outputs:
    return _Outputs(outputs.char[mask], outputs.word[mask], outputs.delta_words[mask], outputs.delta_chars[mask],
                    outputs.words[mask], outputs.uncovered[mask])


def _fit_combination(groups: list[tuple[_Outputs, np.ndarray]]) -> tuple[float, ...]:
    """The six weights minimising the log loss of the held-out samples (convex: the logits are linear in them)."""
    from scipy.optimize import minimize

    prepared = []
    for outputs, truth in groups:
        length = np.log(np.maximum(outputs.words, 1) / 1000.0)[:, None]
        inputs = outputs.inputs()
        prepared.append((inputs, length, truth))
    count = sum(len(t) for _, _, t in prepared)
    ridge = 1e-4

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta[:3], theta[3:]
        total, grad = 0.0, np.zeros(6)
        for inputs, length, truth in prepared:
            logits = sum((a[v] + b[v] * length) * s for v, s in enumerate(inputs))
            logits = logits - logits.max(axis=1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            rows = np.arange(len(truth))
            total -= log_p[rows, truth].sum()
            residual = np.exp(log_p)
            residual[rows, truth] -= 1.0
            for v, s in enumerate(inputs):
                per_row = (residual * s).sum(axis=1)
                grad[v] += per_row.sum()
                grad[3 + v] += (per_row * length[:, 0]).sum()
        return total / count + ridge * float(theta @ theta), grad / count + 2 * ridge * theta

    result = minimize(loss, np.array(DEFAULT_COMBINATION, dtype=float), jac=True, method="L-BFGS-B")
    return tuple(float(x) for x in result.x)


def _fit_open_set(collected, combination: Sequence[float]) -> OutsiderDetector:
    features, outsider, lengths, groups = [], [], [], []
    for fold, (outputs, truth, length, _) in enumerate(collected):
        if len(truth) == 0:
            continue
        logits = combine(combination, outputs)
        features.append(evidence(logits, outputs.char, outputs.word, outputs.delta_words, outputs.delta_chars,
                                 outputs.uncovered, outputs.words))
        outsider.append(truth == -1)
        lengths.append(length)
        groups.append(np.full(len(truth), fold))
    if not features or not np.concatenate(outsider).any() or np.concatenate(outsider).all():
        return default_detector()
    return fit_detector(np.concatenate(features), np.concatenate(outsider), np.concatenate(lengths),
                        np.concatenate(groups), FALSE_ALARM_RATE)


def default_detector() -> OutsiderDetector:
    """The detector fitted on the benchmark corpus, for corpora with too few authors to leave one out."""
    return OutsiderDetector.from_dict({**DEFAULT_DETECTOR, "calibration": asdict(OpenSetCalibration(0, 0, None, None, None))})


def _calibration(collected, combination, works: Sequence[Work], authors: list[str], folds: int,
                 detector: OutsiderDetector) -> Calibration:
    counts = np.bincount([w.author for w in works], minlength=len(authors))
    single = tuple(name for a, name in enumerate(authors) if counts[a] < 2)
    confidences, correct, log_losses, lengths, sources = [], [], [], [], []
    for outputs, truth, length, source in collected:
        inside = truth >= 0
        if not inside.any():
            continue
        p = softmax(combine(combination, _select(outputs, inside)))
        t = truth[inside]
        confidences.append(p.max(axis=1))
        correct.append(p.argmax(axis=1) == t)
        log_losses.append(-np.log(np.maximum(p[np.arange(len(t)), t], 1e-12)))
        lengths.append(length[inside])
        sources.append(source[inside])
    if not confidences:
        return Calibration(0, 0, None, None, None, None, single, folds, {}, detector.calibration)
    confidence, right = np.concatenate(confidences), np.concatenate(correct)
    length = np.concatenate(lengths)
    return Calibration(
        queries=len(right), works=len(np.unique(np.concatenate(sources))), accuracy=float(right.mean()),
        mean_confidence=float(confidence.mean()), ece=expected_calibration_error(confidence, right),
        log_loss=float(np.concatenate(log_losses).mean()), single_work_authors=single, folds=folds,
        by_length={str(int(n)): float(right[length == n].mean()) for n in np.unique(length)},
        open_set=detector.calibration,
    )


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ over equal-width confidence bins of (share of samples) × |accuracy − mean confidence|."""
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


# ---------------------------------------------------------------- workspace


def model_path(ws: Workspace) -> Path:
    return ws.root / STYLE_DIR / MODEL_FILE


def work_id(source: str) -> str:
    """Chapters of one book ("book.fb2#3") are one work: the calibration holds out the whole book."""
    return source.split("#", 1)[0]


def load_or_fit_workspace_model(
    ws: Workspace, settings: StyleSettings | None = None, on_progress: ProgressCallback | None = None
) -> StyleModel:
    """The workspace's model: `style/model.npz` while the corpus and settings are unchanged, else fitted anew.

    Fitted on every work of the corpus, the held-out validation works too: attribution is
    best with all the author's text, and calibration holds works out on its own.
    """
    settings = settings or StyleSettings()
    corpus_dir = ws.corpus_dir
    if not (corpus_dir / DOCUMENTS_FILE).is_file() or not (corpus_dir / REPORT_JSON).is_file():
        raise StyleError(f"{corpus_dir}: no corpus built yet; run `dvoinik corpus` first")
    fingerprint = corpus_fingerprint(corpus_dir)
    path = model_path(ws)
    try:
        cached = StyleModel.load(path)
        if cached.corpus_fingerprint == fingerprint and cached.settings == settings:
            return cached
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing, from another version, or damaged: fit again
    texts: dict[str, list[tuple[str, str]]] = {}
    for doc in load_documents(corpus_dir):
        texts.setdefault(doc.author, []).append((work_id(doc.source), doc.text))
    try:
        model = fit_style_model(texts, settings, on_progress)
    except StyleError as e:
        raise StyleError(f"{corpus_dir / DOCUMENTS_FILE}: {e}") from None
    model.corpus_fingerprint = fingerprint
    model.save(path)
    (path.parent / OLD_MODEL_FILE).unlink(missing_ok=True)  # the format-1 cache this one replaces
    return model


def style_file(ws: Workspace, path: Path, settings: StyleSettings | None = None,
               on_progress: ProgressCallback | None = None, model: StyleModel | None = None) -> Attribution:
    """Which of the workspace corpus's authors the file at `path` reads like (or none of them).

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
    """What a reader of an attribution should know: how it was calibrated, and when to doubt it."""
    calibration = model.calibration
    notes = []
    if calibration.calibrated:
        notes.append(f"calibration: {calibration.queries} samples of {calibration.works} held-out works "
                     f"({calibration.folds} folds), accuracy {calibration.accuracy:.0%}, ECE {calibration.ece:.3f}")
    else:
        notes.append("not calibrated: no author has two works; the probabilities use the benchmark corpus's weights")
    open_set = calibration.open_set
    if open_set.calibrated:
        notes.append(f"'none of them': each author in turn left out, AUROC {open_set.auroc:.2f}, "
                     f"{open_set.detected:.0%} of outsiders caught at {open_set.false_alarms:.0%} false alarms")
    else:
        notes.append("'none of them' is not calibrated on this corpus (fewer than 3 authors): "
                     "the benchmark corpus's detector is used")
    if calibration.single_work_authors:
        notes.append("one work only (candidates, never held out): " + ", ".join(calibration.single_work_authors))
    if attribution.words < SHORT_TEXT_WORDS:
        accuracy = calibration.by_length.get("300")
        measured = f" (in calibration, {accuracy:.0%} of 300-word samples)" if accuracy is not None else ""
        notes.append(f"a short text ({attribution.words} words): attribution is less sure{measured}")
    disagreeing = {view: author for view, author in attribution.views.items() if author != attribution.best.author}
    if disagreeing:
        notes.append("the views disagree: " + ", ".join(f"{view} → {author}" for view, author in disagreeing.items()))
    return notes


def with_min_words(model: StyleModel, min_words: int) -> StyleModel:
    """The same model accepting texts from `min_words` words (evaluation attributes short samples too)."""
    return replace(model, settings=replace(model.settings, min_words=min_words))
