"""Weight selection in steps (datafree.models.FadingWidth, distill --fade): a teacher-width start whose dropped
channels fade out, ending as the student."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from datafree.cli import main
from datafree.data.spec import FASHION_MNIST
from datafree.errors import DatafreeError
from datafree.models import FadingWidth, build_model, fold_batchnorm, inherit_weights
from tests.test_inherit import _randomise_batchnorm


def _pair() -> tuple[nn.Module, nn.Module]:
    """A LeNet-5-BN teacher with seeded, non-trivial BatchNorm, and a LeNet-5-half student."""
    teacher = _randomise_batchnorm(build_model("lenet5_bn", FASHION_MNIST, seed=0))
    return teacher, build_model("lenet5_half", FASHION_MNIST, seed=1)


def test_the_fade_runs_from_the_teacher_to_its_selection():
    teacher, student = _pair()
    wide = FadingWidth(teacher, student, fade=0.5).eval()
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(wide(x), teacher(x))  # progress 0: the whole teacher, BatchNorm folded
        wide.set_progress(0.25)
        assert wide.scale() == pytest.approx(0.5)
        halfway = wide(x)
        wide.set_progress(0.5)
        assert wide.scale() == 0.0
        end = wide(x)
        # once faded, the network is its selection: the student it hands over computes the same, exactly
        torch.testing.assert_close(wide.student().eval()(x), end)
        selected = build_model("lenet5_half", FASHION_MNIST, seed=2).eval()
        inherit_weights(selected, teacher)
        torch.testing.assert_close(end, selected(x))  # untrained: the plain weight selection
    assert not torch.allclose(halfway, end) and not torch.allclose(halfway, teacher(x))


def test_only_the_kept_channels_learn_once_the_fade_is_over_and_all_of_them_before():
    teacher, student = _pair()
    wide = FadingWidth(teacher, student, fade=0.5)
    conv2 = wide.wide.features[4]  # the teacher's second convolution (BatchNorm folded away after it)
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    wide(x).square().mean().backward()
    assert conv2.weight.grad[1::2].abs().sum() > 0 and conv2.weight.grad[::2].abs().sum() > 0
    wide.zero_grad()
    wide.set_progress(1.0)
    wide(x).square().mean().backward()
    assert conv2.weight.grad[::2].abs().sum() > 0  # evenly spaced: the kept ones
    assert conv2.weight.grad[1::2].abs().sum() == 0  # the dropped ones no longer reach the output
    assert wide.wide.classifier.weight.grad[:, ::2].abs().sum() > 0
    assert wide.wide.classifier.weight.grad[:, 1::2].abs().sum() == 0


def test_a_copy_fades_with_its_own_progress():
    """A deep copy (a weight average, a DDP replica's state) has hooks that read the copy's progress."""
    teacher, student = _pair()
    wide = FadingWidth(teacher, student, fade=1.0).eval()
    twin = copy.deepcopy(wide)
    twin.set_progress(1.0)
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(wide(x), fold_batchnorm(teacher)(x))
        torch.testing.assert_close(twin(x), twin.student().eval()(x))


def test_pairs_the_fade_cannot_take_get_one_line_errors():
    teacher, student = _pair()
    with pytest.raises(DatafreeError, match=r"in \(0, 1\]"):
        FadingWidth(teacher, student, fade=0.0)
    with pytest.raises(DatafreeError, match="without BatchNorm"):
        FadingWidth(teacher, build_model("lenet5_bn", FASHION_MNIST, seed=0), fade=0.5)
    with pytest.raises(DatafreeError, match="thinner version of the teacher"):
        FadingWidth(build_model("resnet14", FASHION_MNIST, seed=0, width=8),
                    build_model("lenet5_half", FASHION_MNIST, seed=0), fade=0.5)
    with pytest.raises(DatafreeError, match="fade is not over"):
        FadingWidth(teacher, student, fade=0.5).student()
    from datafree.train import TrainConfig, Trainer

    with pytest.raises(DatafreeError, match="do not combine"):
        TrainConfig(fade=0.5, ema=0.999)
    with pytest.raises(DatafreeError, match="FadingWidth"):
        Trainer(student, TrainConfig(fade=0.5), teacher=teacher)


def test_cli_distill_fade_trains_the_teacher_width_and_saves_the_student(fmnist_root, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    assert main(["train-teacher", "--arch", "lenet5_bn", "--epochs", "1", "--batch-size", "64",
                 "--data-root", str(fmnist_root), "--out", str(teacher), "--no-progress"]) == 0
    out = tmp_path / "student"
    assert main(["distill", "--teacher", str(teacher), "--student", "lenet5_half", "--inherit", "--fade", "0.5",
                 "--epochs", "2", "--batch-size", "64", "--alpha", "0", "--lr", "0.01", "--data-root", str(fmnist_root),
                 "--out", str(out), "--no-progress"]) == 0
    record = json.loads((out / "result.json").read_text())
    assert record["config"]["fade"] == 0.5 and record["model"]["arch"] == "lenet5_half"
    assert record["student_fade"]["trained_parameters"] > record["model"]["parameters"]
    from datafree.api import evaluate, load_dataset
    from datafree.checkpoint import load_model

    saved, info = load_model(out)
    assert info.arch == "lenet5_half"
    # the run's last test is of the faded teacher-width network; the saved student scores the same
    test = load_dataset("fashion-mnist", "test", fmnist_root)
    assert evaluate(saved.eval(), test).accuracy == pytest.approx(record["metrics"]["test_accuracy"], abs=1e-6)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["test_accuracy"] == record["metrics"]["test_accuracy"]
    # a fade without --inherit, or a student it cannot take: one line, no run directory
    for extra, message in ((["--fade", "0.5"], "needs inherit"),
                           (["--inherit", "--fade", "0.5", "--student", "lenet5_bn"], "without BatchNorm"),
                           (["--inherit", "--fade", "1.5"], "fraction of training")):
        bad = tmp_path / "bad"
        args = ["distill", "--teacher", str(teacher), "--epochs", "1", "--data-root", str(fmnist_root),
                "--out", str(bad), "--no-progress", *extra]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not bad.exists()
