"""The copy index: an exact index over the training token ids, to find what a text copies.

    tokens/<key>/copy-index/
      tokens.bin      every training document of every author, one after another (EOS-separated)
      suffixes.bin    the suffix array of tokens.bin (int32, or int64 past 2^31 tokens)
      lcp.bin         longest common prefix of each pair of neighbouring suffixes (int32)
      first.bin       where the suffixes starting with each token id begin (int64): a search starts
                      inside its first token's bucket, a dozen steps shorter
      index.json      fingerprint of the token set, sizes, and where each source work starts

The suffix array and LCP come from `pydivsufsort` (libdivsufsort and Kasai's algorithm
in C): tens of millions of tokens index in seconds. Every question is answered by
binary search over the sorted suffixes: the longest span of a text that occurs in the
training texts (and in which work), all spans of at least N tokens, whether an n-gram
occurs, and which tokens follow a context (what the originality guard bans). Searches
for many positions run together as one vectorised numpy binary search.

Only the training split is indexed: copying measures what the model saw. The folder lives
inside tokens/<key>/, so a rebuilt token set never keeps a stale index; it is built on
first use under a temporary name and renamed into place.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dvoinik.atomic import building_folder, restore_previous_folder
from dvoinik.tokens import META_FILE, TokenSet

INDEX_DIR = "copy-index"
INDEX_FILE = "index.json"
FORMAT_VERSION = 2  # 2: first-token buckets
# Tokens compared per step of the vectorised search; longer matches are settled one by one.
WINDOW = 64
QUERY_BATCH = 4096
# Padding that sorts before every token (a query or a suffix that ends) or after every token (an upper bound).
_BEFORE_ALL, _AFTER_ALL = -1, 1 << 40


class CopyIndexError(Exception):
    """A user-facing problem with the copy index (one line)."""


@dataclass(frozen=True)
class SourceWork:
    """A training document as the copy index knows it: where its tokens start in tokens.bin."""

    id: str
    author: str
    title: str
    start: int
    tokens: int


@dataclass(frozen=True)
class Span:
    """A span of the query, `length` tokens from `start`, that occurs in the training texts."""

    start: int
    length: int
    position: int  # one occurrence in tokens.bin
    occurrences: int  # how many times it occurs there (counted up to a cap)

    @property
    def end(self) -> int:
        return self.start + self.length


class CopyIndex:
    """An opened copy index (read-only memory maps)."""

    def __init__(self, folder: Path) -> None:
        info = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        self.folder = folder
        self.size = int(info["tokens"])
        self.fingerprint = info["fingerprint"]
        # Plain ndarray views of the maps: the same pages, without np.memmap's per-index overhead.
        self.tokens = np.asarray(np.memmap(folder / "tokens.bin", dtype=info["dtype"], mode="r", shape=(self.size,)))
        self.suffixes = np.asarray(np.memmap(folder / "suffixes.bin", dtype=info["suffix_dtype"], mode="r",
                                             shape=(self.size,)))
        self.lcp = np.asarray(np.memmap(folder / "lcp.bin", dtype=np.int32, mode="r", shape=(self.size,)))
        self.first = np.fromfile(folder / "first.bin", dtype=np.int64)  # len = largest token id + 3
        self.sources = tuple(SourceWork(**s) for s in info["sources"])
        self._starts = [s.start for s in self.sources]

    # ------------------------------------------------------------ lookups

    def source_at(self, position: int) -> tuple[SourceWork, int]:
        """The work that holds tokens.bin[position], and the token offset inside it."""
        source = self.sources[bisect.bisect_right(self._starts, position) - 1]
        return source, position - source.start

    def count(self, ngram: Sequence[int]) -> int:
        """How many times `ngram` occurs in the training texts."""
        if len(ngram) == 0:
            return self.size
        lower, upper = self._bounds(np.asarray([ngram], dtype=np.int64))
        return int(upper[0] - lower[0])

    def contains(self, ngram: Sequence[int]) -> bool:
        return self.count(ngram) > 0

    def successors(self, contexts: np.ndarray) -> list[np.ndarray]:
        """For each row of `contexts` (equal lengths), the distinct tokens that follow it in the training texts."""
        contexts = np.asarray(contexts, dtype=np.int64)
        if contexts.ndim != 2:
            raise ValueError(f"contexts must be a 2-D array (rows of equal length), got shape {contexts.shape}")
        if contexts.shape[0] == 0:
            return []
        lower, upper = self._bounds(contexts)
        width = contexts.shape[1]
        result = []
        for low, high in zip(lower.tolist(), upper.tolist()):
            positions = np.asarray(self.suffixes[low:high], dtype=np.int64) + width
            positions = positions[positions < self.size]
            result.append(np.unique(self.tokens[positions]).astype(np.int64))
        return result

    def matching_statistics(self, query: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """For each start i, the length of the longest prefix of query[i:] found in the training texts,
        and the suffix-array rank of one suffix that has it."""
        query = np.asarray(query, dtype=np.int64)
        lengths = np.zeros(len(query), dtype=np.int64)
        ranks = np.zeros(len(query), dtype=np.int64)
        if len(query) == 0 or self.size == 0:
            return lengths, ranks
        padded = np.concatenate([query, np.full(WINDOW, _BEFORE_ALL, dtype=np.int64)])
        for first in range(0, len(query), QUERY_BATCH):
            starts = np.arange(first, min(first + QUERY_BATCH, len(query)))
            windows = padded[starts[:, None] + np.arange(WINDOW)]
            insertion = self._lower_bound(windows)
            best_length = np.zeros(len(starts), dtype=np.int64)
            best_rank = np.zeros(len(starts), dtype=np.int64)
            for neighbour in (insertion - 1, insertion):
                valid = (neighbour >= 0) & (neighbour < self.size)
                rank = np.clip(neighbour, 0, self.size - 1)
                common = self._common_prefix(np.asarray(self.suffixes[rank], dtype=np.int64), windows)
                common[~valid] = 0
                better = common > best_length
                best_length[better], best_rank[better] = common[better], rank[better]
            lengths[starts], ranks[starts] = best_length, best_rank
        # A window matched in full: the match may go on past it; settle those exactly, one by one.
        for i in np.flatnonzero(lengths >= WINDOW).tolist():
            lengths[i], ranks[i] = self._longest_match_exact(query[i:])
        return lengths, ranks

    def longest_span(self, query: Sequence[int], statistics: tuple[np.ndarray, np.ndarray] | None = None) -> Span | None:
        """The longest span of `query` that occurs in the training texts (None when there is none).

        `statistics`: the query's `matching_statistics`, when the caller already has them.
        """
        lengths, ranks = statistics or self.matching_statistics(query)
        if len(lengths) == 0 or lengths.max() == 0:
            return None
        start = int(np.argmax(lengths))
        return self._span(start, int(lengths[start]), int(ranks[start]))

    def spans(self, query: Sequence[int], min_tokens: int,
              statistics: tuple[np.ndarray, np.ndarray] | None = None) -> list[Span]:
        """Every maximal span of `query` of at least `min_tokens` tokens that occurs in the training texts.

        A span is reported where it starts: a run of copied text gives one span, not one per token.
        """
        lengths, ranks = statistics or self.matching_statistics(query)
        found = []
        for i in np.flatnonzero(lengths >= max(1, min_tokens)).tolist():
            if i > 0 and lengths[i - 1] == lengths[i] + 1:
                continue  # the tail of the span that started one token earlier
            found.append(self._span(i, int(lengths[i]), int(ranks[i])))
        return found

    def occurrences(self, rank: int, length: int, cap: int = 1000) -> list[int]:
        """Positions of the suffixes sharing their first `length` tokens with the suffix at `rank` (LCP walk),
        at most `cap` of them."""
        low = high = rank
        while low > 0 and self.lcp[low - 1] >= length and high - low + 1 < cap:
            low -= 1
        while high + 1 < self.size and self.lcp[high] >= length and high - low + 1 < cap:
            high += 1
        return np.asarray(self.suffixes[low : high + 1], dtype=np.int64).tolist()

    # ------------------------------------------------------------ the search

    def _span(self, start: int, length: int, rank: int) -> Span:
        positions = self.occurrences(rank, length)
        return Span(start=start, length=length, position=min(positions), occurrences=len(positions))

    def _gather(self, positions: np.ndarray, width: int) -> np.ndarray:
        """tokens[p : p + width] for each p, padded past the end of the text."""
        index = positions[:, None] + np.arange(width)
        inside = index < self.size
        out = np.asarray(self.tokens[np.minimum(index, self.size - 1)], dtype=np.int64)
        out[~inside] = _BEFORE_ALL
        return out

    def _lower_bound(self, windows: np.ndarray) -> np.ndarray:
        """For each window, the first suffix-array rank whose suffix sorts at or after it (on `width` tokens)."""
        # The answer lies in the bucket of the window's first token: [first[t], first[t + 1]].
        token = np.clip(windows[:, 0], -1, len(self.first) - 2)
        low = np.where(token < 0, 0, self.first[np.maximum(token, 0)])
        high = np.where(token < 0, 0, self.first[np.maximum(token, 0) + 1])
        width = windows.shape[1]
        while True:
            active = low < high
            if not active.any():
                return low
            middle = (low + high) // 2
            suffix = self._gather(np.asarray(self.suffixes[np.minimum(middle, self.size - 1)], dtype=np.int64), width)
            differs = suffix != windows
            first = differs.argmax(axis=1)
            rows = np.arange(len(windows))
            before = differs.any(axis=1) & (suffix[rows, first] < windows[rows, first])
            low = np.where(active & before, middle + 1, low)
            high = np.where(active & ~before, middle, high)

    def _bounds(self, prefixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rank ranges [lower, upper) of the suffixes that start with each row of `prefixes`."""
        count = len(prefixes)
        before = np.full((count, 1), _BEFORE_ALL, dtype=np.int64)
        after = np.full((count, 1), _AFTER_ALL, dtype=np.int64)
        found = self._lower_bound(np.concatenate([np.hstack([prefixes, before]), np.hstack([prefixes, after])]))
        return found[:count], found[count:]

    def _common_prefix(self, positions: np.ndarray, windows: np.ndarray) -> np.ndarray:
        suffix = self._gather(positions, windows.shape[1])
        differs = (suffix != windows) | (windows < 0)
        return np.where(differs.any(axis=1), differs.argmax(axis=1), windows.shape[1])

    def _compare(self, position: int, query: np.ndarray) -> tuple[int, bool]:
        """(common prefix length, whether the suffix at `position` sorts before `query`), untruncated."""
        done = 0
        chunk = WINDOW
        while done < len(query):
            part = query[done : done + chunk]
            text = np.asarray(self.tokens[position + done : position + done + len(part)], dtype=np.int64)
            same = text == part[: len(text)]
            if not same.all():
                k = int(np.argmin(same))
                return done + k, bool(text[k] < part[k])
            if len(text) < len(part):  # the text ended first: the suffix is a prefix of the query
                return done + len(text), True
            done += len(part)
            chunk *= 2
        return done, False

    def _longest_match_exact(self, query: np.ndarray) -> tuple[int, int]:
        low, high = 0, self.size
        while low < high:
            middle = (low + high) // 2
            _, before = self._compare(int(self.suffixes[middle]), query)
            if before:
                low = middle + 1
            else:
                high = middle
        best = (0, 0)
        for rank in (low - 1, low):
            if 0 <= rank < self.size:
                common, _ = self._compare(int(self.suffixes[rank]), query)
                best = max(best, (common, rank))
        return best


