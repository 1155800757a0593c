"""Weight selection (datafree.models.inherit): a student started from a consistent selection of its teacher."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from datafree.cli import main
from datafree.data.spec import FASHION_MNIST
from datafree.errors import DatafreeError
from datafree.models import build_model, fold_batchnorm, inherit_weights
from datafree.models.inherit import kept_inputs, select


def test_select_spreads_channels_and_keeps_the_kernel_centre():
    w = torch.arange(6 * 4 * 5 * 5, dtype=torch.float32).reshape(6, 4, 5, 5)
    picked = select(w, torch.Size([3, 2, 3, 3]))
    torch.testing.assert_close(picked, w[[0, 2, 4]][:, [0, 2]][:, :, 1:4, 1:4])
    assert select(w, torch.Size([7, 4, 5, 5])) is None  # larger than the teacher: nothing to select
    assert select(w, torch.Size([6, 4, 25])) is None  # another layout


def _zero_unselected(model: nn.Module) -> None:
    """Zero every hidden layer's odd output channels (and the inputs they feed): what a half-width student drops."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for layer in layers[:-1]:
            layer.weight[1::2] = 0
            if layer.bias is not None:
                layer.bias[1::2] = 0


def test_a_half_width_student_of_a_teacher_without_its_dropped_channels_computes_the_teacher():
    """LeNet-5 -> LeNet-5-half (matched by name): if the channels the selection drops are dead in the teacher,
    the selection is the teacher's function exactly (consistency: each layer keeps the inputs the last one kept)."""
    teacher = build_model("lenet5", FASHION_MNIST, seed=0).eval()
    _zero_unselected(teacher)
    student = build_model("lenet5_half", FASHION_MNIST, seed=1).eval()
    report = inherit_weights(student, teacher)
    assert report.matched_by == "name" and report.parameters == report.total_parameters
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(student(x), teacher(x))


def test_a_linear_layer_after_flatten_keeps_the_kept_channels_positions():
    """A user's VGG-style teacher whose head flattens a 2x2 map (tests/user_models.py's VGGish, matched by name):
    the head's inputs are (channel, position) pairs, so the selection keeps the conv's kept channels with all their
    positions; spreading single features would read a kept channel's positions with other channels' weights."""
    from tests.user_models import VGGish

    teacher = VGGish(width=4).eval()
    _zero_unselected(teacher)
    student = VGGish(width=2).eval()
    report = inherit_weights(student, teacher)
    assert report.matched_by == "name" and report.parameters == report.total_parameters
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(student(x), teacher(x))
    w = torch.arange(4 * 12, dtype=torch.float32).reshape(4, 12)  # 3 channels of 4 positions -> 2 channels, all 4
    torch.testing.assert_close(select(w, torch.Size([4, 8]), in_block=4), w[:, [0, 1, 2, 3, 4, 5, 6, 7]])
    torch.testing.assert_close(select(w, torch.Size([4, 6]), in_block=4), w[:, [0, 2, 4, 6, 8, 10]])  # no blocks


def _randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Seeded running statistics and affine parameters that are not the identity; eval mode."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                for t, (lo, hi) in ((m.running_mean, (-1, 1)), (m.running_var, (0.5, 2)), (m.weight, (0.5, 1.5)),
                                    (m.bias, (-0.5, 0.5))):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
    return model.eval()


