"""Every method and IPC with 3 seeds, at budgets this 2-core machine finishes in a few hours."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from datafree.bench.suites.base import (
    COND_IPCS,
    COND_METHODS_ALL,
    DF_PRESETS_ALL,
    SYNTHESIS,
    Suite,
    cond_sources,
    make_pairs,
)
from datafree.bench.suites.fmnist import (
    FMNIST_DF_LIVE_LR,
    FMNIST_DF_STORED_STUDENT_CHEAP,
    FMNIST_DF_ZSKD_CHEAP,
    FMNIST_PAIRS,
    FMNIST_RECIPES,
    FULL_CPU_NET,
)

# Every method at every IPC with 3 seeds, at budgets that finish in a few hours on 2 cores (one
# process per pair): the students and iteration counts are cut, not the grid. BN-statistics methods
# run on the ResNet pair (the LeNet teacher has no BatchNorm), everything else on the LeNet pair.
BN_PRESETS = tuple(name for name, m in SYNTHESIS.items() if m.needs_batchnorm)
FULL_CPU_COND: dict[str, dict[str, Any]] = {
    "random": {},
    "herding": {},
    "dm": {"batch_real": 64, "iterations": 100, "net_kwargs": FULL_CPU_NET},
    "dc": {"batch_real": 64, "net_kwargs": FULL_CPU_NET},
    "dsa": {"batch_real": 64, "net_kwargs": FULL_CPU_NET},
    "mtt": {"net_kwargs": FULL_CPU_NET},
    "teacher": {"iterations": 100},
}
# DC/DSA update the images outer_loop times per iteration (1/10/50 at IPC 1/10/50) and MTT unrolls
# over the whole set, so their cost grows with IPC: fewer iterations at larger IPC
FULL_CPU_COND_BY_IPC: dict[str, dict[int, dict[str, Any]]] = {
    "dc": {1: {"iterations": 50}, 10: {"iterations": 5}, 50: {"iterations": 1}},
    "dsa": {1: {"iterations": 50}, 10: {"iterations": 5}, 50: {"iterations": 1}},
    "mtt": {1: {"iterations": 50}, 10: {"iterations": 20}, 50: {"iterations": 10}},
}
FULL_CPU_BUFFER = ("--experts", "2", "--epochs", "4", "--net-kwargs", '{"width": 32}')
FULL_CPU_PAIRS = {
    "lenet": {**FMNIST_PAIRS["lenet"],
              "sources": ("kd", "scratch", *(f"df:{p}" for p in DF_PRESETS_ALL if p not in BN_PRESETS),
                          *cond_sources(tuple(m for m in COND_METHODS_ALL if m != "teacher"), COND_IPCS))},
    "resnet": {**FMNIST_PAIRS["resnet"],
               "student_args": ("--epochs", "3", "--lr", "0.05", "--augment", "crop-flip"),
               "sources": ("kd", "scratch", *(f"df:{p}" for p in BN_PRESETS), *cond_sources(("teacher",), COND_IPCS))},
}
SUITE = Suite(
    name="full", dataset="fashion-mnist",
    pairs=make_pairs(FULL_CPU_PAIRS, FMNIST_DF_LIVE_LR),
    sources=["kd", "scratch", *(f"df:{p}" for p in DF_PRESETS_ALL), *cond_sources(COND_METHODS_ALL, COND_IPCS)],
    seeds=[0, 1, 2],
    recipes=replace(
        FMNIST_RECIPES,
        df_method_scale={"zskd": FMNIST_DF_ZSKD_CHEAP, "deepinversion": {"iterations": 50},
                         "adi": {"iterations": 50}, "cmi": {"iterations": 50}},
        df_stored_student=FMNIST_DF_STORED_STUDENT_CHEAP,
        df_live_student=("--epochs", "5", "--steps-per-epoch", "50", "--batch-size", "128", "--alpha", "0"),
        df_count=2560, cond=FULL_CPU_COND, cond_by_ipc=FULL_CPU_COND_BY_IPC, buffer=FULL_CPU_BUFFER,
        # batch 32, not the condensation protocol's 256 (why: docs/benchmarks.md, "Recipe notes")
        cond_student=("--epochs", "150", "--batch-size", "32", "--lr", "0.01", "--schedule", "step",
                      "--eval-every", "50")),
    description=(
        "Fashion-MNIST, every data-free preset and every condensation method at IPC 1/10/50 (hard and soft "
        "labels), seeds 0 1 2, at CPU budgets. LeNet-5 -> LeNet-5-half: real-data KD, scratch, the presets "
        "without BN statistics, and the condensation methods (ConvNet-32 condensation networks; dm 100 "
        "iterations, dc/dsa 50/5/1 and mtt 50/20/10 at IPC 1/10/50; MTT buffer 2 experts x 4 epochs). "
        "ResNet-14 -> ResNet-8 (width 8), students 3 epochs: KD, scratch, the BN-statistics presets (live "
        "students 250 steps, 50 synthesis iterations per batch, 2560 stored images) and teacher-only "
        "condensation (100 iterations). Condensed-set students: 150 epochs, batch 32, tested every 50. Run one process "
        "per pair: 'datafree bench run full --pairs lenet' and '--pairs resnet' with the same --out."),
)
