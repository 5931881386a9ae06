"""The word index: the training texts as normalised words, to find a copy however it is laid out.

    word-index/        in the workspace, beside corpus/: it depends on the corpus, not on a tokenizer
      tokens.bin       every training work's word ids (uint32), 0 after each work
      suffixes.bin, lcp.bin, first.bin, index.json
                       a copy index (generation/copyindex.py) over those ids; index.json also
                       records the corpus's fingerprint, the normaliser's version and each
                       work's length in characters
      vocabulary.txt   the normalised words, one a line: line i is word id i + 1
      starts.bin, ends.bin
                       where each word lies in its work's text (characters, uint32)

Words come from `generation/words.py` (the same pure function reads the query), so a
passage re-wrapped, with its line breaks turned into spaces, other quotes or dashes,
`ё` written as `е` or its words hyphenated across lines compares equal with the book.
The suffix array and all searching are the copy index's: a word id is a token like any
other. A match is mapped back to its work and to the characters of the work's text in
`corpus/documents.jsonl`, and to the characters of the query.

Built on first use from the corpus's training split, under a temporary name renamed
into place, and rebuilt when the corpus (or the normaliser) changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dvoinik.atomic import building_folder, restore_previous_folder
from dvoinik.corpus.build import DOCUMENTS_FILE, REPORT_JSON
from dvoinik.generation.copyindex import INDEX_FILE, CopyIndex, CopyIndexError, SourceWork, write_index_files
from dvoinik.generation.words import NORMALISER_VERSION, Words, normalise_words
from dvoinik.tokens import META_FILE, TokenSet, corpus_fingerprint, iter_documents

WORD_INDEX_DIR = "word-index"
VOCABULARY_FILE = "vocabulary.txt"
FORMAT_VERSION = 1
END_OF_WORK = 0  # the id after each work: no word has it, so no match runs from one work into the next


@dataclass(frozen=True)
class WordSpan:
    """`words` words of a text, from its word `start`, found in the training texts, with where they are on both sides."""

    start: int  # word number in the text
    words: int
    text_start: int  # characters into the text, from the first word's first character…
    text_end: int  # …to the last word's last
    work_id: str
    work: str  # title
    author: str
    work_start: int  # characters into the work's text (corpus/documents.jsonl)
    work_end: int
    work_chars: int  # the work's length in characters
    occurrences: int  # times the words occur in the training texts (counted up to a cap)

    @property
    def end(self) -> int:
        return self.start + self.words

    @property
    def work_share(self) -> float:
        """How far into the work the span begins, 0..1."""
        return self.work_start / self.work_chars if self.work_chars else 0.0


@dataclass(frozen=True)
class WordMatches:
    """A text's normalised words and, for each, the longest run of words from it found in the training texts."""

    words: Words
    lengths: np.ndarray  # in words
    ranks: np.ndarray  # suffix-array rank of one occurrence of that run

    @property
    def longest(self) -> int:
        return int(self.lengths.max()) if len(self.lengths) else 0


class WordIndex:
    """An opened word index (read-only memory maps and the vocabulary)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sequence = CopyIndex(folder)
        info = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        self.corpus = info["corpus"]  # the fingerprint of the corpus it was built from
        self.work_chars = tuple(int(c) for c in info["work_chars"])
        words = (folder / VOCABULARY_FILE).read_text(encoding="utf-8").split("\n")
        self.vocabulary = {word: number for number, word in enumerate(words, start=1)}
        self._unknown = len(self.vocabulary) + 1  # an id no text has: a word the training texts never use
        size = self.sequence.size
        self.starts = np.asarray(np.memmap(folder / "starts.bin", dtype=np.uint32, mode="r", shape=(size,)))
        self.ends = np.asarray(np.memmap(folder / "ends.bin", dtype=np.uint32, mode="r", shape=(size,)))
        self._numbers = {source.id: number for number, source in enumerate(self.sources)}

    @property
    def size(self) -> int:
        """Words indexed (with one end-of-work mark per work)."""
        return self.sequence.size

    @property
    def sources(self) -> tuple[SourceWork, ...]:
        return self.sequence.sources

    def ids(self, words: list[str]) -> np.ndarray:
        unknown = self._unknown
        return np.fromiter((self.vocabulary.get(w, unknown) for w in words), dtype=np.int64, count=len(words))

    def match(self, text: str) -> WordMatches:
        """`text`'s words and, for each, the longest run of words starting there that the training texts hold."""
        words = normalise_words(text)
        lengths, ranks = self.sequence.matching_statistics(self.ids(words.words))
        return WordMatches(words, lengths, ranks)

    def spans(self, matches: WordMatches, min_words: int) -> list[WordSpan]:
        """Every maximal run of at least `min_words` words found in the training texts, where it starts."""
        return [self.span(matches, int(i)) for i in maximal_runs(matches.lengths) if matches.lengths[i] >= min_words]

    def longest(self, matches: WordMatches) -> WordSpan | None:
        """The longest run of words found in the training texts (None when not even one word is)."""
        if matches.longest == 0:
            return None
        return self.span(matches, int(np.argmax(matches.lengths)))

    def span(self, matches: WordMatches, start: int) -> WordSpan:
        """The run found from word `start` of the text: its characters, one occurrence's work and place, how many."""
        length, rank = int(matches.lengths[start]), int(matches.ranks[start])
        occurrences = self.sequence.occurrences(rank, length)
        position = min(occurrences)
        work, _ = self.sequence.source_at(position)
        text_start, text_end = matches.words.chars(start, length)
        return WordSpan(start, length, text_start, text_end, work.id, work.title, work.author,
                        int(self.starts[position]), int(self.ends[position + length - 1]),
                        self.work_chars[self._numbers[work.id]], len(occurrences))


