"""A tiny end-to-end suite for the tests: 1 epoch, tiny widths and counts."""

from __future__ import annotations

from datafree.bench.suites.base import PairSpec, Recipes, Suite

_SMOKE_TRAIN = ("--epochs", "1", "--batch-size", "64", "--lr", "0.05")
SUITE = Suite(
    name="smoke", dataset="fashion-mnist",
    pairs=[PairSpec(key="tiny", name="ResNet-8 (width 4) -> ResNet-8 (width 2)", teacher="resnet8", student="resnet8",
                    teacher_args=_SMOKE_TRAIN, student_args=_SMOKE_TRAIN, teacher_kwargs={"width": 4},
                    student_kwargs={"width": 2}, live_lr="0.05")],
    sources=["kd", "scratch", "df:zskd", "cond:dm:2:hard", "cond:dm:2:soft"], seeds=[0],
    recipes=Recipes(df_scale={"batch_size": 16}, df_method_scale={"zskd": {"pixel_scale": 4, "iterations": 2}},
                    df_live_student=("--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--alpha", "0"),
                    df_count=32, df_stored_student=("--epochs", "1", "--batch-size", "16", "--alpha", "0"),
                    cond={"dm": {"iterations": 2, "batch_real": 8, "net_kwargs": {"width": 8}}},
                    cond_student=("--epochs", "1", "--batch-size", "16", "--lr", "0.01"),
                    buffer=("--experts", "1", "--epochs", "2"), checkpoint_every=1),
    description="A tiny end-to-end check (the tests): 1 epoch, tiny widths and counts; give the data with --data-root.",
)
