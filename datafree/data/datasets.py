"""Dataset loaders: Fashion-MNIST, MNIST, CIFAR-10/100 and ImageFolder, read from disk only.

Small datasets are held in memory as uint8 tensors (:class:`TensorImageDataset`) and
normalised per batch, so a whole batch is one indexing operation instead of a Python loop
over images. Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datafree.data.spec import KNOWN_SPECS, DataSpec
from datafree.errors import DatafreeError

SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = {
    "fashion-mnist": "install it with 'apt-get install -y dataset-fashion-mnist' "
    "or pass --data-root DIR holding the four idx files",
    "mnist": "pass --data-root DIR holding MNIST's four idx files (train-images-idx3-ubyte[.gz], ...)",
    "cifar10": "pass --data-root DIR holding torchvision's 'cifar-10-batches-py' folder",
    "cifar100": "pass --data-root DIR holding torchvision's 'cifar-100-python' folder",
}


class TensorImageDataset(Dataset):
    """Images as uint8 ``(N, C, H, W)`` plus int64 labels; yields normalised float images.

    ``get_batch`` returns a whole batch with one gather, which the trainer uses instead of a
    per-sample ``DataLoader`` when it is available.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, spec: DataSpec) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DatafreeError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if tuple(images.shape[1:]) != spec.shape:
            raise DatafreeError(f"images have shape {tuple(images.shape[1:])}, spec expects {spec.shape}")
        if len(images) != len(labels):
            raise DatafreeError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()
        self.spec = spec

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index].float().div_(255.0)
        return self.spec.normalize(x), self.labels[index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.get_batch(torch.tensor([i]))
        return x[0], y[0]


class NormalizedTensorDataset(Dataset):
    """Float images already in the model's (normalised) input space, with labels and optional logits.

    For small synthetic or condensed sets held in memory; ``get_batch`` gathers a whole batch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, spec: DataSpec,
                 logits: torch.Tensor | None = None) -> None:
        if images.dim() != 4 or tuple(images.shape[1:]) != spec.shape:
            raise DatafreeError(f"images have shape {tuple(images.shape)}, spec expects (N, {', '.join(map(str, spec.shape))})")
        if len(images) != len(labels) or (logits is not None and len(logits) != len(images)):
            raise DatafreeError(f"{len(images)} images but {len(labels)} labels"
                                + ("" if logits is None else f" and {len(logits)} logits"))
        self.images, self.labels, self.logits, self.spec = images.float(), labels.long(), logits, spec

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.logits is None:
            return self.images[index], self.labels[index]
        return self.images[index], self.labels[index], self.logits[index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.get_batch(torch.tensor([i])))


# ---------------------------------------------------------------- idx (MNIST family)
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatafreeError(f"cannot read {path}: {e} (file corrupted or truncated?)") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DatafreeError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DatafreeError(f"{path}: header says {expected} bytes of data, file has {len(data) - offset} (truncated?)")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_dirs(name: str, root: Path) -> list[Path]:
    tv_name = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}[name]
    return [root, root / name, root / tv_name / "raw", root / tv_name]


def load_idx_dataset(name: str, split: str, roots: list[Path]) -> TensorImageDataset:
    """Load an MNIST-family split from the first of ``roots`` that holds its idx files."""
    spec = KNOWN_SPECS[name]
    prefix = "train" if split == "train" else "t10k"
    for root in roots:
        for d in _idx_dirs(name, root):
            img = _find_idx(d, f"{prefix}-images-idx3-ubyte")
            lab = _find_idx(d, f"{prefix}-labels-idx1-ubyte")
            if img and lab:
                images = torch.from_numpy(_read_idx(img).copy()).unsqueeze(1)
                labels = torch.from_numpy(_read_idx(lab).astype(np.int64))
                return TensorImageDataset(images, labels, spec)
    looked = ", ".join(str(r) for r in roots) or "(nowhere)"
    raise DatafreeError(f"{name} {split} split not found in {looked}; {INSTALL_HINT[name]}")


# ---------------------------------------------------------------- CIFAR (torchvision layout)
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches, refusing every global but numpy's array constructors."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise DatafreeError(f"refusing to unpickle {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            entry = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except DatafreeError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DatafreeError(f"cannot read CIFAR batch {path}: {e}") from None
    if not isinstance(entry, dict) or "data" not in entry:
        raise DatafreeError(f"{path} is not a CIFAR batch (no 'data' entry)")
    return entry


def load_cifar(name: str, split: str, roots: list[Path]) -> TensorImageDataset:
    """Load CIFAR-10/100 from torchvision's python-pickle layout (data only, no code)."""
    folder, spec = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name], KNOWN_SPECS[name]
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = "labels"
    else:
        files = ["train"] if split == "train" else ["test"]
        label_key = "fine_labels"
    for root in roots:
        d = root / folder if (root / folder).is_dir() else root
        if all((d / f).is_file() for f in files):
            entries = [_read_cifar_batch(d / f) for f in files]
            data = np.concatenate([np.asarray(e["data"], dtype=np.uint8) for e in entries])
            labels = np.concatenate([np.asarray(e[label_key], dtype=np.int64) for e in entries])
            images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
            meta_name = "batches.meta" if name == "cifar10" else "meta"
            if (d / meta_name).is_file():
                meta = _read_cifar_batch_meta(d / meta_name)
                names = meta.get("label_names") or meta.get("fine_label_names")
                if names and len(names) == spec.num_classes:
                    spec = dataclasses.replace(spec, class_names=tuple(names))
            return TensorImageDataset(images, torch.from_numpy(labels), spec)
    looked = ", ".join(str(r) for r in roots) or "(nowhere)"
    raise DatafreeError(f"{name} {split} split not found in {looked}; {INSTALL_HINT[name]}")


