"""Deduplicate a corpus across all files and authors: whole works, then paragraphs.

Input is already-cleaned works (one per string, paragraphs separated by a blank line),
given in priority order: an earlier work wins, so the caller puts the target author
first, then longer texts. Everything here is a pure function of its arguments.

Matching ignores what differs between editions of one text: case, `ё`/`е`, dashes,
hyphens, quotes, all other punctuation, stress marks and line wrapping (`matching_key`).

Documents
    * exact: equal `matching_key` (compared by a blake2b digest);
    * near: MinHash LSH over `shingle_words`-word shingles, candidates verified by the
      Jaccard similarity of hash-sampled shingle sets (>= `near_threshold`);
    * contained: a work whose shingles lie >= `containment_threshold` inside a longer
      kept work (an excerpt, an abridged edition, a publisher's free fragment), whatever
      the order: a target author's excerpt of an influence's book goes too, since the
      book holds its text. Reported as kind "contained", the containment its similarity.

Paragraphs (`find_repeated_paragraphs`)
    * repeated: a paragraph of >= `repeated_paragraph_min_words` words already present
      in an earlier kept work (a story in two collections, a reprinted preface);
    * boilerplate: a shorter paragraph found among the first or last
      `boilerplate_edge_paragraphs` paragraphs of >= `boilerplate_min_docs` works, and at
      an edge of this one too: site headers and footers, "Source: …", ratings, a
      collection's running title. The same short line in the middle of several works is
      the authors' prose ("Он засмеялся:", "Милостивый государь,") and stays. Lines that
      look like the author's own even at an edge (dialogue, chapter headings, numerals,
      "* * *", a one-word reply, a short exclamation or sentence) stay too.

Speed: the text is never split into Python word strings. Each work is encoded once to
UTF-32 and normalised through a per-code-point table in numpy; words, paragraphs and
shingles are hashed with vectorised 64-bit polynomial hashes. A long work contributes
only the shingles whose hash falls below 2**64 / 2**level (level chosen so that about
`_SAMPLE_TARGET` to twice that remain); nested levels keep samples of works of
different lengths comparable, so the Jaccard of two samples at a common level is an
unbiased estimate of the full one.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from datasketch import LeanMinHash, MinHashLSH

__all__ = [
    "DedupSettings",
    "DuplicateDocument",
    "RemovedParagraph",
    "drop_paragraphs",
    "find_duplicate_documents",
    "find_repeated_paragraphs",
    "matching_key",
]

# --- normalisation ----------------------------------------------------------------------

# A blank line (possibly holding spaces) separates paragraphs.
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_WORD = re.compile(r"\w+")
# Removed before matching: stress marks, the diaeresis of a decomposed ё, the dot of
# a lowercased İ, soft hyphens and zero-width characters — none of them separates words.
_IGNORED = "\u0300\u0301\u0307\u0308\u00ad\u200b\u200c\u200d\u2060\ufeff"
_IGNORED_RE = re.compile(f"[{_IGNORED}]")
# Marks a paragraph break inside the encoded text; real NULs are turned into spaces first.
_SENTINEL = "\x00"
# Table value for a character that is dropped altogether (see _IGNORED).
_DROP = np.uint32(0xFFFFFFFF)

# --- hashing ----------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_POLY = 0x9E3779B97F4A7C15 | 1  # odd, so it is invertible modulo 2**64
_POLY_INV = pow(_POLY, -1, 1 << 64)
_WORD_SALT = np.uint64(0x243F6A8885A308D3)
_PARAGRAPH_SALT = np.uint64(0x13198A2E03707344)
_SHINGLE_SALT = np.uint64(0xA4093822299F31D0)

# --- sampling and candidates ------------------------------------------------------------

# A sampled shingle set keeps at least this many shingles (up to twice as many).
_SAMPLE_TARGET = 2000
# Containment candidates come from shingles sampled at 1 / 2**level, the level chosen so
# that about _CONTAINMENT_SAMPLE shingles of the whole corpus are sorted (all of them in a
# small corpus, where short fragments need every shingle to be found) ...
_CONTAINMENT_SAMPLE = 1_000_000
# ... ignoring shingles shared by more works than this (formulae, not text reuse) ...
_CONTAINMENT_MAX_DF = 16
# ... and a pair is verified when it shares at least this fraction of the shorter
# work's sampled shingles.
_CONTAINMENT_CANDIDATE_SHARE = 0.5
# The LSH index is tuned below the verification threshold, so that a pair right at the
# threshold is still found; verification then decides.
_LSH_THRESHOLD_MARGIN = 0.15

# --- authors' short paragraphs ----------------------------------------------------------

_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_HEADING_WORDS = frozenset(
    "глава часть книга том раздел действие явление сцена картина пролог эпилог конец"
    " предисловие послесловие вступление заключение chapter part book".split()
)
# Latin numerals, and the Cyrillic look-alikes (Х, І) that scans and typists use.
_ROMAN = re.compile(r"[ivxlcdmхі]+")
_TERMINAL = re.compile(r"[.!?…][\s»\"'”’)\]]*$")
_EXCLAMATION = re.compile(r"[!?…][\s»\"'”’)\]]*$")
# A plain short sentence: capital first, sentence punctuation last, nothing of page
# furniture (digits, colons, brackets, links, ©) in between: "Он засмеялся."
_SHORT_SENTENCE = re.compile(r"[«\"„“]?[^\W\d_a-z][^\d:;()\[\]{}<>/@©|#=+*_]*[.!?…][»\"”’]?")
_SHORT_SENTENCE_WORDS = 5


@dataclass(frozen=True)
class DedupSettings:
    """Thresholds for document and paragraph deduplication."""

    near_threshold: float = 0.8
    shingle_words: int = 5
    num_perm: int = 128
    repeated_paragraph_min_words: int = 12
    boilerplate_min_docs: int = 3
    boilerplate_edge_paragraphs: int = 12
    seed: int = 1
    containment_threshold: float = 0.8


@dataclass(frozen=True)
class DuplicateDocument:
    """Document `removed` duplicates the kept document `kept`."""

    removed: int
    kept: int
    kind: str  # "exact" | "near" | "contained"
    similarity: float  # 1.0 for exact; sampled Jaccard for near; the share of its shingles inside `kept` for contained


@dataclass(frozen=True)
class RemovedParagraph:
    """A paragraph to drop from `document`, with why."""

    document: int
    text: str
    kind: str  # "repeated" | "boilerplate"
    first_seen: int | None  # the earlier kept work holding a "repeated" paragraph
    count: int  # distinct works containing it (for boilerplate: at an edge)


# --- public helpers -----------------------------------------------------------------------


def matching_key(text: str) -> str:
    """Text as compared for duplicates: lowercase, ё→е, words only, single spaces.

    Dashes, hyphens, quotes and all other punctuation separate words and are dropped,
    so "кто-то" and "кто—то" both become "кто то".
    """
    lowered = _IGNORED_RE.sub("", text.lower())
    lowered = lowered.replace("ё", "е").replace("ς", "σ")
    return " ".join(_WORD.findall(lowered))


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs of `text` as the dedup functions index them (blank-line separated)."""
    return _PARAGRAPH_BREAK.split(text)


