"""benchmarks.calls makes the library call the CLI makes for each kind of step the scripts record."""

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from datafree.checkpoint import ModelInfo, save_model
from datafree.data import FASHION_MNIST
from datafree.models import build_model

CALLED = ("train_teacher", "distill", "synthesize", "condense", "evaluate_set", "compress", "audit", "quantize")


def _plain(value):
    """Arguments made comparable: a model by its class, a dataset by its class and size, a set by its directory."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, nn.Module):
        return type(value).__name__
    if hasattr(value, "directory"):
        return ("set", str(value.directory))
    if hasattr(value, "__len__") and hasattr(value, "__getitem__") and not isinstance(value, (str, list, tuple, dict)):
        return (type(value).__name__, len(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, _plain(dataclasses.asdict(value)))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Called(Exception):
    """Raised by a captured call: what the command prints afterwards needs a real result."""


def _capture(monkeypatch):
    from datafree import api
    from datafree.condense import mtt

    seen = []

    def capture(name):
        def record(*a, **k):
            seen.append((name, _plain(a), _plain(k)))
            raise Called

        return record

    for name in CALLED:
        monkeypatch.setattr(api, name, capture(name))
    monkeypatch.setattr(mtt, "train_experts", capture("train_experts"))
    return seen


@pytest.fixture
def files(tmp_path, fmnist_root):
    from datafree.cli import main

    teacher = tmp_path / "teacher"
    save_model(teacher / "model.safetensors", build_model("lenet5", FASHION_MNIST, seed=0), ModelInfo("lenet5", FASHION_MNIST))
    data = ["--dataset", "fashion-mnist", "--data-root", str(fmnist_root), "--device", "cpu"]
    tset = tmp_path / "set"
    assert main(["condense", "--method", "random", "--ipc", "1", "--out", str(tset), "--no-progress", *data]) == 0
    return teacher, tset, data


def _record_options(monkeypatch) -> list:
    """Each call's options from now on, to see which flags it read before the library call."""
    import benchmarks.calls

    options: list = []
    monkeypatch.setattr(benchmarks.calls, "_Read", lambda parsed, _cls=benchmarks.calls._Read: options.append(
        _cls(parsed)) or options[-1])
    return options