def _read_cifar_batch_meta(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            meta = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        return meta if isinstance(meta, dict) else {}
    except Exception:  # noqa: BLE001 - class names are optional
        return {}


# ---------------------------------------------------------------- ImageFolder
class ImageFolderDataset(Dataset):
    """torchvision ``ImageFolder`` resized to ``spec``'s shape and normalised with its stats."""

    def __init__(self, root: Path, spec: DataSpec) -> None:
        from torchvision import datasets, transforms

        tfs = [transforms.Resize((spec.height, spec.width))]
        tfs.append(transforms.Grayscale(1) if spec.channels == 1 else transforms.Lambda(lambda im: im.convert("RGB")))
        tfs += [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
        self.folder = datasets.ImageFolder(str(root), transform=transforms.Compose(tfs))
        if len(self.folder.classes) != spec.num_classes:
            raise DatafreeError(
                f"{root} has {len(self.folder.classes)} class folders, the spec expects {spec.num_classes}"
            )
        self.spec = spec

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.folder[i]


def image_folder_spec(root: Path, channels: int = 3, size: int = 32) -> DataSpec:
    """A DataSpec for an ImageFolder tree: classes from sub-folders, mean/std 0.5."""
    if not root.is_dir():
        raise DatafreeError(f"image folder {root} does not exist; imagefolder needs --data-root DIR with "
                            "DIR/train/CLASS/*.png and DIR/test/CLASS/*.png")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DatafreeError(f"{root} has no class sub-folders (expected ROOT/CLASS/IMAGE.png)")
    return DataSpec(channels, size, size, len(classes), (0.5,) * channels, (0.5,) * channels, tuple(classes), root.name)


# ---------------------------------------------------------------- entry point
DATASETS = ("fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder")


def data_roots(data_root: str | os.PathLike | None, name: str) -> list[Path]:
    """Where to look, in order: ``--data-root``, ``$DATAFREE_DATA``, then the system copy."""
    roots = [Path(p) for p in (data_root, os.environ.get("DATAFREE_DATA")) if p]
    if name == "fashion-mnist":
        roots.append(SYSTEM_FASHION_MNIST)
    return roots


def load_dataset(
    name: str,
    split: str = "train",
    data_root: str | os.PathLike | None = None,
    *,
    image_size: int = 32,
    channels: int = 3,
) -> Dataset:
    """Load ``split`` ('train' or 'test') of a dataset by name. See :data:`DATASETS`."""
    if split not in ("train", "test"):
        raise DatafreeError(f"unknown split {split!r}; use 'train' or 'test'")
    if name in ("fashion-mnist", "mnist"):
        return load_idx_dataset(name, split, data_roots(data_root, name))
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, split, data_roots(data_root, name))
    if name == "imagefolder":
        if data_root is None:
            raise DatafreeError("imagefolder needs --data-root DIR with DIR/train/CLASS/*.png and DIR/test/CLASS/*.png")
        root = Path(data_root) / split
        return ImageFolderDataset(root, image_folder_spec(root, channels, image_size))
    raise DatafreeError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def dataset_spec(dataset: Dataset) -> DataSpec:
    """The DataSpec a dataset carries (every loader here sets ``.spec``)."""
    spec = getattr(dataset, "spec", None)
    if spec is None:
        raise DatafreeError(f"{type(dataset).__name__} has no .spec; wrap it or pass a DataSpec")
    return spec