def drop_paragraphs(text: str, paragraphs: Collection[str]) -> str:
    """`text` without the paragraphs whose `matching_key` equals one of `paragraphs`.

    Paragraphs that carry no words ("* * *") are only dropped on an exact match.
    The kept paragraphs are joined by one blank line.
    """
    if not paragraphs:
        return text
    keys = {matching_key(p) for p in paragraphs}
    literal = {p.strip() for p in paragraphs if not matching_key(p)}
    keys.discard("")
    kept = []
    dropped = False
    for part in split_paragraphs(text):
        key = matching_key(part)
        if (key and key in keys) or (not key and part.strip() in literal):
            dropped = True
            continue
        kept.append(part)
    if not dropped:
        return text
    return "\n\n".join(p for p in kept if p.strip())


# --- documents ----------------------------------------------------------------------------


def find_duplicate_documents(texts: Sequence[str], settings: DedupSettings) -> list[DuplicateDocument]:
    """Exact, near and contained duplicate works; of each group the earliest in `texts` is kept.

    A contained work is the exception to "earliest wins": it is removed in favour of the
    longer work holding it even when it comes first, since that work holds its text too.
    Every entry points at a kept work (a duplicate of a work removed later points at the
    work that one went to).
    """
    if not texts:
        return []
    hasher = _Hasher(max(len(t) for t in texts) + 2)
    a, b = _permutations(settings.num_perm, settings.seed)
    docs = [_shingle_document(hasher.words(t), settings.shingle_words) for t in texts]
    containment_candidates = _containment_candidates(docs)

    # One index per sampling level; the band layout is computed once and shared.
    template = MinHashLSH(max(0.05, settings.near_threshold - _LSH_THRESHOLD_MARGIN), settings.num_perm)
    params = (template.b, template.r)
    indexes: dict[int, MinHashLSH] = {}
    # digest -> how the first work with that text was judged (kind "exact" if it was kept)
    seen: dict[bytes, DuplicateDocument] = {}
    kept: set[int] = set()
    found: list[DuplicateDocument] = []
    for i, doc in enumerate(docs):
        if doc.digest in seen:
            first = seen[doc.digest]
            # An exact copy of a near duplicate points at the work that one duplicates.
            found.append(DuplicateDocument(i, first.kept, first.kind, first.similarity))
            continue
        signatures = _signatures(doc, a, b)
        duplicate = _best_near(i, doc, docs, signatures, indexes, settings)
        if duplicate is None:
            candidates = containment_candidates.get(i, ())
            duplicate = _best_container(i, doc, docs, candidates, kept, settings)
        if duplicate is not None:
            seen[doc.digest] = duplicate
            found.append(duplicate)
            continue
        seen[doc.digest] = DuplicateDocument(i, i, "exact", 1.0)
        kept.add(i)
        for level, signature in signatures.items():
            index = indexes.get(level)
            if index is None:
                index = indexes[level] = MinHashLSH(num_perm=settings.num_perm, params=params)
            index.insert(i, _lean(signature, settings.seed))
    found += _contained_in_later(docs, kept, containment_candidates, settings)
    return _to_kept_works(found)


