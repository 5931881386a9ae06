"""Read an author's files as they really come: decoded, *uncleaned* text plus metadata.

Formats are found by sniffing bytes (the extension is only a hint): zip (EPUB, DOCX or
an archive of files), gzip/xz/bz2 and tar wrappers, FB2, HTML, DOCX, plain text.
Plain text encodings are detected from the bytes: BOMs, UTF-16 without BOM, strict
UTF-8, then the 8-bit Cyrillic code pages (windows-1251, KOI8-R, cp866, mac-cyrillic)
scored by Russian letter frequencies and letter case; charset-normalizer is consulted
only for non-Cyrillic 8-bit text.

EPUB is read with our own OPF parsing (zipfile + lxml, `recover` fallback) rather than
EbookLib: EbookLib refuses whole books for one missing manifest file or odd metadata,
while a missing spine item here only costs that item (and a note).

Nothing here cleans text, except what only the container knows: FB2 footnote-link
markers and notes bodies, EPUB navigation documents, HTML navigation/scripts/styles.
`read_file` never raises for bad input: every failure becomes a `Skipped`.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import math
import os
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import unquote

from lxml import etree

from dvoinik.paths import shown

SECTIONS = ("auto", "works", "chapters")

MAX_ARCHIVE_DEPTH = 3  # an outer archive plus up to 3 nested ones
SNIFF_BYTES = 4096
DETECT_SAMPLE = 64 * 1024
_READ_CHUNK = 4 * 1024 * 1024

FB2_EDITORIAL_BODIES = ("notes", "comments", "footnotes")
CYRILLIC_8BIT = ("cp1251", "koi8-r", "cp866", "mac-cyrillic")  # order breaks ties
CYRILLIC_PRIOR_BITS = {"cp1251": 0.0, "koi8-r": 0.0, "cp866": -6.0, "mac-cyrillic": -4.0}

# Relative frequencies (%) of Russian letters in prose; the score for 8-bit detection.
RU_FREQ = {
    "о": 10.97, "е": 8.45, "а": 8.01, "и": 7.35, "н": 6.70, "т": 6.26, "с": 5.47,
    "р": 4.73, "в": 4.54, "л": 4.40, "к": 3.49, "м": 3.21, "д": 2.98, "п": 2.81,
    "у": 2.62, "я": 2.01, "ы": 1.90, "ь": 1.74, "г": 1.70, "з": 1.65, "б": 1.59,
    "ч": 1.44, "й": 1.21, "х": 0.97, "ж": 0.94, "ш": 0.73, "ю": 0.64, "ц": 0.48,
    "щ": 0.36, "э": 0.32, "ф": 0.26, "ъ": 0.04, "ё": 0.20,  # ё: in texts that print it
}
# Bits per non-ASCII character: a letter costs -log2 of its frequency plus a case cost
# (prose is ~5-10% capitals, so KOI8-R read as cp1251 -- all capitals -- loses clearly).
_UPPER_BITS = math.log2(0.08)
_LOWER_BITS = math.log2(0.92)
_PUNCT_BITS = -8.0
_ODD_BITS = -14.0
# Average bits per non-ASCII char above which a Cyrillic decoding is plausible
# (Russian prose scores about -5; random bytes about -10).
_PLAUSIBLE_BITS = -7.5
# Only punctuation real Russian texts use: rarer symbols (¬ ® √ ∆ ...) are what a wrong
# page turns capitals into, so they must cost as much as garbage.
_TYPOGRAPHIC = set("«»„“”‘’‚—–…№§°•·\xa0©")
_OTHER_CYRILLIC_LETTERS = set("іїєґўІЇЄҐЎ")

BINARY_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"%PDF", "PDF document"),
    (b"\x7fELF", "ELF executable"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "MS Office 97-2003 document"),
    (b"{\\rtf", "RTF document"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x28\xb5\x2f\xfd", "Zstandard stream"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"AT&TFORM", "DjVu document"),
    (b"ID3", "MP3 audio"),
    (b"OggS", "Ogg media"),
    (b"fLaC", "FLAC audio"),
    (b"\xca\xfe\xba\xbe", "Java class / Mach-O binary"),
    (b"\xcf\xfa\xed\xfe", "Mach-O binary"),
    (b"wOFF", "WOFF font"),
    (b"\x00asm", "WebAssembly binary"),
)

_WS = re.compile(r"[ \t\n\r\f\v]+")  # not \xa0: keeping it is the cleaner's call
_BR = "\x1e"  # stands for <br> while whitespace is collapsed
_GLUED_HIGH = re.compile(rb"[A-Za-z][\x80-\xff]|[\x80-\xff][A-Za-z]")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.S)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_CHAPTER_TITLE = re.compile(
    r"^\s*(?:[IVXLCDM]+\b|\d+\b|глава|часть|книга|действие|явление|том\b|chapter|part\b|book\b"
    r"|act\b|пролог|эпилог|prologue|epilogue|[*\s.·-]*$)",
    re.IGNORECASE,
)

HTML_DROP_TAGS = frozenset(
    "script style noscript template nav header footer aside form menu iframe svg button "
    "select head object embed canvas audio video map input textarea math".split()
)
HTML_BLOCK_TAGS = frozenset(
    "p div h1 h2 h3 h4 h5 h6 li ul ol dl dd dt blockquote tr td th table tbody thead tfoot "
    "caption section article main body html address figure figcaption center hr details "
    "summary fieldset legend".split()
)
HTML_NAV_ROLES = frozenset("navigation banner contentinfo complementary search menu menubar".split())
HTML_NAV_WORDS = frozenset(
    "nav navbar navigation menu sidebar footer header breadcrumb breadcrumbs comments comment "
    "share sharing social banner advert adverts advertisement ads topbar toolbar pagination "
    "cookie cookies".split()
)


class UndecodableError(ValueError):
    """The bytes are not text in any supported encoding; the message is a one-line reason."""


class _BinaryError(UndecodableError):
    """The bytes look like a binary file (magic number, NULs or control characters)."""


@dataclass(frozen=True)
class RawText:
    text: str
    source: str
    title: str | None
    author: str | None
    format: str
    encoding: str | None
    structured: bool


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class ReadResult:
    texts: list[RawText] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[Skipped] = field(default_factory=list)


class _LimitExceeded(Exception):
    """Decompressed output went past max_bytes."""


@dataclass
class _Budget:
    """Decompressed bytes still allowed in this read_file call (decompression bombs)."""

    limit: int
    left: int

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _LimitExceeded(f"decompressed data exceeds the limit of {self.limit} bytes (possible decompression bomb)")


# --- files ------------------------------------------------------------------------------


def list_source_files(path: Path) -> list[Path]:
    """A file gives itself; a folder gives all files under it, sorted, hidden names skipped.

    Broken symlinks are listed (read_file then reports them); symlinked folders are not
    followed, so a link loop cannot make the walk endless. A missing path gives itself,
    so that read_file reports it rather than it silently vanishing.
    """
    path = Path(path)
    if not path.is_dir():
        return [path]
    found: list[Path] = []
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root) / f for f in files if not f.startswith("."))
    return sorted(found)


def _file_kind(mode: int) -> str:
    """'' for a regular file, else what it is, in words."""
    if stat.S_ISREG(mode):
        return ""
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]
    return next((name for test, name in kinds if test(mode)), "a special file")


def read_file(path: Path, *, sections: str = "auto", max_bytes: int = 512 * 1024 * 1024) -> ReadResult:
    """Read one file (or archive) into texts; never raises for bad input.

    Sources are named by `paths.shown(path)`: a file name that is not UTF-8 (and a member's
    inside an archive) is shown with its undecodable bytes as `\\xNN`, never raising.
    """
    source = shown(path)
    result = ReadResult()
    if sections not in SECTIONS:
        raise ValueError(f"sections must be one of {SECTIONS}, not {sections!r}")  # a caller bug, not bad input
    try:
        path = Path(path)
        kind = _file_kind(path.stat().st_mode)
        if kind:
            # Opening a pipe blocks forever and a device never ends: only regular files are read.
            result.skipped.append(Skipped(source, f"is {kind}, not a regular file"))
            return result
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            result.skipped.append(Skipped(source, f"file larger than the limit of {max_bytes} bytes"))
            return result
        budget = _Budget(max_bytes, max_bytes)
        _dispatch(data, path.name, source, 0, sections, budget, result)
    except OSError as e:
        result.skipped.append(Skipped(source, f"cannot read file: {e.strerror or e}"))
    except Exception as e:  # a reader bug on odd input must not kill the whole build
        result.skipped.append(Skipped(source, f"unreadable: {_one_line(e)}"))
    return result


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg[:300]


def _sniff(data: bytes, name: str) -> str:
    """The kind of content: zip, gzip, xz, bz2, tar, fb2, html, binary:<what> or text."""
    head = data[:SNIFF_BYTES]
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"BZh") and len(head) > 3 and head[3:4].isdigit():
        return "bz2"
    if len(data) > 262 and data[257:262] == b"ustar":
        return "tar"
    for magic, what in BINARY_MAGICS:
        if head.startswith(magic):
            return "binary:" + what
    if head.startswith(b"MZ") and b"\x00" in head[:64]:
        return "binary:Windows executable"
    if head.startswith(b"RIFF") and head[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return "binary:" + {b"WEBP": "WebP image", b"WAVE": "WAV audio", b"AVI ": "AVI video"}[head[8:12]]
    if data[60:68] == b"BOOKMOBI":
        return "binary:MOBI e-book"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _utf16_without_bom(head[:512]):
        # Markup in UTF-16: look for the markers in the decoded head.
        enc = "utf-16" if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else _utf16_without_bom(head[:512])
        head = head[: len(head) // 2 * 2].decode(enc, "ignore").encode("utf-8", "ignore")
    if b"<FictionBook" in head:
        return "fb2"
    lower = head.lower()
    if b"<html" in lower or b"<!doctype html" in lower:
        return "html"
    low_name = name.lower()
    if low_name.endswith(".fb2") and head.lstrip().startswith(b"<"):
        return "fb2"
    if low_name.endswith((".html", ".htm", ".xhtml", ".shtml")) and head.lstrip().startswith(b"<"):
        return "html"
    return "text"


def _dispatch(data: bytes, name: str, source: str, depth: int, sections: str, budget: _Budget, res: ReadResult) -> None:
    """Read `data` (named `name`, reported as `source`) into `res`, by its sniffed kind."""
    if not data:
        res.skipped.append(Skipped(source, "empty file"))
        return
    kind = _sniff(data, name)
    if kind in ("zip", "gzip", "xz", "bz2", "tar") and depth > MAX_ARCHIVE_DEPTH:
        res.skipped.append(Skipped(source, f"archive nested deeper than {MAX_ARCHIVE_DEPTH} levels"))
        return
    if kind == "zip":
        _read_zip(data, source, depth, sections, budget, res)
    elif kind in ("gzip", "xz", "bz2"):
        _read_compressed(kind, data, name, source, depth, sections, budget, res)
    elif kind == "tar":
        _read_tar(data, source, depth, sections, budget, res)
    elif kind.startswith("binary:"):
        res.skipped.append(Skipped(source, f"binary file ({kind[7:]}) — not a supported format"))
    elif kind == "fb2":
        _read_fb2(data, source, sections, res)
    elif kind == "html":
        _read_html(data, source, res)
    else:
        _read_plain(data, source, res)


# --- archives and compressed streams ----------------------------------------------------


def _read_limited(stream: io.BufferedIOBase, budget: _Budget) -> bytes:
    """Read a decompressing stream in chunks, charging the budget as it goes."""
    chunks = []
    while True:
        chunk = stream.read(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        budget.take(len(chunk))
        chunks.append(chunk)


def _inner_name(name: str, kind: str) -> str:
    low = name.lower()
    for suffix in {"gzip": (".gz", ".gzip"), "xz": (".xz", ".lzma"), "bz2": (".bz2", ".bz")}[kind]:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    if kind == "gzip" and low.endswith(".tgz"):
        return name[:-4] + ".tar"
    return name


def _read_compressed(kind: str, data: bytes, name: str, source: str, depth: int, sections: str, budget: _Budget, res: ReadResult) -> None:
    buf = io.BytesIO(data)
    try:
        with (gzip.GzipFile(fileobj=buf) if kind == "gzip" else lzma.LZMAFile(buf) if kind == "xz" else bz2.BZ2File(buf)) as stream:
            inner = _read_limited(stream, budget)
    except _LimitExceeded as e:
        res.skipped.append(Skipped(source, str(e)))
        return
    except (OSError, EOFError, lzma.LZMAError, ValueError, zlib.error) as e:
        res.skipped.append(Skipped(source, f"corrupt {kind} stream: {_one_line(e)}"))
        return
    _dispatch(inner, _inner_name(name, kind), source, depth + 1, sections, budget, res)


def _hidden_member(member: str) -> bool:
    parts = [p for p in member.split("/") if p]
    return not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def _zip_read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    if info.file_size > budget.left:
        budget.take(info.file_size)  # raises: the header already says it is too big
    with zf.open(info) as stream:
        return _read_limited(stream, budget)


def _read_zip(data: bytes, source: str, depth: int, sections: str, budget: _Budget, res: ReadResult) -> None:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        res.skipped.append(Skipped(source, f"corrupt zip archive: {_one_line(e)}"))
        return
    names = {i.filename for i in infos}
    if "META-INF/container.xml" in names or _zip_mimetype(zf, names) == "application/epub+zip":
        _read_epub(zf, source, sections, budget, res)
        return
    if "word/document.xml" in names:
        _read_docx(data, infos, source, budget, res)
        return
    if "mimetype" in names and "content.xml" in names:
        res.skipped.append(Skipped(source, f"OpenDocument file ({_zip_mimetype(zf, names)}) — not a supported format"))
        return
    members = [i for i in infos if not i.is_dir() and not _hidden_member(i.filename)]
    if not members:
        res.skipped.append(Skipped(source, "zip archive has no files"))
        return
    for info in members:
        member_source = f"{source}!{_zip_member_name(info)}"
        try:
            inner = _zip_read(zf, info, budget)
        except _LimitExceeded as e:
            res.skipped.append(Skipped(member_source, str(e)))
            return  # the budget is spent for the whole file
        except Exception as e:  # bad CRC, truncated member, unsupported method, encrypted...
            res.skipped.append(Skipped(member_source, f"corrupt zip member: {_one_line(e)}"))
            continue
        _dispatch(inner, posixpath.basename(info.filename), member_source, depth + 1, sections, budget, res)


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    """A member's name as written: zip tools often store UTF-8 without setting the flag that says so."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename  # the format's own cp437: wrong letters, perhaps, but printable


