"""Driving a condensation method: iterations, progress, checkpoints, resume and the output set.

The output directory is a transfer set (``kind: condensed``) that is rewritten atomically at
every checkpoint, so it is always a valid set (evaluate it mid-run), plus ``condense-state.pt``
(images, optimiser, random state, iteration, time) for ``--resume``. A resumed run may ask for
more iterations than the first one: every method's per-iteration work is independent of the
total, so extending a run equals running longer in the first place.

Crash safety: a checkpoint saves the state, then switches the set to the new images (both
atomic). A run killed between the two resumes from the state and first rewrites the lagging set;
one killed before its first checkpoint starts again. Either way the final set equals an
uninterrupted run's, bit for bit on the CPU.

Under torchrun (dm, dc, dsa) every process holds the whole synthetic set and matches only its
own block of classes; the summed image gradients keep all copies identical, so rank 0 alone
checks ``out``, saves the state and writes the set, and every rank resumes from that state.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from datafree import distributed
from datafree.checkpoint import ModelInfo, load_training_state, save_training_state
from datafree.condense.config import CondenseConfig
from datafree.condense.real import ClassPool
from datafree.data.spec import DataSpec
from datafree.data.transfer import MANIFEST, TransferSetWriter, read_manifest
from datafree.errors import DatafreeError
from datafree.train import peak_memory_mb
from datafree.viz import save_class_grid

STATE = "condense-state.pt"
PREVIEW = "preview.png"
def protocol_record(spec: DataSpec, dataset: str) -> dict[str, Any]:
    """The input space a condensed set lives in, so nobody evaluates it in another one."""
    return {"dataset": dataset, "normalisation": {"mean": list(spec.mean), "std": list(spec.std)}, "zca": False,
            "evaluation": "datafree evaluate-set (protocol dc: ConvNet-3 w128 instance norm, SGD 0.01 m0.9 wd5e-4, "
                          "lr x0.1 at half, 300 epochs / 1000 with DSA, last epoch)"}


def condensed_header(config: CondenseConfig, spec: DataSpec, dataset: str, seed: int,
                     teacher_info: ModelInfo | None, soft_labels: bool, spec_source: str = "dataset-files") -> dict[str, Any]:
    teacher = None if teacher_info is None else teacher_info.record()
    return {"kind": "condensed", "method": config.method, "config": config.to_dict(), "seed": seed, "ipc": config.ipc,
            "teacher": teacher, "spec": spec.to_dict(), "spec_source": spec_source,
            "protocol": protocol_record(spec, dataset),
            "soft_labels": soft_labels,
            "label_type": "class + teacher logits" if soft_labels else "class (hard labels)"}


def _check_resumable(state: Any, config: CondenseConfig, seed: int, path: Path) -> None:
    keys = {"condenser", "rng", "iteration", "elapsed_s", "config", "seed"}
    if not isinstance(state, dict) or not keys <= set(state) or not isinstance(state["config"], dict):
        raise DatafreeError(f"cannot resume from {path}: it is not a condensation state written by datafree; "
                            "start again without --resume in an empty --out")
    saved = {k: v for k, v in state["config"].items() if k != "iterations"}
    wanted = {k: v for k, v in config.to_dict().items() if k != "iterations"}
    if saved != wanted or state["seed"] != seed:
        diff = sorted(k for k in wanted if saved.get(k) != wanted[k]) or ["seed"]
        raise DatafreeError(f"cannot resume: the run was started with other settings ({', '.join(diff)}); "
                            "use the same options or another --out")


def condense_set(out: str | Path, config: CondenseConfig, spec: DataSpec, *, pool: ClassPool | None = None,
                 teacher: nn.Module | None = None, teacher_info: ModelInfo | None = None,
                 soft_labels: bool = False, dataset: str = "", seed: int = 0, device: str = "cpu",
                 resume: bool = False, checkpoint_every: int = 50,
                 progress: bool = True, spec_source: str = "dataset-files") -> dict[str, Any]:
    """Run ``config.method`` for ``config.iterations`` and write the condensed transfer set to ``out``.

    Every ``checkpoint_every`` iterations the state, the set and ``preview.png`` are rewritten.

    ``soft_labels`` stores the teacher's logits for every synthetic image (needs ``teacher``).
    ``spec_source`` records where ``spec`` came from (the dataset's files, or for the teacher-only
    method the teacher's; see :data:`datafree.teacher.SPEC_SOURCES`).
    """
    out = Path(out)

    def check_out(resume: bool) -> bool:
        if (out / MANIFEST).is_file() and not (out / STATE).is_file() and not read_manifest(out)["shards"]:
            resume = False  # killed before its first checkpoint: nothing was done, start it again
        elif (out / MANIFEST).is_file() and not resume:
            raise DatafreeError(f"{out} already holds a transfer set; pass --resume to continue it, or choose another --out")
        if resume and not (out / STATE).is_file():
            raise DatafreeError(f"nothing to resume in {out} (no {STATE})")
        return resume

    resume = distributed.run_on_main(lambda: check_out(resume))  # rank 0 decides, before anything is written
    main = distributed.is_main()
    if soft_labels and teacher is None:
        raise DatafreeError("soft labels need --teacher")
    if teacher is not None:
        teacher = teacher.to(device).eval().requires_grad_(False)
    rng = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()  # before construction: herding does all its work there
    from datafree.condense.methods import METHODS

    cls = METHODS[config.method].condenser if config.method in METHODS else None
    if cls is None:
        raise DatafreeError(f"condensation method {config.method!r} is not available")
    cls.check_world_size(config.method, distributed.world_size())  # before any work (herding's is done here)
    condenser = cls(config, spec, rng, pool=pool, teacher=teacher, device=device)  # validates before any write
    try:
        condenser.split_classes(distributed.rank(), distributed.world_size())
        header = condensed_header(config, spec, dataset, seed, teacher_info, soft_labels, spec_source)
        writer = distributed.run_on_main(lambda: TransferSetWriter(out, header))
        start_iter, elapsed0 = 0, 0.0
        if resume:
            state = load_training_state(out / STATE)
            _check_resumable(state, config, seed, out / STATE)
            try:
                condenser.load_state_dict(state["condenser"])
                rng.set_state(state["rng"])
            except (KeyError, RuntimeError, TypeError, ValueError) as e:
                raise DatafreeError(f"cannot resume from {out / STATE}: its state does not fit this run ({e})") from None
            start_iter, elapsed0 = int(state["iteration"]), float(state["elapsed_s"])
            t0 = time.perf_counter()
        terms: dict[str, float] = dict(state.get("last_losses", {})) if resume else {}

        def checkpoint(iteration: int) -> None:
            if not main:  # every rank holds the same images: rank 0 writes them
                return
            final = condenser.finish(out, seed) if iteration == config.iterations else {}  # relabelling counts too
            elapsed = elapsed0 + time.perf_counter() - t0
            save_training_state(out / STATE, {"condenser": condenser.state_dict(), "rng": rng.get_state(),
                                              "iteration": iteration, "elapsed_s": elapsed,
                                              "config": config.to_dict(), "seed": seed, "last_losses": terms})
            images, labels = condenser.result()
            logits = None
            if soft_labels:
                with torch.no_grad():
                    logits = torch.cat([teacher(x.to(device)).float().cpu() for x in images.split(512)])  # type: ignore[misc]
            writer.replace(images, labels, logits, iterations_done=iteration, condensation_time_s=elapsed,
                           last_losses=terms, peak_memory_mb=peak_memory_mb(torch.device(device)),
                           **condenser.extra_fields(), **final)
            save_class_grid(out / PREVIEW, images, labels, spec)

        if not resume:
            checkpoint(0)  # the initial set: iteration 0 of the accuracy-against-time curve
        elif main and writer.manifest.get("iterations_done") != start_iter:
            checkpoint(start_iter)  # killed between saving the state and rewriting the set: the set lags behind
        bar = tqdm(total=config.iterations, initial=min(start_iter, config.iterations), desc=f"condense {config.method}",
                   unit="it", disable=not (progress and main), dynamic_ncols=True)
        try:
            for it in range(start_iter, config.iterations):
                terms = condenser.step()
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in terms.items()}, refresh=False)
                done = it + 1
                if done % checkpoint_every == 0 or done == config.iterations:
                    checkpoint(done)
        finally:
            bar.close()
    finally:
        condenser.close()
    return distributed.broadcast_object(writer.manifest if main else None)  # rank 0's set, once it is written
