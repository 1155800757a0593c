"""Batches from any source: a Dataset, an in-memory dataset, or an iterator of batches.

In-memory datasets (anything with ``get_batch(index)``) are batched with one gather per batch;
other datasets go through a ``DataLoader``. Shuffling always draws from an explicit
``torch.Generator`` so an epoch's order is a function of (seed, epoch) and resumes exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from datafree.errors import DatafreeError

Batch = tuple[torch.Tensor, ...]


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one (seed, epoch, stream): batch order is stream 0, augmentation 1.

    Deriving it from the epoch index, instead of carrying one generator along, is what makes
    a resumed run draw exactly what the uninterrupted run would have drawn.
    """
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 8 + stream)


def iterate_batches(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    weights: torch.Tensor | None = None,
) -> Iterator[Batch]:
    """Yield tuples of batched tensors (x, y[, soft]) from ``dataset``.

    With ``weights`` (one per sample, e.g. :func:`class_balance_weights`) and ``shuffle``, the order is ``len(dataset)``
    draws with replacement in proportion to them, from ``generator``, instead of a permutation.

    With ``world_size > 1`` each rank sees a disjoint, equally sized slice of the order (the same
    ``generator`` on every rank): rank ``r`` takes positions ``r, r + W, r + 2W, ...`` of it, as
    ``DistributedSampler`` does, so batch ``i`` of all ranks together is exactly batch ``i`` of one
    process with a ``W`` times larger batch size. The last ``n % W`` positions are left out.
    """
    n = len(dataset)
    if weights is not None and (not shuffle or len(weights) != n):
        raise DatafreeError(f"weighted draws need shuffle=True and one weight per sample ({len(weights)} for {n})")
    in_memory = hasattr(dataset, "get_batch")
    if in_memory or weights is not None:  # an explicit order
        if weights is not None:
            order = torch.multinomial(weights.double(), n, replacement=True, generator=generator)
        else:
            order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if world_size > 1:
            per_rank = n // world_size
            order = order[: per_rank * world_size][rank::world_size]
        if not in_memory:  # a plain Dataset reads the drawn order through a DataLoader
            loader = DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), drop_last=drop_last,
                                num_workers=num_workers)
            yield from (tuple(batch) for batch in loader)
            return
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield tuple(dataset.get_batch(order[start:start + batch_size]))
        return
    sampler = None
    if world_size > 1:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None else 0
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=shuffle, seed=seed, drop_last=True)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        generator=generator if sampler is None else None,
        drop_last=drop_last,
        num_workers=num_workers,
    )
    for batch in loader:
        yield tuple(batch)


def dataset_labels(dataset: Dataset, chunk: int = 4096) -> torch.Tensor:
    """Every sample's (hard) label, in order: from ``labels`` where the dataset keeps them, else read in chunks."""
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, torch.Tensor) and len(labels) == len(dataset):
        return labels.long()
    chunks = [batch[1].long() for batch in iterate_batches(dataset, chunk)]
    return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long)


def class_balance_weights(dataset: Dataset) -> torch.Tensor:
    """One weight per sample, 1 / (samples of its label): drawn in proportion to these, every class present comes
    up equally often. A synthetic set's labels are the teacher's reading of its images, which need not be balanced
    even when the synthesis asked for balanced classes."""
    labels = dataset_labels(dataset)
    if not len(labels):
        raise DatafreeError("class-balanced draws need a dataset with samples")
    return 1.0 / torch.bincount(labels).double()[labels]


def num_batches(dataset: Dataset, batch_size: int, drop_last: bool = False, world_size: int = 1) -> int:
    n = len(dataset) // world_size if world_size > 1 else len(dataset)
    return n // batch_size if drop_last else -(-n // batch_size)


def as_batches(source: Dataset | Iterable[Batch], batch_size: int, **kwargs) -> Iterator[Batch]:
    """Batches from a Dataset (via :func:`iterate_batches`) or from an iterable of batches."""
    if isinstance(source, Dataset):
        return iterate_batches(source, batch_size, **kwargs)
    return iter(source)
