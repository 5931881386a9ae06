"""File names that are not valid UTF-8: shown safely, and recorded in dvoinik.toml without losing a byte.

On Linux a file name is bytes. Names written by another system (cp1251 names unpacked
from an old archive, say) are not UTF-8, and Python hands them over with each
undecodable byte as a lone surrogate (`os.fsdecode`'s "surrogateescape"). Such a string
opens the file, but cannot be printed, written to a UTF-8 file, or stored in TOML.

    shown("книги/\udccf\udcf0.txt")            -> "книги/\\xcf\\xf0.txt"   (for people: messages, reports)
    escaped_path("книги/\udccf\udcf0.txt")     -> "книги/%CF%F0.txt"       (for dvoinik.toml's `path_bytes`)
    unescaped_path("книги/%CF%F0.txt")         -> "книги/\udccf\udcf0.txt" (opens the file again)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    # surrogateescape keeps byte b as U+DC00+b (b >= 0x80); anything else is a lone surrogate from elsewhere.
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def shown(name: str | os.PathLike) -> str:
    """`name` printable and writable as UTF-8: each undecodable byte as `\\xNN` (valid names unchanged)."""
    text = os.fspath(name)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return _SURROGATE.sub(_escape, text)


def is_clean(name: str | os.PathLike) -> bool:
    """Whether `name` is valid Unicode (no undecodable bytes), so it can be written as it is."""
    return _SURROGATE.search(os.fspath(name)) is None


def escaped_path(path: str | os.PathLike) -> str:
    """`path` with its undecodable bytes (and "%") %-escaped: what dvoinik.toml records for a name that is not UTF-8.

    Valid characters stay as they are, so the rest of the name reads as usual.
    """
    text = os.fspath(path)
    return "".join(quote(os.fsencode(ch), safe="") if ch == "%" or not is_clean(ch) else ch for ch in text)


def unescaped_path(escaped: str) -> Path:
    """The path `escaped_path` recorded, byte for byte."""
    return Path(os.fsdecode(unquote_to_bytes(escaped)))