def _contained_in_later(
    docs: Sequence[_ShingledDocument], kept: set[int], candidates: dict[int, list[int]], settings: DedupSettings
) -> list[DuplicateDocument]:
    """Kept works contained in a longer kept work that came after them (an excerpt filed first).

    The later work was not itself found inside the earlier one (else it would be gone), so
    the earlier is a part of it, not a revision of equal standing. Shortest first, so a
    fragment of a fragment goes to the longest work holding it. Removes from `kept`.
    """
    found = []
    for i in sorted(kept, key=lambda i: (docs[i].words, -i)):
        later = [j for j in candidates.get(i, ()) if j > i]
        duplicate = _best_container(i, docs[i], docs, later, kept - {i}, settings, longer=True)
        if duplicate is not None:
            kept.discard(i)
            found.append(duplicate)
    return found


def _to_kept_works(found: list[DuplicateDocument]) -> list[DuplicateDocument]:
    """Point every entry at a kept work: a work removed later hands its duplicates on to its own."""
    parent = {d.removed: d.kept for d in found}

    def root(k: int) -> int:
        for _ in range(len(parent) + 1):  # each step moves to a work removed later or kept: no cycle
            if k not in parent:
                return k
            k = parent[k]
        return k

    return [DuplicateDocument(d.removed, root(d.kept), d.kind, d.similarity) for d in found]


