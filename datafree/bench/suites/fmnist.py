"""Fashion-MNIST recipes on 2 CPU cores, shared by the quick and full suites and the scripts in benchmarks/."""

from __future__ import annotations

from typing import Any

from datafree.bench.suites.base import (
    CONDENSATION,
    FMNIST_BUFFER,
    FMNIST_COND_STUDENT,
    FMNIST_DF_COUNT,
    FMNIST_DF_GROWN_STUDENT,
    FMNIST_DF_LIVE_STUDENT,
    FMNIST_DF_STORED_STUDENT,
    FMNIST_DF_STORED_TRAIN,
    SYNTHESIS,
    Recipes,
)

# the teacher/student pairs of benchmarks/baselines.py (teacher seed 0)
FMNIST_PAIRS: dict[str, dict[str, Any]] = {
    "lenet": dict(
        name="LeNet-5 -> LeNet-5-half", teacher="lenet5", student="lenet5_half",
        teacher_args=("--epochs", "20", "--lr", "0.05"),
        student_args=("--epochs", "20", "--lr", "0.05"),
        # T^2-scaled KD gradients at lr 0.05 kill LeNet-5-half's ReLUs (10% accuracy); 0.01 is stable
        kd_args=("--alpha", "0.1", "--temperature", "4", "--lr", "0.01"),
    ),
    "resnet": dict(
        name="ResNet-14 -> ResNet-8 (width 8)", teacher="resnet14", student="resnet8",
        teacher_args=("--epochs", "10", "--lr", "0.1", "--augment", "crop-flip"),
        student_args=("--epochs", "10", "--lr", "0.05", "--augment", "crop-flip"),
        student_kwargs={"width": 8},
    ),
}
# BatchNorm teachers of two other families for benchmarks/datafree_families (issue 17's "no tuning per teacher"): the
# ResNet pair's student, teacher recipe and KD recipe, unchanged. WRN-16-1 (pre-activation: BN before each conv, one
# after the last block) costs what ResNet-14 costs on 2 CPU cores; WRN-16-2 costs 3x (0.69 s against 0.22 s a
# training step of 128 images) and would not fit a session. MobileNetV2 at width 0.5: depthwise convolutions with
# ReLU6 and linear bottlenecks (0.13 s a step).
FMNIST_FAMILY_PAIRS: dict[str, dict[str, Any]] = {
    "wrn": {**FMNIST_PAIRS["resnet"], "name": "WRN-16-1 -> ResNet-8 (width 8)", "teacher": "wrn_16_1"},
    "mobilenet": {**FMNIST_PAIRS["resnet"], "name": "MobileNetV2 (width 0.5) -> ResNet-8 (width 8)",
                  "teacher": "mobilenetv2", "teacher_kwargs": {"width": 0.5}},
    # the same teachers with a student of their own family, so a recipe with --inherit (weight selection) runs
    # unchanged on them: WRN-10-1 (77,562 parameters, 2.3x fewer) and MobileNetV2 at width 0.25 (13,458, 3.2x fewer),
    # where the ResNet pair's ResNet-8 has 8.8x fewer than ResNet-14
    "wrn-own": {**FMNIST_PAIRS["resnet"], "name": "WRN-16-1 -> WRN-10-1", "teacher": "wrn_16_1",
                "student": "wrn_10_1", "student_kwargs": {}},
    "mobilenet-own": {**FMNIST_PAIRS["resnet"], "name": "MobileNetV2 (width 0.5) -> MobileNetV2 (width 0.25)",
                      "teacher": "mobilenetv2", "teacher_kwargs": {"width": 0.5},
                      "student": "mobilenetv2", "student_kwargs": {"width": 0.25}},
}
# data-free recipes of benchmarks/datafree_kd.py: a narrow generator (ngf 16; not for pixel
# generators), coarse pixels for zskd, 2000 live student steps, 6400 stored images
FMNIST_DF_SCALE: dict[str, Any] = {"ngf": 16, "batch_size": 128}
# each method's own bench budget, from its registration (datafree/synthesis/presets.py; notes in docs/benchmarks.md)
FMNIST_DF_METHOD_SCALE: dict[str, dict[str, Any]] = {name: dict(m.bench) for name, m in SYNTHESIS.items() if m.bench}
FMNIST_DF_LIVE_LR = {"lenet": "0.01", **{key: "0.05" for key in ("resnet", *FMNIST_FAMILY_PAIRS)}}
# the quick and full suites keep the earlier, cheaper ZSKD recipe and student (40 epochs)
FMNIST_DF_ZSKD_CHEAP: dict[str, Any] = {"pixel_scale": 4, "iterations": 50}
FMNIST_DF_STORED_STUDENT_CHEAP = ("--epochs", "40", *FMNIST_DF_STORED_TRAIN)
# condensation recipes of benchmarks/condense.py (each method's registered bench budget: --set overrides,
# iterations = the last point of its curve)
FMNIST_COND: dict[str, dict[str, Any]] = {name: dict(m.bench) for name, m in CONDENSATION.items()}

FMNIST_RECIPES = Recipes(df_scale=FMNIST_DF_SCALE, df_method_scale=FMNIST_DF_METHOD_SCALE, cond=FMNIST_COND)
FULL_CPU_NET = {"width": 32}  # the condensation networks (ConvNet-32: ~16x fewer FLOPs than ConvNet-128)

__all__ = ["FMNIST_BUFFER", "FMNIST_COND", "FMNIST_COND_STUDENT", "FMNIST_DF_COUNT", "FMNIST_DF_GROWN_STUDENT",
           "FMNIST_DF_LIVE_LR", "FMNIST_DF_LIVE_STUDENT", "FMNIST_DF_METHOD_SCALE", "FMNIST_DF_SCALE",
           "FMNIST_DF_STORED_STUDENT", "FMNIST_DF_STORED_STUDENT_CHEAP", "FMNIST_DF_STORED_TRAIN",
           "FMNIST_DF_ZSKD_CHEAP", "FMNIST_FAMILY_PAIRS", "FMNIST_PAIRS", "FMNIST_RECIPES", "FULL_CPU_NET"]
