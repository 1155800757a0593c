"""CIFAR recipes on one GPU (the literature's pairs and published budgets), shared by the cifar10 and cifar100 suites."""

from __future__ import annotations

from typing import Any

from datafree.bench.suites.base import COND_IPCS, COND_METHODS_ALL, DF_PRESETS_ALL, Recipes, Suite, cond_sources, make_pairs

CIFAR_TRAIN = ("--epochs", "200", "--batch-size", "128", "--lr", "0.1", "--schedule", "step", "--augment", "crop-flip")
CIFAR_PAIRS: dict[str, dict[str, Any]] = {
    "resnet34-resnet18": dict(name="ResNet-34 -> ResNet-18", teacher="resnet34", student="resnet18",
                              teacher_args=CIFAR_TRAIN, student_args=CIFAR_TRAIN),
    "wrn40_2-wrn16_1": dict(name="WRN-40-2 -> WRN-16-1", teacher="wrn_40_2", student="wrn_16_1",
                            teacher_args=CIFAR_TRAIN, student_args=CIFAR_TRAIN),
}
CIFAR_DF_SCALE: dict[str, Any] = {}  # the presets' own generator width and batch sizes
CIFAR_DF_METHOD_SCALE: dict[str, dict[str, Any]] = {"deepinversion": {"iterations": 2000}, "zskd": {"iterations": 1500}}
CIFAR_DF_LIVE_STUDENT = ("--epochs", "200", "--steps-per-epoch", "400", "--batch-size", "256", "--alpha", "0")
CIFAR_DF_LIVE_LR = {"resnet34-resnet18": "0.1", "wrn40_2-wrn16_1": "0.1"}
CIFAR_DF_COUNT = 51200
CIFAR_DF_STORED_STUDENT = ("--epochs", "200", "--batch-size", "256", "--alpha", "0", "--lr", "0.1", "--schedule", "step",
                           "--augment", "crop-flip", "--clip-grad-norm", "5", "--temperature", "20")
CIFAR_COND: dict[str, dict[str, Any]] = {m: {} for m in COND_METHODS_ALL}  # the published iteration counts (DEFAULTS)
CIFAR_BUFFER = ("--experts", "10", "--epochs", "50")
CIFAR_COND_STUDENT = ("--epochs", "1000", "--batch-size", "256", "--lr", "0.01", "--schedule", "step", "--augment", "dsa")
CIFAR_SOURCES = ["kd", "scratch", *(f"df:{p}" for p in DF_PRESETS_ALL), *cond_sources(COND_METHODS_ALL, COND_IPCS)]
_CIFAR_DESCRIPTION = (
    "{dataset}, ResNet-34 -> ResNet-18 and WRN-40-2 -> WRN-16-1, seeds 0 1 2, GPU-scale: teachers and students "
    "200 epochs (SGD 0.1, batch 128, lr x0.1 at 50% and 75%, crop+flip), every data-free preset (live students "
    "200 x 400 steps; stored sets of 51200 images), every condensation method at IPC 1/10/50 with the published "
    "iteration counts, hard and soft labels (students 1000 epochs with DSA). Weeks of GPU time in all; take slices with "
    "--seeds or a custom suite.")
CIFAR_RECIPES = Recipes(df_scale=CIFAR_DF_SCALE, df_method_scale=CIFAR_DF_METHOD_SCALE,
                        df_live_student=CIFAR_DF_LIVE_STUDENT, df_count=CIFAR_DF_COUNT,
                        df_stored_student=CIFAR_DF_STORED_STUDENT, cond=CIFAR_COND, cond_student=CIFAR_COND_STUDENT,
                        buffer=CIFAR_BUFFER, checkpoint_every=100)


def cifar_suite(name: str, dataset: str, title: str) -> Suite:
    return Suite(name=name, dataset=dataset, pairs=make_pairs(CIFAR_PAIRS, CIFAR_DF_LIVE_LR), sources=CIFAR_SOURCES,
                 seeds=[0, 1, 2], recipes=CIFAR_RECIPES, description=_CIFAR_DESCRIPTION.format(dataset=title))
