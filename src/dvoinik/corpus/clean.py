"""Clean one text: from a file's raw layout to paragraphs of the author's prose.

`clean_text` is a pure function. Every rule that changes the text counts what it did,
so the corpus report can say, per author, how much each rule removed or rewrote.
Rules that need the whole corpus (boilerplate repeated across documents, duplicates)
live in `dedup.py`.

The output has one paragraph per block, blocks separated by a blank line; verse lines
inside a stanza stay on their own lines. Dialogue dashes and `ё` are kept.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise

# --- characters -------------------------------------------------------------------------

# Stress marks (combining acute/grave) are an editor's aid, not the author's spelling.
_STRESS = re.compile("[\u0300\u0301]")
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
_ODD_SPACES = re.compile("[\u00a0\u2000-\u200a\u202f\u205f\u3000\t\f\v]")
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f]")

# Languages whose prose quotes «like this»; the quote rule leaves every other language alone.
GUILLEMET_LANGUAGES = frozenset({"ru", "uk", "be", "fr"})

# --- page furniture and markup ----------------------------------------------------------

_URL = re.compile(r"<?(?:https?://|ftp://|www\.)[^\s<>\]]+>?", re.IGNORECASE)
_RULE_LINE = re.compile(r"^\s*(?:[-=_*~]\s*){10,}$")
_BULLET_LINE = re.compile(r"^\s*[*•·]\s+\S")
# lib.ru-style emphasis: *bold*, _italic_, /italic/.
_EMPHASIS = re.compile(
    r"(?<![\w*])\*(?=\S)([^*\n]{1,200}?)(?<=\S)\*(?![\w*])"
    r"|(?<![\w_])_(?=\S)([^_\n]{1,200}?)(?<=\S)_(?![\w_])"
    r"|(?<![\w/<])/(?=[^\s/])([^/\n]{1,200}?)(?<=[^\s/])/(?![\w/>])"
)
# Footnote markers: [12], {12}, ^12, and asterisks glued to a word ("слово*", "слово.**").
_FOOTNOTE_MARKER = re.compile(r"\[\d{1,3}\]|\{\d{1,3}\}|\^\d{1,3}|(?<=[\w.,;:!?»)])\*{1,3}(?![\w*])")
# Editorial insertions in braces ("{Далее было начато: …}"); braces are not Russian punctuation.
_EDITORIAL_BRACES = re.compile(r"\{[^{}\n]{0,300}\}")

_NOTES_HEADING = re.compile(
    r"^(?:примечани[яе](?: автора| редактора| издателя)?|комментари[йи]|сноски|notes|endnotes|footnotes)\.?$",
    re.IGNORECASE,
)
_NUMBER_LINE = re.compile(r"^\d{1,4}$")
_PAGE_NUMBER = re.compile(r"^(?:[-—–]\s*\d{1,4}\s*[-—–]|(?:стр|с|page|p)\.?\s*\d{1,4})$", re.IGNORECASE)
_BIBLIOGRAPHIC = re.compile(
    r"Собрание сочинений|Собр\.\s*соч|Полное собрание|\bТ\.\s*[IVX\d]|\bС\.\s*\d|\bМ\.[,:]|\bЛ\.[,:]|\bСПб\.[,:]?"
    r"|Издательство|Изд-во|\bизд\.|Гослитиздат|ГИХЛ|\bOCR\b|Spellcheck|Источник:|Подготовка текста|Оцифровка",
    re.IGNORECASE,
)
_STRONG_BIBLIOGRAPHIC = re.compile(r"Источник|Изд-во|Издательство|OCR|Spellcheck|Подготовка текста|Оцифровка", re.IGNORECASE)
_DATE_LINE = re.compile(
    r"^[(\[]?(?:[А-ЯЁA-Z][\w.\- ]{0,30},\s*)?(?:\d{1,2}(?:[-–—]\d{1,2})?\s+[а-яёa-z]+\.?\s+)?"
    r"\d{4}(?:\s*(?:[-–—]|,)\s*\d{2,4})?\s*(?:г\.|года)?[)\]]?\.?$"
)

# --- structure --------------------------------------------------------------------------

_ROMAN = r"[IVXLCDM]{1,8}"
_CHAPTER_HEADING = re.compile(
    rf"^(?:\*\s*)?(?:(?:глава|часть|книга|том|действие|явление|chapter|part|book)\s+(?:{_ROMAN}|\d+|[а-яё]+)"
    rf"|{_ROMAN}|\d{{1,3}})\.?(?:\s*\*)?(?:[.:]\s*.{{0,80}})?$",
    re.IGNORECASE,
)
_SECTION_BREAK = re.compile(r"^(?:\*\s*){2,}$|^(?:[-—–]\s*){3,}$")
_SENTENCE_END = re.compile(r"[.!?…»\"')\]:;]$")
_DIALOGUE_START = re.compile(r"^(?:—|–|--?)\s")

# --- dashes, quotes, spaces -------------------------------------------------------------

_DOUBLE_HYPHEN = re.compile(r"\s*-{2,3}\s*")
_SPACED_HYPHEN = re.compile(r"(?<=\S) [-–] (?=\S)")
_LINE_START_HYPHEN = re.compile(r"^[-–](?=\s)")
_SPACES = re.compile(r" {2,}")
_HYPHEN_BREAK = re.compile(r"(\w+)-$")
_HYPHEN_PARTICLES = {"то", "либо", "нибудь", "ка", "таки", "де", "с", "тка", "ко"}
_HYPHEN_PREFIXES = {"кое", "кой", "по", "во", "из", "в", "полу", "пол", "вице", "экс", "обер", "унтер"}


@dataclass
class CleanResult:
    """A cleaned text, the title and header lines found at its top, and what each rule did."""

    text: str
    title: str | None = None
    header: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def clean_text(
    raw: str,
    *,
    structured: bool = False,
    author_hint: str | None = None,
    title_hint: str | None = None,
    language: str = "ru",
) -> CleanResult:
    """Clean one work.

    `structured` means the reader already gave one paragraph per block. `author_hint` and
    `title_hint` (from the file's metadata or the user's settings) help find a header,
    including one glued to the first paragraph ("Антон Чехов АНЮТА В самом дешевом…").
    `language` (an ISO 639-1 code, "ru-RU" works too) decides only the quote style:
    languages typeset with «guillemets» get them; others keep their quotes as written.
    """
    guillemets = _base_language(language) in GUILLEMET_LANGUAGES
    counts: Counter = Counter()
    text = _normalize_characters(raw, counts)
    lines = text.split("\n")
    lines = _drop_navigation(lines, counts)
    lines = _cut_endnotes(lines, counts)
    lines = [_strip_markup(line, counts) for line in lines]
    if structured:
        paragraphs = _paragraphs_from_blocks(lines)
        # Some converters make every hard-wrapped line its own paragraph; unwrap those.
        if _is_hard_wrapped(paragraphs):
            paragraphs = _unwrap(paragraphs, _wrap_width(paragraphs), counts)
    else:
        paragraphs = _paragraphs_from_layout(lines, counts)
    paragraphs = [_normalize_paragraph(p, counts, guillemets) for p in paragraphs]
    paragraphs = [p for p in paragraphs if p and _has_letters_or_break(p)]
    paragraphs = _drop_bibliography(paragraphs, counts)
    header, paragraphs = _split_header(paragraphs, author_hint, title_hint)
    counts["header_lines"] += len(header)
    paragraphs = _drop_trailing_dates(paragraphs, counts)
    return CleanResult(
        text="\n\n".join(paragraphs),
        title=_title_from_header(header, author_hint),
        header=header,
        counts=counts,
    )


# --- character-level --------------------------------------------------------------------


def _normalize_characters(raw: str, counts: Counter) -> str:
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        # NFC first: "е" + combining diaeresis becomes "ё" and survives the stress-mark rule.
        text = unicodedata.normalize("NFC", text)
        text, n = _STRESS.subn("", text)
        counts["stress_marks"] += n
        text, n = _INVISIBLE.subn("", text)
        counts["invisible_characters"] += n
        text, n = _ODD_SPACES.subn(" ", text)
        counts["nonstandard_spaces"] += n
    text, n = _CONTROL.subn("", text)
    counts["control_characters"] += n
    return text


def _strip_markup(line: str, counts: Counter) -> str:
    if "{" in line:
        line, n = _EDITORIAL_BRACES.subn("", line)
        counts["editorial_insertions"] += n
    if "*" in line or "_" in line or "/" in line:
        line, n = _EMPHASIS.subn(lambda m: m.group(1) or m.group(2) or m.group(3), line)
        counts["emphasis_markup"] += n
    if "[" in line or "^" in line or "*" in line or "{" in line:
        if not _SECTION_BREAK.match(line.strip()):
            line, n = _FOOTNOTE_MARKER.subn("", line)
            counts["footnote_markers"] += n
    return line


# --- blocks around the text: navigation, endnotes, bibliography, header, dates ----------


def _drop_navigation(lines: list[str], counts: Counter) -> list[str]:
    """Drop web-page furniture: segments between horizontal rules that hold links, and link lines."""
    if not any(_URL.search(line) for line in lines):
        return lines
    segments: list[list[str]] = [[]]
    for line in lines:
        if _RULE_LINE.match(line):
            counts["rule_lines"] += 1
            segments.append([])
        else:
            segments[-1].append(line)
    kept: list[str] = []
    for segment in segments:
        if len(segments) > 1 and _is_navigation(segment):
            counts["navigation_blocks"] += 1
            counts["navigation_lines"] += sum(1 for line in segment if line.strip())
            continue
        for line in segment:
            if _URL.search(line):
                stripped = _URL.sub("", line)
                counts["urls"] += 1
                if sum(ch.isalpha() for ch in stripped) < 0.5 * sum(ch.isalpha() for ch in line) or len(stripped.split()) < 4:
                    counts["url_lines"] += 1
                    continue
                line = stripped
            kept.append(line)
        kept.append("")
    return kept


def _is_navigation(segment: list[str]) -> bool:
    nonempty = [line for line in segment if line.strip()]
    if not nonempty:
        return True
    links = sum(1 for line in nonempty if _URL.search(line))
    bullets = sum(1 for line in nonempty if _BULLET_LINE.match(line))
    words = sum(len(line.split()) for line in nonempty)
    return links > 0 and (words < 300 or (links + bullets) / len(nonempty) > 0.2)


def _cut_endnotes(lines: list[str], counts: Counter) -> list[str]:
    """Cut an editorial endnote block: from a "Notes" heading in the last half, or a bare 1, 2, 3… list at the end."""
    start = len(lines) // 2
    for i in range(len(lines) - 1, start - 1, -1):
        stripped = lines[i].strip().strip("*_ ")
        if stripped and len(stripped) < 40 and _NOTES_HEADING.match(stripped):
            counts["endnote_lines"] += sum(1 for line in lines[i:] if line.strip())
            counts["endnote_blocks"] += 1
            return lines[:i]
    cut = _numbered_notes_start(lines)
    if cut is not None:
        counts["endnote_lines"] += sum(1 for line in lines[cut:] if line.strip())
        counts["endnote_blocks"] += 1
        return lines[:cut]
    return lines


def _numbered_notes_start(lines: list[str]) -> int | None:
    """Index of a trailing "1 / note / 2 / note …" block whose numbers count up from 1, if any."""
    tail_start = max(0, len(lines) - 400)
    expected = None
    first = None
    for i in range(len(lines) - 1, tail_start - 1, -1):
        stripped = lines[i].strip()
        if not _NUMBER_LINE.match(stripped):
            continue
        number = int(stripped)
        if expected is None:
            expected = number
        if number != expected:
            return None
        first = i
        expected -= 1
        if number == 1:
            break
    if first is None or expected != 0:
        return None
    notes = [line for line in lines[first:] if line.strip() and not _NUMBER_LINE.match(line.strip())]
    # Notes are short glosses; a long tail of prose after a lone "1" is the text itself.
    if not notes or max(len(n) for n in notes) > 1500 or first < len(lines) // 2:
        return None
    return first


def _drop_bibliography(paragraphs: list[str], counts: Counter) -> list[str]:
    """Drop bibliographic and source lines among the first and last few paragraphs."""
    edge = 8
    kept = []
    for i, paragraph in enumerate(paragraphs):
        near_edge = i < edge or i >= len(paragraphs) - edge
        if near_edge and len(paragraph) < 300 and _is_bibliographic(paragraph):
            counts["bibliographic_lines"] += 1
            continue
        kept.append(paragraph)
    return kept


def _is_bibliographic(paragraph: str) -> bool:
    found = _BIBLIOGRAPHIC.findall(paragraph)
    return len(found) >= 2 or any(_STRONG_BIBLIOGRAPHIC.match(item) for item in found)


def _looks_like_header_line(paragraph: str) -> bool:
    if len(paragraph) > 80 or len(paragraph.split()) > 10 or "\n" in paragraph:
        return False
    if _DIALOGUE_START.match(paragraph) or _CHAPTER_HEADING.match(paragraph) or _SECTION_BREAK.match(paragraph):
        return False
    if _DATE_LINE.match(paragraph):
        return True
    letters = [ch for ch in paragraph if ch.isalpha()]
    if letters and all(ch.isupper() for ch in letters):
        return True
    if not paragraph.endswith((".", "!", "?", "…", ":", ";", ",")):
        return True
    # "Валерий Яковлевич Брюсов." / "Л. Н. Толстой" / "Александр Пушкин. Дубровский": every word capitalised.
    words = [w for w in re.findall(r"[^\W\d_]+", paragraph)]
    return bool(words) and all(w[0].isupper() for w in words if len(w) > 3)


def _split_header(
    paragraphs: list[str], author_hint: str | None = None, title_hint: str | None = None
) -> tuple[list[str], list[str]]:
    """Separate a title/author/genre/date header at the top from the text that follows."""
    if not paragraphs:
        return [], paragraphs
    # A chapter heading may come first ("Часть 1", then author and title): keep it, look past it.
    lead = 1 if _CHAPTER_HEADING.match(paragraphs[0]) and len(paragraphs) > 1 else 0
    if lead and not _is_name(paragraphs[1], author_hint):
        lead = 0
    header: list[str] = []
    for paragraph in paragraphs[lead : lead + 6]:
        if not _looks_like_header_line(paragraph):
            break
        header.append(paragraph)
    rest = paragraphs[lead + len(header) :]
    if not rest or sum(len(p) for p in rest) < 200:
        return [], paragraphs
    glued, first = _unglue_header(rest[0], author_hint, title_hint)
    if glued:
        header += glued
        rest = [first] + rest[1:]
    return header, paragraphs[:lead] + rest


def _unglue_header(paragraph: str, author_hint: str | None, title_hint: str | None) -> tuple[list[str], str]:
    """Split a known author name and title off the start of a paragraph they were glued to."""
    found: list[str] = []
    rest = paragraph
    for hint in (author_hint, title_hint, author_hint):
        if not hint:
            continue
        hint = hint.strip()
        if len(hint) >= 3 and rest[: len(hint)].casefold() == hint.casefold() and rest[len(hint) : len(hint) + 1] in (" ", "."):
            found.append(rest[: len(hint)])
            rest = rest[len(hint) :].lstrip(" .")
    if not found or len(rest) < 20 or not (rest[:1].isupper() or rest[:1] in "—«\"("):
        return [], paragraph
    return found, rest


_NOT_A_TITLE = re.compile(
    r"^(?:(?:рассказ|повесть|роман|очерк|поэма|сказка|новелла|драма|пьеса|story|novel)\.?$"
    r"|(?:роман|повесть|поэма) в .*част"
    r"|посвящ|предисловие|от издател|от автора|эпиграф|\()",
    re.IGNORECASE,
)
_PATRONYMIC = re.compile(r"(?:вич|вна|ична|ьич)$", re.IGNORECASE)


def _title_from_header(header: list[str], author_hint: str | None = None) -> str | None:
    """The header line that is not the author's name, a genre, a dedication or a date."""
    candidates = []
    for line in header:
        line = line.strip(" .*<>/_")
        if not line or _DATE_LINE.match(line) or _NOT_A_TITLE.match(line):
            continue
        if ". " in line:
            head, tail = line.rsplit(". ", 1)  # "Валерий Брюсов. Республика Южного Креста"
            if len(tail) > 1 and (_is_name(head, author_hint) or _name_shaped(head)):
                line = tail
        candidates.append(line)
    if author_hint:
        named = [line for line in candidates if not _is_name(line, author_hint)]
        if len(named) < len(candidates):
            return named[0] if named else None
    if len(candidates) > 1 and _name_shaped(candidates[0]):
        return candidates[1]  # "Антон Чехов" / "АНЮТА": by convention the author comes first
    titles = [line for line in candidates if not _is_name(line, None)]
    return titles[0] if titles else None


