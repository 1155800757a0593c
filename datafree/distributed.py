"""Multi-process runs under ``torchrun``: the process group and the few collectives datafree needs.

A command launched by ``torchrun`` (``WORLD_SIZE > 1`` with ``RANK`` and ``LOCAL_RANK`` in the
environment) joins one process group for its lifetime (:func:`process_group`); anything else runs
exactly as a plain single process, and every helper here is then a no-op (rank 0 of 1).

Backend: ``gloo`` on the CPU, ``nccl`` on CUDA (``--device cuda`` becomes ``cuda:LOCAL_RANK``);
``DATAFREE_DIST_BACKEND`` overrides it. Only torch.distributed is used, never a launcher of our own.

Errors: a check that may fail is made on rank 0 and its outcome broadcast (:func:`run_on_main`),
so every rank raises the same one-line error instead of some ranks waiting forever in a collective.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from datafree.errors import DatafreeError

BACKEND_ENV = "DATAFREE_DIST_BACKEND"
T = TypeVar("T")


def launched() -> bool:
    """Started by torchrun (or any launcher setting the env:// variables) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ and "LOCAL_RANK" in os.environ


def active() -> bool:
    """A process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes files and prints results."""
    return rank() == 0


def rank_seed(seed: int, r: int | None = None) -> int:
    """A seed of its own for rank ``r``: rank 0 keeps ``seed`` (so it draws what a single process draws)."""
    r = rank() if r is None else r
    return seed if r == 0 else (seed + r * 0x9E3779B97F4A7C15) % 2**63


def device_for(device: str) -> str:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun; an explicit index would put every rank on one GPU."""
    if not launched() or not device.startswith("cuda"):
        return device
    if device != "cuda":
        raise DatafreeError(f"under torchrun pass --device cuda (each process takes cuda:LOCAL_RANK), not {device}")
    return f"cuda:{int(os.environ['LOCAL_RANK'])}"


def backend_for(device: str) -> str:
    return os.environ.get(BACKEND_ENV) or ("nccl" if torch.device(device).type == "cuda" else "gloo")


_comm_device = torch.device("cpu")


@contextmanager
def process_group(device: str = "cpu") -> Iterator[None]:
    """Join the torchrun process group for the duration of the block (no-op when not launched).

    The group is destroyed on the way out, also when the block raises.
    """
    global _comm_device
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise DatafreeError("this PyTorch build has no torch.distributed; run without torchrun")
    backend = backend_for(device)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    _comm_device = dev if backend == "nccl" else torch.device("cpu")
    timeout = timedelta(seconds=float(os.environ.get("DATAFREE_DIST_TIMEOUT", "1800")))
    dist.init_process_group(backend=backend, timeout=timeout)
    try:
        yield
        # every rank leaves together: a rank that tears gloo down while its peer is still sending
        # aborts ("terminate called without an active exception"); not on errors, where a peer may never come
        dist.barrier()
    finally:
        dist.destroy_process_group()
        _comm_device = torch.device("cpu")


def backend() -> str | None:
    return dist.get_backend() if active() else None


def barrier() -> None:
    if active():
        dist.barrier()


def comm_device() -> torch.device:
    """Where collective tensors live (CUDA for NCCL, the CPU for gloo)."""
    return _comm_device


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over ranks (in place when ``t`` is on the communication device)."""
    if not active():
        return t
    moved = t.to(_comm_device)
    dist.all_reduce(moved)
    if moved is not t:
        t.copy_(moved.to(t.device))
    return t


def broadcast_tensors(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values (in place)."""
    if not active():
        return
    for t in tensors:
        moved = t.data.to(_comm_device)
        dist.broadcast(moved, src=src)
        if moved is not t.data:
            t.data.copy_(moved.to(t.device))


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank (for decisions all ranks must share)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` of rank ``src`` on every rank (picklable objects; tensors travel as CPU tensors)."""
    if not active():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_comm_device)
    return box[0]  # type: ignore[return-value]


def gather_object(obj: Any) -> list[Any] | None:
    """Every rank's ``obj``, in rank order, on rank 0 (``None`` elsewhere)."""
    if not active():
        return [obj]
    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather_object(obj: Any) -> list[Any]:
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def run_on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank; a DatafreeError it raises is raised everywhere."""
    if not active():
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    error: BaseException | None = None
    if is_main():
        try:
            outcome = (True, fn())
        except DatafreeError as e:
            outcome = (False, str(e))
        except Exception as e:  # e.g. a full disk: rank 0 re-raises it as it is, the others stop with its text
            error, outcome = e, (False, f"rank 0 failed: {e}")
    ok, value = broadcast_object(outcome)
    if error is not None:
        raise error
    if not ok:
        raise DatafreeError(value)
    return value


__all__ = ["BACKEND_ENV", "active", "all_gather_object", "all_reduce_sum", "any_rank", "backend", "backend_for",
           "barrier", "broadcast_object", "broadcast_tensors", "comm_device", "device_for", "gather_object", "is_main",
           "launched", "local_rank", "process_group", "rank", "rank_seed", "run_on_main", "world_size"]
