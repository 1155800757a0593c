"""A stored set made in parts by several bench workers at once (``synthesize --part K/N``).

The main job's critical path is its data-free row: the stored set, then the student. The other
worker runs the cheap rows and then waits. So the set is planned as N part steps (what the N ranks
of ``torchrun --nproc_per_node N`` make, bit for bit), and parts are *claimed*: the worker that runs
the set's row (its owner) takes parts one by one, and helper tasks queued right behind it take
parts too when a worker is free. Nobody waits on a part that nobody has started: the owner makes
every part no helper has claimed, then waits only for parts being made, and the part that
completes the set writes its manifest (the library does). A helper that finds the set closed, or
every part taken, has nothing to do.

The claims live in a ``multiprocessing.Manager`` dict shared by the workers of one
``bench run`` (a plain dict in one process): nothing on disk, so an interrupted suite leaves no
stale claim, and each part, a resumable set of its own, resumes as any step does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from datafree.errors import DatafreeError

POLL_S = 0.2
OPEN, CLOSED = "open", "closed"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def clear_for_parts(directory: Path, parts: int, marker: str) -> None:
    """Remove a set in ``directory`` that ``parts`` parts cannot extend: one made whole (its step's ``marker``
    is at the top) or in another number of parts. Only the owner calls this, before any part is claimed."""
    import json

    top = directory / "manifest.json"
    try:
        world = int(json.loads(top.read_text()).get("world_size", 1)) if top.is_file() else parts
    except (OSError, ValueError):
        world = 0
    if (directory / marker).is_file() or world != parts:
        shutil.rmtree(directory, ignore_errors=True)


class PartBoard:
    """Who makes which part of which set; ``state`` and ``lock`` are shared between the workers (or local)."""

    def __init__(self, state: MutableMapping[Any, Any] | None = None, lock: Any = None) -> None:
        self.state = state if state is not None else {}
        self.lock = lock if lock is not None else contextlib.nullcontext()

    def _claim(self, key: str, parts: int) -> int | None:
        with self.lock:
            if self.state.get(key) != OPEN:
                return None
            for k in range(parts):
                if (key, k) not in self.state:
                    self.state[(key, k)] = ("running", os.getpid())
                    return k
        return None

    def _make(self, key: str, step: Any, k: int, run_step: Callable[[Any], str]) -> str:
        try:
            action = run_step(step)
        except BaseException as e:
            self.state[(key, k)] = ("failed", (str(e).splitlines() or [type(e).__name__])[0])  # the owner's one line
            raise
        self.state[(key, k)] = ("done", action)
        return action

    def make_set(self, steps: Sequence[Any], run_step: Callable[[Any], str], marker: str) -> list[str]:
        """The owner: open the set's parts to helpers, make every part nobody else has claimed, wait for the
        others; returns each part step's action (run | resume | reuse)."""
        directory, key = Path(steps[0].job.params["set"]), str(steps[0].job.params["set"])
        clear_for_parts(directory, len(steps), marker)
        self.state[key] = OPEN
        try:
            while (k := self._claim(key, len(steps))) is not None:
                self._make(key, steps[k], k, run_step)
            return self._wait(key, len(steps))
        finally:
            self.close(key)

    def _wait(self, key: str, parts: int) -> list[str]:
        while True:
            states = [self.state.get((key, k)) for k in range(parts)]
            for k, s in enumerate(states):
                if s and s[0] == "failed":
                    raise DatafreeError(f"part {k}/{parts} of {key} failed: {s[1]}")
                if s and s[0] == "running" and not _alive(s[1]):
                    raise DatafreeError(f"the worker making part {k}/{parts} of {key} stopped")
            if all(s and s[0] == "done" for s in states):
                return [s[1] for s in states]  # type: ignore[index]
            time.sleep(POLL_S)

    def help(self, steps: Sequence[Any], run_step: Callable[[Any], str]) -> int:
        """A helper: once the owner has opened the set, make unclaimed parts; returns how many it made."""
        key, made = str(steps[0].job.params["set"]), 0
        while self.state.get(key) not in (OPEN, CLOSED):
            time.sleep(POLL_S)
        while (k := self._claim(key, len(steps))) is not None:
            self._make(key, steps[k], k, run_step)
            made += 1
        return made

    def close(self, key: str) -> None:
        """No more claims (the owner is done, failed, or skipped the set): waiting helpers leave."""
        self.state[key] = CLOSED


def part_groups(steps: Sequence[Any]) -> list[tuple[int, int]]:
    """``(first index, number of parts)`` of each set a run's ``steps`` make in parts."""
    out, i = [], 0
    while i < len(steps):
        part = steps[i].part
        if part is not None:
            out.append((i, part[1]))
            i += part[1]
        else:
            i += 1
    return out


__all__ = ["PartBoard", "clear_for_parts", "part_groups"]
