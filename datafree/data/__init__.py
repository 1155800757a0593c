"""Data: the DataSpec, dataset loaders, batching and augmentation."""

from datafree.data.augment import DSA, RandomCropFlip
from datafree.data.datasets import (
    DATASETS,
    ImageFolderDataset,
    NormalizedTensorDataset,
    TensorImageDataset,
    dataset_spec,
    load_dataset,
)
from datafree.data.loader import class_balance_weights, epoch_generator, iterate_batches, num_batches
from datafree.data.spec import CIFAR10, CIFAR100, FASHION_MNIST, KNOWN_SPECS, MNIST, DataSpec, check_compatible

__all__ = [
    "CIFAR10", "CIFAR100", "DATASETS", "DSA", "FASHION_MNIST", "KNOWN_SPECS", "MNIST", "DataSpec", "ImageFolderDataset",
    "NormalizedTensorDataset", "RandomCropFlip", "TensorImageDataset", "check_compatible", "class_balance_weights",
    "dataset_spec",
    "epoch_generator", "iterate_batches", "load_dataset", "num_batches",
]
