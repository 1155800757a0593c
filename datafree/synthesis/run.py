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

Under torchrun each rank synthesizes its share of ``count`` with a seed of its own
(:func:`datafree.distributed.rank_seed`; rank 0 keeps ``--seed``) into ``OUT/rank-K/``, a
resumable set of its own; once all have finished, rank 0 writes the top-level manifest listing
every rank's shards (:func:`~datafree.data.transfer.write_merged_manifest`). A live stream's
``--save-transfer`` directory is laid out the same way.

``part=(K, N)`` writes what rank K of N would, as a separate job with no process group (a job
array, or the bench's two workers); whichever part completes the set writes the top-level
manifest, so the N parts give the set that ``torchrun --nproc_per_node N`` gives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from datafree import distributed
from datafree.checkpoint import ModelInfo, load_training_state, save_training_state
from datafree.data.spec import DataSpec
from datafree.data.transfer import MANIFEST, TransferSet, TransferSetWriter, rank_dir, read_manifest, write_merged_manifest
from datafree.errors import DatafreeError
from datafree.io import locked_dir
from datafree.synthesis.engine import LiveStream, LossTerm, SynthesisConfig, Synthesizer
from datafree.train import peak_memory_mb
from datafree.viz import save_class_grid

SYNTH_STATE = "synth-state.pt"
PREVIEW = "preview.png"


def transfer_header(method: str, config: SynthesisConfig, teacher_info: ModelInfo, seed: int) -> dict[str, Any]:
    return {"kind": "synthetic", "method": method, "config": config.to_dict(), "seed": seed,
            "teacher": teacher_info.record(), "spec": teacher_info.spec.to_dict(),
            "spec_source": teacher_info.spec_source}


def _check_world(out: Path, world: int, resume: bool) -> None:
    """A set made by N processes is only continued by N processes (each rank owns its part)."""
    if not (out / MANIFEST).is_file():
        return
    made_by = int(read_manifest(out).get("world_size", 1))
    if made_by != world:
        raise DatafreeError(f"{out} was synthesized by {made_by} process(es), this run has {world}; "
                            + ("resume it with the same number of processes" if resume else "choose another --out"))
    if not resume:
        raise DatafreeError(f"{out} already holds a transfer set; pass --resume to extend it to --count")


def merge_parts(out: Path, part: dict[str, Any], seed: int, spec=None) -> dict[str, Any]:
    """Collective: rank 0 lists every rank's part in ``out/manifest.json`` (and a preview); all get it."""
    parts = distributed.gather_object(part)
    merged = None
    if distributed.is_main():
        assert parts is not None
        merged = write_merged_manifest(out, parts, seed=seed)
        if spec is not None and merged["count"]:
            _preview(out, spec)
    return distributed.broadcast_object(merged)


def _preview(out: Path, spec) -> None:
    """The preview grid of a merged set: up to 512 images spread over all its parts."""
    ts = TransferSet(out)
    x, y, *_ = ts.get_batch(torch.linspace(0, len(ts) - 1, min(len(ts), 512)).long())
    save_class_grid(out / PREVIEW, x, y, spec)


def part_share(count: int, batch_size: int, part: int, parts: int) -> int:
    """How many of ``count`` images part (rank) ``part`` of ``parts`` makes: the ``ceil(count / batch_size)``
    batches are dealt out in turn (part ``r`` makes batches ``r, r + N, ...``), so no part synthesizes a batch
    it half throws away."""
    calls = -(-count // batch_size)
    return sum(min(batch_size, count - i * batch_size) for i in range(part, calls, parts))


def parse_part(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``, with ``0 <= K < N``."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise DatafreeError(f"a part is K/N (e.g. 0/2), not {text!r}") from None
    if not 0 <= k < n:
        raise DatafreeError(f"part {text}: K must be in 0..N-1")
    return k, n


def synthesize_set(out: str | Path, teacher: nn.Module, teacher_info: ModelInfo, method: str,
                   config: SynthesisConfig, count: int, *, seed: int = 0, device: str = "cpu",
                   resume: bool = False, preview_every: int = 10, progress: bool = True,
                   terms: Mapping[str, LossTerm] | None = None, part: tuple[int, int] | None = None) -> dict[str, Any]:
    """Fill a transfer set with ``count`` images from a non-adversarial method (resumable).

    ``terms`` adds loss terms of your own to the generator's (see :class:`Synthesizer`); the set
    records their names.

    Under torchrun the batches are dealt out in turn (:func:`part_share`) into ``out/rank-r/``; the
    returned manifest is the merged one, on every rank. ``part=(K, N)`` makes only rank K's part, in
    this process, and returns the merged manifest if that completed the set, else the part's own.
    """
    out, world = Path(out), distributed.world_size()
    if part is not None:
        if world > 1:
            raise DatafreeError("a part of a set is one process's job; under torchrun every rank makes its own part")
        return _synthesize_part(out, teacher, teacher_info, method, config, count, part, seed=seed, device=device,
                                resume=resume, preview_every=preview_every, progress=progress, terms=terms)
    if world == 1:
        if resume and (out / MANIFEST).is_file():
            _check_world(out, 1, resume)
        return _synthesize_one(out, teacher, teacher_info, method, config, count, seed=seed, device=device,
                               resume=resume, preview_every=preview_every, progress=progress, terms=terms)
    if config.needs_student:  # before any collective, identically on every rank
        _synthesize_one(out, teacher, teacher_info, method, config, count)
    distributed.run_on_main(lambda: _check_world(out, world, resume))
    r = distributed.rank()
    share = part_share(count, config.batch_size, r, world)
    made = _synthesize_one(out / rank_dir(r), teacher, teacher_info, method, config, share,
                           seed=distributed.rank_seed(seed), device=device, resume=resume,
                           preview_every=preview_every, progress=progress and distributed.is_main(), terms=terms)
    return merge_parts(out, made, seed, teacher_info.spec)


def _synthesize_part(out: Path, teacher: nn.Module, teacher_info: ModelInfo, method: str, config: SynthesisConfig,
                     count: int, part: tuple[int, int], *, seed: int, resume: bool, **kwargs: Any) -> dict[str, Any]:
    """Rank ``k`` of ``n``'s part of the set, then the merged manifest once every part is complete."""
    k, n = part
    top = read_manifest(out) if (out / MANIFEST).is_file() else None
    if top is not None and int(top.get("world_size", 1)) != n:
        raise DatafreeError(f"{out} holds a set made by {top.get('world_size', 1)} process(es), not in {n} parts; "
                            "choose another --out")
    share = part_share(count, config.batch_size, k, n)
    mine = out / rank_dir(k) / MANIFEST
    if not mine.is_file() or int(read_manifest(mine.parent).get("count", 0)) < share:
        (out / MANIFEST).unlink(missing_ok=True)  # this part adds images: a merged manifest listing it is stale
    made = _synthesize_one(out / rank_dir(k), teacher, teacher_info, method, config, share,
                           seed=distributed.rank_seed(seed, k), resume=resume, **kwargs)
    return merge_if_complete(out, n, count, config.batch_size, seed) or made


# what every part of one set must share (the seed is checked per part: each has its own)
PART_HEADER = ("kind", "method", "config", "teacher", "spec")


def _header_value(manifest: dict[str, Any], key: str) -> Any:
    """A part's ``key``; its config through :class:`SynthesisConfig`, so a part made before a field was added (with
    its old behaviour as the default) still merges with one made after."""
    value = manifest.get(key)
    return SynthesisConfig.from_dict(value).to_dict() if key == "config" and isinstance(value, dict) else value


def merge_if_complete(out: str | Path, parts: int, count: int, batch_size: int, seed: int) -> dict[str, Any] | None:
    """Write ``out``'s top-level manifest (and preview) when each of its ``parts`` holds its whole share of
    ``count``; None while one does not.

    Parts finishing together take turns (a lock on ``out``): each writes its own final manifest before it merges,
    so the last merge reads every part's final fields (times, peak memory). Parts made by another recipe, teacher
    or ``--seed`` (a part redone after the teacher was retrained) are refused, never merged into one set."""
    with locked_dir(out):
        return _merge_locked(out, parts, count, batch_size, seed)


def _merge_locked(out: str | Path, parts: int, count: int, batch_size: int, seed: int) -> dict[str, Any] | None:
    made = []
    for r in range(parts):
        path = Path(out) / rank_dir(r)
        manifest = read_manifest(path) if (path / MANIFEST).is_file() else None
        share = part_share(count, batch_size, r, parts)
        if manifest is None or int(manifest.get("count", 0)) < share:
            return None
        if int(manifest["count"]) > share:
            raise DatafreeError(f"{path} holds {manifest['count']} images, more than part {r}/{parts} of --count "
                                f"{count} ({share}); give the --count it was made with")
        if manifest.get("seed") != distributed.rank_seed(seed, r):
            raise DatafreeError(f"{path} was made with another --seed than {seed}; make part {r}/{parts} again "
                                "with this one (or the others with its)")
        made.append(manifest)
    for r, manifest in enumerate(made[1:], 1):
        differs = [key for key in PART_HEADER if _header_value(manifest, key) != _header_value(made[0], key)]
        if differs:
            raise DatafreeError(f"parts 0 and {r} of {out} differ in {', '.join(differs)}: make part {r}/{parts} "
                                "again with part 0's teacher and settings")
    merged = write_merged_manifest(out, made, seed=seed)
    if merged["count"]:
        _preview(Path(out), DataSpec.from_dict(merged["spec"]))
    return merged


def _synthesize_one(out: str | Path, teacher: nn.Module, teacher_info: ModelInfo, method: str,
                    config: SynthesisConfig, count: int, *, seed: int = 0, device: str = "cpu",
                    resume: bool = False, preview_every: int = 10, progress: bool = True,
                    terms: Mapping[str, LossTerm] | None = None) -> dict[str, Any]:
    """One process's transfer set of ``count`` images."""
    if config.needs_student:
        raise DatafreeError(f"{method} trains against a student: use 'datafree distill --method {method}' "
                            "(with --save-transfer DIR to keep its synthetic data)")
    out = Path(out)
    if out.exists() and (out / "manifest.json").is_file() and not resume:
        raise DatafreeError(f"{out} already holds a transfer set; pass --resume to extend it to --count")
    fresh = not (out / "manifest.json").is_file()
    synth = Synthesizer(teacher, teacher_info.spec, config, seed=seed, device=device, terms=terms)  # validates first
    header = transfer_header(method, config, teacher_info, seed)
    if terms:
        header["custom_terms"] = sorted(terms)
    try:
        writer = TransferSetWriter(out, header)
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
    except BaseException:
        if fresh and writer.count == 0:  # failed before its first image: leave nothing that asks for --resume
            _remove_empty_set(out)
        raise
    finally:
        bar.close()
        synth.close()
    elapsed = elapsed0 + time.perf_counter() - start
    writer.update(synthesis_time_s=elapsed, peak_memory_mb=peak_memory_mb(torch.device(device)))
    return writer.manifest


def _remove_empty_set(out: Path) -> None:
    """Remove what a run wrote into ``out`` before its first image (the manifest and the state), and ``out`` itself
    when nothing else is in it."""
    for name in ("manifest.json", SYNTH_STATE):
        (out / name).unlink(missing_ok=True)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def live_stream(student: nn.Module, teacher: nn.Module, teacher_info: ModelInfo, method: str,
                config: SynthesisConfig, *, batch_size: int, seed: int = 0, device: str = "cpu",
                transfer_dir: str | Path | None = None, pool_size: int = 50_000, resume: bool = False) -> LiveStream:
    """A live synthetic stream for the trainer; with ``transfer_dir`` every new batch is also kept.

    With ``resume`` an existing transfer set is reopened; the stream's saved state (loaded by the
    trainer) then cuts it back to the shards that state covers.
    """
    seed = distributed.rank_seed(seed)  # under torchrun each rank synthesizes images of its own
    synth = Synthesizer(teacher, teacher_info.spec, config, student=student, seed=seed, device=device)
    stream = LiveStream(synth, batch_size, pool_size=pool_size, seed=seed)
    if transfer_dir is not None:
        if distributed.world_size() > 1:
            world = distributed.world_size()
            try:
                distributed.run_on_main(lambda: _check_world(Path(transfer_dir), world, True))
            except BaseException:
                synth.close()
                raise
            transfer_dir = Path(transfer_dir) / rank_dir(distributed.rank())
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


def finish_live_transfer(stream: LiveStream, transfer_dir: str | Path, seed: int) -> None:
    """Under torchrun: list every rank's saved batches in ``transfer_dir/manifest.json`` (collective)."""
    if stream.transfer is not None and distributed.world_size() > 1:
        merge_parts(Path(transfer_dir), stream.transfer.manifest, seed)


def steps_for(count: int, config: SynthesisConfig) -> int:
    """Student steps needed for the synthesizer to produce ``count`` images."""
    return math.ceil(count / config.batch_size) * config.student_steps
