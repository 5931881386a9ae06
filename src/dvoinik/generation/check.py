"""`dvoinik check FILE`: the spans of a text copied from the training texts, with their source works.

The file is read and cleaned the way the corpus is, and compared with the training texts
as normalised words (`generation/words.py`, the word index of `generation/wordindex.py`),
so a passage copied with other line breaks, quotes, dashes, `ё` spelt `е` or other
hyphenation is still one span. Every maximal span of at least `min_words` words found in
the training texts is reported (or, with `min_tokens`, of at least that many tokens of
the run's tokenizer) with its words, its tokens, its place in the file, and the work
and place it comes from. Positions are character offsets in the cleaned text of the
file and in the text of the source work (`corpus/documents.jsonl`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dvoinik.corpus.build import read_text_file
from dvoinik.generation.wordindex import WordIndex, WordSpan, built_from_run_corpus, maximal_runs, open_word_index
from dvoinik.runs import Run, RunError, find_run, resolve_checkpoint, run_names, run_token_set
from dvoinik.workspace import Workspace


@dataclass(frozen=True)
class CopiedSpan:
    words: int  # normalised words
    tokens: int | None  # tokens of the checked text overlapping the span (the run's tokenizer; None without a run)
    text: str  # as written in the checked text
    start: int  # characters into the checked text
    end: int
    work: str  # title of the source work
    author: str
    work_id: str
    work_start: int  # characters into the source work
    work_end: int
    work_share: float  # how far into the work, 0..1
    occurrences: int  # times the span occurs in the training texts


@dataclass(frozen=True)
class CheckReport:
    source: str  # the checked file, as given
    words: int
    tokens: int | None  # None: no run, so no tokenizer to count with
    min_words: int | None  # the threshold in words…
    min_tokens: int | None  # …or, when given instead, in tokens
    spans: list[CopiedSpan] = field(default_factory=list)  # at least the threshold long, in order
    longest: CopiedSpan | None = None  # the most words, whatever its length
    copied_words: int = 0  # words inside at least one reported span
    notes: list[str] = field(default_factory=list)  # what the reader should know about the comparison

    @property
    def copied_share(self) -> float:
        return self.copied_words / self.words if self.words else 0.0

    @property
    def over_threshold(self) -> bool:
        return bool(self.spans)

    @property
    def threshold(self) -> str:
        return f"{self.min_tokens}+ tokens" if self.min_tokens else f"{self.min_words}+ words"

    def to_json(self) -> dict:
        return {**asdict(self), "copied_share": self.copied_share}


class TokenCounter:
    """Tokens of one text, counted over character ranges of it (the text is tokenized once)."""

    def __init__(self, tokenizer: Any, text: str) -> None:
        self.tokenizer, self.text = tokenizer, text
        try:
            offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True).offset_mapping
        except (NotImplementedError, ValueError, TypeError):  # a slow tokenizer: no offsets
            self.starts = self.ends = None
            self.total = len(tokenizer(text, add_special_tokens=False).input_ids)
            return
        self.starts = np.asarray([a for a, _ in offsets], dtype=np.int64)
        self.ends = np.asarray([b for _, b in offsets], dtype=np.int64)
        self.total = len(offsets)

    def count(self, ranges: list[tuple[int, int]]) -> list[int]:
        """How many tokens overlap each character range [start, end)."""
        if not ranges:
            return []
        if self.starts is None:  # each range's text tokenized alone
            texts = [self.text[a:b] for a, b in ranges]
            return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False).input_ids]
        bounds = np.asarray(ranges, dtype=np.int64)
        first = np.searchsorted(self.ends, bounds[:, 0], side="right")  # the first token ending inside the range
        last = np.searchsorted(self.starts, bounds[:, 1], side="left")  # past the last token starting inside it
        return np.maximum(last - first, 0).tolist()


def find_copies(index: WordIndex, tokenizer: Any | None, text: str, min_words: int | None = None,
                min_tokens: int | None = None, source: str = "") -> CheckReport:
    """Every maximal span of `text` found in the training texts that reaches the threshold, and the longest.

    The threshold is `min_tokens` tokens when given (this needs the tokenizer), else `min_words` words.
    """
    if (min_words is None) == (min_tokens is None):
        raise ValueError("give the threshold in words or in tokens")
    matches = index.match(text)
    lengths = matches.lengths
    runs = maximal_runs(lengths)
    tokens = TokenCounter(tokenizer, text) if tokenizer is not None else None
    if min_tokens is not None:
        if tokens is None:
            raise ValueError("a threshold in tokens needs the tokenizer")
        counts = tokens.count([matches.words.chars(int(i), int(lengths[i])) for i in runs])
        chosen = [int(i) for i, count in zip(runs, counts) if count >= min_tokens]
    else:
        chosen = [int(i) for i in runs if lengths[i] >= min_words]
    spans = [index.span(matches, i) for i in chosen]
    longest = index.longest(matches)
    covered = np.zeros(len(lengths), dtype=bool)
    for span in spans:
        covered[span.start : span.end] = True

    shown = spans + ([longest] if longest else [])
    ranges = [(s.text_start, s.text_end) for s in shown]
    counts = tokens.count(ranges) if tokens is not None else [None] * len(shown)
    described = [_described(text, span, count) for span, count in zip(shown, counts)]
    return CheckReport(
        source=source, words=len(matches.words), tokens=tokens.total if tokens is not None else None,
        min_words=min_words, min_tokens=min_tokens, spans=described[: len(spans)],
        longest=described[-1] if longest else None, copied_words=int(covered.sum()),
    )


def _described(text: str, span: WordSpan, tokens: int | None) -> CopiedSpan:
    return CopiedSpan(span.words, tokens, text[span.text_start : span.text_end], span.text_start, span.text_end,
                      span.work, span.author, span.work_id, span.work_start, span.work_end, span.work_share,
                      span.occurrences)


def check_file(ws: Workspace, path: Path, run: str | None = None, min_tokens: int | None = None,
               min_words: int | None = None, on_progress: Callable[[str], None] | None = None) -> CheckReport:
    """`find_copies` on a user's file, against the training texts; tokens are the run's (default: the latest run).

    Without runs in the workspace the file is checked in words alone.
    """
    chosen = find_run(ws, run) if run is not None or run_names(ws) or min_tokens is not None else None
    text = read_text_file(path, ws.language)  # a bad file is reported before the index is built
    tokenizer = None
    if chosen is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(chosen, "last"))
    index = open_word_index(ws.root, on_progress)
    if min_tokens is None:
        min_words = min_words or ws.check.min_words
    report = find_copies(index, tokenizer, text, min_words, min_tokens, source=str(path))
    if chosen is None:
        report.notes.append("no run trained yet: spans are counted in words only")
    elif not _trained_on(index, ws, chosen):
        report.notes.append(f"the corpus was rebuilt after run {chosen.name!r} was trained: the text is compared "
                            "with the training works of the corpus as it is now")
    return report


def _trained_on(index: WordIndex, ws: Workspace, run: Run) -> bool:
    """Whether the run was trained on the corpus the word index was built from (its token set was made from it)."""
    try:
        return built_from_run_corpus(index, run_token_set(ws, run))
    except RunError:  # its token files are gone or were rebuilt: the corpus changed since
        return False