@dataclass
class _ShingledDocument:
    """What document-level matching needs of one work."""

    digest: bytes  # blake2b of its word-hash sequence: equal iff equal matching_key
    words: int
    shingles: np.ndarray  # every shingle hash, in text order (for containment checks)
    level: int  # sampling level of `sample`
    sample: np.ndarray  # sorted unique shingle hashes below 2**64 >> level


def _shingle_document(words: np.ndarray, k: int) -> _ShingledDocument:
    digest = hashlib.blake2b(words.tobytes(), digest_size=16).digest()
    shingles = _shingles(words, k)
    level = max(0, int(math.floor(math.log2(len(shingles) / _SAMPLE_TARGET)))) if len(shingles) else 0
    sample = np.unique(_below(shingles, level))
    return _ShingledDocument(digest, len(words), shingles, level, sample)


def _shingles(words: np.ndarray, k: int) -> np.ndarray:
    """Hashes of every run of `k` consecutive words (one shingle for a shorter text)."""
    n = len(words)
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    k = min(k, n)
    acc = np.zeros(n - k + 1, dtype=np.uint64)
    for t in range(k):
        # A distinct odd multiplier per position keeps the hash order-sensitive.
        acc += words[t : n - k + 1 + t] * np.uint64(_splitmix(t + 1) | 1)
    acc ^= _SHINGLE_SALT
    return _fmix64(acc)


def _below(hashes: np.ndarray, level: int) -> np.ndarray:
    """The hashes kept at sampling `level`: those below 2**64 / 2**level (nested by level)."""
    if level == 0:
        return hashes
    return hashes[hashes < np.uint64(1 << (64 - level))]


def _signatures(doc: _ShingledDocument, a: np.ndarray, b: np.ndarray) -> dict[int, np.ndarray]:
    """MinHash signatures at the work's own sampling level and the next coarser one.

    Two near duplicates differ in length by less than a factor of two, so their levels
    differ by at most one and they always share one of these two levels.
    """
    out: dict[int, np.ndarray] = {}
    if len(doc.sample) == 0:
        return out
    permuted = np.multiply.outer(doc.sample, a)
    permuted += b
    out[doc.level] = permuted.min(axis=0)
    coarser = doc.sample < np.uint64(1 << (63 - doc.level))
    if coarser.any():
        out[doc.level + 1] = permuted[coarser].min(axis=0)
    return out


def _best_near(
    i: int,
    doc: _ShingledDocument,
    docs: Sequence[_ShingledDocument],
    signatures: dict[int, np.ndarray],
    indexes: dict[int, MinHashLSH],
    settings: DedupSettings,
) -> DuplicateDocument | None:
    """The most similar kept work whose verified Jaccard reaches the threshold."""
    candidates: set[int] = set()
    for level, signature in signatures.items():
        index = indexes.get(level)
        if index is not None:
            candidates.update(index.query(_lean(signature, settings.seed)))
    best: DuplicateDocument | None = None
    for j in sorted(candidates):
        similarity = _sampled_jaccard(doc, docs[j])
        if similarity >= settings.near_threshold and (best is None or similarity > best.similarity):
            best = DuplicateDocument(i, j, "near", round(similarity, 4))
    return best


def _sampled_jaccard(x: _ShingledDocument, y: _ShingledDocument) -> float:
    level = max(x.level, y.level)
    sx, sy = _below(x.sample, level), _below(y.sample, level)
    if len(sx) == 0 or len(sy) == 0:
        return 0.0
    common = len(np.intersect1d(sx, sy, assume_unique=True))
    return common / (len(sx) + len(sy) - common)


