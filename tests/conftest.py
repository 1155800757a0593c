"""Shared fixtures: tiny datasets written to disk in each supported format (nothing downloaded)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch


def make_images(n: int, num_classes: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable uint8 images: each class lights up its own horizontal band, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, *shape), dtype=np.uint8)
    h = shape[-2]
    band = max(1, h // num_classes)
    for c in range(num_classes):
        rows = slice(c * band, (c + 1) * band)
        images[labels == c, ..., rows, :] = 230
    return images, labels.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist_family(root: Path, n_train: int = 256, n_test: int = 128, compress: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = make_images(n, 10, (28, 28), seed)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return root


@pytest.fixture
def fmnist_root(tmp_path: Path) -> Path:
    """A tiny Fashion-MNIST in the Debian/idx layout."""
    return write_mnist_family(tmp_path / "fmnist")


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    d = tmp_path / "cifar" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels = make_images(20, 10, (3, 32, 32), i)
        with open(d / name, "wb") as f:
            pickle.dump({"data": images.reshape(20, -1), "labels": labels.astype(int).tolist()}, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return tmp_path / "cifar"


@pytest.fixture(autouse=True)
def _no_env_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's $DATAFREE_DATA."""
    monkeypatch.delenv("DATAFREE_DATA", raising=False)
    torch.set_num_threads(min(2, torch.get_num_threads()))
