"""Counting character and word n-grams fast, into sparse matrices, with a vocabulary kept as plain integers.

Every n-gram is one int64 code, so counting a text is numpy work (no Python string per
n-gram, which is what makes scikit-learn's own analyzers slow on millions of words):

- a character n-gram packs the alphabet numbers of its n characters, ALPHABET_BITS apart,
  with n itself in the top bits, so a 2-gram and a 3-gram never share a code;
- a word n-gram packs the vocabulary numbers of its n words, WORD_BITS apart, with n in
  the top bits.

A `Vocabulary` is the sorted array of the codes kept as features, plus what numbers the
characters or words (the alphabet, or the word list). It is stored as arrays and strings,
so a fitted model is saved without pickle.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
from scipy import sparse

ALPHABET_BITS = 10  # characters are numbered 1..1023 (0 = any rarer one): n-grams up to 5 fit below the length tag
WORD_BITS = 20  # words are numbered 1..1,048,575 (0 = a word outside the list): bigrams and trigrams fit
LENGTH_SHIFT = 60  # n is stored in bits 60-62
MAX_CHAR_N = 5
MAX_WORD_N = 3

# A word is a run of letters: digits (chapter numbers, dates) say nothing about style.
WORD = re.compile(r"[^\W\d_]+")
_COMBINING_ACCENTS = re.compile(r"[\u0300-\u036f]")  # stress marks some editions print
_SPACES = re.compile(r"\s+")


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


def choose_alphabet(texts: Iterable[str]) -> str:
    """The 1023 most frequent characters of `texts` (all of them, for any one language), sorted by code point."""
    counts: Counter = Counter()
    for text in texts:
        points, c = np.unique(code_points(text), return_counts=True)
        counts.update(dict(zip(points.tolist(), c.tolist())))
    counts.pop(0xFFFD, None)
    kept = sorted(counts, key=lambda p: (-counts[p], p))[: (1 << ALPHABET_BITS) - 1]
    return "".join(chr(p) for p in sorted(kept))


def alphabet_indices(norm: str, alphabet_codes: np.ndarray) -> np.ndarray:
    """Each character's number in the alphabet (1-based; 0 for characters outside it), as int64."""
    points = code_points(norm)
    if len(alphabet_codes) == 0:
        return np.zeros(len(points), dtype=np.int64)
    pos = np.searchsorted(alphabet_codes, points)
    pos[pos == len(alphabet_codes)] = 0
    return np.where(alphabet_codes[pos] == points, pos + 1, 0).astype(np.int64)


def shift_or(indices: np.ndarray, n: int, bits: int) -> np.ndarray:
    """The code of every run of n consecutive numbers in `indices`: the n numbers packed `bits` apart."""
    m = len(indices) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    indices = indices.astype(np.int64, copy=False)
    codes = np.zeros(m, dtype=np.int64)
    for k in range(n):
        codes = (codes << bits) | indices[k : k + m]
    return codes


def packed(indices: np.ndarray, n: int, bits: int) -> np.ndarray:
    """The code of every run of n consecutive numbers in `indices`, tagged with n."""
    return shift_or(indices, n, bits) | (n << LENGTH_SHIFT)


@dataclass(frozen=True)
class NgramSpec:
    """Which n-grams a view counts."""

    kind: str  # "char" (spaces and punctuation included) or "word" (runs of letters)
    n_min: int
    n_max: int

    def __post_init__(self) -> None:
        top = MAX_CHAR_N if self.kind == "char" else MAX_WORD_N
        if self.kind not in ("char", "word") or not 1 <= self.n_min <= self.n_max <= top:
            raise ValueError(f"invalid n-gram spec {self}")


@dataclass(frozen=True)
class Vocabulary:
    """The n-grams kept as features (sorted codes), and the alphabet or word list their codes refer to."""

    spec: NgramSpec
    codes: np.ndarray  # sorted int64: column j of a count matrix is codes[j]
    alphabet: str = ""  # char view: the characters numbered 1..
    words: tuple[str, ...] = ()  # word view: the words numbered 1..

    def __post_init__(self) -> None:
        object.__setattr__(self, "_alphabet_codes", np.array([ord(c) for c in self.alphabet], dtype=np.uint32))
        object.__setattr__(self, "_word_number", {w: i + 1 for i, w in enumerate(self.words)})

    def text_codes(self, norm: str) -> np.ndarray:
        """Every n-gram code of a normalized text (features or not)."""
        return text_codes(norm, self.spec, self._alphabet_codes, self._word_number)  # type: ignore[attr-defined]

    def counts(self, norms: Sequence[str]) -> sparse.csr_matrix:
        """texts × features counts of normalized texts."""
        return count_matrix([self.text_codes(t) for t in norms], self.codes)

    def describe(self, column: int) -> str:
        """The n-gram of a column, readable (for explaining a model)."""
        code = int(self.codes[column])
        n = code >> LENGTH_SHIFT
        bits = ALPHABET_BITS if self.spec.kind == "char" else WORD_BITS
        mask = (1 << bits) - 1
        numbers = [(code >> (bits * (n - 1 - k))) & mask for k in range(n)]
        if self.spec.kind == "char":
            return "".join(self.alphabet[i - 1] if i else "\ufffd" for i in numbers)
        return " ".join(self.words[i - 1] if i else "…" for i in numbers)


