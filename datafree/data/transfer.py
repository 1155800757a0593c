"""Transfer sets on disk: a manifest plus append-only safetensors shards.

Layout of a transfer-set directory::

    manifest.json          format, kind, method, full config, teacher arch + sha256, DataSpec,
                           label type, seed, package version, and the list of shards with their
                           sample counts and sha256
    shard-00000.safetensors  images (normalised float32), labels (int64: teacher argmax for
                             synthetic sets, the class for condensed ones), logits (teacher
                             soft labels, float32; absent when the manifest says
                             ``soft_labels: false``)

The manifest is the single source of truth: a shard is part of the set only once the manifest
lists it. Each append writes the shard to a temporary file, renames it into place, then rewrites
the manifest atomically — so an interruption at any point leaves either the old set or the new
one, never a half-written or duplicated shard (an unlisted leftover is overwritten by the next
append, and reopening a set deletes unlisted shards and the temporaries of a killed write). A
resumed run that saved its state before some shards were appended drops them with
:meth:`TransferSetWriter.truncate`, so they are not appended twice.

A set made by several processes (``torchrun``) keeps each rank's part as a set of its own in
``rank-K/`` and lists all their shards, as ``rank-K/shard-NNNNN.safetensors``, in one top-level
manifest (``world_size``, ``ranks``) that rank 0 writes once every rank has finished its part.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

import datafree
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.io import atomic_path, remove_stale_temps, sha256_file, write_json

MANIFEST = "manifest.json"
FORMAT = "datafree-transfer/1"
SHARD_FILE = re.compile(r"^shard-\d{5,}\.safetensors$")


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
            remove_stale_temps(self.dir)
            self._remove_unlisted()
        else:
            if self.dir.is_dir() and any(not p.name.startswith(".") for p in self.dir.iterdir()):
                raise DatafreeError(f"{self.dir} is not empty and holds no transfer set; choose another --out")
            self.dir.mkdir(parents=True, exist_ok=True)
            self.manifest = {"format": FORMAT, "datafree_version": datafree.__version__,
                             "label_type": "teacher argmax + teacher logits", "soft_labels": True, **header,
                             "count": 0, "shards": []}
            write_json(self.dir / MANIFEST, self.manifest)

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    def _write_shard(self, name: str, images: torch.Tensor, labels: torch.Tensor,
                     logits: torch.Tensor | None) -> dict[str, Any]:
        soft = bool(self.manifest.get("soft_labels", True))
        if (logits is None) == soft:
            raise DatafreeError("this transfer set " + ("needs" if soft else "has no") + " teacher logits")
        if not (len(images) == len(labels) == (len(logits) if logits is not None else len(images))) or len(images) == 0:
            raise DatafreeError("a shard needs the same, non-zero number of images, labels and logits")
        tensors = {"images": images.detach().float().cpu().contiguous(),
                   "labels": labels.detach().long().cpu().contiguous()}
        if logits is not None:
            tensors["logits"] = logits.detach().float().cpu().contiguous()
        with atomic_path(self.dir / name) as tmp:
            save_file(tensors, str(tmp))
            digest = sha256_file(tmp)
        return {"name": name, "count": len(images), "sha256": digest}

    def append(self, images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None,
               **fields: Any) -> None:
        """Write one more shard; ``fields`` (e.g. the synthesis time so far) go into the same manifest write."""
        entry = self._write_shard(shard_name(len(self.manifest["shards"])), images, labels, logits)
        manifest = {**self.manifest, **fields}
        manifest["shards"] = [*self.manifest["shards"], entry]
        manifest["count"] = self.count + len(images)
        write_json(self.dir / MANIFEST, manifest)
        self.manifest = manifest

    def replace(self, images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None,
                **fields: Any) -> None:
        """Make the set exactly this one shard (a condensed set after more iterations).

        The new shard gets a fresh name and the manifest switches to it in one atomic write;
        only then are the old shards deleted, so an interruption leaves the old or the new set.
        """
        old = [s["name"] for s in self.manifest["shards"]]
        index = 1 + max((int(n[len("shard-"):-len(".safetensors")]) for n in old), default=-1)
        entry = self._write_shard(shard_name(index), images, labels, logits)
        manifest = {**self.manifest, **fields, "shards": [entry], "count": len(images)}
        write_json(self.dir / MANIFEST, manifest)
        self.manifest = manifest
        for name in old:
            (self.dir / name).unlink(missing_ok=True)

    def truncate(self, shards: int, **fields: Any) -> None:
        """Keep only the first ``shards`` shards (and record ``fields``), in one atomic manifest write.

        For a resumed run whose saved state predates the last appends: the dropped shards will be
        produced again, so keeping them would duplicate them. Their files are deleted afterwards.
        """
        listed = self.manifest["shards"]
        if not 0 <= shards <= len(listed):
            raise DatafreeError(f"transfer set {self.dir} holds {len(listed)} shards, fewer than the {shards} "
                                "the saved state expects (was it replaced or edited?)")
        if shards < len(listed) or fields:
            keep = listed[:shards]
            manifest = {**self.manifest, **fields, "shards": keep, "count": sum(int(s["count"]) for s in keep)}
            write_json(self.dir / MANIFEST, manifest)
            self.manifest = manifest
        self._remove_unlisted()

    def _remove_unlisted(self) -> None:
        """Delete shard files the manifest does not list (left by an interrupted append, replace or truncate)."""
        listed = {s["name"] for s in self.manifest["shards"]}
        for path in self.dir.iterdir():
            if SHARD_FILE.match(path.name) and path.name not in listed:
                path.unlink(missing_ok=True)

    def update(self, **fields: Any) -> None:
        """Record extra fields (e.g. timing) in the manifest."""
        self.manifest = {**self.manifest, **fields}
        write_json(self.dir / MANIFEST, self.manifest)


def rank_dir(rank: int) -> str:
    return f"rank-{rank}"


def write_merged_manifest(directory: str | Path, parts: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """The top-level manifest of a set whose rank ``r`` wrote its part ``parts[r]`` into ``rank-r/``.

    Every shard of every part is listed exactly once, with its own sha256 and count; the header
    is rank 0's, timing fields are the slowest rank's (each rank's own is in ``ranks``), and
    ``fields`` (e.g. the run's seed) override.
    """
    shards: list[dict[str, Any]] = []
    for r, part in enumerate(parts):
        shards += [{**entry, "name": f"{rank_dir(r)}/{entry['name']}"} for entry in part["shards"]]
    manifest = {**parts[0], "shards": shards, "count": sum(int(p["count"]) for p in parts), "world_size": len(parts),
                "ranks": [{"rank": r, "dir": rank_dir(r), "seed": p.get("seed"), "count": int(p["count"]),
                           **({"synthesis_time_s": float(p["synthesis_time_s"])} if "synthesis_time_s" in p else {})}
                          for r, p in enumerate(parts)]}
    for key in ("synthesis_time_s", "condensation_time_s", "peak_memory_mb"):
        values = [float(p[key]) for p in parts if key in p]
        if values:
            manifest[key] = max(values)
    manifest.update(fields)
    write_json(Path(directory) / MANIFEST, manifest)
    return manifest


def synthesis_seconds(manifest: dict[str, Any]) -> float:
    """A set's synthesis time in process-seconds: a set made by several processes at once (torchrun, or
    ``--part``) records each one's time in ``ranks`` and the slowest as its own, so the sum is what one
    process would have spent; a set made by one process, its own time."""
    ranks = manifest.get("ranks") or []
    if ranks and all("synthesis_time_s" in r for r in ranks):
        return float(sum(float(r["synthesis_time_s"]) for r in ranks))
    return float(manifest.get("synthesis_time_s", 0.0))


def sets_synthesis_seconds(directories: Iterable[str | Path], count: int | None = None) -> float:
    """What the stored sets a student read cost to make: their :func:`synthesis_seconds`, summed. With ``count`` (the
    student read only each set's first ``count`` images) each set's time in proportion: its batches cost alike."""
    def seconds(manifest: dict[str, Any]) -> float:
        share = 1.0 if count is None else min(count, int(manifest["count"])) / max(int(manifest["count"]), 1)
        return synthesis_seconds(manifest) * share

    return sum(seconds(read_manifest(d)) for d in directories)


def gather(offsets: torch.Tensor, index: torch.Tensor,
           rows: Callable[[int, torch.Tensor], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Rows ``index`` of parts laid end to end (part k holds rows ``offsets[k]:offsets[k+1]``), fetched
    part by part with ``rows(k, local_index)``: one gather per part a batch touches, not per row."""
    index = torch.as_tensor(index, dtype=torch.long)
    part_of = torch.searchsorted(offsets, index, right=True) - 1
    if len(index) == 0:
        return rows(0, index) if len(offsets) > 1 else ()
    out: list[torch.Tensor] = []
    for k in part_of.unique().tolist():
        mask = part_of == k
        part = rows(k, index[mask] - offsets[k])
        if not out:
            out = [torch.empty(len(index), *t.shape[1:], dtype=t.dtype) for t in part]
        for o, t in zip(out, part):
            o[mask] = t
    return tuple(out)


class TransferSet(Dataset):
    """A transfer set as a Dataset of ``(image, label, teacher_logits)`` (no logits if it has none).

    Shards are read on first use (and checked against the manifest's sha256); ``get_batch``
    gathers a whole batch shard by shard. ``count`` reads only the first ``count`` images: a set made by
    one process is written batch by batch from its seed, so its first N images are the set
    ``synthesize --count N`` makes, and a smaller set can be tried without synthesizing it again.
    """

    def __init__(self, directory: str | Path, verify: bool = True, count: int | None = None) -> None:
        self.dir = Path(directory)
        self.manifest = read_manifest(self.dir)
        self.spec = DataSpec.from_dict(self.manifest["spec"])
        self.verify = verify
        self.soft_labels = bool(self.manifest.get("soft_labels", True))
        counts = [int(s["count"]) for s in self.manifest["shards"]]
        self.offsets = torch.tensor([0, *counts]).cumsum(0)
        held = int(self.offsets[-1])
        if count is not None and not 0 < count <= held:
            raise DatafreeError(f"transfer set {self.dir} holds {held} images; cannot read the first {count}")
        self.count = held if count is None else count
        self._cache: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.count

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

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(images, labels, logits)``, or ``(images, labels)`` for a set without soft labels."""
        def rows(s: int, local: torch.Tensor) -> tuple[torch.Tensor, ...]:
            shard = self._shard(s)
            if self.soft_labels and "logits" not in shard:
                raise DatafreeError(f"{self.dir}: shard {s} has no logits although the manifest promises them")
            keys = ("images", "labels", "logits") if self.soft_labels else ("images", "labels")
            return tuple(shard[k][local] for k in keys)

        index = torch.as_tensor(index, dtype=torch.long)
        if len(index) and not 0 <= int(index.min()) <= int(index.max()) < self.count:
            raise IndexError(f"transfer set {self.dir}: index out of range for its {self.count} images")
        return gather(self.offsets, index, rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.get_batch(torch.tensor([i])))


class TransferSets(Dataset):
    """Several transfer sets read as one (e.g. two synthesis recipes whose images complement each
    other). They must share the DataSpec and the label type; ``get_batch`` gathers set by set."""

    def __init__(self, sets: list[TransferSet]) -> None:
        if not sets:
            raise DatafreeError("no transfer set given")
        first = sets[0]
        for other in sets[1:]:
            if other.spec != first.spec:
                raise DatafreeError(f"{other.dir} and {first.dir} have different data specs; they cannot be combined")
            if other.soft_labels != first.soft_labels:
                raise DatafreeError(f"{other.dir} and {first.dir} differ in label type (teacher logits or not)")
        self.sets, self.spec, self.soft_labels = sets, first.spec, first.soft_labels
        self.offsets = torch.tensor([0, *(len(s) for s in sets)]).cumsum(0)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def manifest(self) -> dict[str, Any]:
        """What a record names the sets by (as one set's manifest does): their kind, methods and total count."""
        kinds = {s.manifest.get("kind") for s in self.sets}
        return {"kind": kinds.pop() if len(kinds) == 1 else "mixed",
                "method": "+".join(str(s.manifest.get("method")) for s in self.sets), "count": len(self)}

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return gather(self.offsets, index, lambda k, local: self.sets[k].get_batch(local))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.get_batch(torch.tensor([i])))


def read_as_one(sets: list[TransferSet]) -> TransferSet | TransferSets:
    """One set as itself, several as one :class:`TransferSets` (what a reader of ``--transfer DIR [DIR ...]`` wants)."""
    return sets[0] if len(sets) == 1 else TransferSets(sets)


def read_transfer_source(directories: Sequence[str | Path],
                         count: int | None = None) -> tuple[TransferSet | TransferSets, dict[str, Any]]:
    """The sets of ``distill --transfer DIR [--transfer DIR ...] [--transfer-count N]`` read as one training set,
    and what a run records about them (the first set, every set when there are several, the count read of each)."""
    sets = [TransferSet(d, count=count) for d in directories]
    source: dict[str, Any] = {"source": "transfer", "transfer": str(directories[0]),
                              "transfer_method": sets[0].manifest.get("method")}
    if len(sets) > 1:
        source["transfers"] = [str(d) for d in directories]
    if count is not None:
        source["transfer_count"] = count
    source["spec_source"] = "transfer-set"
    return read_as_one(sets), source
