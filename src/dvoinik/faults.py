"""Two faults of the workspace's files that a user hears about in one line, never as a traceback.

- A **damaged file** a stage wrote (garbage, cut mid-line, random bytes, fields missing):
  `DamagedFileError` names the file, what is wrong, and the command that rebuilds it.
  `read_json` and `read_json_lines` are the loaders that say so.
- **No access**: `NoAccessError` names the file or folder this account may not read or write
  (permissions, a read-only file system), where a traceback would have said `EACCES`.
- A **full disk**: `DiskFullError` names the folder being written, the free space left on
  its disk and what to free. `is_disk_full` recognises the many shapes the fault takes
  (OSError ENOSPC, SQLite's "database or disk is full", safetensors' and torch's writers).

All are `FileFault`s, which the command line prints as one `error: …` line (exit 2).
"""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REBUILD_CORPUS = "rebuild it with `dvoinik corpus`"
# Below this much free space, a writer's failure without a reason (torch's "file write failed") is the full disk.
NEARLY_FULL_BYTES = 16 * 1024 * 1024
_FULL_WORDS = ("no space left on device", "os error 28", "storagefull", "disk quota exceeded", "disk is full")


class FileFault(Exception):
    """A user-facing problem with a workspace file (one line)."""


class DamagedFileError(FileFault):
    """A file a stage wrote cannot be read back."""


class NoAccessError(FileFault):
    """This account may not read or write a file or folder a command needs."""


class DiskFullError(FileFault):
    """The disk filled up while something was written; nothing half-written was left."""


def damaged(path: Path | str, problem: str, rebuild: str) -> DamagedFileError:
    return DamagedFileError(f"{path}: damaged file ({problem}); {rebuild}")


def read_json(path: Path, rebuild: str) -> Any:
    """The JSON in `path`; DamagedFileError when it is not UTF-8 JSON (OSError, a missing file say, passes through)."""
    data = Path(path).read_bytes()
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise damaged(path, "not UTF-8 text", rebuild) from None
    except json.JSONDecodeError as exc:
        raise damaged(path, f"not JSON: {exc.msg} at line {exc.lineno}", rebuild) from None


def read_json_lines(path: Path, rebuild: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) for every non-blank line of a JSON Lines file; DamagedFileError at the first bad line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise damaged(path, f"line {number} is not UTF-8 text", rebuild) from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                cut = " (the file ends mid-line)" if not raw.endswith(b"\n") else ""
                raise damaged(path, f"line {number} is not JSON{cut}", rebuild) from None
            yield number, value


_NO_ACCESS_WORDS = ("readonly database", "read-only file system", "unable to open database file", "permission denied")


def is_no_access(exc: BaseException) -> bool:
    """Whether `exc` is a refused access: permissions, a read-only file system, SQLite unable to open or write."""
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return True
    return isinstance(exc, sqlite3.OperationalError) and any(w in str(exc).lower() for w in _NO_ACCESS_WORDS)


def no_access(path: Path | str, doing: str) -> NoAccessError:
    return NoAccessError(f"{path}: permission denied while {doing} (this account may not read and write it, or the "
                         "folder holding it, or the disk is read-only); give it access, or run as the user who owns it")


def is_disk_full(exc: BaseException, folder: Path | None = None) -> bool:
    """Whether `exc` (or an exception it came from) is a full disk; with `folder`, also a failed write where
    the disk holding `folder` has next to no space left (writers that do not say why they failed)."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(current, sqlite3.OperationalError) and "full" in str(current).lower():
            return True
        if any(words in str(current).lower() for words in _FULL_WORDS):
            return True
        current = current.__cause__ or current.__context__
    if folder is not None and isinstance(exc, (OSError, RuntimeError)):
        free = free_bytes(folder)
        return free is not None and free < NEARLY_FULL_BYTES
    return False


def free_bytes(folder: Path) -> int | None:
    """Free space on the disk holding `folder` (or its nearest existing parent); None if it cannot be told."""
    place = Path(folder)
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        return shutil.disk_usage(place).free
    except OSError:
        return None


def disk_full(path: Path, free_hint: str = "") -> DiskFullError:
    """The one line for a full disk: what could not be written, the space left, and what to free."""
    free = free_bytes(path)
    left = f"{_size(free)} free" if free is not None else "free space unknown"
    hint = f" ({free_hint})" if free_hint else ""
    return DiskFullError(f"{path}: no space left on device while writing it ({left} on that disk); "
                         f"free some space there{hint} and run it again")


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