def _containment_candidates(docs: Sequence[_ShingledDocument]) -> dict[int, list[int]]:
    """For each work, the works that may hold it: earlier ones, and longer later ones, sharing many sampled shingles.

    Excerpts are far shorter than their source, so LSH on Jaccard cannot find them; a
    sort over a hash sample of all shingles (every shingle in a small corpus) finds the
    pairs cheaply.
    """
    total = sum(len(d.shingles) for d in docs)
    level = max(0, math.ceil(math.log2(total / _CONTAINMENT_SAMPLE))) if total else 0
    samples = [np.unique(_below(d.shingles, level)) for d in docs]
    sizes = np.array([len(s) for s in samples], dtype=np.int64)
    if sizes.sum() == 0:
        return {}
    hashes = np.concatenate(samples)
    owners = np.repeat(np.arange(len(docs), dtype=np.int64), sizes)
    order = np.argsort(hashes, kind="stable")
    hashes, owners = hashes[order], owners[order]
    # Pairs of works sharing a hash: compare each entry with the next few in sorted
    # order; a hash held by more than _CONTAINMENT_MAX_DF works is skipped entirely.
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
    group_size = np.diff(np.r_[starts, len(hashes)])
    common_enough = np.repeat(group_size <= _CONTAINMENT_MAX_DF, group_size)
    n_docs = len(docs)
    codes = []
    for offset in range(1, min(_CONTAINMENT_MAX_DF, len(hashes))):
        same = (hashes[:-offset] == hashes[offset:]) & common_enough[offset:]
        lo, hi = owners[:-offset][same], owners[offset:][same]
        codes.append(np.minimum(lo, hi) * n_docs + np.maximum(lo, hi))
    if not codes:
        return {}
    pairs, shared = np.unique(np.concatenate(codes), return_counts=True)
    words = np.array([d.words for d in docs], dtype=np.int64)
    out: dict[int, list[int]] = {}
    for code, count in zip(pairs.tolist(), shared.tolist()):
        earlier, later = divmod(code, n_docs)
        # A later work can go to any earlier one holding it; an earlier one only to a longer later one.
        if count >= _CONTAINMENT_CANDIDATE_SHARE * sizes[later]:
            out.setdefault(later, []).append(earlier)
        if words[earlier] < words[later] and count >= _CONTAINMENT_CANDIDATE_SHARE * sizes[earlier]:
            out.setdefault(earlier, []).append(later)
    return out


def _best_container(
    i: int,
    doc: _ShingledDocument,
    docs: Sequence[_ShingledDocument],
    candidates: Collection[int],
    kept: set[int],
    settings: DedupSettings,
    longer: bool = False,
) -> DuplicateDocument | None:
    """The kept work holding most of this work's shingles, if enough (with `longer`, only longer works)."""
    best: DuplicateDocument | None = None
    for j in candidates:
        if j not in kept or (longer and docs[j].words <= doc.words) or len(doc.sample) == 0:
            continue
        containment = float(np.isin(doc.sample, docs[j].shingles).mean())
        if containment >= settings.containment_threshold and (best is None or containment > best.similarity):
            best = DuplicateDocument(i, j, "contained", round(containment, 4))
    return best


def _lean(signature: np.ndarray, seed: int) -> LeanMinHash:
    """Wrap our own signature for datasketch's LSH index (which only reads its values)."""
    try:
        return LeanMinHash(seed=seed, hashvalues=signature, scheme="affine64")
    except TypeError:  # datasketch < 2.0 has no schemes and stores uint64 values as given
        return LeanMinHash(seed=seed, hashvalues=signature)


def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Universal hash permutations x -> a*x + b mod 2**64 (a odd, so a bijection)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(0, _MASK64, size=num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, _MASK64, size=num_perm, dtype=np.uint64, endpoint=True)
    return a, b


# --- paragraphs ---------------------------------------------------------------------------