def maximal_runs(lengths: np.ndarray) -> np.ndarray:
    """Word numbers where a maximal run found in the training texts starts: a run of copied words gives one, not
    one per word (the run from the next word, one shorter, is its tail)."""
    starts = np.flatnonzero(lengths > 0)
    tails = (starts > 0) & (lengths[np.maximum(starts - 1, 0)] == lengths[starts] + 1)
    return starts[~tails]


# ---------------------------------------------------------------- building


def word_index_fingerprint(corpus: str) -> str:
    """What an index must have been built from to be reused: this format, these rules and this corpus."""
    return f"words|{FORMAT_VERSION}|{NORMALISER_VERSION}|{corpus}"


def open_word_index(root: Path, on_progress: Callable[[str], None] | None = None) -> WordIndex:
    """The word index of the workspace at `root` (`root/word-index/`), built first when missing or stale."""
    corpus_dir = root / "corpus"
    if not (corpus_dir / DOCUMENTS_FILE).is_file() or not (corpus_dir / REPORT_JSON).is_file():
        raise CopyIndexError(f"{corpus_dir}: no corpus built yet; run `dvoinik corpus` first")
    folder = root / WORD_INDEX_DIR
    restore_previous_folder(folder)
    corpus = corpus_fingerprint(corpus_dir)
    fingerprint = word_index_fingerprint(corpus)
    try:
        info = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        if info.get("fingerprint") == fingerprint:
            return WordIndex(folder)
    except (OSError, ValueError, KeyError):
        pass
    return build_word_index(corpus_dir, folder, fingerprint, corpus, on_progress)


def build_word_index(corpus_dir: Path, folder: Path, fingerprint: str, corpus: str,
                     on_progress: Callable[[str], None] | None = None) -> WordIndex:
    """Index the words of every training work of the corpus into `folder`."""
    works = [d for d in iter_documents(corpus_dir) if d.split == "train"]
    if not works:
        raise CopyIndexError(f"{corpus_dir / DOCUMENTS_FILE}: no training works to index")
    return write_word_index(works, folder, fingerprint, corpus, on_progress)


def write_word_index(works: Sequence[Any], folder: Path, fingerprint: str, corpus: str = "",
                     on_progress: Callable[[str], None] | None = None) -> WordIndex:
    """Normalise the words of `works` (each with id, author, title, text) and index them into `folder`.

    Written under a temporary name and renamed into place: a killed build leaves no index that looks whole.
    """
    vocabulary: dict[str, int] = {}
    ids, starts, ends, sources, work_chars = [], [], [], [], []
    offset = 0
    for number, work in enumerate(works):
        if on_progress and number % 8 == 0:
            on_progress(f"building the word index: {number}/{len(works)} training works")
        words = normalise_words(work.text)
        ids.append(np.fromiter((vocabulary.setdefault(w, len(vocabulary) + 1) for w in words.words), dtype=np.uint32,
                               count=len(words)))
        ids.append(np.array([END_OF_WORK], dtype=np.uint32))
        starts += [words.starts, [len(work.text)]]
        ends += [words.ends, [len(work.text)]]
        sources.append(SourceWork(work.id, work.author, work.title, offset, len(words) + 1))
        work_chars.append(len(work.text))
        offset += len(words) + 1
    if not vocabulary:
        raise CopyIndexError(f"{folder}: the training texts hold no words to index")
    if on_progress:
        on_progress(f"building the word index: sorting {offset:,} words")
    with building_folder(folder) as staging:
        write_index_files(np.concatenate(ids), sources, staging, fingerprint,
                          extra={"corpus": corpus, "work_chars": work_chars})
        np.concatenate(starts).astype(np.uint32).tofile(staging / "starts.bin")
        np.concatenate(ends).astype(np.uint32).tofile(staging / "ends.bin")
        (staging / VOCABULARY_FILE).write_text("\n".join(vocabulary), encoding="utf-8")
    return WordIndex(folder)


def built_from_run_corpus(index: WordIndex, token_set: TokenSet) -> bool:
    """Whether the word index was built from the corpus the token set (so a run trained on it) was made from."""
    try:
        meta = json.loads((token_set.folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("corpus") == index.corpus
