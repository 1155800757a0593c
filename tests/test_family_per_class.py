"""benchmarks.family_per_class: per-class accuracy rows and where it reads a pair's runs."""
from pathlib import Path

import torch
from torch import nn

from benchmarks.family_per_class import distance_by_class, own_images, pair_runs, per_class_rows
from datafree.data.spec import DataSpec
from datafree.data.transfer import TransferSetWriter


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


def test_distance_by_class_groups_by_the_teachers_answer():
    teacher = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [0, 5.0, 0]])
    student = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0]])  # wrong on one of class 1's
    rows = distance_by_class(teacher, student, 3, temperature=1.0)
    assert rows[0] == (2, 0.0, 100.0)
    n, kd, agree = rows[1]
    assert (n, agree) == (2, 50.0)
    assert kd > 1.0  # half its images cost 5 nats or so: the class stands out
    assert rows[2][0] == 0 and rows[2][1] != rows[2][1]  # no image: NaN, not a zero that reads as "no distance"


def test_own_images_are_a_seeded_draw_of_the_set(tmp_path):
    spec = DataSpec(1, 2, 2, 3, (0.5,), (0.5,), name="tiny")
    images = torch.arange(20.0).view(5, 1, 2, 2)
    TransferSetWriter(tmp_path / "set", {"kind": "synthetic", "method": "x", "config": {}, "seed": 0, "teacher": {},
                                         "spec": spec.to_dict()}).append(images, torch.zeros(5).long(), torch.zeros(5, 3))
    a, b = own_images(tmp_path / "set", 3, seed=1), own_images(tmp_path / "set", 3, seed=1)
    assert torch.equal(a, b) and len(a) == 3
    assert len({tuple(x.flatten().tolist()) for x in a}) == 3  # without replacement
    assert all(any(torch.equal(x, y) for y in images) for x in a)  # images of the set, unchanged
