"""`dvoinik check FILE`: the spans of a text copied from the training texts, with their source works.

The file is read and cleaned the way the corpus is (so quotes, dashes and hyphenation
compare equal), tokenized with the run's tokenizer, and every maximal span of at least
`min_tokens` tokens found in the training texts is reported with its words, its place
in the file, and the work and place it comes from. Positions are character offsets in
the cleaned text of the file and of the source work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dvoinik.corpus.build import read_text_file
from dvoinik.generation.copyindex import CopyIndex, Span, open_copy_index
from dvoinik.runs import find_run, resolve_checkpoint, run_token_set
from dvoinik.workspace import Workspace


@dataclass(frozen=True)
class CopiedSpan:
    tokens: int
    text: str
    start: int  # characters into the checked text
    end: int
    work: str  # title of the source work
    author: str
    work_id: str
    work_start: int  # characters into the source work
    work_share: float  # how far into the work, 0..1
    occurrences: int  # times the span occurs in the training texts


@dataclass(frozen=True)
class CheckReport:
    source: str  # the checked file, as given
    tokens: int
    min_tokens: int
    spans: list[CopiedSpan] = field(default_factory=list)  # at least min_tokens long, in order
    longest: CopiedSpan | None = None  # whatever its length
    copied_tokens: int = 0  # tokens inside at least one reported span

    @property
    def copied_share(self) -> float:
        return self.copied_tokens / self.tokens if self.tokens else 0.0

    @property
    def over_threshold(self) -> bool:
        return bool(self.spans)

    def to_json(self) -> dict:
        return {**asdict(self), "copied_share": self.copied_share}


def find_copies(index: CopyIndex, tokenizer: Any, text: str, min_tokens: int, source: str = "") -> CheckReport:
    """Every span of `text` of at least `min_tokens` tokens that occurs in the training texts, and the longest."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding.input_ids, encoding.offset_mapping
    statistics = index.matching_statistics(ids)
    spans = index.spans(ids, min_tokens, statistics)
    longest = index.longest_span(ids, statistics)
    covered = np.zeros(len(ids), dtype=bool)
    for span in spans:
        covered[span.start : span.end] = True

    work_lengths: dict[str, int] = {}  # characters of each source work, decoded once

    def describe(span: Span) -> CopiedSpan:
        work, offset = index.source_at(span.position)
        work_start = len(tokenizer.decode(index.tokens[work.start : work.start + offset].tolist()))
        if work.id not in work_lengths:
            work_lengths[work.id] = len(tokenizer.decode(index.tokens[work.start : work.start + work.tokens].tolist()))
        work_chars = work_lengths[work.id]
        start, end = offsets[span.start][0], offsets[span.end - 1][1]
        return CopiedSpan(span.length, text[start:end], start, end, work.title, work.author, work.id, work_start,
                          work_start / work_chars if work_chars else 0.0, span.occurrences)

    return CheckReport(
        source=source, tokens=len(ids), min_tokens=min_tokens, spans=[describe(s) for s in spans],
        longest=describe(longest) if longest else None, copied_tokens=int(covered.sum()),
    )


def check_file(ws: Workspace, path: Path, run: str | None = None, min_tokens: int | None = None) -> CheckReport:
    """`find_copies` on a user's file, against the training texts of `run` (default: the latest run)."""
    from transformers import AutoTokenizer

    chosen = find_run(ws, run)
    text = read_text_file(path, ws.language)  # a bad file is reported before the index is built
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(chosen, "last"))
    index = open_copy_index(run_token_set(ws, chosen))
    return find_copies(index, tokenizer, text, min_tokens or ws.check.min_tokens, source=str(path))
