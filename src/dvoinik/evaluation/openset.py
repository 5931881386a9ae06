"""The open-set answer: does a text read like one of the corpus's authors at all, or like none of them?

A closed-set ranking always names somebody. Whether that somebody is plausible shows in
how the text sits against the model, in a few numbers (`evidence`):

- `margin`: how far the best author's calibrated logit is ahead of the second's;
- `char_top`, `word_top`: the best one-vs-rest SVM score in each linear view (every
  author's classifier rejecting the text pushes both below zero);
- `delta_nearest`: the Cosine Delta distance to the nearest author's centroid;
- `agreement`: the share of the four views (character and word SVMs, Delta's word and
  character views) that name the same author as the combination;
- `uncovered`: the share of the text's words never met in two or more training works
  (another language, another century, another subject);
- `length`: log(words / 1000), since every number above is noisier in a short text.

A logistic regression on these, fitted where every corpus author in turn plays the
outsider (`stylometry.py` builds those samples), gives an outsider score. The verdict
threshold is the score that flags `false_alarm_rate` of the corpus's own held-out text
as outsiders, set separately at each calibration length and interpolated between them,
so the false-alarm rate holds for short and long texts alike.

Two cheap checks come before the score: a text in another script than the corpus (its
letters mostly Latin against a Cyrillic corpus, say), and verse against a corpus of
prose (or the reverse), are never attributed: nothing the model was calibrated on looks
like them.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

FEATURES = ("margin", "char_top", "word_top", "delta_nearest", "agreement", "uncovered", "length")
FALSE_ALARM_RATE = 0.05  # the share of the corpus's own held-out text allowed to be called an outsider
VERSE_SHARE = 0.5  # a text whose lines are mostly verse lines is verse
FOREIGN_COVERAGE = 0.3  # a text with fewer of its words in the corpus is in another language, whatever its script
MIN_SCRIPT_LETTERS = 20


@dataclass(frozen=True)
class OpenSetCalibration:
    """How the detector did where each corpus author in turn was the outsider (scored by folds not fitted on)."""

    insiders: int  # samples of held-out works of the authors in the model
    outsiders: int  # samples of the authors left out
    auroc: float | None  # probability that an outsider scores above an insider
    detected: float | None  # share of outsiders flagged at the threshold
    false_alarms: float | None  # share of insiders flagged (about false_alarm_rate by construction)
    by_length: dict[str, dict[str, float | int | None]] = field(default_factory=dict)  # words -> the same figures

    @property
    def calibrated(self) -> bool:
        return self.outsiders > 0


@dataclass(frozen=True)
class OutsiderDetector:
    """Logistic weights on standardized evidence, and the verdict threshold along log(length)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    lengths: tuple[float, ...]  # log(words / 1000) of the calibration lengths, ascending
    thresholds: tuple[float, ...]  # the outsider score at the false-alarm rate, per length
    false_alarm_rate: float
    calibration: OpenSetCalibration

    def score(self, evidence: np.ndarray) -> np.ndarray:
        z = (evidence - np.asarray(self.mean)) / np.asarray(self.scale)
        return z @ np.asarray(self.weights) + self.bias

    def threshold(self, evidence: np.ndarray) -> np.ndarray:
        return np.interp(evidence[:, FEATURES.index("length")], self.lengths, self.thresholds)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> OutsiderDetector:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "calibration"}
        return cls(**values, calibration=OpenSetCalibration(**data["calibration"]))


def evidence(logits: np.ndarray, char_scores: np.ndarray, word_scores: np.ndarray, delta_words: np.ndarray,
             delta_chars: np.ndarray, uncovered: np.ndarray, words: np.ndarray) -> np.ndarray:
    """texts × FEATURES from the views' outputs (texts × authors each, one column per candidate author)."""
    top = logits.argmax(axis=1)
    ordered = np.sort(logits, axis=1)
    margin = ordered[:, -1] - ordered[:, -2] if logits.shape[1] > 1 else ordered[:, -1]
    votes = [char_scores.argmax(axis=1), word_scores.argmax(axis=1), delta_words.argmin(axis=1),
             delta_chars.argmin(axis=1)]
    agreement = np.mean([v == top for v in votes], axis=0)
    nearest = ((delta_words + delta_chars) / 2).min(axis=1)
    length = np.log(np.maximum(words, 1) / 1000.0)
    return np.column_stack([margin, char_scores.max(axis=1), word_scores.max(axis=1), nearest, agreement,
                            uncovered, length])


