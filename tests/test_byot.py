"""Bring your own teacher: every command that takes --teacher runs, from the CLI, on checkpoints datafree
did not write: a user's own architecture (``tests.user_models:build``: its own attribute names, max-pooling,
``x.view(n, -1)``, a BatchNorm1d head) as a plain state_dict ``.pt``, as ``.safetensors`` without a
sidecar, as TorchScript and as a torch.export ``.pt2``, for a 1x28x28 / 10-class and an RGB 32x32 /
100-class teacher. Random weights, tiny counts: each case takes a second or two.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from datafree.checkpoint import ModelInfo, save_model
from datafree.cli import main
from datafree.data import CIFAR100, FASHION_MNIST, DataSpec
from datafree.data.transfer import TransferSet, TransferSetWriter
from datafree.errors import DatafreeError
from datafree.hooks import BatchNormStatistics, penultimate_module
from datafree.teacher import batchnorm_layers, format_description, load_teacher, resolve_spec
from tests.conftest import make_images, write_mnist_family
from tests.user_models import build

ARCH = "tests.user_models:build"
FORMATS = ("pt", "safetensors", "torchscript", "export")
CIFAR100_FLAGS = ["--input-shape", "3", "32", "32", "--num-classes", "100",
                  "--mean", *map(str, CIFAR100.mean), "--std", *map(str, CIFAR100.std)]
TINY_SYNTH = ["--set", "batch_size=4", "--set", "iterations=1"]
TINY_GEN = ["--set", "batch_size=4", "--set", "nz=8", "--set", "ngf=4"]
FAST = ["--epochs", "1", "--batch-size", "8", "--no-progress"]


def user_teacher(num_classes: int, channels: int, size: int, seed: int = 0) -> torch.nn.Module:
    """The user's network with BatchNorm statistics that are not the defaults (a few batches in train mode)."""
    torch.manual_seed(seed)
    model = build(num_classes, channels)
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.rand(16, channels, size, size) * 2 + 0.5)
    return model.eval()


def save_formats(model: torch.nn.Module, spec: DataSpec, directory: Path, *, embed: bool) -> dict[str, Path]:
    """The user's model in every format; with ``embed`` the safetensors/TorchScript/torch.export files carry the spec."""
    directory.mkdir(parents=True, exist_ok=True)
    spec_json = json.dumps(spec.to_dict())
    paths = {f: directory / name for f, name in
             (("pt", "teacher.pt"), ("safetensors", "teacher.safetensors"), ("torchscript", "teacher.ts.pt"),
              ("export", "teacher.pt2"))}
    torch.save(model.state_dict(), paths["pt"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(paths["safetensors"]),
              metadata={"datafree_spec": spec_json} if embed else None)
    extra = {"datafree_spec.json": spec_json} if embed else {}
    with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export; users still have archives
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model), str(paths["torchscript"]), _extra_files=extra)
    x = torch.rand(2, *spec.shape)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(paths["export"]), extra_files=extra)
    return paths


def write_cifar100(root: Path, per_class: int = 2) -> Path:
    """A tiny CIFAR-100 in torchvision's layout (2 training and 1 test image per class)."""
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    for name, n, seed in (("train", 100 * per_class, 0), ("test", 100, 1)):
        images, labels = make_images(n, 100, (3, 32, 32), seed)
        labels = (np.arange(n) % 100).astype(np.int64)
        with open(d / name, "wb") as f:
            pickle.dump({"data": images.reshape(n, -1), "fine_labels": labels.tolist()}, f)
    return root


class Teacher:
    """One user teacher in every format, the flags that describe its input, and data in its space."""

    def __init__(self, name: str, model: torch.nn.Module, spec: DataSpec, paths: dict[str, Path],
                 spec_flags: dict[str, list[str]], data: list[str], tset: Path) -> None:
        self.name, self.model, self.spec, self.paths = name, model, spec, paths
        self.spec_flags, self.data, self.tset = spec_flags, data, tset

    def args(self, fmt: str) -> list[str]:
        """--teacher and what a user adds for this format: the architecture, the spec, --trust-pickle."""
        arch = ["--teacher-arch", ARCH] + (["--teacher-kwargs", '{"in_channels": 3}'] if self.spec.channels == 3 else [])
        extra = {"pt": arch, "safetensors": arch, "torchscript": ["--trust-pickle"], "export": ["--trust-pickle"]}[fmt]
        return ["--teacher", str(self.paths[fmt]), *extra]