def _zip_mimetype(zf: zipfile.ZipFile, names: set[str]) -> str | None:
    if "mimetype" not in names:
        return None
    try:
        return zf.read("mimetype")[:100].decode("ascii", "replace").strip()
    except Exception:
        return None


def _tar_read(tf: tarfile.TarFile, member: tarfile.TarInfo, budget: _Budget) -> bytes:
    """A member's bytes, charged to the budget before and while they are read.

    `member.size` is the size the member unpacks to: for a sparse member (holes recorded,
    not stored) it can be gigabytes in a tar of a few kilobytes, so the tar's own size says nothing.
    """
    if member.size > budget.left:
        budget.take(member.size)  # raises: the header already says it is too big
    stream = tf.extractfile(member)
    return _read_limited(stream, budget) if stream is not None else b""


def _read_tar(data: bytes, source: str, depth: int, sections: str, budget: _Budget, res: ReadResult) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            members = [m for m in tf.getmembers() if m.isfile() and not _hidden_member(m.name)]
            if not members:
                res.skipped.append(Skipped(source, "tar archive has no files"))
                return
            for m in members:
                member_source = f"{source}!{shown(m.name)}"  # tarfile keeps undecodable bytes as surrogates
                try:
                    inner = _tar_read(tf, m, budget)
                except _LimitExceeded as e:
                    res.skipped.append(Skipped(member_source, str(e)))
                    return  # the budget is spent for the whole file
                except Exception as e:
                    res.skipped.append(Skipped(member_source, f"corrupt tar member: {_one_line(e)}"))
                    continue
                _dispatch(inner, posixpath.basename(m.name), member_source, depth + 1, sections, budget, res)
    except tarfile.TarError as e:
        res.skipped.append(Skipped(source, f"corrupt tar archive: {_one_line(e)}"))


