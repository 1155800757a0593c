"""Driving the engine: write a transfer set, or distill a student from a live stream.

Methods without an adversarial term only need the teacher, so :func:`synthesize_set` calls the
synthesizer until the set is full. Adversarial methods need a student that learns while the
generator chases its mistakes; then the student is trained by the shared :class:`Trainer` on a
:class:`LiveStream`, and every synthesized batch is also appended to the transfer set.

Crash safety: :func:`synthesize_set` appends a shard (shard file, then manifest, each atomic) and
then saves ``synth-state.pt`` (atomic), which records how many shards it covers. A kill between the
two leaves one shard more than the state knows; ``--resume`` drops it (:meth:`TransferSetWriter.truncate`)
and synthesizes it again from the saved state, identically. A live stream's state travels in the
trainer's ``state.pt`` (see :class:`LiveStream`) with the same shard count.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from datafree.checkpoint import ModelInfo, load_training_state, save_training_state
from datafree.data.transfer import TransferSetWriter
from datafree.errors import DatafreeError
from datafree.synthesis.engine import LiveStream, SynthesisConfig, Synthesizer
from datafree.train import peak_memory_mb
from datafree.viz import save_class_grid

SYNTH_STATE = "synth-state.pt"
PREVIEW = "preview.png"


def transfer_header(method: str, config: SynthesisConfig, teacher_info: ModelInfo, seed: int) -> dict[str, Any]:
    return {"kind": "synthetic", "method": method, "config": config.to_dict(), "seed": seed,
            "teacher": {"arch": teacher_info.arch, "arch_kwargs": teacher_info.arch_kwargs,
                        "sha256": teacher_info.sha256},
            "spec": teacher_info.spec.to_dict()}


def synthesize_set(out: str | Path, teacher: nn.Module, teacher_info: ModelInfo, method: str,
                   config: SynthesisConfig, count: int, *, seed: int = 0, device: str = "cpu",
                   resume: bool = False, preview_every: int = 10, progress: bool = True) -> dict[str, Any]:
    """Fill a transfer set with ``count`` images from a non-adversarial method (resumable)."""
    if config.needs_student:
        raise DatafreeError(f"{method} trains against a student: use 'datafree distill --method {method}' "
                            "(with --save-transfer DIR to keep its synthetic data)")
    out = Path(out)
    if out.exists() and (out / "manifest.json").is_file() and not resume:
        raise DatafreeError(f"{out} already holds a transfer set; pass --resume to extend it to --count")
    synth = Synthesizer(teacher, teacher_info.spec, config, seed=seed, device=device)  # validates before any write
    try:
        writer = TransferSetWriter(out, transfer_header(method, config, teacher_info, seed))
    except BaseException:
        synth.close()
        raise
    elapsed0 = float(writer.manifest.get("synthesis_time_s", 0.0))
    try:
        if resume and (out / SYNTH_STATE).is_file():
            state = load_training_state(out / SYNTH_STATE)
            synth.load_state_dict(state)
            if "shards" in state:  # the state is the truth: drop shards appended after it was saved
                writer.truncate(int(state["shards"]))
                elapsed0 = float(state["synthesis_time_s"])
        elif writer.count == 0:  # a state for "nothing yet", so a kill after the first append is resumed exactly
            save_training_state(out / SYNTH_STATE, {**synth.state_dict(), "shards": 0, "synthesis_time_s": 0.0})
    except BaseException:
        synth.close()
        raise
    start = time.perf_counter()
    bar = tqdm(total=count, initial=min(writer.count, count), desc=f"synthesize {method}", unit="img",
               disable=not progress, dynamic_ncols=True)
    try:
        while writer.count < count:
            (x, y, logits), terms = synth.synthesize()
            take = min(len(x), count - writer.count)
            # the elapsed time travels with each shard, so an interrupted run's time is never lost
            elapsed = elapsed0 + time.perf_counter() - start
            writer.append(x[:take], y[:take], logits[:take], synthesis_time_s=elapsed)
            save_training_state(out / SYNTH_STATE, {**synth.state_dict(), "shards": len(writer.manifest["shards"]),
                                                    "synthesis_time_s": elapsed})
            bar.update(take)
            bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()}, refresh=False)
            if synth.calls % preview_every == 1 or writer.count >= count:
                save_class_grid(out / PREVIEW, x, y, teacher_info.spec)
    finally:
        bar.close()
        synth.close()
    elapsed = elapsed0 + time.perf_counter() - start
    writer.update(synthesis_time_s=elapsed, peak_memory_mb=peak_memory_mb(torch.device(device)))
    return writer.manifest


def live_stream(student: nn.Module, teacher: nn.Module, teacher_info: ModelInfo, method: str,
                config: SynthesisConfig, *, batch_size: int, seed: int = 0, device: str = "cpu",
                transfer_dir: str | Path | None = None, pool_size: int = 50_000, resume: bool = False) -> LiveStream:
    """A live synthetic stream for the trainer; with ``transfer_dir`` every new batch is also kept.

    With ``resume`` an existing transfer set is reopened; the stream's saved state (loaded by the
    trainer) then cuts it back to the shards that state covers.
    """
    synth = Synthesizer(teacher, teacher_info.spec, config, student=student, seed=seed, device=device)
    stream = LiveStream(synth, batch_size, pool_size=pool_size, seed=seed)
    if transfer_dir is not None:
        try:
            writer = TransferSetWriter(transfer_dir, transfer_header(method, config, teacher_info, seed))
        except BaseException:
            synth.close()
            raise
        if writer.count and not resume:
            synth.close()
            raise DatafreeError(f"{transfer_dir} already holds synthetic data; choose an empty --save-transfer "
                                "(or pass --resume to continue the run that made it)")
        stream.transfer = writer
    return stream


def steps_for(count: int, config: SynthesisConfig) -> int:
    """Student steps needed for the synthesizer to produce ``count`` images."""
    return math.ceil(count / config.batch_size) * config.student_steps
