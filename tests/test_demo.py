from __future__ import annotations

import re
from pathlib import Path

import pytest

from dvoinik import demo
from dvoinik.workspace import WorkspaceError


def test_sample_texts_ship_with_the_package() -> None:
    for author in demo.AUTHORS:
        works = sorted((demo.texts_folder() / author.folder).glob("*.txt"))
        assert len(works) == 8 and sum(len(w.read_text(encoding="utf-8")) for w in works) > 25_000
    target = " ".join(w.read_text(encoding="utf-8") for w in (demo.texts_folder() / "kliuchareva").glob("*.txt"))
    assert "ё" in target and not re.search(r"[0-9A-Za-z]", target)
    assert demo.PROMPT not in target


def test_demo_workspace_copies_the_texts_and_refuses_a_used_folder(tmp_path: Path) -> None:
    ws = demo.create_demo_workspace(tmp_path / "d")
    assert [s.author for s in ws.sources] == [a.name for a in demo.AUTHORS]
    assert all(s.path.is_relative_to(ws.root / "texts") for s in ws.sources)
    assert ws.train.base == "tiny" and ws.train.max_steps == demo.TRAIN_SETTINGS["max_steps"]
    with pytest.raises(WorkspaceError, match="already exists and is not empty"):
        demo.create_demo_workspace(tmp_path / "d")


def test_voice_similarity_tells_the_two_authors_apart() -> None:
    profiles = {a.name: demo.trigram_profile(" ".join(w.read_text(encoding="utf-8") for w in
                                                     sorted((demo.texts_folder() / a.folder).glob("*.txt"))[1:]))
                for a in demo.AUTHORS}
    for author in demo.AUTHORS:  # a held-out work of each is nearer its own author
        held_out = sorted((demo.texts_folder() / author.folder).glob("*.txt"))[0].read_text(encoding="utf-8")
        scores = demo.voice_similarity(held_out[:600], profiles)
        assert max(scores, key=scores.__getitem__) == author.name


def test_the_demo_double_writes_in_the_target_voice(tmp_path: Path) -> None:
    """The whole demo as `dvoinik demo` runs it (about two minutes on two cores)."""
    result = demo.run_demo(tmp_path / "demo")
    assert result.training.steps > 0 and result.training.checkpoints
    assert len(result.continuations) == demo.VARIANTS
    for continuation in result.continuations:
        assert continuation.text.strip()
        assert continuation.nearest == demo.AUTHORS[0].name, continuation
        assert continuation.copy is not None and continuation.copy.tokens < demo.GUARD  # the guard held
        assert continuation.copy.words is not None and continuation.copy.words < result.workspace.check.min_words  # in words too
    text = " ".join(c.text for c in result.continuations)
    assert not re.search(r"[0-9№]", text)  # the influence's digits and numbers never show up