# ---------------------------------------------------------------- building


def index_fingerprint(token_set: TokenSet) -> str:
    meta = json.loads((token_set.folder / META_FILE).read_text(encoding="utf-8"))
    return f"{meta.get('corpus')}|{meta.get('tokenizer')}|{meta.get('format')}"


def open_copy_index(
    token_set: TokenSet, on_progress: Callable[[str], None] | None = None,
) -> CopyIndex:
    """The token set's copy index, built first when it is missing or was built from other tokens."""
    folder = token_set.folder / INDEX_DIR
    restore_previous_folder(folder)
    fingerprint = index_fingerprint(token_set)
    try:
        info = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        if info.get("format") == FORMAT_VERSION and info.get("fingerprint") == fingerprint:
            return CopyIndex(folder)
    except (OSError, ValueError):
        pass
    if on_progress:
        on_progress(f"building the copy index over {token_set.train_tokens:,} training tokens")
    build_copy_index(token_set, folder, fingerprint)
    return CopyIndex(folder)


def build_copy_index(token_set: TokenSet, folder: Path, fingerprint: str) -> None:
    """Index `token_set`'s training split into `folder`."""
    if not token_set.documents:
        raise CopyIndexError(f"{token_set.folder}: this token set has no document table; rebuild it with `dvoinik train`")
    parts, sources, offset = [], [], 0
    for author in token_set.authors:
        tokens = token_set.open("train", author)
        parts.append(np.asarray(tokens))
        for doc in token_set.documents:
            if doc.author == author.name and doc.split == "train":
                sources.append(SourceWork(doc.id, doc.author, doc.title, offset + doc.start, doc.tokens))
        offset += len(tokens)
    text = np.concatenate(parts).astype(token_set.dtype, copy=False) if parts else np.zeros(0, dtype=token_set.dtype)
    if len(text) == 0:
        raise CopyIndexError(f"{token_set.folder}: no training tokens to index")
    write_copy_index(text, sources, folder, fingerprint)


