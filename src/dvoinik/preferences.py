"""Preference pairs: the writer's picks in the studio as (context, chosen, rejected) records.

    {"prompt": "...", "chosen": "...", "rejected": "...", "generation_id": "gen-…", "checkpoint": "...", "seed": 7}

One JSON object per line, the format of the studio's export (`GET /studio/api/export/preferences.jsonl`):
a generation whose variant the writer picked gives one pair per variant not picked, the
chosen text being the pick as the writer kept it (edits included). `dvoinik train --method
dpo` reads them from such a file, or straight from the studio's database (`--from-picks`,
opened read-only, so a running studio is not disturbed).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

STUDIO_DATABASE = Path("studio") / "studio.sqlite3"


class PreferenceError(Exception):
    """A preferences file or database that cannot be used (one line, naming it)."""


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    generation_id: str | None = None
    checkpoint: str | None = None
    seed: int | None = None

    @property
    def group(self) -> str:
        """Pairs of one generation share a group: held-out splits never cut a generation in two."""
        return self.generation_id or hashlib.sha256(self.prompt.encode("utf-8")).hexdigest()

    def to_json(self) -> dict:
        return asdict(self)


def pairs_of_choice(prompt: str, variants: list[dict], chosen: int, chosen_text: str | None,
                    generation_id: str | None = None, checkpoint: str | None = None,
                    seed: int | None = None) -> list[PreferencePair]:
    """The pairs one pick makes: the chosen text against every variant not chosen."""
    text = chosen_text if chosen_text is not None else variants[chosen]["text"]
    return [PreferencePair(prompt, text, variant["text"], generation_id, checkpoint, seed)
            for i, variant in enumerate(variants) if i != chosen]


def read_pairs_file(path: Path) -> list[PreferencePair]:
    """Pairs from a JSONL file; PreferenceError names the line that is not a pair."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PreferenceError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise PreferenceError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("prompt", "chosen",
                                                                                          "rejected")):
            raise PreferenceError(f"{path}:{number}: a pair needs the strings prompt, chosen and rejected")
        seed = record.get("seed")
        pairs.append(PreferencePair(record["prompt"], record["chosen"], record["rejected"],
                                    record.get("generation_id") if isinstance(record.get("generation_id"), str) else None,
                                    record.get("checkpoint") if isinstance(record.get("checkpoint"), str) else None,
                                    seed if isinstance(seed, int) and not isinstance(seed, bool) else None))
    return pairs


def read_studio_picks(database: Path) -> list[PreferencePair]:
    """The pairs of every pick logged in a studio database, oldest first (opened read-only)."""
    if not database.is_file():
        raise PreferenceError(f"{database}: no studio database yet; pick variants in `dvoinik serve` first")
    try:
        db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT id, prompt, variants, chosen, chosen_text, checkpoint, seed FROM generations "
                              "WHERE chosen IS NOT NULL ORDER BY created_at, id").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise PreferenceError(f"{database}: cannot read the studio's picks ({exc})") from None
    pairs: list[PreferencePair] = []
    for generation_id, prompt, variants, chosen, chosen_text, checkpoint, seed in rows:
        found = json.loads(variants)
        if 0 <= chosen < len(found):
            pairs += pairs_of_choice(prompt, found, chosen, chosen_text, generation_id, checkpoint, seed)
    return pairs


def usable(pairs: Iterable[PreferencePair]) -> list[PreferencePair]:
    """Pairs that say something: both texts non-empty and different."""
    return [p for p in pairs if p.chosen.strip() and p.rejected.strip() and p.chosen.strip() != p.rejected.strip()]


def pairs_fingerprint(pairs: list[PreferencePair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps(pair.to_json(), ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
    return digest.hexdigest()
