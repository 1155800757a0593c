"""benchmarks.membership_by_class: within-class AUCs see a leak confined to one class; identical students differ by 0."""

import pytest
import torch

from benchmarks.membership_by_class import student_aucs, within_class_interval


def test_a_leak_in_one_class_shows_in_that_class_and_the_pooled_scores():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 4
    member = torch.arange(400) < 200
    loss = torch.rand(400, generator=g)
    leaky = loss.clone()
    leaky[member & (labels == 1)] -= 2.0  # members of class 1 fitted far better than its non-members
    plain, leak = student_aucs(loss, labels, member, 4), student_aucs(leaky, labels, member, 4)
    assert leak["within_class"][1] == 1.0
    assert [leak["within_class"][c] for c in (0, 2, 3)] == [plain["within_class"][c] for c in (0, 2, 3)]
    assert leak["loss"] > plain["loss"] and leak["calibrated"] > plain["calibrated"]
    low, high = within_class_interval(torch.stack([leaky, loss]), labels, member, 4, resamples=200, seed=0)
    assert 0 < low < high  # the leaky student's mean within-class AUC is higher on every draw
    assert within_class_interval(torch.stack([loss, loss]), labels, member, 4, resamples=50, seed=0) == \
        pytest.approx([0.0, 0.0])
