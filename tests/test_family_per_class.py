"""benchmarks.family_per_class: per-class accuracy rows and where it reads a pair's runs."""
from pathlib import Path

import torch
from torch import nn

from benchmarks.family_per_class import pair_runs, per_class_rows


class _Always(nn.Module):
    """Answers one class for every image."""

    def __init__(self, c: int):
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.full((len(x),), self.c), 3).float()


def test_rows_give_each_class_its_own_accuracy():
    images, labels = torch.zeros(6, 1, 2, 2), torch.tensor([0, 0, 1, 1, 2, 2])
    rows = per_class_rows({"one": _Always(1), "two": _Always(2)}, images, labels, 3)
    assert rows == ["| one | 0.0 | 100.0 | 0.0 |", "| two | 0.0 | 0.0 | 100.0 |"]


def test_runs_are_where_the_benchmarks_write_them():
    runs = pair_runs("wrn-own", 1, "fast5-stored-ngf32-inherit", Path("r"))
    assert runs["teacher"] == Path("r/teachers/fashion-mnist-wrn_16_1")
    assert runs["kd"] == Path("r/baselines/wrn-own/kd-seed1")
    assert runs["scratch"] == Path("r/baselines/wrn-own/scratch-seed1")
    assert runs["fast5-stored-ngf32-inherit"] == Path("r/datafree/wrn-own/fast5-stored-ngf32-inherit-seed1/student")