def make_set(directory: Path, spec: DataSpec, n: int = 16) -> Path:
    header = {"kind": "synthetic", "method": "test", "config": {}, "seed": 0,
              "teacher": {"arch": "other", "sha256": "0" * 64}, "spec": spec.to_dict()}
    writer = TransferSetWriter(directory, header)
    g = torch.Generator().manual_seed(0)
    writer.append(torch.randn(n, *spec.shape, generator=g), torch.arange(n) % spec.num_classes,
                  torch.randn(n, spec.num_classes, generator=g))
    return directory


@pytest.fixture(scope="module", params=["gray", "rgb"])
def teacher(request, tmp_path_factory) -> Teacher:
    """gray: 1x28x28, 10 classes, Fashion-MNIST's spec given by --dataset (whole-model files get it too);
    rgb: 3x32x32, 100 classes, the spec given by --input-shape/--num-classes/--mean/--std, and embedded in the
    .safetensors metadata and the TorchScript/torch.export archives (which then need no spec flag)."""
    base = tmp_path_factory.mktemp(f"byot-{request.param}")
    if request.param == "gray":
        spec, model = FASHION_MNIST, user_teacher(10, 1, 28)
        paths = save_formats(model, spec, base / "files", embed=False)
        flags = {f: ["--dataset", "fashion-mnist"] for f in FORMATS}
        data = ["--data-root", str(write_mnist_family(base / "fmnist"))]
    else:
        spec, model = CIFAR100, user_teacher(100, 3, 32)
        paths = save_formats(model, dataclasses.replace(spec, name=""), base / "files", embed=True)  # numbers, no name
        flags = {"pt": CIFAR100_FLAGS, "safetensors": [], "torchscript": [], "export": []}
        data = ["--dataset", "cifar100", "--data-root", str(write_cifar100(base / "cifar"))]
    return Teacher(request.param, model, spec, paths, flags, data, make_set(base / "set", spec))


# ---------------------------------------------------------------- the library: formats become hookable teachers
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_loads_the_same_network_with_its_batchnorm_layers(teacher, fmt):
    arch = ARCH if fmt in ("pt", "safetensors") else None
    kwargs = {"in_channels": 3} if arch and teacher.spec.channels == 3 else None
    embedded = teacher.name == "rgb" and fmt != "pt"  # the file says what inputs it takes: no spec is given
    model, info = load_teacher(teacher.paths[fmt], arch=arch, arch_kwargs=kwargs, spec=None if embedded else teacher.spec,
                               spec_source="flags", trust_pickle=fmt in ("torchscript", "export"))
    x = torch.randn(5, *teacher.spec.shape)  # another batch size than the export's sample input
    with torch.no_grad():
        assert torch.allclose(model(x), teacher.model(x), atol=1e-5)
    assert info.format == {"pt": "state_dict", "safetensors": "state_dict"}.get(fmt, {"torchscript": "torchscript",
                                                                                      "export": "torch.export"}.get(fmt))
    assert len(info.sha256) == 64 and info.spec.shape == teacher.spec.shape
    assert info.spec_source == ("embedded" if embedded else "flags")
    # BatchNorm statistics reach every BN layer through forward hooks, and gradients reach the input
    layers = batchnorm_layers(model)
    assert [(layer["name"], layer["kind"]) for layer in layers] == [
        ("trunk.0.1", "2d"), ("trunk.1.1", "2d"), ("classifier_head.1", "1d")]
    stats = BatchNormStatistics(model)
    x.requires_grad_(True)
    with stats.recording():
        model(x)
        loss = stats.loss()
    loss.backward()
    assert len(stats) == 3 and x.grad.abs().sum() > 0 and penultimate_module(model) == "classifier_head.3"
    stats.remove()


