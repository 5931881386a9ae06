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

from dvoinik.faults import disk_full, is_disk_full


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
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc, path.parent):
            raise disk_full(path) from exc
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

    The sibling is locked (flock) while it is built, and siblings that a killed build left
    (no process holds their lock) are removed first, so a kill -9 costs disk only until
    the next build; a build still running elsewhere keeps its own.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(folder)
    staging = temporary_sibling(folder)
    staging.mkdir()
    owner = _hold(staging)
    try:
        try:
            yield staging
            fsync_files(staging)
        except BaseException as exc:
            restore_previous_folder(folder)
            shutil.rmtree(staging, ignore_errors=True)
            if is_disk_full(exc, folder.parent):
                raise disk_full(folder) from exc  # one line, the temporary folder gone, the previous one kept
            raise
        replace_folder(staging, folder)
    finally:
        if owner is not None:
            os.close(owner)


def _hold(staging: Path) -> int | None:
    """An exclusive lock on the folder `staging` for as long as the returned descriptor is open (None: no locks here)."""
    try:
        import fcntl
    except ImportError:  # Windows: abandoned builds are then left for the user to delete
        return None
    fd = os.open(staging, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without flock: build all the same, unprotected
        os.close(fd)
        return None
    return fd


def remove_abandoned_builds(folder: Path) -> list[Path]:
    """Remove `.NAME.<random>.tmp` folders beside `folder` whose builder is gone (its lock is free); return them."""
    try:
        import fcntl
    except ImportError:
        return []
    removed = []
    for candidate in folder.parent.glob(f".{folder.name}.*.tmp"):
        if not candidate.is_dir() or candidate.is_symlink():
            continue
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a live build: OSError, and it stays
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


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