def _name_shaped(line: str) -> bool:
    words = line.split()
    return 2 <= len(words) <= 4 and all(w[:1].isupper() for w in words)


def _is_name(line: str, author_hint: str | None) -> bool:
    words = re.findall(r"[^\W\d_]+\.?", line)
    if not 1 <= len(words) <= 4:
        return False
    if author_hint:
        hint = {w.lower()[:5] for w in re.findall(r"[^\W\d_]{3,}", author_hint)}
        if any(w.lower()[:5] in hint for w in words if len(w) >= 3):
            return True
    initials = sum(1 for w in words if len(w) == 2 and w.endswith(".") and w[0].isupper())
    return len(words) >= 2 and (initials >= 1 or any(_PATRONYMIC.search(w) for w in words))


def _drop_trailing_dates(paragraphs: list[str], counts: Counter) -> list[str]:
    # Markup left around a date ("/Дедово/, 29 мая 1906 год//а//") does not make it prose.
    while len(paragraphs) > 1 and len(paragraphs[-1]) < 60 and _DATE_LINE.match(re.sub(r"[/*_ ]+(?=[/*_,.]|$)|[/*_]", "", paragraphs[-1]).strip()):
        paragraphs = paragraphs[:-1]
        counts["trailing_dates"] += 1
    return paragraphs


