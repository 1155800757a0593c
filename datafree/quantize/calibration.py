"""Calibration images for int8: a transfer set, a set synthesized against the model itself (ZeroQ's
"distilled data"), real training images (the reference), or none (dynamic quantization, the floor).

Only the images named here are read: a transfer set's own shards, the synthesized set, or a seeded
subset of the real training split, and nothing else (``tests/test_quantize.py`` checks this with a
spy). Subsets are drawn from an explicit ``torch.Generator`` seeded by ``seed``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from datafree.checkpoint import ModelInfo
from datafree.data.loader import iterate_batches
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError

KINDS = ("transfer", "synthetic", "real", "none")
DEFAULT_COUNT = 512  # synthetic and real calibration: ZeroQ's and ONNX Runtime's usual few hundred images


@dataclass
class Calibration:
    """The calibration images (``dataset`` is None for ``none``) and what they were, for the sidecar."""

    kind: str
    dataset: Dataset | None
    record: dict[str, Any] = field(default_factory=dict)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The images, in order, ``batch_size`` at a time (labels and logits are never needed)."""
        if self.dataset is None:
            return iter(())
        return (batch[0] for batch in iterate_batches(self.dataset, batch_size))


class Subset(Dataset):
    """Rows ``index`` of a dataset with ``get_batch``; only those rows are ever read."""

    def __init__(self, dataset: Dataset, index: torch.Tensor) -> None:
        self.dataset, self.index = dataset, index

    def __len__(self) -> int:
        return len(self.index)

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.dataset.get_batch(self.index[index])  # type: ignore[attr-defined]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.get_batch(torch.tensor([i])))


def check_spec(spec: DataSpec, model_spec: DataSpec, what: str) -> None:
    """Calibration images must be in the model's input space (shape, classes, normalisation)."""
    if spec.shape != model_spec.shape or spec.num_classes != model_spec.num_classes:
        raise DatafreeError(f"{what} holds {spec.shape} images of {spec.num_classes} classes, the model expects "
                            f"{model_spec.shape} and {model_spec.num_classes}")
    if tuple(spec.mean) != tuple(model_spec.mean) or tuple(spec.std) != tuple(model_spec.std):
        raise DatafreeError(f"{what} is normalised with mean={spec.mean} std={spec.std}, the model with "
                            f"mean={model_spec.mean} std={model_spec.std}")


def pick(dataset: Dataset, count: int | None, seed: int, what: str) -> tuple[Dataset, list[int] | None]:
    """All of ``dataset``, or a seeded random ``count`` of it (sorted, so shards are read in order)."""
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise DatafreeError(f"{what} is empty: calibration needs at least one image")
    if count is not None and count < 1:
        raise DatafreeError("--calibration-count must be at least 1")
    if count is None or count >= n:
        return dataset, None
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values
    return Subset(dataset, index), index.tolist()


def from_transfer(directories: Sequence[str | Path], spec: DataSpec, *, count: int | None = None,
                  seed: int = 0) -> Calibration:
    """A stored transfer set (or several read as one): data-free calibration."""
    from datafree.data.transfer import TransferSet, read_as_one

    if not directories:
        raise DatafreeError("no calibration set given")
    sets = [TransferSet(d) for d in directories]
    data = read_as_one(sets)
    check_spec(data.spec, spec, f"calibration set {directories[0]}")
    what = f"calibration set {', '.join(map(str, directories))}"
    chosen, index = pick(data, count, seed, what)
    record = {"kind": "transfer", "sets": [{"path": str(s.dir), "method": s.manifest.get("method"),
                                            "kind": s.manifest.get("kind"), "count": len(s),
                                            "shards": [e["sha256"] for e in s.manifest["shards"]]} for s in sets],
              "count": len(chosen), "seed": seed, "subset": index is not None, "real_images_read": 0}
    return Calibration("transfer", chosen, record)


def from_real(dataset: str, data_root: str | None, spec: DataSpec, *, count: int | None = DEFAULT_COUNT,
              seed: int = 0) -> Calibration:
    """A seeded random subset of the real training split: the reference, not data-free."""
    from datafree.data import dataset_spec, load_dataset

    train = load_dataset(dataset, "train", data_root)
    check_spec(dataset_spec(train), spec, f"the {dataset} training split")
    chosen, index = pick(train, count if count is not None else DEFAULT_COUNT, seed, f"the {dataset} training split")
    record = {"kind": "real", "dataset": dataset, "split": "train", "count": len(chosen), "seed": seed,
              "subset": index is not None, "real_images_read": len(chosen)}
    return Calibration("real", chosen, record)


def synthesized(out: str | Path, model: nn.Module, info: ModelInfo, method: str, *, overrides: dict[str, Any] | None = None,
                count: int | None = DEFAULT_COUNT, seed: int = 0, device: str = "cpu", progress: bool = True,
                overwrite: bool = False) -> Calibration:
    """A transfer set synthesized against the model being quantized (ZeroQ's distilled data), kept in
    ``out`` (re-running the same command reuses it; another recipe needs ``overwrite``)."""
    from datafree.data.transfer import MANIFEST, TransferSet, read_manifest
    from datafree.synthesis import preset
    from datafree.synthesis.run import synthesize_set

    out = Path(out)
    config = preset(method, **(overrides or {}))
    count = count if count is not None else DEFAULT_COUNT
    if count < 1:
        raise DatafreeError("--calibration-count must be at least 1")
    if (out / MANIFEST).is_file():
        old = read_manifest(out)
        same = (old.get("method") == method and old.get("config") == config.to_dict() and old.get("seed") == seed
                and (old.get("teacher") or {}).get("sha256") == info.sha256 and int(old.get("count", 0)) <= count)
        if not same and not overwrite:
            raise DatafreeError(f"{out} holds a calibration set of another recipe, seed, model or a larger count; "
                                "pass --overwrite to synthesize it again")
        if not same:
            shutil.rmtree(out)
    manifest = synthesize_set(out, model, info, method, config, count, seed=seed, device=device, resume=True,
                              progress=progress)
    data = TransferSet(out)
    record = {"kind": "synthetic", "method": method, "config": config.to_dict(), "path": str(out), "count": len(data),
              "seed": seed, "synthesis_time_s": float(manifest.get("synthesis_time_s", 0.0)),
              "shards": [e["sha256"] for e in manifest["shards"]], "real_images_read": 0,
              "against": "the model being quantized (ZeroQ)"}
    return Calibration("synthetic", data, record)


def none() -> Calibration:
    return Calibration("none", None, {"kind": "none", "count": 0, "real_images_read": 0})
