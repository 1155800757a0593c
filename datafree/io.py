"""Atomic file writes: a crash or a full disk never leaves a half-written output behind."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from datafree.errors import DatafreeError

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # full disk, quota, read-only: the CLI says so in one line


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        if e.filename is None:  # a failed write() names no file: name the one being written
            e.filename = str(path)
        raise
    except Exception as e:  # e.g. safetensors: "I/O error: No space left on device (os error 28)"
        code = next((c for c in DISK_ERRNOS if f"(os error {c})" in str(e)), None)
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from e
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def run_dir_contents(out: Path, expected: set[str], what: str) -> set[str]:
    """The names in run directory ``out`` (empty if it does not exist yet), refusing a directory that holds
    files a run of this kind never writes (dot files, e.g. temporaries and markers, are allowed)."""
    if out.exists() and not out.is_dir():
        raise DatafreeError(f"output {out} exists and is not a directory")
    contents = {p.name for p in out.iterdir()} if out.is_dir() else set()
    foreign = sorted(n for n in contents - expected if not n.startswith("."))
    if foreign:
        raise DatafreeError(f"output directory {out} holds files that are not {what} ({', '.join(foreign[:3])}); "
                            "choose another --out")
    return contents


def remove_stale_temps(directory: str | os.PathLike) -> list[str]:
    """Delete the temporary files :func:`atomic_path` leaves in ``directory`` when its process is killed.

    ``atomic_path`` removes its temporary on any exception, but a SIGKILL (or a power cut) skips
    that; the next run in the same directory calls this before writing. Returns the names removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return sorted(p.name for p in stale)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda p: p.write_text(text))


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one JSON line (each line is flushed whole).

    If a crash left a torn last line, the new line starts on a line of its own, so only the torn
    one is unreadable (readers skip it) and the new row is never glued onto it.
    """
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # writers in several processes (bench runs, one per pair) take turns
        torn = False
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
        f.write((("\n" if torn else "") + json.dumps(obj, sort_keys=True) + "\n").encode())
        f.flush()


@contextmanager
def locked_dir(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the directory ``path``: processes that read several files in it and write one from
    them take turns, so the last to write has read what every earlier one wrote. The lock is a ``.lock`` file
    opened for writing (``flock`` on network file systems needs one); it is not re-entrant."""
    with open(Path(path) / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