# --- encodings --------------------------------------------------------------------------


def _canonical_encoding(name: str) -> str | None:
    try:
        return codecs.lookup(name).name  # "windows-1251" -> "cp1251", "KOI8-R" -> "koi8-r"
    except LookupError:
        return None


@cache
def _char_bits(ch: str) -> float:
    """Log-likelihood (bits) of one non-ASCII char in Russian prose."""
    low = ch.lower()
    if low in RU_FREQ:
        return math.log2(RU_FREQ[low] / 100) + (_LOWER_BITS if ch == low else _UPPER_BITS)
    if ch in _TYPOGRAPHIC:
        return _PUNCT_BITS
    if ch in _OTHER_CYRILLIC_LETTERS:
        return _PUNCT_BITS - 4
    return _ODD_BITS


@cache
def _byte_bits(encoding: str) -> tuple[float, ...]:
    """For each byte 0x80-0xFF: its char's Russian log-likelihood in `encoding`."""
    table = []
    for b in range(0x80, 0x100):
        try:
            ch = bytes([b]).decode(encoding)
        except UnicodeDecodeError:
            table.append(_ODD_BITS * 2)
            continue
        table.append(_char_bits(ch))
    return tuple(table)


def _score_cyrillic(high_counts: list[int]) -> list[tuple[float, float, str]]:
    """(total bits + prior, average bits per non-ASCII byte, page) for each page, best first.

    cp1251 and mac-cyrillic agree on most lowercase letters, so a short text may hinge on
    a few capitals; the prior lets the rarer pages win only on real evidence.
    """
    total = sum(high_counts)
    scores = []
    for enc in CYRILLIC_8BIT:
        bits = sum(c * b for c, b in zip(high_counts, _byte_bits(enc)))
        scores.append((bits + CYRILLIC_PRIOR_BITS[enc], bits / total, enc))
    order = {enc: i for i, enc in enumerate(CYRILLIC_8BIT)}
    scores.sort(key=lambda s: (-s[0], order[s[2]]))
    return scores


