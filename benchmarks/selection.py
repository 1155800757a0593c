"""The selection split: where benchmarks choose between recipes, so the test split is only ever reported.

A fixed, seeded draw of 10,000 images from Fashion-MNIST's *training* split. A data-free student never
trains on them (it never sees a real image), so its accuracy there is an unbiased estimate for choosing
between data-free recipes; the test split stays untouched by every choice. The teacher did train on
them, so the numbers run a little above test accuracy, the same for every recipe. Students that
trained on real training images (real-data KD, the random-real controls) are not comparable here.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from datafree.api import evaluate, load_dataset
from datafree.checkpoint import load_model

SELECTION_SEED = 17
SELECTION_SIZE = 10_000


@functools.cache
def selection_split(dataset: str = "fashion-mnist") -> Dataset:
    """The seeded selection subset of ``dataset``'s training split (the same images on every machine)."""
    train = load_dataset(dataset, "train")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SELECTION_SEED))
    return Subset(train, order[:SELECTION_SIZE].tolist())


def selection_accuracy(run_dir: Path, dataset: str = "fashion-mnist") -> float | None:
    """Top-1 accuracy (%) of the model saved in ``run_dir`` on the selection split (None: no model there)."""
    if not (Path(run_dir) / "model.safetensors").is_file():
        return None
    model, _ = load_model(run_dir)
    return evaluate(model.eval(), selection_split(dataset)).accuracy
