"""Condensed sets to and from the layouts of the reference code bases, without losing the input space.

Two layouts are understood:

``dc``
    The DatasetCondensation result file (DC, DSA, DM): one ``.pt`` file holding
    ``{"data": [[image_syn, label_syn], ...], "accs_all_exps": {...}}``, one ``[images, labels]``
    pair per experiment; images are float ``(N, C, H, W)`` in the normalised input space, labels
    int64 ``(N,)``.
``mtt``
    MTT's (trajectory matching) output directory: ``images_best.pt``, ``labels_best.pt`` and
    ``lr_best.pt`` (the learned synthetic learning rate). Some of its descendants save into a
    ``Normal/`` subfolder and store soft labels ``(N, classes)``; both are read.

Neither layout says which normalisation (or ZCA whitening) its images live in, so
:func:`export_set` writes a ``datafree.json`` sidecar (spec, protocol, method, sha256 of the files)
beside the export, and :func:`import_set` checks it when it is there; otherwise the caller's
``spec`` (and ``zca``) is taken on trust and recorded in the imported set's ``protocol``.

Files are only ever read with ``torch.load(weights_only=True)``: a file that needs code unpickled
is refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

import datafree
from datafree.checkpoint import load_tensors_file
from datafree.condense.run import protocol_record
from datafree.data.spec import DataSpec
from datafree.data.transfer import MANIFEST, TransferSet, TransferSetWriter
from datafree.errors import DatafreeError
from datafree.io import atomic_path, sha256_file, write_json

LAYOUTS = ("dc", "mtt")
SIDECAR_FORMAT = "datafree-interop/1"
MTT_IMAGES, MTT_LABELS, MTT_LR = "images_best.pt", "labels_best.pt", "lr_best.pt"
MTT_SIDECAR = "datafree.json"


def dc_sidecar(path: str | Path) -> Path:
    """``res_DM_X.pt`` → ``res_DM_X.datafree.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".datafree.json")


# ------------------------------------------------------------------ export
def export_set(set_dir: str | Path, out_path: str | Path, layout: str, *, overwrite: bool = False) -> Path:
    """Write the transfer set ``set_dir`` in ``layout`` ("dc" or "mtt") at ``out_path``; returns ``out_path``.

    Labels are exported as classes (int64); a set's teacher logits have no place in either
    layout and are left out (the sidecar says so). Every file is written atomically, and an
    existing export is replaced only with ``overwrite=True``.
    """
    if layout not in LAYOUTS:
        raise DatafreeError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    ts = TransferSet(set_dir)
    if len(ts) == 0:
        raise DatafreeError(f"{set_dir} is an empty transfer set; nothing to export")
    batch = ts.get_batch(torch.arange(len(ts)))
    images, labels = batch[0].float().contiguous(), batch[1].long().contiguous()
    manifest = ts.manifest
    out = Path(out_path)
    sidecar: dict[str, Any] = {
        "format": SIDECAR_FORMAT, "datafree_version": datafree.__version__, "layout": layout,
        "source": str(set_dir), "kind": manifest.get("kind"), "method": manifest.get("method"),
        "ipc": manifest.get("ipc"), "count": len(ts), "spec": ts.spec.to_dict(),
        "protocol": manifest.get("protocol") or protocol_record(ts.spec, ""),
        "label_type": "class (hard labels)", "soft_labels_dropped": ts.soft_labels,
    }
    syn_lr = manifest.get("syn_lr")

    if layout == "dc":
        if out.is_dir():
            raise DatafreeError(f"{out} is a directory; the dc layout is one .pt file")
        if out.exists() and not overwrite:
            raise DatafreeError(f"{out} exists; pass --overwrite to replace it or choose another path")
        with atomic_path(out) as tmp:
            torch.save({"data": [[images, labels]], "accs_all_exps": {}}, tmp)
            sidecar["sha256"] = {out.name: sha256_file(tmp)}
        write_json(dc_sidecar(out), sidecar)
        return out

    if out.exists() and not out.is_dir():
        raise DatafreeError(f"{out} exists and is not a directory; the mtt layout is a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatafreeError(f"{out} exists and is not empty; pass --overwrite to replace it or choose another path")
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, torch.Tensor] = {MTT_IMAGES: images, MTT_LABELS: labels}
    if syn_lr is not None:
        files[MTT_LR] = torch.tensor(float(syn_lr))
    else:
        (out / MTT_LR).unlink(missing_ok=True)  # a stale one from an overwritten export would be misread
    digests = {}
    for name, tensor in files.items():
        with atomic_path(out / name) as tmp:
            torch.save(tensor, tmp)
            digests[name] = sha256_file(tmp)
    sidecar["sha256"] = digests
    if syn_lr is not None:
        sidecar["syn_lr"] = float(syn_lr)
    write_json(out / MTT_SIDECAR, sidecar)
    return out


