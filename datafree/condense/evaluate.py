"""The evaluation protocol of condensed sets: train fresh networks on the set, test on real data.

``dc`` is the reference protocol of the DatasetCondensation code (``evaluate_synset``): a
freshly initialised ConvNet-3 (width 128, instance norm) per model, SGD lr 0.01 with plain
momentum 0.9, weight decay 5e-4, batch 256, lr x0.1 at half; 1000 epochs with DSA augmentation
(300 without); the **last** epoch's test accuracy; mean and std over ``models`` networks.
``kd`` trains the same way on the teacher's soft labels through the shared trainer
(``alpha=0``, temperature ``T``), the live teacher seeing the augmented images.
The protocol is returned with the result, so a number never travels without its recipe.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from datafree.condense.metrics import fair_metrics
from datafree.condense.real import ClassPool, dataset_tensors
from datafree.condense.relabel import CropLabels
from datafree.data.datasets import NormalizedTensorDataset
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.models import build_model
from datafree.train import TrainConfig, Trainer, evaluate, peak_memory_mb

PROTOCOLS = ("dc", "kd")


@dataclass
class EvalProtocol:
    name: str = "dc"  # dc (hard labels) | kd (teacher soft labels)
    arch: str = "convnet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    models: int = 5
    augment: str = "dsa"  # dsa | none | crop | crop-flip
    epochs: int = 0  # 0 = the reference: 1000 with DSA augmentation, 300 without
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    temperature: float = 4.0  # kd only
    seed: int = 0  # model i is initialised and trained with seed + i
    # kd only: train on the set's stored FKD crop labels (the stored crops replace the augmentation;
    # targets from the stored top-k logits, or from the live teacher on the same crops if one is given)
    crop_labels: bool = False
    # bfloat16 autocast for the training steps (the trainer's ``bf16``; testing stays float32). Opt-in: part of
    # the recorded protocol, since it can move the accuracy (docs/condensation.md, "bfloat16 evaluation")
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise DatafreeError(f"unknown evaluation protocol {self.name!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.models < 1:
            raise DatafreeError("evaluate at least one model")
        if self.crop_labels and (self.name != "kd" or self.augment != "none"):
            raise DatafreeError("crop labels are the kd protocol's targets and the stored crops its augmentation: "
                                "use --protocol kd --augment none")
        if self.epochs == 0:
            self.epochs = 1000 if self.augment == "dsa" else 300

    def train_config(self, seed: int, device: str, steps_per_epoch: int | None = None) -> TrainConfig:
        kd = self.name == "kd"
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer="sgd", lr=self.lr,
                           momentum=self.momentum, nesterov=False, weight_decay=self.weight_decay, schedule="step",
                           milestones=(0.5,), gamma=0.1, alpha=0.0 if kd else 1.0, temperature=self.temperature,
                           augment=self.augment, seed=seed, device=device, progress=False,
                           steps_per_epoch=steps_per_epoch, bf16=self.bf16)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_set(train: Dataset, spec: DataSpec, test: Dataset, protocol: EvalProtocol, *,
                 teacher: nn.Module | None = None, device: str = "cpu", progress: bool = True,
                 done: Sequence[tuple[float, float]] = (),
                 on_model: Callable[[dict[str, Any]], None] | None = None,
                 crop_labels: CropLabels | None = None) -> dict[str, Any]:
    """Train ``protocol.models`` fresh networks on ``train`` and test each on ``test`` (last epoch).

    ``done`` holds (accuracy, seconds) of models 0..k-1 from an earlier call with the same protocol:
    they are kept and training starts at model k (model i always uses seed + i, so extending 3
    models to 5 gives the same numbers as 5 at once). ``on_model`` gets the partial result after
    every model, so a long evaluation can be saved as it goes.
    """
    if protocol.name == "kd" and teacher is None and not getattr(train, "soft_labels", False) and crop_labels is None:
        raise DatafreeError("the kd protocol needs --teacher or a set with teacher logits")
    if protocol.crop_labels and crop_labels is None:
        raise DatafreeError("this set has no stored crop labels (make them with condense --method teacher)")
    if protocol.crop_labels and protocol.epochs > crop_labels.epochs:  # type: ignore[union-attr]
        raise DatafreeError(f"the set stores crop labels for {crop_labels.epochs} epochs, "  # type: ignore[union-attr]
                            f"fewer than the {protocol.epochs} asked for")
    images, labels = dataset_tensors(train) if protocol.crop_labels else (None, None)
    if len(done) > protocol.models:
        raise DatafreeError(f"{len(done)} models are already evaluated, more than the {protocol.models} asked for")
    accuracies, times = [a for a, _ in done], [t for _, t in done]
    bar = tqdm(range(len(done), protocol.models), desc=f"evaluate ({protocol.name}, {protocol.arch})", unit="model",
               disable=not progress, dynamic_ncols=True)
    peak = 0.0
    for i in bar:
        seed = protocol.seed + i
        model = build_model(protocol.arch, spec, seed=seed, **protocol.arch_kwargs)
        source: Any = train
        steps = None
        if images is not None:  # the stored crops, epoch by epoch, with their logits
            source = crop_labels.batches(images, labels, protocol.batch_size, seed)  # type: ignore[union-attr,arg-type]
            steps = -(-len(images) // protocol.batch_size)
        trainer = Trainer(model, protocol.train_config(seed, device, steps), spec=spec,
                          teacher=teacher if protocol.name == "kd" else None)
        t0 = time.perf_counter()
        try:
            trainer.fit(source)
        finally:
            trainer.close()
        times.append(time.perf_counter() - t0)
        accuracies.append(evaluate(model, test, device=device)["accuracy"])
        peak = peak_memory_mb(torch.device(device))
        bar.set_postfix(acc=f"{accuracies[-1]:.2f}")
        if on_model is not None and len(accuracies) < protocol.models:
            on_model(_result(accuracies, times, peak, train, protocol))
    return _result(accuracies, times, peak, train, protocol)


def _result(accuracies: list[float], times: list[float], peak: float, train: Dataset,
            protocol: EvalProtocol) -> dict[str, Any]:
    return {
        "accuracy_mean": statistics.fmean(accuracies),
        "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
        "accuracies": accuracies,
        "train_times_s": times,
        "train_time_s_per_model": statistics.fmean(times),
        "peak_memory_mb": peak,
        "images": len(train),  # type: ignore[arg-type]
        "models_done": len(accuracies),
        "complete": len(accuracies) == protocol.models,
        "protocol": protocol.to_dict(),
    }


def random_control(pool: ClassPool, ipc: int, seed: int) -> NormalizedTensorDataset:
    """``ipc`` random real images per class (seeded): the set every condensed set must beat (IOR)."""
    images = pool.sample(ipc, torch.Generator().manual_seed(seed))
    c = pool.spec.num_classes
    return NormalizedTensorDataset(images.reshape(c * ipc, *pool.spec.shape), torch.arange(c).repeat_interleave(ipc),
                                   pool.spec)


def evaluate_fair(train: Dataset, spec: DataSpec, test: Dataset, protocol: EvalProtocol, result: dict[str, Any], *,
                  pool: ClassPool, ipc: int, real_hard: float | None = None, teacher: nn.Module | None = None,
                  device: str = "cpu", progress: bool = True,
                  relabel_control: Callable[[torch.Tensor], CropLabels] | None = None) -> dict[str, Any]:
    """DD-Ranking's HLR, IOR and DDRS for ``train``, whose ``protocol`` evaluation is ``result``.

    Runs, with the same seeds: a random real subset of ``ipc`` per class (seed ``protocol.seed``)
    under ``protocol`` (IOR), and, when ``protocol`` is not already hard-label, ``train`` under
    hard labels with the same network, augmentation and epochs (HLR, only given ``real_hard``). Under
    crop labels the random subset gets its own, from ``relabel_control`` (the set's relabelling recipe).
    """
    if protocol.name == "kd" and teacher is None and relabel_control is None:
        raise DatafreeError("the random-subset control of the kd protocol needs --teacher (it has no stored logits)")
    subset = random_control(pool, ipc, protocol.seed)
    if protocol.crop_labels and relabel_control is None:
        raise DatafreeError("the random-subset control of crop labels needs the set's relabelling recipe")
    control_labels = relabel_control(subset.images) if protocol.crop_labels else None  # type: ignore[misc]
    control = evaluate_set(subset, spec, test, protocol, teacher=teacher, device=device, progress=progress,
                           crop_labels=control_labels)
    hard = None  # without the real-data accuracy HLR is undefined: skip its evaluation
    if real_hard is not None:
        hard = result if protocol.name == "dc" else evaluate_set(train, spec, test,
                                                                 replace(protocol, name="dc", crop_labels=False),
                                                                 device=device, progress=progress)
    metrics = fair_metrics(syn_any=result["accuracies"], random_any=control["accuracies"],
                           syn_hard=None if hard is None else hard["accuracies"], real_hard=real_hard)
    hard_record = None if hard is None else {k: hard[k] for k in ("accuracies", "accuracy_mean", "accuracy_std",
                                                                    "protocol")}
    return {**metrics, "random_control": control, "hard_labels": hard_record, "random_ipc": ipc,
            "random_seed": protocol.seed}
