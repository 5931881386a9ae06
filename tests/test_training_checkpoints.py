from __future__ import annotations

from pathlib import Path

from dvoinik.training.checkpoints import latest_checkpoint, list_checkpoints, prune_checkpoints, remove_leftovers


def make(run: Path, *names: str) -> None:
    for name in names:
        (run / name).mkdir(parents=True)


def test_only_complete_checkpoints_count_in_step_order(tmp_path: Path) -> None:
    make(tmp_path, "checkpoint-10", "checkpoint-9", "checkpoint-100", ".checkpoint-110.tmp", "checkpoint-x", "notes")
    (tmp_path / "checkpoint-5").write_text("a file, not a folder", encoding="utf-8")
    assert [c.step for c in list_checkpoints(tmp_path)] == [9, 10, 100]
    assert latest_checkpoint(tmp_path).path.name == "checkpoint-100"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_keep_last_removes_the_oldest(tmp_path: Path) -> None:
    make(tmp_path, "checkpoint-1", "checkpoint-2", "checkpoint-3")
    assert prune_checkpoints(tmp_path, 0) == []
    removed = prune_checkpoints(tmp_path, 2)
    assert [p.name for p in removed] == ["checkpoint-1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-3"]


def test_leftovers_of_killed_saves_and_prunes_are_removed(tmp_path: Path) -> None:
    make(tmp_path, "checkpoint-4", ".checkpoint-8.tmp/resume", ".checkpoint-2.del")
    removed = remove_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == [".checkpoint-2.del", ".checkpoint-8.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-4"]