# --- paragraphs -------------------------------------------------------------------------


def _paragraphs_from_blocks(lines: list[str]) -> list[str]:
    """Structured input: blocks are separated by blank lines; lines inside a block (verse) are kept."""
    blocks: list[str] = []
    current: list[str] = []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _paragraphs_from_layout(lines: list[str], counts: Counter) -> list[str]:
    """Plain text: infer paragraphs from the layout (hard-wrapped or one paragraph per line)."""
    nonempty = [line.rstrip() for line in lines if line.strip()]
    if not nonempty:
        return []
    pages = _page_number_lines(lines)
    counts["page_numbers"] += len(pages)
    lines = [line for i, line in enumerate(lines) if i not in pages]
    if not _is_hard_wrapped(nonempty):
        return _one_paragraph_per_line(lines, counts)
    return _unwrap(lines, _wrap_width(nonempty), counts)


def _wrap_width(lines: list[str]) -> int:
    lengths = sorted(len(line.rstrip()) for line in lines if line.strip())
    return lengths[int(0.9 * (len(lengths) - 1))] if lengths else 0


def _is_hard_wrapped(lines: list[str]) -> bool:
    """Most lines end near one width (≤ 110 characters): the text was wrapped by a program."""
    lengths = [len(line.rstrip()) for line in lines if line.strip()]
    width = _wrap_width(lines)
    near_width = sum(1 for n in lengths if width - 15 <= n <= width)
    return width <= 110 and len(lengths) >= 8 and near_width >= 0.4 * len(lengths)


