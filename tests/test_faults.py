"""Damaged workspace files and a full disk: one line naming the file (and the command that rebuilds it), never a
traceback; nothing half-written left behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_cli import assert_user_error, invoke

from dvoinik.corpus.build import DOCUMENTS_FILE, iter_documents
from dvoinik.faults import DamagedFileError, DiskFullError, disk_full, is_disk_full, read_json
from dvoinik.training.checkpoints import list_checkpoints
from dvoinik.training.loop import TrainObserver, train
from dvoinik.workspace import Workspace, load_workspace, write_settings


def garbage(path: Path) -> None:
    path.write_bytes(b"garbage {{{ not json\n")


def cut_mid_line(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")  # at a character: the last line is half a JSON object


def missing_field(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    del first["text"]
    path.write_text("\n".join([json.dumps(first, ensure_ascii=False), *lines[1:]]) + "\n", encoding="utf-8")


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


DAMAGES = {"garbage": (garbage, "line 1 is not JSON"), "cut mid-line": (cut_mid_line, "the file ends mid-line"),
           "missing fields": (missing_field, "line 1: fields missing: text"),
           "random bytes": (random_bytes, "not")}


@pytest.fixture
def ws(served_ws: Workspace, tmp_path: Path) -> Workspace:
    """A copy this test may damage of the session's trained workspace (run "served": checkpoint-12, checkpoint-24)."""
    shutil.copytree(served_ws.root, tmp_path / "double", symlinks=True)
    copy = load_workspace(tmp_path / "double")
    return write_settings(copy, "evaluate", {"prompt_tokens": 8, "sample_tokens": 16, "prompts": 2,
                                             "extraction_prompts": 0})


@pytest.mark.parametrize("damage", DAMAGES)
def test_every_damage_of_documents_is_one_line_naming_the_file(served_ws: Workspace, tmp_path: Path,
                                                               damage: str) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(served_ws.corpus_dir, corpus)
    spoil, words = DAMAGES[damage]
    spoil(corpus / DOCUMENTS_FILE)
    with pytest.raises(DamagedFileError) as caught:
        list(iter_documents(corpus))
    message = str(caught.value)
    assert message.startswith(f"{corpus / DOCUMENTS_FILE}: damaged file (") and words in message
    assert message.endswith("rebuild it with `dvoinik corpus`") and "\n" not in message


@pytest.mark.parametrize(("command", "damage"), [(("train", "--run", "again"), "garbage"),
                                                 (("style", "SAMPLE"), "random bytes"),
                                                 (("evaluate", "--run", "served"), "missing fields"),
                                                 (("train", "--run", "again"), "cut mid-line")])
def test_commands_that_read_documents_say_it_is_damaged(ws: Workspace, tmp_path: Path, command: tuple,
                                                       damage: str) -> None:
    sample = tmp_path / "sample.txt"
    sample.write_text("Он вышел на улицу. " * 200, encoding="utf-8")
    DAMAGES[damage][0](ws.corpus_dir / DOCUMENTS_FILE)
    args = [str(sample) if a == "SAMPLE" else a for a in command]
    assert_user_error(invoke("-w", ws.root, *args), f"{ws.corpus_dir / DOCUMENTS_FILE}: damaged file",
                      "`dvoinik corpus`")


def test_a_garbage_corpus_report(ws: Workspace) -> None:
    garbage(ws.corpus_dir / "report.json")
    assert_user_error(invoke("-w", ws.root, "train", "--run", "again"),
                      f"{ws.corpus_dir / 'report.json'}: damaged file (not JSON", "`dvoinik corpus`")


def test_a_truncated_checkpoint_and_a_garbage_evaluation_report(ws: Workspace) -> None:
    weights = ws.runs_dir / "served" / "checkpoint-24" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    assert_user_error(invoke("-w", ws.root, "generate", "Он", "--max-new-tokens", "2", "--checkpoint", "last"),
                      "checkpoint-24: damaged file (model.safetensors is cut short", "--checkpoint")
    (ws.runs_dir / "served" / "evaluation").mkdir()
    garbage(ws.runs_dir / "served" / "evaluation" / "report.json")
    assert_user_error(invoke("-w", ws.root, "generate", "Он", "--max-new-tokens", "2"),
                      "evaluation/report.json: damaged file", "`dvoinik evaluate --run served`")


class Warnings(TrainObserver):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, message: str) -> None:
        self.lines.append(message)


def test_resume_passes_over_a_half_deleted_checkpoint(ws: Workspace) -> None:
    (ws.runs_dir / "served" / "checkpoint-24" / "model.safetensors").unlink()  # an `rm -r` stopped half-way
    observer = Warnings()
    result = train(ws, run="served", resume=True, overrides={"max_steps": 13}, observer=observer)
    assert result.steps == 13 and [c.step for c in list_checkpoints(result.run_dir)] == [12, 13, 24]
    assert observer.lines == ["checkpoint-24 is incomplete (no weights (model.safetensors) in it); passed over; "
                              "resuming from checkpoint-12"]


def test_a_full_disk_while_saving_a_checkpoint(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    real_save = torch.save

    def save(obj, path, *args, **kwargs):
        if ".checkpoint-25.tmp" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    result = invoke("-w", ws.root, "train", "--run", "served", "--resume", "--max-steps", "25")
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]  # after the progress lines, one line says what happened
    assert line.startswith(f"error: {ws.runs_dir / 'served' / 'checkpoint-25'}: no space left on device")
    assert "keep_last" in line and "--resume" in line
    assert sorted(p.name for p in (ws.runs_dir / "served").iterdir() if "checkpoint" in p.name) == \
        ["checkpoint-12", "checkpoint-24"]  # no .checkpoint-25.tmp holding the space; the others untouched


def test_is_disk_full_knows_the_shapes_the_fault_takes(tmp_path: Path) -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert is_disk_full(RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"))
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(RuntimeError("file write failed"), tmp_path)  # this disk has room
    message = str(disk_full(tmp_path / "corpus"))
    assert message.startswith(f"{tmp_path / 'corpus'}: no space left on device") and " free on that disk" in message


def test_read_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(DamagedFileError, match="not UTF-8 text"):
        read_json(path, "rebuild")
    path.write_text('{"a": 1}', encoding="utf-8")
    assert read_json(path, "rebuild") == {"a": 1}
    assert issubclass(DiskFullError, Exception)
