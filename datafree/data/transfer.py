"""Transfer sets on disk: a manifest plus append-only safetensors shards.

Layout of a transfer-set directory::

    manifest.json          format, kind, method, full config, teacher arch + sha256, DataSpec,
                           label type, seed, package version, and the list of shards with their
                           sample counts and sha256
    shard-00000.safetensors  images (normalised float32), labels (teacher argmax, int64),
                             logits (teacher soft labels, float32)

The manifest is the single source of truth: a shard is part of the set only once the manifest
lists it. Each append writes the shard to a temporary file, renames it into place, then rewrites
the manifest atomically — so an interruption at any point leaves either the old set or the new
one, never a half-written or duplicated shard (an unlisted leftover is overwritten by the next
append).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

import datafree
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.io import atomic_path, sha256_file, write_json

MANIFEST = "manifest.json"
FORMAT = "datafree-transfer/1"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DatafreeError(f"{directory} is not a transfer set (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatafreeError(f"{path} is not valid JSON ({e})") from None
    if manifest.get("format") != FORMAT:
        raise DatafreeError(f"{path}: unknown format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


class TransferSetWriter:
    """Create or extend a transfer set; :meth:`append` adds one shard atomically.

    ``header`` holds the descriptive fields (kind, method, config, teacher, spec, seed). Reopening
    an existing set requires the same kind, method, teacher and spec, so a set never mixes two
    recipes.
    """

    def __init__(self, directory: str | Path, header: dict[str, Any]) -> None:
        self.dir = Path(directory)
        if self.dir.exists() and not self.dir.is_dir():
            raise DatafreeError(f"{self.dir} exists and is not a directory")
        if (self.dir / MANIFEST).is_file():
            self.manifest = read_manifest(self.dir)
            for key in ("kind", "method", "teacher", "spec"):
                if self.manifest.get(key) != header.get(key):
                    raise DatafreeError(
                        f"{self.dir} holds a transfer set with another {key} "
                        f"({self.manifest.get(key)!r}); choose another --out"
                    )
        else:
            if self.dir.is_dir() and any(not p.name.startswith(".") for p in self.dir.iterdir()):
                raise DatafreeError(f"{self.dir} is not empty and holds no transfer set; choose another --out")
            self.dir.mkdir(parents=True, exist_ok=True)
            self.manifest = {"format": FORMAT, "datafree_version": datafree.__version__, **header,
                             "label_type": "teacher argmax + teacher logits", "count": 0, "shards": []}
            write_json(self.dir / MANIFEST, self.manifest)

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    def append(self, images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, **fields: Any) -> None:
        """Write one more shard; ``fields`` (e.g. the synthesis time so far) go into the same manifest write."""
        if not (len(images) == len(labels) == len(logits)) or len(images) == 0:
            raise DatafreeError("a shard needs the same, non-zero number of images, labels and logits")
        name = shard_name(len(self.manifest["shards"]))
        tensors = {"images": images.detach().float().cpu().contiguous(),
                   "labels": labels.detach().long().cpu().contiguous(),
                   "logits": logits.detach().float().cpu().contiguous()}
        with atomic_path(self.dir / name) as tmp:
            save_file(tensors, str(tmp))
            digest = sha256_file(tmp)
        manifest = {**self.manifest, **fields}
        manifest["shards"] = [*self.manifest["shards"], {"name": name, "count": len(images), "sha256": digest}]
        manifest["count"] = self.count + len(images)
        write_json(self.dir / MANIFEST, manifest)
        self.manifest = manifest

    def update(self, **fields: Any) -> None:
        """Record extra fields (e.g. timing) in the manifest."""
        self.manifest = {**self.manifest, **fields}
        write_json(self.dir / MANIFEST, self.manifest)


class TransferSet(Dataset):
    """A transfer set as a Dataset of ``(image, teacher_label, teacher_logits)``.

    Shards are read on first use (and checked against the manifest's sha256); ``get_batch``
    gathers a whole batch shard by shard.
    """

    def __init__(self, directory: str | Path, verify: bool = True) -> None:
        self.dir = Path(directory)
        self.manifest = read_manifest(self.dir)
        self.spec = DataSpec.from_dict(self.manifest["spec"])
        self.verify = verify
        counts = [int(s["count"]) for s in self.manifest["shards"]]
        self.offsets = torch.tensor([0, *counts]).cumsum(0)
        self._cache: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _shard(self, i: int) -> dict[str, torch.Tensor]:
        if i not in self._cache:
            entry = self.manifest["shards"][i]
            path = self.dir / entry["name"]
            if not path.is_file():
                raise DatafreeError(f"transfer set {self.dir} lists {entry['name']}, which is missing")
            if self.verify and sha256_file(path) != entry["sha256"]:
                raise DatafreeError(f"{path} does not match its sha256 in the manifest (corrupted or replaced)")
            try:
                tensors = load_file(str(path))
            except (SafetensorError, OSError) as e:
                raise DatafreeError(f"cannot read {path}: {e}") from None
            if tuple(tensors["images"].shape[1:]) != self.spec.shape:
                raise DatafreeError(f"{path}: images of shape {tuple(tensors['images'].shape[1:])}, spec {self.spec.shape}")
            self._cache[i] = tensors
        return self._cache[i]

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(index, dtype=torch.long)
        shard_of = torch.searchsorted(self.offsets, index, right=True) - 1
        images = torch.empty(len(index), *self.spec.shape)
        labels = torch.empty(len(index), dtype=torch.long)
        logits = torch.empty(len(index), self.spec.num_classes)
        for s in shard_of.unique().tolist():
            mask = shard_of == s
            local = index[mask] - self.offsets[s]
            shard = self._shard(s)
            images[mask], labels[mask], logits[mask] = shard["images"][local], shard["labels"][local], shard["logits"][local]
        return images, labels, logits

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y, z = self.get_batch(torch.tensor([i]))
        return x[0], y[0], z[0]