def _page_number_lines(lines: list[str]) -> set[int]:
    """Indices of page-number lines: "- 12 -" anywhere, and bare numbers that count pages.

    Bare numbers count pages when they come every few lines and go up by one; chapter
    numbers also go up by one, but pages apart.
    """
    pages = {i for i, line in enumerate(lines) if _PAGE_NUMBER.match(line.strip())}
    numbered = [(i, int(line)) for i, line in enumerate(lines) if _NUMBER_LINE.match(line.strip())]
    if len(numbered) >= 5:
        position = {i: k for k, i in enumerate(j for j, line in enumerate(lines) if line.strip())}
        gaps = [position[b[0]] - position[a[0]] for a, b in pairwise(numbered)]
        steps = sum(1 for a, b in pairwise(numbered) if b[1] == a[1] + 1)
        if statistics.median(gaps) <= 50 and steps >= 0.7 * len(gaps):
            pages.update(i for i, _ in numbered)
    return pages


def _continues_previous(stripped: str, paragraphs: list[str]) -> bool:
    """A line that starts in lower case after a paragraph with no final punctuation was split by a page break."""
    if not paragraphs or not stripped[:1].islower():
        return False
    previous = paragraphs[-1]
    return not _SENTENCE_END.search(previous) and not _CHAPTER_HEADING.match(previous) and "\n" not in previous


