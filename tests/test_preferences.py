"""Preference pairs: the studio's picks read from its database (read-only) or from the export's JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dvoinik.preferences import (
    PreferenceError,
    PreferencePair,
    pairs_fingerprint,
    pairs_of_choice,
    read_pairs_file,
    read_studio_picks,
    usable,
)
from dvoinik.serve.store import Store

VARIANTS = [{"text": " туман."}, {"text": " река."}, {"text": " лодка."}]


def test_a_pick_makes_one_pair_per_variant_not_picked() -> None:
    pairs = pairs_of_choice("Утром", VARIANTS, 1, None, "gen-1", "run/checkpoint-5", 7)
    assert [(p.chosen, p.rejected) for p in pairs] == [(" река.", " туман."), (" река.", " лодка.")]
    edited = pairs_of_choice("Утром", VARIANTS, 1, " река шла.", "gen-1")
    assert {p.chosen for p in edited} == {" река шла."}  # the writer's edit is what was chosen
    assert pairs[0].group == "gen-1" and PreferencePair("x", "a", "b").group != PreferencePair("y", "a", "b").group


def test_the_studios_database_is_read_without_disturbing_a_running_studio(tmp_path: Path) -> None:
    path = tmp_path / "studio.sqlite3"
    store = Store.open(path, exclusive=True)  # a studio holding its database
    try:
        for number, chosen in enumerate((0, None, 2)):
            entry = store.log_start("studio", f"Пролог {number}", {}, number, "run/checkpoint-5")
            store.log_finish(entry.id, "done", VARIANTS)
            if chosen is not None:
                store.log_choice(entry.id, chosen, VARIANTS[chosen]["text"])
        running = store.log_start("studio", "Ещё пишет", {}, 9, "run/checkpoint-5")
        pairs = read_studio_picks(path)
        assert [(p.prompt, p.chosen) for p in pairs] == [("Пролог 0", " туман.")] * 2 + [("Пролог 2", " лодка.")] * 2
        assert store.generation(running.id).status == "running"  # reading marked nothing interrupted
    finally:
        store.close()
    with pytest.raises(PreferenceError, match="no studio database yet"):
        read_studio_picks(tmp_path / "none.sqlite3")


def test_a_pairs_file_is_read_and_a_bad_line_named(tmp_path: Path) -> None:
    good = [PreferencePair("Утром", " река.", " туман.", "gen-1", "c", 3), PreferencePair("Вечером", " да", " да")]
    path = tmp_path / "preferences.jsonl"
    path.write_text("".join(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in good) + "\n", encoding="utf-8")
    assert read_pairs_file(path) == good
    assert usable(good) == good[:1]  # the same text on both sides says nothing
    assert pairs_fingerprint(good) != pairs_fingerprint(good[:1])
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\nnot json\n', encoding="utf-8")
    with pytest.raises(PreferenceError, match=f"{path}:2: not JSON"):
        read_pairs_file(path)
    with pytest.raises(PreferenceError, match="cannot read"):
        read_pairs_file(tmp_path / "missing.jsonl")