# ------------------------------------------------------------------ import
def _load_pt(path: Path) -> Any:
    """Tensors, lists and dicts only; pickled code is refused (one-line errors)."""
    return load_tensors_file(path, advice="; re-save its tensors with plain torch.save (tensors, lists and dicts only)")


def _tensor(obj: Any, what: str, path: Path) -> torch.Tensor:
    if not isinstance(obj, torch.Tensor):
        raise DatafreeError(f"{path}: {what} is a {type(obj).__name__}, not a tensor")
    return obj.detach().cpu()


def _read_dc(path: Path, exp: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    obj = _load_pt(path)
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, (list, tuple)) or not data:
        keys = ", ".join(map(str, list(obj)[:10])) if isinstance(obj, dict) else type(obj).__name__
        raise DatafreeError(f"{path} is not a DatasetCondensation result (expected a dict with a 'data' list; got {keys})")
    if not -len(data) <= exp < len(data):
        raise DatafreeError(f"{path} holds {len(data)} experiment(s); exp {exp} does not exist")
    pair = data[exp]
    if not isinstance(pair, (list, tuple)) or len(pair) < 2:
        raise DatafreeError(f"{path}: data[{exp}] is not an [images, labels] pair")
    return _tensor(pair[0], f"data[{exp}][0] (images)", path), _tensor(pair[1], f"data[{exp}][1] (labels)", path), \
        {"layout": "dc", "exp": exp, "experiments": len(data)}


def _mtt_dir(path: Path) -> Path | None:
    for d in (path, path / "Normal"):
        if (d / MTT_IMAGES).is_file() and (d / MTT_LABELS).is_file():
            return d
    return None


def _read_mtt(d: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    images = _tensor(_load_pt(d / MTT_IMAGES), "images", d / MTT_IMAGES)
    labels = _tensor(_load_pt(d / MTT_LABELS), "labels", d / MTT_LABELS)
    info: dict[str, Any] = {"layout": "mtt"}
    if (d / MTT_LR).is_file():
        lr = _load_pt(d / MTT_LR)  # a 0-dim tensor, or a float (syn_lr.item()) in some forks
        if isinstance(lr, torch.Tensor) and lr.numel() == 1:
            lr = lr.item()
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr):
            raise DatafreeError(f"{d / MTT_LR}: expected one finite learning rate, got {type(lr).__name__}")
        info["syn_lr"] = float(lr)
    return images, labels, info