def test_a_teacher_comes_back_in_eval_mode_in_every_format(teacher, tmp_path):
    """A train-mode BatchNorm teacher answers from each batch's statistics: silently other logits for a
    Python user who forgets .eval(). datafree's own checkpoint (sidecar) and every foreign format agree."""
    own = save_model(tmp_path / "own.safetensors", teacher.model,
                     ModelInfo(ARCH, teacher.spec, {"in_channels": teacher.spec.channels}))
    x = torch.randn(4, *teacher.spec.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # a copy in train mode: its forward would update the shared fixture's running statistics
        expected, batch_stats = teacher.model(x), copy.deepcopy(teacher.model).train()(x)
    assert not torch.allclose(expected, batch_stats, atol=1e-3)  # the mode matters for this network
    loaded = [load_teacher(own)[0]]
    for fmt in FORMATS:
        arch = ARCH if fmt in ("pt", "safetensors") else None
        kwargs = {"in_channels": 3} if arch and teacher.spec.channels == 3 else None
        loaded.append(load_teacher(teacher.paths[fmt], arch=arch, arch_kwargs=kwargs, spec=teacher.spec,
                                   spec_source="flags", trust_pickle=fmt in ("torchscript", "export"))[0])
    for model in loaded:
        assert not model.training
        with torch.no_grad():
            assert torch.allclose(model(x), expected, atol=1e-5)


def test_a_module_the_user_holds_is_a_teacher_for_the_library(tmp_path):
    """A Python user with weights already in a module (loaded their own way) gets what load_teacher gives for a
    file: eval mode, a one-line error for a wrong spec, an identity that changes with the weights; synthesize and
    distill then record that teacher, and synthesize without its info says how to get one."""
    import datafree.api as df
    from datafree.teacher import teacher_from_module

    model = build().train()
    synthesize = functools.partial(df.synthesize, tmp_path / "set", model, method="deepinversion", count=4,
                                   config=df.preset("deepinversion", batch_size=4, iterations=1), progress=False)
    with pytest.raises(DatafreeError, match="teacher_from_module"):
        synthesize(teacher_info=None)
    assert not (tmp_path / "set").exists()
    with pytest.raises(DatafreeError, match=r"cannot run on inputs of shape \(3, 32, 32\).*spec passed"):
        teacher_from_module(model, CIFAR100)
    with pytest.raises(DatafreeError, match="state_dict, not a module.*load_state_dict"):
        teacher_from_module(model.state_dict(), FASHION_MNIST)

    teacher, info = teacher_from_module(model, FASHION_MNIST)
    assert teacher is model and not teacher.training
    assert (info.arch, info.format, info.spec) == ("tests.user_models:VGGish", "module", FASHION_MNIST)
    same, other = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        other.classifier_head[-1].bias[0] += 1e-3
    assert teacher_from_module(same, FASHION_MNIST)[1].sha256 == info.sha256
    assert teacher_from_module(other, FASHION_MNIST)[1].sha256 != info.sha256

    made = synthesize(teacher_info=info)
    assert made.manifest["teacher"]["sha256"] == info.sha256 and made.manifest["teacher"]["format"] == "module"
    run = df.distill(tmp_path / "student", "lenet5_half", df.TrainConfig(alpha=0.0, epochs=1, batch_size=4),
                     teacher=teacher, teacher_info=info, train=df.TransferSet(made.out))
    assert run.record["teacher"] == {**info.record(), "spec_source": "flags"}


def test_resolve_spec_from_flags_and_files(tmp_path):
    assert resolve_spec() is None and resolve_spec(dataset="imagefolder") is None
    assert resolve_spec(dataset="cifar100") == (CIFAR100, "dataset")
    spec, source = resolve_spec(input_shape=[3, 64, 64], num_classes=100, mean=[0.5], std=[0.25, 0.25, 0.25])
    assert source == "flags" and spec.shape == (3, 64, 64) and spec.mean == (0.5,) * 3 and spec.std == (0.25,) * 3
    spec, _ = resolve_spec(input_shape=[1, 28, 28], num_classes=10)
    assert spec.mean == (0.0,) and spec.std == (1.0,)  # unnormalised [0, 1] pixels unless told otherwise
    f = tmp_path / "spec.json"
    f.write_text(json.dumps({"input_shape": [3, 32, 32], "num_classes": 100, "mean": [0.5, 0.4, 0.3]}))
    spec, source = resolve_spec(spec_file=f, dataset="cifar100")  # the file describes the input; --dataset names the test split
    assert source == "spec-file" and spec.mean == (0.5, 0.4, 0.3) and spec.std == (1.0,) * 3
    for kwargs, needle in [({"input_shape": [3, 32, 32]}, "--num-classes"), ({"num_classes": 10}, "--input-shape"),
                           ({"mean": [0.5]}, "--mean/--std"), ({"spec_file": f, "num_classes": 3}, "pass one"),
                           ({"input_shape": [3, 32, 32], "num_classes": 10, "mean": [0.1, 0.2]}, "1 or 3 values"),
                           ({"input_shape": [3, 32, 32], "num_classes": 10, "std": [0.0]}, "std above 0")]:
        with pytest.raises(DatafreeError, match=needle):
            resolve_spec(**kwargs)


# ---------------------------------------------------------------- every command, every format, from the CLI
def _command(t: Teacher, fmt: str, command: str, tmp: Path) -> tuple[list[str], Path]:
    """The command line a user types for ``command`` on the teacher in format ``fmt``, and its output."""
    teacher, spec = [*t.args(fmt), *t.spec_flags[fmt]], t.spec_flags[fmt]
    out = tmp / "out"
    student = ["--student", "tests.user_models:tiny_net"]
    argv = {
        "synthesize": ["synthesize", *teacher, "--method", "deepinversion", "--count", "6", *TINY_SYNTH,
                       "--no-progress"],
        "distill-real": ["distill", *teacher, *t.data, *student, *FAST],
        "distill-transfer": ["distill", *teacher, "--transfer", str(t.tset), *t.data, *student, *FAST],
        "distill-method": ["distill", *teacher, "--method", "fast5", *TINY_GEN, "--steps-per-epoch", "2", "--no-test",
                           *student, *FAST],
        "condense-teacher": ["condense", "--method", "teacher", "--ipc", "1", *teacher, "--set", "iterations=1",
                             "--no-progress"],
        "condense-herding-soft": ["condense", "--method", "herding", "--ipc", "1", "--set", "herding_net=teacher",
                                  *teacher, "--soft-labels", *t.data, "--no-progress"],
        "evaluate-set-kd": ["evaluate-set", str(t.tset), "--protocol", "kd", *teacher, "--models", "1", "--epochs", "1",
                            "--arch", "mlp", "--augment", "none", *t.data, "--no-progress"],
        "compress": ["compress", *teacher, "--rank-ratio", "0.5"],
        "audit": ["audit", "--transfer", str(t.tset), *teacher, *t.data, "--baseline-count", "4", "--mia-count", "4",
                  "--closest", "2"],
        "describe-teacher": ["describe-teacher", str(t.paths[fmt]), *t.args(fmt)[2:], *spec, "--no-probe", "--json"],
    }[command]
    if command == "evaluate-set-kd":
        return [*argv, "--out", str(out) + ".json"], Path(str(out) + ".json")
    if command == "describe-teacher":
        return argv, out
    return [*argv, "--out", str(out)], out


COMMANDS = ("synthesize", "distill-real", "distill-transfer", "distill-method", "condense-teacher",
            "condense-herding-soft", "evaluate-set-kd", "compress", "audit", "describe-teacher")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("command", COMMANDS)
def test_command_runs_on_a_foreign_teacher(teacher, fmt, command, tmp_path, capsys):
    argv, out = _command(teacher, fmt, command, tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    whole_model = fmt in ("torchscript", "export")
    if command == "compress" and whole_model:  # Tucker-2 saves the teacher's architecture by name: a whole model has none
        lines = captured.err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "pass its state_dict with --teacher-arch" in lines[0]
        assert not out.exists()
        return
    assert code == 0, captured.err
    source = {"gray": "dataset", "rgb": "flags" if fmt == "pt" else "embedded"}[teacher.name]
    fmt_name = {"pt": "state_dict", "safetensors": "state_dict", "torchscript": "torchscript", "export": "torch.export"}[fmt]
    if command in ("synthesize", "condense-teacher"):  # data-free: the spec is the teacher's own
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["spec_source"] == source and manifest["teacher"]["format"] == fmt_name
        assert manifest["spec"]["num_classes"] == teacher.spec.num_classes and len(TransferSet(out)) > 0
    elif command == "condense-herding-soft":  # real images: the data's spec, the teacher's logits
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["spec_source"] == "dataset-files" and manifest["teacher"]["format"] == fmt_name
        assert TransferSet(out).get_batch(torch.arange(2))[2].shape == (2, teacher.spec.num_classes)
    elif command.startswith("distill"):
        result = json.loads((out / "result.json").read_text())
        assert result["teacher"]["format"] == fmt_name and result["spec"]["channels"] == teacher.spec.channels
        expected = {"distill-real": "dataset-files", "distill-transfer": "transfer-set", "distill-method": source}
        assert result["spec_source"] == expected[command] and result["teacher"]["spec_source"] == source
    elif command == "evaluate-set-kd":
        result = json.loads(out.read_text())
        assert result["protocol"]["name"] == "kd" and result["teacher"]["format"] == fmt_name
        assert result["spec_source"] == "transfer-set"
    elif command == "compress":
        side = json.loads((out / "model.json").read_text())
        assert side["arch"] == "tucker" and side["arch_kwargs"]["base"] == ARCH
        assert side["metrics"]["compressed_from"]["spec_source"] == source
        assert main(["evaluate", str(out), *teacher.data]) == 0  # the compressed teacher loads like any checkpoint
    elif command == "audit":
        report = json.loads((out / "audit.json").read_text())
        assert report["protocol"]["teacher_model"]["format"] == fmt_name
        assert "teacher_feature" in json.dumps(report)
    else:  # describe-teacher --json
        d = json.loads(captured.out)
        assert d["format"] == fmt_name and d["spec_source"] == source and d["parameters"] > 0
        assert [layer["kind"] for layer in d["batchnorm"]] == ["2d", "2d", "1d"]
        assert d["presets"]["deepinversion"]["applies"] and d["presets"]["zskd"]["applies"]
        assert d["presets"]["adi"]["commands"] == ["distill --method"] and d["condense_teacher"]["applies"]


# ---------------------------------------------------------------- larger inputs, no dataset at all
@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("fmt", ["pt", "export"])
def test_rgb_100_class_teacher_without_any_data(size, fmt, tmp_path, monkeypatch, capsys):
    import datafree.data.datasets as datasets

    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", tmp_path / "no-system-copy")
    spec = DataSpec(3, size, size, 100, (0.5,) * 3, (0.25,) * 3)
    model = user_teacher(100, 3, size)
    path = tmp_path / ("t.pt" if fmt == "pt" else "t.pt2")
    if fmt == "pt":
        torch.save(model.state_dict(), path)
        teacher = ["--teacher", str(path), "--teacher-arch", ARCH, "--teacher-kwargs", '{"in_channels": 3}']
    else:
        torch.export.save(torch.export.export(model, (torch.rand(2, *spec.shape),),
                                              dynamic_shapes=({0: torch.export.Dim("batch")},)), str(path))
        teacher = ["--teacher", str(path), "--trust-pickle"]
    teacher += ["--input-shape", "3", str(size), str(size), "--num-classes", "100", "--mean", "0.5", "--std", "0.25"]
    assert main(["synthesize", *teacher, "--method", "zskd", "--count", "6", *TINY_SYNTH, "--out", str(tmp_path / "s"),
                 "--no-progress"]) == 0
    assert TransferSet(tmp_path / "s").spec.shape == (3, size, size)
    assert main(["distill", *teacher, "--method", "dfad", *TINY_GEN, "--steps-per-epoch", "2",
                 "--student", "resnet8", "--student-kwargs", '{"width": 2}', "--out", str(tmp_path / "d"), *FAST]) == 0
    result = json.loads((tmp_path / "d" / "result.json").read_text())
    assert "test_accuracy" not in result["metrics"] and result["dataset"] is None  # no test split: not evaluated
    assert "not evaluated" in capsys.readouterr().out
    assert main(["condense", "--method", "teacher", "--ipc", "1", *teacher, "--set", "iterations=1",
                 "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert len(TransferSet(tmp_path / "c")) == 100


def test_data_free_commands_do_not_need_the_dataset_files(tmp_path, monkeypatch, capsys):
    """--dataset gives the spec; its missing test split is reported as not evaluated, unless --data-root named it."""
    import datafree.data.datasets as datasets

    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", tmp_path / "no-system-copy")
    torch.save(user_teacher(10, 1, 28).state_dict(), tmp_path / "teacher.pt")
    teacher = ["--teacher", str(tmp_path / "teacher.pt"), "--teacher-arch", ARCH, "--dataset", "fashion-mnist"]
    live = ["distill", *teacher, "--method", "zskd", *TINY_SYNTH, "--steps-per-epoch", "2", *FAST]
    assert main([*live, "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "fashion-mnist test split not found" in captured.err and "not evaluated" in captured.out
    assert main([*live, "--no-test", "--out", str(tmp_path / "b")]) == 0
    assert "not found" not in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*live, "--data-root", str(empty), "--out", str(tmp_path / "c")]) == 2
    assert str(empty) in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_describe_teacher_probes_cost_and_explains_what_does_not_apply(tmp_path, capsys):
    # a teacher without BatchNorm: BN-statistics presets do not apply, and say why
    save_model(tmp_path / "plain.safetensors", build_model_plain(), ModelInfo("tests.user_models:tiny_net", FASHION_MNIST))
    (tmp_path / "plain.json").unlink()  # no sidecar: a foreign safetensors
    assert main(["describe-teacher", str(tmp_path / "plain.safetensors"), "--teacher-arch", "tests.user_models:tiny_net",
                 "--dataset", "fashion-mnist", "--device", "cpu", "--probe-batch", "2"]) == 0
    text = capsys.readouterr().out
    assert "BatchNorm layers: none" in text and "deepinversion  no" in text and "no BatchNorm" in text
    assert "measured best without BatchNorm: zskd with --set input_stats=1" in text
    assert re.search(r"zskd +yes +~[\d,]+ s per 1,000 images", text) and "condense --method teacher: no" in text
    torch.save(user_teacher(10, 1, 28).state_dict(), tmp_path / "bn.pt")
    assert main(["describe-teacher", str(tmp_path / "bn.pt"), "--teacher-arch", ARCH, "--dataset", "fashion-mnist",
                 "--device", "cpu", "--probe-batch", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    costs = {n: p.get("seconds_per_1000_images") for n, p in d["presets"].items()}
    assert all(c is not None and c > 0 for c in costs.values()), costs
    # presets that differ only in their step count share one probe: cost scales with the steps
    assert costs["fast10"] == pytest.approx(2 * costs["fast5"], rel=0.01)
    assert "measured best with BatchNorm: fast5" in format_description(d)


def build_model_plain() -> torch.nn.Module:
    from datafree.models import build_model

    return build_model("tests.user_models:tiny_net", FASHION_MNIST, seed=0)


# ---------------------------------------------------------------- the bench
def test_bench_runs_on_a_foreign_state_dict_and_refuses_a_whole_model(tmp_path, capsys):
    from datafree.bench import get_suite, plan
    from datafree.models import build_model

    teachers = tmp_path / "teachers"
    teachers.mkdir()
    torch.save(build_model("resnet8", FASHION_MNIST, seed=0, width=4).state_dict(), teachers / "tiny.pt")
    runs = plan(get_suite("smoke"), tmp_path / "o", teachers=teachers)
    synth = next(s.argv for r in runs for s in r.steps if s.kind == "synthesize")
    assert synth[synth.index("--teacher-arch") + 1] == "resnet8" and "--dataset" in synth
    root = write_mnist_family(tmp_path / "fmnist")
    assert main(["bench", "run", "smoke", "--out", str(tmp_path / "o"), "--data-root", str(root), "--device", "cpu",
                 "--teachers", str(teachers)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(r["accuracy"] is not None for r in rows if r["source"] != "teacher")
    # the privacy audit of that suite loads the same foreign teacher (its architecture from the pair)
    assert main(["bench", "audit", str(tmp_path / "o"), "--data-root", str(root)]) == 0
    audit = json.loads(next((tmp_path / "o" / "runs").glob("tiny/*/seed0/audit/audit.json")).read_text())
    assert audit["protocol"]["teacher"] == str(teachers / "tiny.pt")
    assert len(audit["membership_inference"]["students"]) == 2
    capsys.readouterr()
    (teachers / "tiny.pt").unlink()
    model = build_model("resnet8", FASHION_MNIST, seed=0, width=4).eval()
    with open(teachers / "tiny.pt", "wb") as f:  # a whole model under a state_dict's name
        torch.export.save(torch.export.export(model, (torch.rand(2, 1, 28, 28),)), f)
    assert main(["bench", "run", "smoke", "--out", str(tmp_path / "o2"), "--teachers", str(teachers)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch.export program" in err[0] and "state_dict" in err[0]


def test_torchscript_that_cannot_be_converted_still_distills_and_says_why_bn_presets_do_not(tmp_path, monkeypatch):
    """Forward hooks never fire inside TorchScript: when its conversion to torch.export fails, the scripted
    module is the teacher (plain KD and hook-free methods work) and the BN presets name the reason."""
    import torch._export.converter as converter

    from datafree.synthesis import preset
    from datafree.teacher import ScriptedTeacher, check_synthesis, describe_teacher

    class Broken:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("unsupported node prim::Foo")

    monkeypatch.setattr(converter, "TS2EPConverter", Broken)
    model = user_teacher(10, 1, 28)
    paths = save_formats(model, FASHION_MNIST, tmp_path, embed=False)
    teacher, info = load_teacher(paths["torchscript"], spec=FASHION_MNIST, spec_source="dataset", trust_pickle=True)
    assert isinstance(teacher, ScriptedTeacher) and "prim::Foo" in teacher.no_hooks
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(teacher(x), model(x), atol=1e-5)
    with pytest.raises(DatafreeError, match="forward hooks cannot reach inside this TorchScript teacher"):
        check_synthesis(teacher, FASHION_MNIST, preset("deepinversion"))
    check_synthesis(teacher, FASHION_MNIST, preset("dfad"))  # needs no hook: runs
    d = describe_teacher(teacher, info, probe=False)
    assert [layer["hooks"] for layer in d["batchnorm"]] == [False] * 3 and not d["condense_teacher"]["applies"]
    assert "measured best with BatchNorm" not in format_description(d)  # its BN layers cannot be read
    assert d["presets"]["dfad"]["applies"] and not d["presets"]["deepinversion"]["applies"]
    assert main(["distill", "--teacher", str(paths["torchscript"]), "--trust-pickle", "--dataset", "fashion-mnist",
                 "--method", "dfad", *TINY_GEN, "--steps-per-epoch", "2", "--no-test", "--out", str(tmp_path / "s"),
                 *FAST]) == 0


def test_arch_module_beside_the_user_is_found_like_python_m_would(tmp_path, monkeypatch, capsys):
    """The console script does not put the working directory on sys.path; --teacher-arch mymodels:build
    still means the mymodels.py the user is standing next to (the issue's first command)."""
    import shutil
    import sys

    shutil.copy(Path(__file__).with_name("user_models.py"), tmp_path / "mymodels_byot.py")
    torch.save(user_teacher(10, 1, 28).state_dict(), tmp_path / "teacher.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "mymodels_byot", raising=False)
    try:
        assert main(["describe-teacher", "teacher.pt", "--teacher-arch", "mymodels_byot:build", "--dataset",
                     "fashion-mnist", "--no-probe"]) == 0
        assert "mymodels_byot:build, 1,078 parameters" in capsys.readouterr().out
    finally:
        sys.modules.pop("mymodels_byot", None)