def test_folding_batchnorm_keeps_the_function_and_position_matching_uses_it():
    teacher = _randomise_batchnorm(build_model("lenet5_bn", FASHION_MNIST, seed=0))
    x = torch.randn(4, 1, 28, 28)
    folded = fold_batchnorm(teacher)
    torch.testing.assert_close(folded(x), teacher(x), atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    student = build_model("lenet5_half", FASHION_MNIST, seed=1)
    report = inherit_weights(student, teacher)  # LeNet-5-BN's layer names are shifted by its BatchNorms
    assert report.matched_by == "position" and report.layers == 5
    first = folded.features[0]
    torch.testing.assert_close(student.features[0].weight, first.weight[[0, 2, 4]])
    torch.testing.assert_close(student.features[0].bias, first.bias[[0, 2, 4]])
    torch.testing.assert_close(student.classifier.weight, folded.classifier.weight[:, ::2])


class _RegisteredOutOfOrder(nn.Module):
    """Both BatchNorms registered after both convolutions: registration order says nothing about what feeds what."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
        self.fc, self.bn3 = nn.Linear(4, 3), nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return self.bn3(self.fc(x.mean((2, 3))))


class _PreActivation(nn.Module):
    """A pre-activation residual block: the BatchNorm reads the sum of a convolution and the shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.relu(self.bn(x + self.conv2(x))))


def test_folding_follows_the_graph_not_the_registration_order():
    model = _randomise_batchnorm(_RegisteredOutOfOrder())
    x = torch.randn(5, 1, 8, 8)
    folded = fold_batchnorm(model)
    torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert isinstance(model.bn1, nn.BatchNorm2d)  # the caller's model is untouched


def test_a_batchnorm_that_follows_no_layer_is_refused_or_left_in_place():
    model = _randomise_batchnorm(_PreActivation())
    with pytest.raises(DatafreeError, match="cannot fold BatchNorm 'bn'.*pre-activation"):
        fold_batchnorm(model)
    kept = fold_batchnorm(model, strict=False)  # what quantization-aware fine-tuning uses
    assert isinstance(kept.bn, nn.BatchNorm2d)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(kept(x), model(x))


def test_a_shallower_resnet_takes_each_stage_s_first_block_by_name():
    teacher = build_model("resnet14", FASHION_MNIST, seed=0, width=8)
    student = build_model("resnet8", FASHION_MNIST, seed=1, width=4)
    report = inherit_weights(student, teacher)
    assert report.matched_by == "name" and report.parameters == report.total_parameters
    torch.testing.assert_close(student.layers[1][0].conv1.weight, teacher.layers[1][0].conv1.weight[::2, ::2])
    torch.testing.assert_close(student.layers[2][0].bn2.running_var, teacher.layers[2][0].bn2.running_var[::2])
    # the same architecture inherits the teacher itself
    twin = build_model("resnet14", FASHION_MNIST, seed=2, width=8)
    inherit_weights(twin, teacher)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(twin.eval()(x), teacher.eval()(x))


def test_students_that_are_not_a_selection_of_the_teacher_get_a_one_line_error():
    teacher = build_model("resnet8", FASHION_MNIST, seed=0, width=4)
    with pytest.raises(DatafreeError, match="neither by name nor in sequence"):
        inherit_weights(build_model("lenet5_half", FASHION_MNIST, seed=0), teacher)
    with pytest.raises(DatafreeError, match="larger than its teacher layer"):
        inherit_weights(build_model("resnet8", FASHION_MNIST, seed=0, width=8), teacher)


