"""What `dvoinik export` is asked to do: the formats, the GGUF type, names, and their validation."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from dvoinik.runs import AUTO

FORMATS = ("hf", "gguf", "both")
GGUF_TYPES = ("f32", "f16", "q8_0")

# Russian letters in the spelling of passports (ICAO 9303), so that «Андреев» names its files andreev-….
_CYRILLIC = dict(zip(
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "i", "k", "l", "m", "n", "o", "p", "r", "s", "t", "u", "f",
     "kh", "ts", "ch", "sh", "shch", "ie", "y", "", "e", "iu", "ia"],
))


class ExportError(Exception):
    """A user-facing problem with an export (one line)."""


@dataclass(frozen=True)
class ExportOptions:
    """One export: which checkpoint, where, in which formats. None means "the default" (see `export_double`)."""

    run: str | None = None
    checkpoint: str = AUTO  # a name, best, last, or auto (best when evaluated, else last)
    to: Path | None = None  # default: <workspace>/exports/<slug>-<checkpoint>
    format: str = "both"
    gguf_type: str = "q8_0"
    name: str | None = None  # the model's name (card title, GGUF general.name); default: the workspace's name
    adapter: bool = False  # a LoRA run: keep the adapter in the HF folder instead of merging it
    preset: str | None = None  # decoding preset for generation_config.json and the runners; default: [generate]
    base_id: str | None = None  # the hub id of a LoRA run's base when it was trained from a local folder

    def check(self) -> None:
        if self.format not in FORMATS:
            raise ExportError(f"--format {self.format!r}: expected one of {', '.join(FORMATS)}")
        if self.gguf_type not in GGUF_TYPES:
            raise ExportError(f"--gguf-type {self.gguf_type!r}: expected one of {', '.join(GGUF_TYPES)}")
        if self.name is not None and not self.name.strip():
            raise ExportError("--name: give the model a name, or leave the option out")
        if self.base_id is not None and not is_hub_id(self.base_id):
            raise ExportError(f"--base-id {self.base_id!r}: expected a hub id such as ai-forever/rugpt3small_based_on_gpt2")

    @property
    def writes_hf(self) -> bool:
        return self.format in ("hf", "both")

    @property
    def writes_gguf(self) -> bool:
        return self.format in ("gguf", "both")


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def is_hub_id(text: str) -> bool:
    """Whether `text` is spelled like a Hugging Face repository id (`org/name` or `name`)."""
    return bool(_HUB_ID.match(text)) and ".." not in text and len(text) <= 96


def slug(name: str, fallback: str = "double") -> str:
    """A file- and Ollama-safe name: Cyrillic transliterated, other letters without accents, lower case, dashes."""
    letters = []
    for char in name.lower():
        if char in _CYRILLIC:
            letters.append(_CYRILLIC[char])
        else:
            letters.append(unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode())
    text = re.sub(r"[^a-z0-9]+", "-", "".join(letters)).strip("-")
    return text[:60].strip("-") or fallback