def _one_paragraph_per_line(lines: list[str], counts: Counter) -> list[str]:
    paragraphs: list[str] = []
    stripped_lines = [line.strip() for line in lines if line.strip()]
    for i, stripped in enumerate(stripped_lines):
        next_line = stripped_lines[i + 1] if i + 1 < len(stripped_lines) else None
        if _is_page_number(stripped, paragraphs, next_line):
            counts["page_numbers"] += 1
            continue
        if _continues_previous(stripped, paragraphs):
            paragraphs[-1] = _join_wrapped([paragraphs[-1], stripped], counts)
            counts["broken_paragraphs_joined"] += 1
            continue
        paragraphs.append(stripped)
    return paragraphs


def _is_page_number(stripped: str, paragraphs: list[str], next_line: str | None) -> bool:
    if _PAGE_NUMBER.match(stripped):
        return True
    if not _NUMBER_LINE.match(stripped) or not paragraphs:
        return False
    # A bare number between two halves of one sentence is a page number; elsewhere it is a chapter number.
    previous = paragraphs[-1]
    if _CHAPTER_HEADING.match(previous) or _SECTION_BREAK.match(previous):
        return False
    return not _SENTENCE_END.search(previous) and (next_line is None or next_line[:1].islower())


def _unwrap(lines: list[str], width: int, counts: Counter) -> list[str]:
    """Join hard-wrapped lines into paragraphs, by indentation where the text uses it, else by line length."""
    indents = Counter(_indent(line) for line in lines if line.strip())
    continuation_indent = indents.most_common(1)[0][0]
    uses_indent = sum(n for i, n in indents.items() if i > continuation_indent) >= 0.05 * sum(indents.values())
    short = width - 18
    paragraphs: list[str] = []
    current: list[str] = []
    previous_full = False

    def flush() -> None:
        if current:
            paragraphs.append(_join_wrapped(current, counts))
            current.clear()

    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            flush()
            previous_full = False
            continue
        next_line = next((line.strip() for line in lines[i + 1 : i + 3] if line.strip()), None)
        if _NUMBER_LINE.match(stripped) or _PAGE_NUMBER.match(stripped):
            joined_so_far = " ".join(current) if current else (paragraphs[-1] if paragraphs else "")
            if _is_page_number(stripped, [joined_so_far] if joined_so_far else [], next_line):
                counts["page_numbers"] += 1
                continue
        # A lower-case start after an unfinished sentence continues it (a page break was there).
        unfinished = bool(current) and stripped[:1].islower() and not _SENTENCE_END.search(current[-1])
        starts_paragraph = (
            not current
            or (not previous_full and not unfinished)
            or (uses_indent and _indent(line) > continuation_indent)
            or _CHAPTER_HEADING.match(stripped) is not None
            or _SECTION_BREAK.match(stripped) is not None
        )
        if starts_paragraph and not current and _continues_previous(stripped, paragraphs):
            current.append(paragraphs.pop())  # a page break split this paragraph
            counts["broken_paragraphs_joined"] += 1
        elif starts_paragraph:
            flush()
        current.append(stripped)
        # A word broken by a hyphen continues on the next line, however short this one is.
        previous_full = (len(line.rstrip()) >= short or _HYPHEN_BREAK.search(stripped) is not None) and not (
            _CHAPTER_HEADING.match(stripped)
        )
        if current and len(current) > 1:
            counts["joined_lines"] += 1
    flush()
    return paragraphs