def write_copy_index(text: np.ndarray, sources: list[SourceWork], folder: Path, fingerprint: str) -> CopyIndex:
    """Sort the suffixes of `text` and write the index to `folder` (under a temporary name, then renamed)."""
    with building_folder(folder) as staging:
        write_index_files(text, sources, staging, fingerprint)
    return CopyIndex(folder)


def write_index_files(text: np.ndarray, sources: list[SourceWork], folder: Path, fingerprint: str,
                      extra: dict | None = None) -> None:
    """The index files of `text` written into `folder`, a folder its caller builds atomically.

    `extra`: more keys for index.json (the word index keeps its own there).
    """
    from pydivsufsort import divsufsort, kasai

    suffixes = divsufsort(text)
    lcp = kasai(text, suffixes).astype(np.int32, copy=False)
    # first[t] = rank of the first suffix whose first token is >= t; the last two entries are the end.
    first = np.searchsorted(text[suffixes], np.arange(int(text.max()) + 3)).astype(np.int64)
    text.tofile(folder / "tokens.bin")
    suffixes.tofile(folder / "suffixes.bin")
    lcp.tofile(folder / "lcp.bin")
    first.tofile(folder / "first.bin")
    info = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "tokens": int(len(text)),
            "dtype": np.dtype(text.dtype).name, "suffix_dtype": np.dtype(suffixes.dtype).name,
            "sources": [asdict(s) for s in sources], **(extra or {})}
    (folder / INDEX_FILE).write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
