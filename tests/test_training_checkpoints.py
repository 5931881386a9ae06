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


def complete_checkpoint(folder: Path) -> None:
    """A checkpoint's files, as small as they come: a real safetensors file, config, resume state."""
    import torch
    from safetensors.torch import save_file

    (folder / "resume").mkdir(parents=True)
    save_file({"w": torch.zeros(64)}, folder / "model.safetensors")
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "resume" / "state.pt").write_bytes(b"state")
    (folder / "resume" / "rng-0.pt").write_bytes(b"rng")


def test_resume_passes_over_incomplete_checkpoints_to_the_newest_complete_one(tmp_path: Path) -> None:
    from dvoinik.training.checkpoints import damaged_weights, resumable_checkpoint

    for step in (4, 8, 12, 16):
        complete_checkpoint(tmp_path / f"checkpoint-{step}")
    assert resumable_checkpoint(tmp_path) == (list_checkpoints(tmp_path)[-1], [])
    (tmp_path / "checkpoint-16" / "resume" / "state.pt").unlink()  # a delete stopped half-way
    weights = tmp_path / "checkpoint-12" / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:-10])  # cut short
    (tmp_path / "checkpoint-8" / "model.safetensors").write_bytes(b"\xff" * 100)  # not safetensors at all
    chosen, notes = resumable_checkpoint(tmp_path)
    assert chosen.step == 4
    assert notes == ["checkpoint-16 is incomplete (resume/state.pt is missing); passed over",
                     f"checkpoint-12 is incomplete (model.safetensors is cut short ({size - 10} of {size} bytes)); "
                     "passed over",
                     "checkpoint-8 is incomplete (model.safetensors is cut short, or not safetensors at all (100 bytes)); "
                     "passed over"]
    assert damaged_weights(tmp_path / "checkpoint-16") is None  # still fine to generate from
