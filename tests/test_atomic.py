"""Atomic writes: all or nothing, and the permissions any other new file would get."""

from __future__ import annotations

import os
import stat

import pytest

from dvoinik.atomic import atomic_open, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("half of the new")
            raise RuntimeError("killed")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_new_file_gets_the_umask_mode_not_a_private_one(tmp_path):
    old_umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.txt", "текст")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
    assert (tmp_path / "new.txt").read_text(encoding="utf-8") == "текст"


def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "shared.toml"
    target.write_text("a = 1\n", encoding="utf-8")
    target.chmod(0o664)
    atomic_write_text(target, "a = 2\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o664
    assert target.read_text(encoding="utf-8") == "a = 2\n"


def test_folders_left_by_killed_builds_are_removed_by_the_next(tmp_path):
    import fcntl

    from dvoinik.atomic import building_folder

    abandoned = tmp_path / ".corpus.0123456789ab.tmp"  # a build killed with -9 left it
    (abandoned / "half").mkdir(parents=True)
    running = tmp_path / ".corpus.ba9876543210.tmp"  # a build still running holds its lock
    running.mkdir()
    lock = os.open(running, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with building_folder(tmp_path / "corpus") as staging:
            (staging / "documents.jsonl").write_text("{}\n", encoding="utf-8")
        assert sorted(p.name for p in tmp_path.iterdir()) == [".corpus.ba9876543210.tmp", "corpus"]
    finally:
        os.close(lock)