def fit_detector(features: np.ndarray, outsider: np.ndarray, length_of: np.ndarray, groups: np.ndarray,
                 false_alarm_rate: float = FALSE_ALARM_RATE) -> OutsiderDetector:
    """Fit on evidence of insider (False) and outsider (True) samples; `length_of` is each sample's nominal length.

    The figures in `calibration` are scored honestly: each group (a calibration fold,
    i.e. a set of outsider authors) is scored by a detector fitted on the other groups,
    with its thresholds set on those other groups too.
    """
    detector = _fit(features, outsider, length_of, false_alarm_rate)
    flagged = np.zeros(len(outsider), dtype=bool)
    scores = np.zeros(len(outsider))
    folds = np.unique(groups)
    for g in folds:
        rest = groups != g
        if len(folds) > 1 and outsider[rest].any() and (~outsider[rest]).any():
            held = _fit(features[rest], outsider[rest], length_of[rest], false_alarm_rate)
        else:
            held = detector  # one group only: its own figures (optimistic, and said so by `groups`)
        mine = ~rest
        scores[mine] = held.score(features[mine])
        flagged[mine] = scores[mine] >= held.threshold(features[mine])
    calibration = _figures(scores, flagged, outsider, length_of)
    return OutsiderDetector(**{k: v for k, v in asdict(detector).items() if k != "calibration"},
                            calibration=calibration)


def _fit(features: np.ndarray, outsider: np.ndarray, length_of: np.ndarray, rate: float) -> OutsiderDetector:
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
    model.fit((features - mean) / scale, outsider)
    weights = model.coef_[0]
    bias = float(model.intercept_[0])
    scores = ((features - mean) / scale) @ weights + bias
    lengths, thresholds = [], []
    for nominal in np.unique(length_of):
        insiders = scores[(length_of == nominal) & ~outsider]
        if len(insiders):
            lengths.append(math.log(nominal / 1000.0))
            thresholds.append(float(np.quantile(insiders, 1.0 - rate)))
    if not lengths:
        lengths, thresholds = [0.0], [float("inf")]
    return OutsiderDetector(tuple(mean.tolist()), tuple(scale.tolist()), tuple(weights.tolist()), bias,
                            tuple(lengths), tuple(thresholds), rate, OpenSetCalibration(0, 0, None, None, None))


def _figures(scores: np.ndarray, flagged: np.ndarray, outsider: np.ndarray, length_of: np.ndarray) -> OpenSetCalibration:
    def figures(mask: np.ndarray) -> dict:
        o, i = outsider & mask, ~outsider & mask
        return {"insiders": int(i.sum()), "outsiders": int(o.sum()), "auroc": auroc(scores[o], scores[i]),
                "detected": float(flagged[o].mean()) if o.any() else None,
                "false_alarms": float(flagged[i].mean()) if i.any() else None}

    overall = figures(np.ones(len(scores), dtype=bool))
    by_length = {str(int(n)): figures(length_of == n) for n in np.unique(length_of)}
    return OpenSetCalibration(**overall, by_length=by_length)


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """Mann-Whitney: the chance a positive scores above a negative (ties count half)."""
    if len(positives) == 0 or len(negatives) == 0:
        return None
    both = np.concatenate([positives, negatives])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    sorted_scores = both[order]
    # Average ranks for ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    u = ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2
    return float(u / (len(positives) * len(negatives)))


# ---------------------------------------------------------------- language and form


def script_of(text: str) -> str | None:
    """The script most of the text's letters are written in ("CYRILLIC", "LATIN", …); None with too few letters."""
    counts: Counter = Counter()
    for ch, n in Counter(text).items():
        if ch.isalpha():
            try:
                counts[unicodedata.name(ch).split(" ")[0]] += n
            except ValueError:
                continue
    if sum(counts.values()) < MIN_SCRIPT_LETTERS:
        return None
    return counts.most_common(1)[0][0]


def verse_share(text: str) -> float:
    """The share of the text's lines that stand in a paragraph of three or more lines.

    The corpus stage joins the lines of a prose paragraph and keeps verse lines (as it
    keeps the lines of a stanza), so in cleaned text a paragraph of several lines is verse
    (or a list); prose paragraphs are one line each, dialogue included.
    """
    lines = in_verse = 0
    for paragraph in text.split("\n\n"):
        rows = [r for r in paragraph.split("\n") if r.strip()]
        lines += len(rows)
        in_verse += len(rows) if len(rows) >= 3 else 0
    return in_verse / lines if lines else 0.0


def is_verse(text: str) -> bool:
    return verse_share(text) >= VERSE_SHARE


@dataclass(frozen=True)
class CorpusForm:
    """What the training texts look like, for the cheap checks."""

    script: str | None  # the script of most training letters
    verse_works: float  # the share of training works that are verse

    def mismatch(self, text: str) -> str | None:
        """Why `text` is outside what the corpus holds (another script, or verse against prose), or None."""
        script = script_of(text)
        if self.script and script and script != self.script:
            return f"written in {script.title()} script; the corpus is in {self.script.title()}"
        verse = is_verse(text)
        if verse and self.verse_works < 0.05:
            return "verse, and the corpus is prose"
        if not verse and self.verse_works > 0.95:
            return "prose, and the corpus is verse"
        return None


def corpus_form(texts: list[str]) -> CorpusForm:
    script = script_of("".join(t[:20000] for t in texts))
    verse = float(np.mean([is_verse(t) for t in texts])) if texts else 0.0
    return CorpusForm(script, verse)
