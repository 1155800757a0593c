"""A training run on disk: prepare the output directory, train, save the model and its result.

Layout of a run directory::

    model.safetensors + model.json   the trained model and its sidecar (arch, DataSpec, metrics)
    metrics.jsonl                    one line per epoch
    state.pt                         full training state for --resume (tensors only)
    result.json                      last-epoch metrics, timing, full config and environment
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

import datafree
from datafree import distributed
from datafree.checkpoint import MODEL_FILE, ModelInfo, save_model
from datafree.errors import DatafreeError
from datafree.io import remove_stale_temps, run_dir_contents, write_json
from datafree.train import METRICS_FILE, STATE_FILE, Stateful, TrainConfig, Trainer

RESULT_FILE = "result.json"
RUN_FILES = {MODEL_FILE, "model.json", METRICS_FILE, STATE_FILE, RESULT_FILE}


def prepare_run_dir(out: str | Path, *, resume: bool, overwrite: bool) -> Path:
    """Check ``out`` may be used (it is created by the first save); never silently mixes two runs' files."""
    out = Path(out)
    contents = run_dir_contents(out, RUN_FILES, "a datafree run")
    remove_stale_temps(out)  # what a killed write left behind (never a part of the run)
    if resume:
        if STATE_FILE not in contents:
            raise DatafreeError(f"nothing to resume in {out} (no {STATE_FILE})")
    elif contents & RUN_FILES:
        if not overwrite:
            raise DatafreeError(f"{out} already holds a run; pass --resume to continue it or --overwrite to replace it")
        for name in contents & RUN_FILES:
            (out / name).unlink()
    return out  # created by the first write, so a run that fails before its first epoch leaves no empty directory


def environment() -> dict[str, Any]:
    """Versions, revision and CPU recorded next to every result.

    The CPU is there because float results are bit-identical only on the same kernels: the same command, code and
    torch build retrained the LeNet teacher to another file on a CPU with other vector instructions (and another
    again with ATen and oneDNN held to AVX2), so a rerun that differs from a published one says which machine it was.
    """
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return {
        "datafree": datafree.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_revision": rev,
        "threads": torch.get_num_threads(),
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train_run(
    out: str | Path,
    model: nn.Module,
    info: ModelInfo,
    config: TrainConfig,
    train: Dataset | Iterable,
    test: Dataset | None,
    *,
    teacher: nn.Module | None = None,
    resume: bool = False,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    late_extra: Callable[[], dict[str, Any]] | None = None,
    source_state: Stateful | None = None,
    final: Callable[[nn.Module], nn.Module] | None = None,
) -> dict[str, Any]:
    """Train ``model`` into run directory ``out`` and return its result record.

    ``late_extra`` adds fields known only after training (e.g. how many images were synthesized);
    ``source_state`` is saved and restored with the trainer's state (a live stream);
    ``final`` gives the model the run ends with from the trained one (``info`` describes it): the student of a
    :class:`~datafree.models.FadingWidth`.
    Under torchrun every rank trains (DDP) and only rank 0 checks ``out`` and writes into it.
    """
    out = distributed.run_on_main(lambda: prepare_run_dir(out, resume=resume, overwrite=overwrite))
    trainer = Trainer(model, config, teacher=teacher, spec=info.spec, out_dir=out, source_state=source_state)
    try:
        metrics = trainer.fit(train, test, resume=resume)
    finally:
        trainer.close()
    info.metrics = {k: metrics[k] for k in ("test_accuracy", "test_loss", "epoch") if k in metrics}
    model = final(trainer.model) if final is not None else trainer.model
    world = distributed.world_size()
    result = {
        "metrics": metrics,
        "model": {"arch": info.arch, "arch_kwargs": info.arch_kwargs,
                  "parameters": sum(p.numel() for p in model.parameters())},
        "spec": info.spec.to_dict(),
        "config": config.to_dict(),
        "protocol": "top-1 accuracy on the test split after the last epoch (never best-on-test)",
        "environment": environment(),
        **(extra or {}),
        **(late_extra() if late_extra is not None else {}),
    }
    if world > 1:
        result["distributed"] = {"world_size": world, "backend": distributed.backend(),
                                 "global_batch_size": world * config.batch_size,
                                 "note": "batch_size is per process; DDP averages gradients over the processes"}
    if distributed.is_main():
        save_model(out / MODEL_FILE, model.cpu(), info)
        write_json(out / RESULT_FILE, result)
    distributed.barrier()  # every rank returns once the run's files are written
    return result