def _read_sidecar(path: Path, files: dict[str, Path]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        side = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatafreeError(f"{path} is not valid JSON ({e}); restore it or delete it") from None
    if not isinstance(side, dict) or side.get("format") != SIDECAR_FORMAT:
        raise DatafreeError(f"{path}: not a datafree export sidecar (format {SIDECAR_FORMAT}); delete it or restore it")
    for name, digest in (side.get("sha256") or {}).items():
        f = files.get(name)
        if f is not None and f.is_file() and sha256_file(f) != digest:
            raise DatafreeError(f"{path} does not describe {f} (sha256 differs): the file was replaced after the export; "
                                "delete the stale sidecar if you know the file's input space")
    return side


def _same_space(a: DataSpec, b: DataSpec) -> bool:
    close = lambda x, y: len(x) == len(y) and all(math.isclose(u, v, rel_tol=1e-6, abs_tol=1e-9) for u, v in zip(x, y))
    return a.shape == b.shape and a.num_classes == b.num_classes and close(a.mean, b.mean) and close(a.std, b.std)


def _labels(labels: torch.Tensor, n: int, spec: DataSpec, where: str) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Class labels, soft labels to keep as logits (or None), and the manifest's label_type."""
    k = spec.num_classes
    if labels.dim() == 2:
        if labels.shape != (n, k) or not labels.is_floating_point():
            raise DatafreeError(f"{where}: soft labels of shape {tuple(labels.shape)} and dtype {labels.dtype}; "
                                f"expected float ({n}, {k}) for {n} images and {k} classes")
        soft = labels.float()
        if not torch.isfinite(soft).all():
            raise DatafreeError(f"{where}: soft labels contain NaN or inf")
        hard = soft.argmax(1)
        if torch.equal(soft, torch.nn.functional.one_hot(hard, k).float()):
            return hard, None, "class (hard labels; imported one-hot)"
        if (soft >= 0).all() and torch.allclose(soft.sum(1), torch.ones(n), atol=1e-3):
            # probabilities: their log is a logit vector with the same softmax, which is what the trainers expect
            return hard, soft.clamp_min(1e-12).log(), "class (argmax) + imported soft labels (probabilities stored as log)"
        return hard, soft, "class (argmax) + imported soft labels (logits)"
    if labels.dim() != 1 or len(labels) != n:
        raise DatafreeError(f"{where}: labels of shape {tuple(labels.shape)}; expected ({n},) or ({n}, {k}) for {n} images")
    if labels.is_floating_point():
        if not torch.isfinite(labels).all() or not torch.equal(labels, labels.round()):
            raise DatafreeError(f"{where}: float labels that are not class indices")
    elif labels.dtype == torch.bool or labels.is_complex():
        raise DatafreeError(f"{where}: labels of dtype {labels.dtype}; expected class indices")
    hard = labels.long()
    bad = (hard < 0) | (hard >= k)
    if bad.any():
        raise DatafreeError(f"{where}: {int(bad.sum())} label(s) outside [0, {k}) (e.g. {int(hard[bad][0])}); "
                            "wrong dataset or a differently numbered label space")
    return hard, None, "class (hard labels)"


def import_set(path: str | Path, out_dir: str | Path, *, spec: DataSpec, method: str = "imported", dataset: str = "",
               zca: bool = False, exp: int = 0) -> dict[str, Any]:
    """Read a ``dc`` result file or an ``mtt`` directory and write it as a condensed transfer set in ``out_dir``.

    ``spec`` is the input space the images live in (checked against the export sidecar when there
    is one); ``zca=True`` records that they are ZCA-whitened, which the protocol field makes
    visible to evaluation. ``exp`` picks one experiment of a dc file holding several. Returns the
    new set's manifest.
    """
    path, out = Path(path), Path(out_dir)
    if path.is_file():
        images, labels, info = _read_dc(path, exp)
        side = _read_sidecar(dc_sidecar(path), {path.name: path})
    elif path.is_dir():
        if (path / MANIFEST).is_file():
            raise DatafreeError(f"{path} is already a datafree transfer set; use it directly")
        d = _mtt_dir(path)
        if d is None:
            raise DatafreeError(f"{path} holds neither {MTT_IMAGES} + {MTT_LABELS} (mtt layout) nor is it a .pt file "
                                "(dc layout)")
        images, labels, info = _read_mtt(d)
        side = _read_sidecar(d / MTT_SIDECAR, {n: d / n for n in (MTT_IMAGES, MTT_LABELS, MTT_LR)})
    else:
        raise DatafreeError(f"{path} not found")
    where = str(path)

    if images.dim() != 4 or tuple(images.shape[1:]) != spec.shape or len(images) == 0:
        raise DatafreeError(f"{where}: images of shape {tuple(images.shape)}; expected (N, {', '.join(map(str, spec.shape))}) "
                            f"for {spec.name or 'this dataset'} — wrong --dataset?")
    if not images.is_floating_point():
        raise DatafreeError(f"{where}: images of dtype {images.dtype}; expected float images in the normalised input space")
    images = images.float()
    if not torch.isfinite(images).all():
        raise DatafreeError(f"{where}: images contain NaN or inf")
    n = len(images)
    hard, logits, label_type = _labels(labels, n, spec, where)

    protocol = protocol_record(spec, dataset)
    config: dict[str, Any] = {"source": str(path), **info}
    if side is not None:
        try:
            side_spec = DataSpec.from_dict(side["spec"])
        except KeyError:
            raise DatafreeError(f"sidecar of {path} has no spec; delete it or restore it") from None
        if not _same_space(side_spec, spec):
            raise DatafreeError(f"{path} was exported from {side_spec.name or 'a dataset'} with shape {side_spec.shape}, "
                                f"{side_spec.num_classes} classes, mean {list(side_spec.mean)}, std {list(side_spec.std)}; "
                                f"that is not the input space of {spec.name or 'the given spec'}")
        side_protocol = side.get("protocol") or {}
        zca = zca or bool(side_protocol.get("zca", False))
        protocol["dataset"] = dataset or side_protocol.get("dataset", "")
        config["source_method"] = side.get("method")
    protocol["zca"] = bool(zca)

    counts = torch.bincount(hard, minlength=spec.num_classes)
    ipc = int(counts[0]) if bool((counts == counts[0]).all()) else None
    soft = logits is not None
    header = {"kind": "condensed", "method": method, "config": config, "seed": None, "ipc": ipc, "teacher": None,
              "spec": spec.to_dict(), "protocol": protocol, "soft_labels": soft, "label_type": label_type}
    if (out / MANIFEST).is_file():
        raise DatafreeError(f"{out} already holds a transfer set; choose another --out")
    writer = TransferSetWriter(out, header)
    fields = {"syn_lr": info["syn_lr"]} if "syn_lr" in info else {}
    writer.replace(images, hard, logits, **fields)
    return writer.manifest