def _utf16_without_bom(sample: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when the bytes have the UTF-16 pattern of one script.

    Text in one alphabet has a high byte column of few values (0x00 for ASCII/space,
    0x04 for Cyrillic, 0x20 for dashes and quotes) with NULs among them.
    """
    n = len(sample) // 2 * 2
    if n < 4:
        return None
    for enc, high, low in (("utf-16-le", sample[1:n:2], sample[0:n:2]), ("utf-16-be", sample[0:n:2], sample[1:n:2])):
        nul_high = high.count(0)
        if nul_high < len(high) * 0.05 or low.count(0) > len(low) * 0.02:
            continue
        common = Counter(high).most_common(3)
        if sum(c for _, c in common) >= len(high) * 0.9:
            return enc
    return None


def _looks_binary(sample: bytes) -> str | None:
    """A reason when the sample has NULs or many control bytes; None for text."""
    if not sample:
        return None
    if sample.count(0) > 0:
        return "binary file (contains NUL bytes)"
    controls = sum(sample.count(b) for b in (*range(0, 9), *range(14, 26), *range(28, 32)))
    if controls > max(2, len(sample) * 0.01):
        return "binary file (many control characters)"
    return None


def _strip_and_normalize(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes of plain text: (text with LF line ends and no BOM, encoding name).

    Raises UndecodableError (one-line message) for binary data or when no supported
    encoding gives plausible text. For 8-bit pages every byte sequence "decodes", so
    plausibility decides: the Russian letter-frequency/case score of the non-ASCII
    bytes, and for non-Cyrillic pages charset-normalizer's verdict plus a letter share.
    """
    for bom, enc in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(enc)
            except UnicodeDecodeError as e:
                raise UndecodableError(f"not decodable as {enc} despite its byte-order mark: {_one_line(e)}") from None
            return _strip_and_normalize(text), ("utf-8-sig" if enc == "utf-8" else enc.rsplit("-", 1)[0])
    sample = data[:DETECT_SAMPLE]
    utf16 = _utf16_without_bom(sample)
    if utf16:
        try:
            return _strip_and_normalize(data.decode(utf16)), "utf-16"
        except UnicodeDecodeError:
            pass  # not UTF-16 after all; let the binary check speak
    reason = _looks_binary(sample)
    if reason:
        raise _BinaryError(reason)
    try:
        return _strip_and_normalize(data.decode("utf-8")), "utf-8"  # the common case: one strict pass
    except UnicodeDecodeError as e:
        utf8_error = e
    if _mostly_utf8(sample, utf8_error, len(data)):
        return _strip_and_normalize(data.decode("utf-8", "replace")), "utf-8"
    counts = Counter(sample)
    high = [counts.get(b, 0) for b in range(0x80, 0x100)]
    scores = _score_cyrillic(high)
    _, best_bits, best = scores[0]
    if best_bits >= _PLAUSIBLE_BITS and not _latin_accents(sample, sum(high)):
        try:
            return _strip_and_normalize(data.decode(best)), best
        except UnicodeDecodeError:  # cp1251 leaves 0x98 undefined; a stray one is not fatal
            return _strip_and_normalize(data.decode(best, "replace")), best
    other = _other_8bit(sample)
    if other:
        return _strip_and_normalize(data.decode(other, "replace")), other
    raise UndecodableError("not decodable as text in any supported encoding")


def _latin_accents(sample: bytes, n_high: int) -> bool:
    """True when non-ASCII bytes sit inside Latin words (é in "très"), not in Cyrillic runs.

    French in cp1252 read as mac-cyrillic gives plausible lowercase letters (é -> и);
    what betrays it is that each one is glued to ASCII letters.
    """
    glued = len(_GLUED_HIGH.findall(sample))
    return glued > n_high * 0.3


def _mostly_utf8(sample: bytes, error: UnicodeDecodeError, size: int) -> bool:
    """UTF-8 with a cut last character or a few stray bytes is still UTF-8."""
    if error.start >= size - 3 and error.reason == "unexpected end of data":
        return True
    decoded = sample.decode("utf-8", "replace")
    bad = decoded.count("\ufffd")
    multibyte = sum(1 for ch in decoded if ch > "\x7f") - bad
    return multibyte >= 20 and bad <= multibyte * 0.01


def _other_8bit(sample: bytes) -> str | None:
    """A non-Cyrillic single-byte page from charset-normalizer, if its text is plausible."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        return None
    try:
        best = from_bytes(sample[:16384]).best()
    except Exception:
        return None
    if best is None or best.encoding is None:
        return None
    enc = _canonical_encoding(best.encoding)
    try:
        if enc is None or codecs.lookup(enc).name.startswith(("utf", "big5", "gb", "shift", "euc", "iso2022", "hz", "cp93", "cp94", "cp95", "johab")):
            return None  # multi-byte pages make letters of random bytes; not worth the risk
    except LookupError:
        return None
    text = sample.decode(enc, "replace")
    non_ascii = [ch for ch in text if ch > "\x7f"]
    if not non_ascii:
        return None
    letters = sum(ch.isalpha() for ch in non_ascii)
    # Latin-script text is mostly ASCII with a few accented letters.
    if len(non_ascii) <= len(text) * 0.3 and letters >= len(non_ascii) * 0.8:
        return enc
    return None


# --- plain text -------------------------------------------------------------------------


def _read_plain(data: bytes, source: str, res: ReadResult) -> None:
    try:
        text, encoding = decode_text(data)
    except UndecodableError as e:
        res.skipped.append(Skipped(source, str(e)))
        return
    if not text.strip():
        res.skipped.append(Skipped(source, "no text (whitespace only)"))
        return
    res.texts.append(RawText(text, source, None, None, "txt", encoding, False))


# --- FB2 --------------------------------------------------------------------------------


def _xml_parser(recover: bool = False) -> etree.XMLParser:
    # No entity expansion, no DTD, no network: an XXE or billion-laughs file reads nothing.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
        recover=recover, remove_comments=True, remove_pis=True,
    )


def _parse_xml(data: bytes, source: str, what: str, res: ReadResult):
    """Parse strictly, else with recover=True (and a note); None (and a Skipped) if nothing."""
    try:
        return etree.fromstring(data, _xml_parser())
    except etree.XMLSyntaxError as e:
        error = _one_line(e)
    try:
        root = etree.fromstring(data, _xml_parser(recover=True))
    except etree.XMLSyntaxError:
        root = None
    if root is None:
        res.skipped.append(Skipped(source, f"malformed {what} XML: {error}"))
        return None
    res.notes.append(Skipped(source, f"malformed {what} XML recovered ({error})"))
    return root


def _local(el) -> str:
    tag = el.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _child(el, name: str):
    for c in el:
        if _local(c) == name:
            return c
    return None


def _collapse(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _fb2_inline(el, note_ids: set[str]) -> str:
    """Text of a paragraph-like element, without footnote-link markers or entity refs."""
    parts = [el.text or ""]
    for c in el:
        if isinstance(c.tag, str) and not _is_note_link(c, note_ids):
            parts.append(_fb2_inline(c, note_ids))
        parts.append(c.tail or "")  # unresolved entities/comments: keep only what follows
    return "".join(parts)


def _is_note_link(el, note_ids: set[str]) -> bool:
    if _local(el) != "a":
        return False
    if el.get("type") == "note":
        return True
    href = next((v for k, v in el.attrib.items() if k.rpartition("}")[2] == "href"), "")
    return href.startswith("#") and href[1:] in note_ids


def _fb2_blocks(el, note_ids: set[str], out: list[str]) -> None:
    for c in el:
        name = _local(c)
        if name in ("p", "subtitle", "text-author", "v"):
            text = _collapse(_fb2_inline(c, note_ids))
            if text:
                out.append(text)
        elif name == "stanza":
            lines = []
            for v in c:
                vname = _local(v)
                if vname == "v":
                    line = _collapse(_fb2_inline(v, note_ids))
                    if line:
                        lines.append(line)
                elif vname in ("title", "subtitle"):
                    _fb2_blocks([v], note_ids, out)
            if lines:
                out.append("\n".join(lines))
        elif name == "table":
            for tr in c.iter():
                if _local(tr) == "tr":
                    row = " ".join(_collapse(_fb2_inline(td, note_ids)) for td in tr if _local(td) in ("td", "th"))
                    if row.strip():
                        out.append(row.strip())
        elif name in ("image", "binary", "empty-line", "") or not isinstance(c.tag, str):
            continue  # empty-line is a block break; blocks are already separate
        else:  # section, title, epigraph, cite, poem, annotation and unknown containers
            _fb2_blocks(c, note_ids, out)


def _fb2_title(el) -> str | None:
    title = _child(el, "title")
    if title is None:
        return None
    text = " ".join(_collapse(_fb2_inline(p, set())) for p in title if _local(p) == "p")
    return _collapse(text) or None


def _fb2_author(title_info) -> str | None:
    names = []
    for a in title_info:
        if _local(a) != "author":
            continue
        parts = [_collapse(c.text or "") for c in a if _local(c) in ("first-name", "middle-name", "last-name")]
        parts = [p for p in parts if p]
        if not parts:
            nick = _child(a, "nickname")
            parts = [_collapse(nick.text or "")] if nick is not None and nick.text else []
        if parts:
            names.append(" ".join(parts))
    return ", ".join(names) or None


def looks_like_chapters(titles: list[str | None]) -> bool:
    """True when section titles read like chapter headings (or are missing)."""
    chapterish = sum(1 for t in titles if not t or _CHAPTER_TITLE.match(t))
    return chapterish * 2 >= len(titles)


def _declared_encoding(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    m = _XML_ENCODING.search(data[:200])
    if m:
        return _canonical_encoding(m.group(1).decode("ascii")) or m.group(1).decode("ascii").lower()
    return "utf-8"


def _read_fb2(data: bytes, source: str, sections: str, res: ReadResult) -> None:
    encoding = _declared_encoding(data)
    if not _XML_ENCODING.search(data[:200]) and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # No declaration means UTF-8 to lxml; files saved in cp1251 without one are common.
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            try:
                text, encoding = decode_text(data)
            except UndecodableError as e:
                res.skipped.append(Skipped(source, f"FB2 {e}"))
                return
            data = _XML_DECL.sub("", text, count=1).encode("utf-8")
    root = _parse_xml(data, source, "FB2", res)
    if root is None:
        return
    title_info = None
    description = _child(root, "description")
    if description is not None:
        title_info = _child(description, "title-info")
    book_title = author = None
    if title_info is not None:
        bt = _child(title_info, "book-title")
        book_title = _collapse(bt.text or "") if bt is not None else None
        book_title = book_title or None
        author = _fb2_author(title_info)

    bodies = [c for c in root if _local(c) == "body"] or [e for e in root.iter() if _local(e) == "body"]
    main, editorial = [], []
    for body in bodies:
        (editorial if (body.get("name") or "").lower() in FB2_EDITORIAL_BODIES else main).append(body)
    note_ids = {e.get("id") for b in editorial for e in b.iter() if isinstance(e.tag, str) and e.get("id")}
    for body in editorial:
        n = sum(1 for s in body if _local(s) == "section")
        res.notes.append(Skipped(source, f"left out FB2 {body.get('name')} body ({n} notes)"))

    top = [s for body in main for s in body if _local(s) == "section"]
    titles = [_fb2_title(s) for s in top]
    split = sections == "works" or (sections == "auto" and len(top) >= 2 and not looks_like_chapters(titles))
    pieces: list[tuple[str | None, str]] = []
    if split and len(top) >= 2:
        for sec, sec_title in zip(top, titles):
            blocks: list[str] = []
            # The section title is the work's title (RawText.title), not its text.
            _fb2_blocks([c for c in sec if _local(c) != "title"], note_ids, blocks)
            pieces.append((sec_title, "\n\n".join(blocks)))
    else:
        blocks = []
        for body in main:
            _fb2_blocks(body, note_ids, blocks)
        pieces.append((book_title, "\n\n".join(blocks)))
    damaged = next((n.reason for n in res.notes if n.source == source and n.reason.startswith("malformed")), None)
    why_empty = f"{damaged.replace(' recovered', '')}; no text could be recovered" if damaged else None
    _emit(pieces, source, author, "fb2", encoding, True, res, why_empty)


def _emit(pieces: list[tuple[str | None, str]], source: str, author: str | None, fmt: str,
          encoding: str | None, structured: bool, res: ReadResult, why_empty: str | None = None) -> None:
    """Append the non-empty pieces as texts ("#n" when split), or a Skipped when none."""
    kept = [(t, x) for t, x in pieces if x.strip()]
    if not kept:
        res.skipped.append(Skipped(source, why_empty or f"no text found in {fmt.upper()}"))
        return
    for i, (title, text) in enumerate(kept, 1):
        src = f"{source}#{i}" if len(kept) > 1 else source
        res.texts.append(RawText(text, src, title, author, fmt, encoding, structured))


# --- HTML -------------------------------------------------------------------------------


@dataclass
class _HtmlState:
    blocks: list[str] = field(default_factory=list)
    buf: list[str] = field(default_factory=list)
    pre_chars: int = 0
    text_chars: int = 0
    dropped: int = 0
    body_chars: int = 1


def _html_encoding(data: bytes) -> str | None:
    """The encoding the bytes declare (BOM, meta charset, XML prolog), if a known one."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = data[:SNIFF_BYTES]
    for rx in (_META_CHARSET, _XML_ENCODING):
        m = rx.search(head)
        if m:
            enc = _canonical_encoding(m.group(1).decode("ascii", "replace"))
            if enc:
                return enc
    return None


def _decode_html(data: bytes) -> tuple[str, str]:
    declared = _html_encoding(data)
    if declared:
        try:
            return _strip_and_normalize(data.decode(declared)), declared
        except UnicodeDecodeError:
            pass  # the declaration lies (common on old sites): detect instead
    return decode_text(data)


def _is_html_navigation(el, name: str, st: _HtmlState) -> bool:
    if (el.get("role") or "").lower() in HTML_NAV_ROLES:
        return True
    if el.get("hidden") is not None or (el.get("aria-hidden") or "").lower() == "true":
        return True
    if name in ("body", "html", "h1", "h2", "h3", "h4", "h5", "h6"):
        return False
    marks = f"{el.get('class') or ''} {el.get('id') or ''}".lower()
    if not marks.strip() or not HTML_NAV_WORDS.intersection(re.split(r"[\s_\-]+", marks)):
        return False
    # A "menu-open" wrapper around the whole page is not navigation: keep big elements.
    return len("".join(el.itertext())) < st.body_chars * 0.4


def _html_flush(st: _HtmlState) -> None:
    if not st.buf:
        return
    text = _WS.sub(" ", "".join(st.buf))
    st.buf.clear()
    lines = [ln.strip() for ln in text.split(_BR)]
    para: list[str] = []
    for line in lines + [""]:  # an empty line (<br><br>) ends a paragraph block
        if line:
            para.append(line)
        elif para:
            st.blocks.append("\n".join(para))
            st.text_chars += sum(len(p) for p in para)
            para = []


def _html_walk(el, st: _HtmlState) -> None:
    name = _local(el).lower()
    if name in HTML_DROP_TAGS:
        if name in ("nav", "header", "footer", "aside", "menu"):
            st.dropped += 1
        return
    if _is_html_navigation(el, name, st):
        st.dropped += 1
        return
    if name == "br":
        st.buf.append(_BR)
        return
    if name == "pre":
        _html_flush(st)
        text = "".join(el.itertext()).strip("\n")
        if text.strip():
            st.blocks.append(text.rstrip())
            st.pre_chars += len(text)
        return
    block = name in HTML_BLOCK_TAGS
    if block:
        _html_flush(st)
    if el.text:
        st.buf.append(el.text)
    for c in el:
        if isinstance(c.tag, str):
            _html_walk(c, st)
        if c.tail:
            st.buf.append(c.tail)
    if block:
        _html_flush(st)


def _html_extract(data: bytes) -> tuple[list[str], str | None, bool, int, str]:
    """(blocks, title, structured, navigation elements removed, encoding) of an HTML document."""
    text, encoding = _decode_html(data)
    # lxml refuses str input that carries an encoding declaration; the bytes are decoded already.
    text = _XML_DECL.sub("", text, count=1).replace(_BR, "")
    parser = etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True, huge_tree=False)
    root = etree.fromstring(text, parser)
    if root is None:
        return [], None, True, 0, encoding
    title = None
    t = next((e for e in root.iter() if _local(e).lower() == "title"), None)
    if t is not None:
        title = _collapse("".join(t.itertext())) or None
    if title is None:
        h1 = next((e for e in root.iter() if _local(e).lower() == "h1"), None)
        if h1 is not None:
            title = _collapse("".join(h1.itertext())) or None
    body = next((e for e in root.iter() if _local(e).lower() == "body"), root)
    st = _HtmlState(body_chars=max(1, len("".join(body.itertext()))))
    _html_walk(body, st)
    _html_flush(st)
    structured = st.pre_chars * 2 < st.text_chars + st.pre_chars
    return st.blocks, title, structured, st.dropped, encoding