def _join_wrapped(parts: list[str], counts: Counter) -> str:
    if len(parts) == 1:
        return parts[0]
    text = parts[0]
    for part in parts[1:]:
        match = _HYPHEN_BREAK.search(text)
        if match and part[:1].islower() and not text.endswith("--"):
            head = match.group(1)
            tail = re.match(r"\w+", part)
            tail_word = tail.group(0) if tail else ""
            if tail_word.lower() in _HYPHEN_PARTICLES or head.lower() in _HYPHEN_PREFIXES:
                text = text + part  # a real hyphenated word broken at its hyphen: "что-" + "то"
            else:
                text = text[:-1] + part
                counts["hyphenations_joined"] += 1
        else:
            text = text + " " + part
    return text


# --- inside a paragraph -----------------------------------------------------------------


def _base_language(language: str) -> str:
    return language.strip().lower().replace("_", "-").split("-")[0]


def _normalize_paragraph(paragraph: str, counts: Counter, guillemets: bool) -> str:
    lines = []
    for line in paragraph.split("\n"):
        line = line.strip()
        if "-" in line or "–" in line:
            line = _normalize_dashes(line, counts)
        if guillemets and ('"' in line or "“" in line or "”" in line):
            line = _normalize_quotes(line, counts)
        line, n = _SPACES.subn(" ", line)
        counts["repeated_spaces"] += n
        line = line.replace(" ,", ",") if " ," in line else line
        lines.append(line.strip())
    return "\n".join(line for line in lines if line)


