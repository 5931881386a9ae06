"""Text as normalised words: the copy measure that layout, quotes, dashes and spelling variants cannot hide from.

`normalise_words(text)` gives every word of a text in one normal form, with where it
lies in the text (character offsets), so a copy found among normalised words can be
shown in the characters the reader has. The same pure function reads the training
texts (the word index), a checked file, a generated variant and evaluation samples.

The rules:

- A word is a run of letters and digits (Unicode letters, decimal and letter numbers),
  with any combining marks and invisible format characters inside it. Everything else
  only separates words: spaces of every kind (NBSP included), line and paragraph
  breaks, punctuation, quotes of every kind («» „“ "" ‘’) and dashes of every kind
  (— – -- -). So the measure compares words, never punctuation or layout.
- A hyphen between two parts of a word joins them and is dropped: `кто-нибудь` →
  `ктонибудь`. So does a hyphen at the end of a line (`чело-⏎век` → `человек`; also
  `кто-⏎нибудь` → `ктонибудь`: the same form as the unbroken word, so it does not matter
  whether a cleaner or a typesetter guessed right about which hyphens were real), a
  hyphen followed by spaces where line breaks became spaces (`чело- век`), and a soft
  hyphen (U+00AD) anywhere. A hyphen with a space *before* it is a dash.
- An apostrophe between letters joins as well (`д’Артаньян` → `дартаньян`).
- Unicode NFKC (ligatures, full-width and compatibility forms); stress marks dropped
  (combining acute and grave, as in Leskov's `вы́пил`; in Latin script this also folds é
  to e); case folded; `ё` → `е`. Superscript digits (footnote markers) are not words.

Case is folded because a copy does not stop being one when a sentence is cut in two,
two are joined, a heading is set in capitals or a line starts with a capital: a run of
dozens of words that agree but for case is never chance.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NORMALISER_VERSION = 1  # part of the word index's fingerprint: a change of rules rebuilds it


_BMP_CATEGORIES = tuple(unicodedata.category(chr(c)) for c in range(0x10000))


def _category_class(wanted: tuple[str, ...]) -> str:
    """The characters of the Basic Multilingual Plane in the Unicode categories `wanted`, as regex class ranges.

    Generated from Python's own Unicode database (`re` has no \\p{...}); characters beyond
    the BMP (historic scripts' marks) are left out and simply separate words.
    """
    chars = [c for c, category in enumerate(_BMP_CATEGORIES) if category in wanted]
    ranges, first = [], None
    for previous, current in zip([None, *chars], [*chars, None]):
        if first is None:
            first = current
        elif current is None or current != previous + 1:
            ranges.append(re.escape(chr(first)) + ("-" + re.escape(chr(previous)) if previous != first else ""))
            first = current
    return "".join(ranges)


_COMBINING = _category_class(("Mn", "Mc", "Me"))
_FORMAT = _category_class(("Cf",))  # invisible: soft hyphen, zero-width (non-)joiners, word joiner, BOM
_MARKS = _COMBINING + _FORMAT
_OTHER_NUMBERS = _category_class(("No",))  # superscript digits, fractions, circled numbers: footnote markers, not words
# A part of a word: starts on a letter or digit (marks before it belong to it); `\w` also lets in "_", dropped below.
_PART = rf"[{_MARKS}]*[^\W_][\w{_MARKS}]*"
_SPACE = r"[^\S\r\n\u2028\u2029]"  # horizontal white space (NBSP and thin spaces too)
_BREAK = r"(?:\r\n|[\r\n\u2028])"
_HYPHENS = "\\-\u2010\u2011"
# A hyphen, or a soft hyphen that ended the part, then spaces and at most one line break.
_HYPHEN_JOIN = rf"(?:[{_HYPHENS}]|(?<=\u00ad)(?={_SPACE}|{_BREAK})){_SPACE}*(?:{_BREAK}{_SPACE}*)?"
_APOSTROPHE_JOIN = "['\u2019\u02bc]"
_WORD = re.compile(rf"({_PART}(?:(?:{_HYPHEN_JOIN}|{_APOSTROPHE_JOIN}){_PART})*)")
_DROPPED = re.compile(rf"[{_HYPHENS}'\u2019\u02bc_\s{_FORMAT}{_OTHER_NUMBERS}]+")
_STRESS = re.compile("[\u0300\u0301]")
_PLAIN = re.compile("[0-9A-Za-z\u0401\u0410-\u044f\u0451]+")  # most words: their normal form is lower case, ё → е


@dataclass(frozen=True)
class Words:
    """The normalised words of a text and where each lies in it: text[starts[i]:ends[i]] is word i as written."""

    words: list[str]
    starts: np.ndarray  # int64 character offsets
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.words)

    def chars(self, first: int, count: int) -> tuple[int, int]:
        """Character offsets of `count` words from word `first`, as written (punctuation between them included)."""
        return int(self.starts[first]), int(self.ends[first + count - 1])


@lru_cache(maxsize=1 << 16)
def normalise_word(raw: str) -> str:
    """One word as written (joiners, marks and all) → its normal form; '' when nothing is left."""
    if _PLAIN.fullmatch(raw):
        return raw.lower().replace("\u0451", "\u0435")
    kept = _DROPPED.sub("", raw)
    # Decomposed, the stress marks and ё's diaeresis can be taken off whatever letter they sit on; then recomposed.
    word = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", kept).casefold())
    return unicodedata.normalize("NFC", _STRESS.sub("", word.replace("\u0435\u0308", "\u0435")))


def normalise_words(text: str) -> Words:
    """Every word of `text` in normal form, with its character offsets in `text`."""
    pieces = _WORD.split(text)  # text between words, a word, text between words, …
    raw = pieces[1::2]
    forms = {written: normalise_word(written) for written in set(raw)}
    words = [forms[written] for written in raw]
    ends = np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)))
    starts, ends = ends[0::2][: len(raw)], ends[1::2]
    if "" in forms.values():  # a "word" of footnote digits or marks alone
        keep = np.fromiter((bool(w) for w in words), dtype=bool, count=len(words))
        words = [w for w in words if w]
        starts, ends = starts[keep], ends[keep]
    return Words(words, starts, ends)


def normalised_text(text: str) -> str:
    """The words of `text` in normal form, one space between them (what the measure compares; for people and tests)."""
    return " ".join(normalise_words(text).words)