def find_repeated_paragraphs(
    texts: Sequence[str], skip: Collection[int], settings: DedupSettings
) -> list[RemovedParagraph]:
    """Paragraphs to drop: long ones already in an earlier kept work, short frequent ones.

    Works in `skip` (already removed as duplicates) neither lose nor count paragraphs.
    One entry per (work, distinct paragraph); `drop_paragraphs` removes every copy.
    """
    skipped = set(skip)
    live = [i for i in range(len(texts)) if i not in skipped]
    if not live:
        return []
    hasher = _Hasher(max(len(texts[i]) for i in live) + 2)
    per_doc: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    distinct, distinct_at_edges = [], []
    for i in live:
        hashes, words = hasher.paragraphs(texts[i])
        at_edge = _at_edges(len(hashes), settings.boilerplate_edge_paragraphs)
        per_doc[i] = (hashes, words, at_edge)
        distinct.append(np.unique(hashes[words > 0]))
        distinct_at_edges.append(np.unique(hashes[(words > 0) & at_edge]))
    all_hashes = np.concatenate(distinct)
    if len(all_hashes) == 0:
        return []
    owners = np.repeat(np.array(live, dtype=np.int64), [len(d) for d in distinct])
    keys, first_index, counts = np.unique(all_hashes, return_index=True, return_counts=True)
    # `live` is in priority order and np.unique reports the first occurrence, so this
    # is the earliest kept work holding each paragraph.
    first_doc = owners[first_index]
    edge_keys, edge_counts = np.unique(np.concatenate(distinct_at_edges), return_counts=True)

    found: list[RemovedParagraph] = []
    for i in live:
        hashes, words, at_edge = per_doc[i]
        position = np.searchsorted(keys, hashes)
        position[words == 0] = 0
        long = words >= settings.repeated_paragraph_min_words
        repeated = (words > 0) & long & (first_doc[position] != i)
        boiler = (words > 0) & ~long & at_edge & (_lookup(edge_keys, edge_counts, hashes) >= settings.boilerplate_min_docs)
        if not (repeated.any() or boiler.any()):
            continue
        paragraphs = split_paragraphs(texts[i])
        seen: set[int] = set()
        # A key is spared in this work when any of its copies here looks like the author's.
        spared = {int(hashes[p]) for p in np.flatnonzero(boiler) if _looks_authored(paragraphs[p])}
        for p in np.flatnonzero(repeated | boiler).tolist():
            h = int(hashes[p])
            if h in seen or h in spared:
                continue
            seen.add(h)
            text = paragraphs[p].strip()
            if repeated[p]:
                found.append(RemovedParagraph(i, text, "repeated", int(first_doc[position[p]]), int(counts[position[p]])))
            else:
                count = int(_lookup(edge_keys, edge_counts, hashes[p : p + 1])[0])
                found.append(RemovedParagraph(i, text, "boilerplate", None, count))
    return found


def _at_edges(paragraphs: int, edge: int) -> np.ndarray:
    index = np.arange(paragraphs)
    return (index < edge) | (index >= paragraphs - edge)