def test_every_recorded_command_makes_the_cli_call(files, tmp_path, monkeypatch):
    from benchmarks.calls import call
    from datafree.cli import main

    teacher, tset, data = files
    t, s, o = str(teacher), str(tset), str(tmp_path / "out")
    commands = [
        ["train-teacher", "--arch", "lenet5_half", "--arch-kwargs", '{"width": 1}', "--epochs", "3", "--lr", "0.1",
         "--augment", "crop-flip", "--seed", "2", "--out", o, "--no-progress", "--overwrite", *data],
        ["distill", "--teacher", t, "--student", "lenet5_half", "--epochs", "2", "--alpha", "0", "--seed", "1",
         "--out", o, "--no-progress", "--resume", *data],
        ["distill", "--teacher", t, "--transfer", s, "--transfer", s, "--student", "lenet5_half", "--temperature", "2",
         "--clip-grad-norm", "5", "--out", o, "--no-progress", *data],
        ["distill", "--teacher", t, "--transfer", s, "--transfer", s, "--transfer-count", "4", "--student",
         "lenet5_half", "--epochs", "1", "--out", o, "--no-progress", *data],
        ["distill", "--teacher", t, "--method", "dfad", "--set", "ngf=8", "--student", "lenet5_half", "--lr", "0.05",
         "--steps-per-epoch", "3", "--out", o, "--no-progress", *data],
        ["distill", "--teacher", t, "--transfer", s, "--student", "lenet5_half", "--inherit", "--epochs", "1",
         "--out", o, "--no-progress", *data],
        ["distill", "--teacher", t, "--transfer", s, "--student", "lenet5_half", "--inherit", "--freeze", "features.0",
         "--freeze", "features.3", "--epochs", "1", "--out", o, "--no-progress", *data],
        ["distill", "--teacher", t, "--transfer", s, "--student", "lenet5_half", "--inherit", "--ema", "0.9",
         "--epochs", "1", "--out", o, "--no-progress", *data],
        ["distill", "--teacher", t, "--transfer", s, "--student", "lenet5_half", "--inherit", "--standardize-logits",
         "--kd-loss", "mse", "--hint", "fc:fc", "--hint-weight", "0.1", "--rkd-distance", "25", "--rkd-angle", "50",
         "--epochs", "1", "--out", o, "--no-progress", *data],
        ["distill", "--teacher", t, "--student-init", t, "--transfer", s, "--epochs", "2", "--eval-every", "1",
         "--out", o, "--no-progress", "--dataset", "fashion-mnist", "--data-root", data[3]],
        ["synthesize", "--teacher", t, "--method", "zskd", "--set", "pixel_scale=4", "--set", "dirichlet=[1.0, 0.1]",
         "--count", "20", "--seed", "3", "--out", o, "--no-progress", "--resume"],
        ["synthesize", "--teacher", t, "--method", "zskd", "--count", "20", "--out", o, "--part", "1/2"],
        ["condense", "--method", "dm", "--ipc", "2", "--set", "iterations=5", "--out", o, "--seed", "0",
         "--no-progress", "--checkpoint-every", "5", *data],
        ["condense", "--method", "teacher", "--ipc", "1", "--out", o, "--no-progress", "--teacher", t, *data],
        ["evaluate-set", s, "--protocol", "kd", "--models", "2", "--augment", "none", "--epochs", "3", "--seed", "0",
         "--no-progress", "--teacher", t, "--out", o, *data],
        ["evaluate-set", s, "--protocol", "dc", "--models", "1", "--augment", "dsa", "--epochs", "2", "--seed", "0",
         "--no-progress", "--bf16", "--out", o, *data],
        ["distill", "--teacher", t, "--transfer", s, "--student", "lenet5_half", "--bf16", "--balance-classes",
         "--epochs", "1", "--out", o, "--no-progress", *data],
        ["buffer", "--experts", "2", "--epochs", "1", "--net-kwargs", '{"width": 8}', "--seed", "0", "--no-progress",
         "--out", o, *data],
        ["compress", "--teacher", t, "--rank-ratio", "0.5", "--out", o, "--overwrite"],
        ["audit", "--transfer", s, "--teacher", t, "--out", o, "--overwrite", "--student", t, *data],
        ["audit", "--transfer", s, "--teacher", t, "--out", o, "--overwrite", "--student", t, "--mia-count", "30", *data],
        ["quantize", "--model", t, "--calibration-method", "zskd", "--set", "iterations=2", "--calibration-count",
         "16", "--seed", "1", "--out", o],
        ["quantize", "--model", t, "--calibration", s, "--qat-epochs", "5", "--qat-lr", "0.001", "--out", o],
        ["quantize", "--model", t, "--no-calibration", "--out", o],
    ]
    import inspect

    import datafree.quantize
    from datafree import api
    from datafree.condense import mtt

    functions = {**{n: getattr(api, n) for n in CALLED}, "train_experts": mtt.train_experts,
                 "quantize": datafree.quantize.quantize}  # api.quantize passes its keyword arguments on to this one
    defaults = {n: {k: _plain(p.default) for k, p in inspect.signature(f).parameters.items()} for n, f in functions.items()}
    options = _record_options(monkeypatch)
    for argv in commands:
        seen = _capture(monkeypatch)
        for run in (main, call):
            with pytest.raises(Called):
                run(argv)
        assert set(options[-1]) - options[-1].read == set(), argv  # every flag of the command is applied
        assert len(seen) == 2, argv
        (name, args_cli, kw_cli), (_, args_calls, kw_calls) = seen
        assert args_calls == args_cli, argv
        assert {k: v for k, v in kw_calls.items() if v != kw_cli.get(k)} == {}, (argv, kw_cli)
        # and the other way: what the CLI passes, the call passes too, unless it is the function's default
        assert {k: v for k, v in kw_cli.items() if k not in kw_calls and v != defaults[name].get(k)} == {}, argv