def text_codes(norm: str, spec: NgramSpec, alphabet_codes: np.ndarray, word_number: dict[str, int]) -> np.ndarray:
    if spec.kind == "char":
        indices = alphabet_indices(norm, alphabet_codes)
        bits = ALPHABET_BITS
    else:
        words = WORD.findall(norm)
        # map() calls dict.get(word, 0) from C: no Python frame per word
        indices = np.array(list(map(word_number.get, words, repeat(0, len(words)))), dtype=np.int64)
        bits = WORD_BITS
    parts = [packed(indices, n, bits) for n in range(spec.n_min, spec.n_max + 1)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def count_matrix(code_lists: Sequence[np.ndarray], vocabulary: np.ndarray) -> sparse.csr_matrix:
    """Rows of counts of each text's codes over the sorted `vocabulary` (codes outside it are dropped)."""
    indptr = [0]
    columns, values = [], []
    for codes in code_lists:
        if len(vocabulary) and len(codes):
            distinct, counts = np.unique(codes, return_counts=True)  # sorted queries search far faster
            pos = np.searchsorted(vocabulary, distinct)
            pos[pos == len(vocabulary)] = 0
            hit = vocabulary[pos] == distinct
            cols, counts = pos[hit], counts[hit]
        else:
            cols = counts = np.zeros(0, dtype=np.int64)
        columns.append(cols)
        values.append(counts)
        indptr.append(indptr[-1] + len(cols))
    data = np.concatenate(values).astype(np.float64) if values else np.zeros(0)
    indices = np.concatenate(columns).astype(np.int32) if columns else np.zeros(0, dtype=np.int32)
    return sparse.csr_matrix((data, indices, np.array(indptr, dtype=np.int64)), shape=(len(code_lists), len(vocabulary)))


@dataclass(frozen=True)
class Work:
    """One training work, normalized: the unit that calibration holds out."""

    author: int  # index into the model's authors
    id: str
    text: str  # normalize()d


def chunk_texts(text: str, chunk_words: int) -> list[str]:
    """A normalized text cut into chunks of about `chunk_words` words.

    A text of 1.4 chunks is one chunk, of 1.6 two equal ones, so no chunk is a tiny remainder.
    """
    words = text.split(" ")
    count = max(1, int(len(words) / chunk_words + 0.5))
    bounds = np.linspace(0, len(words), count + 1).round().astype(np.int64)
    return [" ".join(words[bounds[k] : bounds[k + 1]]) for k in range(count)]


def fit_vocabulary(spec: NgramSpec, works: Sequence[Work], max_features: int, min_works: int = 2) -> Vocabulary:
    """The features of a view, from the training works.

    An n-gram is kept only if it occurs in at least `min_works` works: a hero's name or a
    place of one book says nothing about how its author writes the next one. The kept
    ones are ranked by the mean over authors of each author's relative frequency (so a
    prolific author does not choose the features alone), ties by code; the first
    `max_features` stay.
    """
    alphabet = choose_alphabet(w.text for w in works) if spec.kind == "char" else ""
    alphabet_codes = np.array([ord(c) for c in alphabet], dtype=np.uint32)
    words: tuple[str, ...] = ()
    number: dict[str, int] = {}
    if spec.kind == "word":
        seen_in: Counter = Counter()
        for work in works:
            seen_in.update(set(WORD.findall(work.text)))
        # Numbers for the words of at least `min_works` works (the others are 0: "a rare word").
        kept = sorted((w for w, c in seen_in.items() if c >= min_works), key=lambda w: (-seen_in[w], w))
        words = tuple(kept[: (1 << WORD_BITS) - 1])
        number = {w: i + 1 for i, w in enumerate(words)}
    per_work = [np.unique(text_codes(w.text, spec, alphabet_codes, number), return_counts=True) for w in works]
    every = np.unique(np.concatenate([c for c, _ in per_work])) if per_work else np.zeros(0, np.int64)
    in_works = np.zeros(len(every), dtype=np.int64)
    by_author: dict[int, np.ndarray] = {}
    for work, (codes, counts) in zip(works, per_work):
        pos = np.searchsorted(every, codes)
        in_works[pos] += 1
        totals = by_author.setdefault(work.author, np.zeros(len(every)))
        totals[pos] += counts
    score = sum((t / max(t.sum(), 1.0) for t in by_author.values()), np.zeros(len(every)))
    keep = np.flatnonzero(in_works >= min_works)
    chosen = keep[np.lexsort((every[keep], -score[keep]))][:max_features]
    return Vocabulary(spec, np.sort(every[chosen]), alphabet=alphabet, words=words)