def _lookup(keys: np.ndarray, counts: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Counts of `hashes` in a sorted `keys`/`counts` table; 0 where absent."""
    if len(keys) == 0:
        return np.zeros(len(hashes), dtype=np.int64)
    position = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
    return np.where(keys[position] == hashes, counts[position], 0)


def _looks_authored(paragraph: str) -> bool:
    """A short paragraph that is plausibly the author's even if it recurs across works."""
    text = paragraph.strip()
    if not text or text[0] in _DASHES:
        return True  # a dialogue line
    words = matching_key(text).split()
    if not words:
        return True  # "* * *", "…"
    if len(words) == 1 and (words[0].isdigit() or _ROMAN.fullmatch(words[0])):
        return True  # a chapter numeral
    if words[0] in _HEADING_WORDS and len(words) <= 4:
        return True  # "Глава первая", "Часть II", "Конец"
    if len(words) == 1 and _TERMINAL.search(text):
        return True  # "Да.", "Нет!"
    if len(words) <= 3 and _EXCLAMATION.search(text):
        return True  # "Боже мой!"
    return len(words) <= _SHORT_SENTENCE_WORDS and _SHORT_SENTENCE.fullmatch(text) is not None


# --- vectorised hashing ------------------------------------------------------------------


class _Hasher:
    """Word and paragraph hashes of texts up to a given length, via numpy.

    Holds the powers of the polynomial hash for one call; nothing is shared between calls.
    """

    def __init__(self, max_chars: int) -> None:
        self.table = _char_table()
        self.powers = _powers(_POLY, max_chars)
        self.inverse_powers = _powers(_POLY_INV, max_chars)

    def _encode(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised code points (0 outside words), word starts, sentinel positions."""
        if _SENTINEL in text:
            text = text.replace(_SENTINEL, " ")
        text = _PARAGRAPH_BREAK.sub(_SENTINEL, text)
        raw = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        astral = raw > 0xFFFF
        if astral.any():
            values = self.table[np.where(astral, 0, raw)]
            extra = {int(c): _classify(chr(c)) for c in np.unique(raw[astral]).tolist()}
            values[astral] = [extra[int(c)] for c in raw[astral].tolist()]
        else:
            values = self.table[raw]
        dropped = values == _DROP
        if dropped.any():
            values, raw = values[~dropped], raw[~dropped]
        in_word = values != 0
        starts = np.flatnonzero(in_word & ~np.r_[False, in_word[:-1]])
        sentinels = np.flatnonzero(raw == 0)
        return values, starts, sentinels

    def _word_hashes(self, values: np.ndarray, starts: np.ndarray) -> np.ndarray:
        if len(starts) == 0:
            return np.empty(0, dtype=np.uint64)
        n = len(values)
        # Positions between words hold 0, so a word's sum runs to the next word start.
        weighted = values.astype(np.uint64) * self.powers[:n]
        sums = np.add.reduceat(weighted, starts)
        sums *= self.inverse_powers[starts]  # rebase each word to position 0
        sums ^= _WORD_SALT
        return _fmix64(sums)

    def words(self, text: str) -> np.ndarray:
        """One 64-bit hash per word of `matching_key(text)`, in order."""
        values, starts, _ = self._encode(text)
        return self._word_hashes(values, starts)

    def paragraphs(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Per paragraph of `split_paragraphs(text)`: hash of its matching key, word count."""
        values, starts, sentinels = self._encode(text)
        words = self._word_hashes(values, starts)
        n_paragraphs = len(sentinels) + 1
        owner = np.searchsorted(sentinels, starts)
        counts = np.bincount(owner, minlength=n_paragraphs)
        hashes = np.zeros(n_paragraphs, dtype=np.uint64)
        if len(words):
            first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
            weighted = words * self.powers[: len(words)]
            sums = np.add.reduceat(weighted, first)
            sums *= self.inverse_powers[first]
            sums ^= _PARAGRAPH_SALT
            hashes[owner[first]] = _fmix64(sums)
        return hashes, counts


def _classify(ch: str) -> int:
    """Table value of one character: normalised code point in a word, 0 outside, or _DROP."""
    if ch in _IGNORED:
        return int(_DROP)
    lowered = _IGNORED_RE.sub("", ch.lower()) or ch
    lowered = lowered[0]
    if lowered == "ё":
        lowered = "е"
    elif lowered == "ς":
        lowered = "σ"
    return ord(lowered) if _WORD.fullmatch(lowered) else 0


@functools.lru_cache(maxsize=1)
def _char_table() -> np.ndarray:
    """`_classify` for every BMP code point, built once per process (read-only)."""
    table = np.array([_classify(chr(c)) for c in range(0x10000)], dtype=np.uint32)
    table[ord(_SENTINEL)] = 0
    table.flags.writeable = False
    return table


def _powers(base: int, n: int) -> np.ndarray:
    """base**i mod 2**64 for i < n, by doubling (vectorised, unlike an accumulate)."""
    out = np.empty(max(n, 1), dtype=np.uint64)
    out[0] = 1
    filled, step = 1, base
    while filled < n:
        take = min(filled, n - filled)
        np.multiply(out[:take], np.uint64(step), out=out[filled : filled + take])
        filled += take
        step = step * step & _MASK64
    return out


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place: spreads every input bit over the output."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def _splitmix(x: int) -> int:
    """A fixed 64-bit mix of a small integer (shingle position multipliers)."""
    z = (x * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)