def test_cli_distill_inherit_records_it_and_trains_from_the_teacher_s_weights(fmnist_root, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    assert main(["train-teacher", "--arch", "lenet5", "--epochs", "1", "--batch-size", "64",
                 "--data-root", str(fmnist_root), "--out", str(teacher), "--no-progress"]) == 0
    student = tmp_path / "student"
    assert main(["distill", "--teacher", str(teacher), "--student", "lenet5_half", "--inherit", "--epochs", "1",
                 "--lr", "1e-9", "--batch-size", "64", "--data-root", str(fmnist_root), "--out", str(student),
                 "--no-progress"]) == 0
    record = json.loads((student / "result.json").read_text())
    assert record["student_inherit"]["matched_by"] == "name"
    from datafree.checkpoint import load_model

    trained, _ = load_model(student)
    source, _ = load_model(teacher)
    # lr 1e-9: the saved student is the selection itself
    torch.testing.assert_close(trained.features[3].weight, source.features[3].weight[::2, ::2])
    assert main(["distill", "--teacher", str(teacher), "--student", "resnet8", "--inherit", "--epochs", "1",
                 "--data-root", str(fmnist_root), "--out", str(tmp_path / "other"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot inherit the teacher's weights" in err and "Traceback" not in err
    assert not (tmp_path / "other" / "result.json").exists()


def test_inherit_without_a_teacher_is_a_one_line_error(tmp_path):
    from datafree import api
    from datafree.data.datasets import TensorImageDataset
    from datafree.train import TrainConfig

    data = TensorImageDataset(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4), FASHION_MNIST)
    with pytest.raises(DatafreeError, match="give the teacher"):
        api.distill(tmp_path / "s", "lenet5_half", TrainConfig(epochs=1), train=data, inherit=True)
    assert not (tmp_path / "s").exists()


def test_kept_inputs_pair_every_layer_but_the_first_at_the_channels_selection_kept():
    teacher = _randomise_batchnorm(build_model("lenet5_bn", FASHION_MNIST, seed=0))
    student = build_model("lenet5_half", FASHION_MNIST, seed=1)
    kept = kept_inputs(student, teacher)  # position-matched: LeNet-5-BN's names are shifted by its BatchNorms
    assert [(s, t) for s, t, _ in kept] == [("features.3", "features.4"), ("features.7", "features.9"),
                                           ("fc.1", "fc.1"), ("classifier", "classifier")]
    assert [k.tolist() for _, _, k in kept] == [[0, 2, 4], list(range(0, 16, 2)), list(range(0, 120, 2)),
                                               list(range(0, 84, 2))]
    shallower = kept_inputs(build_model("resnet8", FASHION_MNIST, seed=0, width=4),
                            build_model("resnet14", FASHION_MNIST, seed=0, width=8))
    assert all(s == t for s, t, _ in shallower) and shallower[0][0] == "layers.0.0.conv1"  # not the stem: it reads the image
    assert [k.tolist() for s, _, k in shallower if s == "layers.1.0.conv1"] == [[0, 2, 4, 6]]  # stage 1: 8 -> 4
    with pytest.raises(DatafreeError, match="cannot pair the student's layers .* kept-channel hint.*leave --kept-hint off"):
        kept_inputs(build_model("lenet5_half", FASHION_MNIST, seed=0), build_model("resnet8", FASHION_MNIST, seed=0))


def test_the_kept_channel_hint_is_zero_for_the_teacher_s_own_selection_and_its_gradient_reaches_the_first_layer():
    from datafree.train import TrainConfig, Trainer

    teacher = build_model("lenet5", FASHION_MNIST, seed=0).eval()
    _zero_unselected(teacher)  # the half-width selection then computes the teacher exactly, layer by layer
    student = build_model("lenet5_half", FASHION_MNIST, seed=1)
    inherit_weights(student, teacher)
    trainer = Trainer(student, TrainConfig(alpha=0.0, kept_hint_weight=1.0, progress=False), teacher=teacher,
                      spec=FASHION_MNIST)
    x, y = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(2)), torch.zeros(8, dtype=torch.long)
    terms, _ = trainer.loss_terms(x, y)
    assert terms["kept_hint"].item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        student.features[0].weight.mul_(1.5)  # the first layer's output is no layer's input but the second's
    terms, _ = trainer.loss_terms(x, y)
    assert terms["kept_hint"].item() > 1e-4
    terms["kept_hint"].backward()
    assert student.features[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert TrainConfig(kept_hint_weight=1.0).needs_teacher
    with pytest.raises(DatafreeError, match="kept-channel hint's weight"):
        TrainConfig(kept_hint_weight=-1.0)
    with pytest.raises(DatafreeError, match="--fade and --kept-hint do not combine"):
        TrainConfig(kept_hint_weight=1.0, fade=0.5)