def test_crop_label_and_fair_evaluation_makes_the_cli_call(tmp_path, fmnist_root, monkeypatch):
    """evaluate-set --crop-labels --fair (benchmarks/teacher_condense.py's step) through both paths."""
    from benchmarks.calls import call
    from datafree.cli import main

    teacher = tmp_path / "teacher"
    save_model(teacher / "model.safetensors", build_model("lenet5_bn", FASHION_MNIST, seed=0),
               ModelInfo("lenet5_bn", FASHION_MNIST))
    tset = tmp_path / "set"
    assert main(["condense", "--method", "teacher", "--ipc", "1", "--teacher", str(teacher), "--set", "iterations=1",
                 "--set", "relabel_epochs=2", "--out", str(tset), "--no-progress", "--dataset", "fashion-mnist"]) == 0
    argv = ["evaluate-set", str(tset), "--protocol", "kd", "--crop-labels", "--temperature", "20", "--arch", "lenet5_half",
            "--models", "1", "--teacher", str(teacher), "--batch-size", "8", "--fair", "--real-accuracy", "90",
            "--data-root", str(fmnist_root), "--out", str(tmp_path / "e.json"), "--no-progress"]
    options = _record_options(monkeypatch)
    seen = _capture(monkeypatch)
    for run in (main, call):
        with pytest.raises(Called):
            run(argv)
    assert set(options[-1]) - options[-1].read == set()  # every flag of the command is applied
    (_, args_cli, kw_cli), (_, args_calls, kw_calls) = seen
    assert args_calls == args_cli
    assert kw_calls == kw_cli
    assert kw_cli["fair_data"] is not None and kw_cli["real_accuracy"] == 90.0 and kw_cli["teacher"] is None
    assert kw_cli["relabel_teacher"] == "LeNet5" and kw_cli["crop_labels"] is not None


def test_an_unknown_command_is_one_line():
    from benchmarks.calls import call
    from datafree.errors import DatafreeError

    with pytest.raises(DatafreeError, match="no library call"):
        call(["inspect", "x"])


def test_no_benchmark_script_calls_the_cli():
    root = Path(__file__).resolve().parent.parent / "benchmarks"
    assert not [p.name for p in root.glob("*.py") if "datafree.cli" in p.read_text()]


def test_a_flag_the_call_does_not_apply_fails_it(files, tmp_path):
    """A recorded command whose flag the library call ignores would record a run that was not made."""
    from benchmarks.calls import call
    from datafree.errors import DatafreeError

    _, _, data = files
    argv = ["condense", "--method", "random", "--ipc", "1", "--out", str(tmp_path / "c"), "--no-progress", *data]
    call(argv)
    with pytest.raises(DatafreeError, match="does not apply --frobnicate"):
        call([*argv[:6], str(tmp_path / "d"), *argv[7:], "--frobnicate", "3"])
    assert not (tmp_path / "d").exists()  # refused before the call started
    # a training command: its training flags are read, a switch that is not one is not
    distill = ["distill", "--transfer", argv[6], "--student", "lenet5_half", "--epochs", "1", "--alpha", "1",
               "--out", str(tmp_path / "s"), "--no-progress", *data]
    call(distill)
    with pytest.raises(DatafreeError, match="does not apply --fair"):
        call([*distill[:10], str(tmp_path / "s2"), *distill[11:], "--fair"])
    assert not (tmp_path / "s2").exists()
    # a flag the call lists but did not read still fails it, once it has run
    import benchmarks.calls

    benchmarks.calls.READS["condense"].add("--frobnicate")
    try:
        with pytest.raises(DatafreeError, match="does not apply --frobnicate .listed, but the call did not read"):
            call([*argv[:6], str(tmp_path / "e"), *argv[7:], "--frobnicate", "3"])
    finally:
        benchmarks.calls.READS["condense"].discard("--frobnicate")


def test_every_training_switch_of_the_cli_is_one_the_calls_know():
    """A new store_true training flag of distill must be in TRAINING_SWITCHES, or a recorded command with it fails
    in benchmarks.calls (its next word taken as its value) while the CLI runs it."""
    import argparse
    import dataclasses

    from benchmarks.calls import TRAINING_SWITCHES
    from datafree.bench.jobs import FLAG_FIELDS
    from datafree.cli import build_parser
    from datafree.train import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    distill = build_parser()._subparsers._group_actions[0].choices["distill"]
    switches = {flag for action in distill._actions if isinstance(action, argparse._StoreTrueAction)
                for flag in action.option_strings
                if FLAG_FIELDS.get(flag, flag.removeprefix("--").replace("-", "_")) in fields}
    assert switches and switches <= TRAINING_SWITCHES, switches - TRAINING_SWITCHES


def test_each_call_has_its_list_of_flags():
    from benchmarks.calls import CALLS, READS

    assert set(READS) == set(CALLS)
