"""Write files so that a killed process never leaves a half-written one that looks complete."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name beside `path` (`.NAME.<random>.tmp`) to build it under before a rename."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


@contextmanager
def atomic_open(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of `path`; rename it over `path` only if the block succeeds.

    The result has the mode of the file it replaces, or that of any new file (0666 less
    the umask); mkstemp's private 0600 would make a shared workspace unreadable to others.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            if path.exists():
                os.chmod(handle.fileno(), stat.S_IMODE(path.stat().st_mode))
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def replace_folder(staging: Path, folder: Path) -> None:
    """Swap the fully written folder `staging` in for `folder` (which may not exist).

    Two renames through `.NAME.old`: a kill between them leaves `.NAME.old` and no
    `folder`, and the next swap keeps that previous folder until the new one is in place.
    On failure the previous folder is put back and `staging` removed.
    """
    previous = folder.with_name(f".{folder.name}.old")
    try:
        if previous.exists() and folder.exists():
            shutil.rmtree(previous)
        if folder.exists():
            os.replace(folder, previous)
        os.replace(staging, folder)
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        restore_previous_folder(folder)
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def building_folder(folder: Path) -> Iterator[Path]:
    """Yield a fresh hidden sibling of `folder` to write into; swap it in only if the block succeeds.

    The files are flushed to disk before the swap (`replace_folder`). On failure the
    sibling is removed, and a previous folder left aside by an earlier killed swap is put back.
    Not mkdtemp: its folder is private (0700), and the result should get any new folder's mode.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_sibling(folder)
    staging.mkdir()
    try:
        yield staging
        fsync_files(staging)
    except BaseException:
        restore_previous_folder(folder)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(staging, folder)


def restore_previous_folder(folder: Path) -> None:
    """Put back `.NAME.old` when a swap was killed after moving `folder` aside."""
    previous = folder.with_name(f".{folder.name}.old")
    if previous.exists() and not folder.exists():
        os.replace(previous, folder)


def fsync_files(folder: Path) -> None:
    """Flush every file under `folder` to disk (before a rename makes them visible as complete)."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