def _normalize_dashes(line: str, counts: Counter) -> str:
    line, n = _DOUBLE_HYPHEN.subn(" — ", line)
    counts["double_hyphens"] += n
    line, n = _SPACED_HYPHEN.subn(" — ", line)
    counts["spaced_hyphens"] += n
    line = line.strip()
    line, n = _LINE_START_HYPHEN.subn("—", line)
    counts["dialogue_dashes"] += n
    # "словами, — " keeps its comma; a dash that opened the line loses the space we added before it.
    return line.replace("  ", " ")


def _normalize_quotes(line: str, counts: Counter) -> str:
    """Straight and English double quotes become «ёлочки»; „лапки“ (inner quotes) are kept."""
    if "„" in line:
        pairs = {'"': None}
    else:
        pairs = {'"': None, "“": "«", "”": "»"}
    out = []
    for i, ch in enumerate(line):
        if ch in pairs:
            if pairs[ch] is not None:
                out.append(pairs[ch])
            else:
                before = line[i - 1] if i else " "
                out.append("«" if before.isspace() or before in "([{—–-«/" else "»")
            counts["quotes"] += 1
        else:
            out.append(ch)
    return "".join(out)


def _has_letters_or_break(paragraph: str) -> bool:
    return (
        any(ch.isalpha() for ch in paragraph)
        or _SECTION_BREAK.match(paragraph) is not None
        or _CHAPTER_HEADING.match(paragraph) is not None
    )