def _read_html(data: bytes, source: str, res: ReadResult) -> None:
    try:
        blocks, title, structured, dropped, encoding = _html_extract(data)
    except UndecodableError as e:
        res.skipped.append(Skipped(source, str(e)))
        return
    except (etree.ParserError, etree.XMLSyntaxError, ValueError) as e:
        res.skipped.append(Skipped(source, f"unparsable HTML: {_one_line(e)}"))
        return
    if dropped:
        res.notes.append(Skipped(source, f"HTML navigation removed ({dropped} elements)"))
    _emit([(title, "\n\n".join(blocks))], source, None, "html", encoding, structured, res)


# --- EPUB -------------------------------------------------------------------------------


def _read_epub(zf: zipfile.ZipFile, source: str, sections: str, budget: _Budget, res: ReadResult) -> None:
    infos = {i.filename: i for i in zf.infolist()}

    def member(name: str) -> bytes:
        return _zip_read(zf, infos[name], budget)

    try:
        opf_path = None
        if "META-INF/container.xml" in infos:
            container = _parse_xml(member("META-INF/container.xml"), source, "EPUB container", ReadResult())
            if container is not None:
                opf_path = next((e.get("full-path") for e in container.iter() if _local(e) == "rootfile" and e.get("full-path")), None)
        if opf_path not in infos:
            opf_path = next((n for n in infos if n.lower().endswith(".opf")), None)
        if opf_path is None:
            res.skipped.append(Skipped(source, "EPUB without a package (OPF) file"))
            return
        opf = _parse_xml(member(opf_path), source, "EPUB package", res)
    except _LimitExceeded as e:
        res.skipped.append(Skipped(source, str(e)))
        return
    except Exception as e:
        res.skipped.append(Skipped(source, f"corrupt EPUB: {_one_line(e)}"))
        return
    if opf is None:
        return
    base = posixpath.dirname(opf_path)
    title = author = None
    manifest: dict[str, tuple[str, str, str]] = {}
    spine = None
    for e in opf.iter():
        name = _local(e)
        if name == "title" and title is None and e.text and e.text.strip():
            title = _collapse(e.text)
        elif name == "creator" and author is None and e.text and e.text.strip():
            author = _collapse(e.text)
        elif name == "item" and e.get("id") and e.get("href"):
            manifest[e.get("id")] = (e.get("href"), (e.get("media-type") or "").lower(), (e.get("properties") or "").split())
        elif name == "spine" and spine is None:
            spine = e
    navigation = {iid for iid, (_, mt, props) in manifest.items() if "nav" in props or mt == "application/x-dtbncx+xml"}
    if spine is not None and spine.get("toc"):
        navigation.add(spine.get("toc"))
    order = [r.get("idref") for r in spine if _local(r) == "itemref"] if spine is not None else []
    if not order:
        order = [iid for iid, (_, mt, _) in manifest.items() if "html" in mt]
        res.notes.append(Skipped(source, "EPUB has no spine; documents read in manifest order"))
    skipped_nav = sorted(manifest[i][0] for i in navigation if i in manifest)
    if skipped_nav:
        res.notes.append(Skipped(source, f"left out EPUB navigation document(s): {', '.join(skipped_nav)}"))
    pieces: list[tuple[str | None, str]] = []
    structured = True
    encoding = None
    for idref in order:
        if idref in navigation:
            continue
        if idref not in manifest:
            res.notes.append(Skipped(source, f"EPUB spine item {idref!r} is not in the manifest"))
            continue
        href, media_type, _ = manifest[idref]
        if "html" not in media_type and not href.lower().endswith((".xhtml", ".html", ".htm")):
            continue
        path = posixpath.normpath(posixpath.join(base, unquote(href.split("#")[0])))
        if path not in infos:
            res.notes.append(Skipped(source, f"EPUB spine document {path} is missing"))
            continue
        try:
            blocks, doc_title, doc_structured, _, doc_encoding = _html_extract(member(path))
        except _LimitExceeded as e:
            res.skipped.append(Skipped(source, str(e)))
            return
        except Exception as e:
            res.notes.append(Skipped(f"{source}!{path}", f"EPUB document unreadable: {_one_line(e)}"))
            continue
        structured = structured and doc_structured
        encoding = encoding or doc_encoding
        pieces.append((doc_title, "\n\n".join(blocks)))
    if sections != "works":
        pieces = [(title, "\n\n".join(text for _, text in pieces if text.strip()))]
    _emit(pieces, source, author, "epub", encoding, structured, res)


# --- DOCX -------------------------------------------------------------------------------


def _read_docx(data: bytes, infos: list[zipfile.ZipInfo], source: str, budget: _Budget, res: ReadResult) -> None:
    try:
        # python-docx inflates every part; check the declared sizes against the budget first.
        budget.take(sum(i.file_size for i in infos))
    except _LimitExceeded as e:
        res.skipped.append(Skipped(source, str(e)))
        return
    try:
        import docx

        document = docx.Document(io.BytesIO(data))
        paragraphs = [p.text.replace("\r", "").strip() for p in document.paragraphs]
        props = document.core_properties
        title = (props.title or "").strip() or None
        author = (props.author or "").strip() or None
    except Exception as e:
        res.skipped.append(Skipped(source, f"corrupt DOCX: {_one_line(e)}"))
        return
    _emit([(title, "\n\n".join(p for p in paragraphs if p))], source, author, "docx", None, True, res)
