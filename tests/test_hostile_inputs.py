"""Hostile and broken inputs: every case ends in ONE actionable line and leaves nothing half-written.

Each case runs the real CLI (``datafree.cli.main``) and checks that

* the exit code is 2 and stderr is exactly one line starting ``datafree: error:`` (no traceback),
* the line says what is wrong (a keyword per case),
* nothing is half-written: the output directory is absent or byte-for-byte unchanged, no
  ``.NAME.*.tmp`` file of :func:`datafree.io.atomic_path` is left, and code hidden in a pickle
  never ran (its marker file does not exist).

:data:`CASES` lists every case id; each is exactly one pytest id (``-k 'disk-full'`` selects a family),
and ``len(CASES)`` is the number reported as "hostile-input cases" (checked by the last test).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import random
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from torch import nn

import datafree.checkpoint as checkpoint
import datafree.data.datasets as datasets
import datafree.data.transfer as transfer
from datafree.checkpoint import ModelInfo, save_model
from datafree.cli import main
from datafree.data import FASHION_MNIST
from datafree.data.transfer import TransferSetWriter
from datafree.models import build_model

CASES = [
    # 1. a .pt whose unpickling would run code
    "pickle-code/teacher-distill",
    "pickle-code/teacher-synthesize",
    "pickle-code/teacher-condense",
    "pickle-code/evaluate",
    "pickle-code/evaluate-legacy-pickle-format",
    # 2./3. a truncated or corrupted safetensors checkpoint
    "safetensors-truncated/evaluate-no-sidecar",
    "safetensors-truncated/teacher-distill-with-sidecar",
    "safetensors-header-flipped/evaluate-no-sidecar",
    "safetensors-header-flipped/teacher-distill-with-sidecar",
    "safetensors-header-length-flipped/evaluate-no-sidecar",
    "pt-random-bytes/evaluate",
    "pt-random-bytes/teacher-distill",
    # 4.-6. a broken transfer set
    "transfer-shard-sha256-mismatch/distill",
    "transfer-shard-sha256-mismatch/inspect",
    "transfer-shard-sha256-mismatch/evaluate-set",
    "transfer-manifest-not-json/distill",
    "transfer-manifest-not-json/inspect",
    "transfer-manifest-missing-shard/distill",
    "transfer-manifest-missing-shard/inspect",
    # 7. a state_dict of another architecture
    "arch-mismatch/lenet5-as-resnet8-distill",
    "arch-mismatch/lenet5-as-resnet8-evaluate",
    "arch-mismatch/plain-pt-lenet5-as-resnet8-distill",
    "arch-mismatch/resnet8-width4-as-width8-evaluate",
    # 8. a 3x32x32 teacher against 1x28x28 data
    "shape-mismatch/cifar-teacher-distill-fmnist",
    "shape-mismatch/cifar-teacher-evaluate-fmnist",
    "shape-mismatch/cifar-teacher-as-fmnist-arch-distill",
    "shape-mismatch/cifar-teacher-distill-fmnist-transfer",
    "shape-mismatch/cifar-teacher-condense-fmnist",
    # 9. a teacher that outputs NaN
    "nan-teacher/nan-weights-distill",
    "nan-teacher/user-model-distill",
    "nan-teacher/nan-logits-in-transfer-set",
    # 10. missing dataset files
    "missing-data/fashion-mnist-train-teacher",
    "missing-data/fashion-mnist-no-data-root",
    "missing-data/mnist-evaluate",
    "missing-data/cifar10-distill",
    "missing-data/cifar100-condense",
    "missing-data/imagefolder-train-teacher",
    # 11. an output directory with foreign content
    "foreign-out/train-teacher",
    "foreign-out/distill",
    "foreign-out/synthesize",
    "foreign-out/condense",
    "foreign-out/import-set",
    "foreign-out/export-set",
    # 12. a full disk
    "disk-full/model-weights",
    "disk-full/model-weights-safetensors-error",
    "disk-full/training-state",
    "disk-full/result-json",
    "disk-full/transfer-shard",
    "disk-quota/model-weights",
    "read-only-fs/training-state",
    # 13. a corrupted resume state
    "resume-state/state-pt-random-bytes",
    "resume-state/state-pt-truncated",
    "resume-state/state-pt-wrong-content",
    "resume-state/state-pt-not-a-dict",
    "resume-state/state-pt-other-arch",
    "resume-state/condense-state-random-bytes",
    "resume-state/synth-state-random-bytes",
    # 14. import-set of a malicious pickle
    "import-pickle-code/dc-layout",
    "import-pickle-code/dc-layout-legacy-pickle-format",
    "import-pickle-code/mtt-layout",
    # 15. a teacher datafree did not write: whole-model files and missing or wrong specs
    "foreign-teacher/torchscript-truncated",
    "foreign-teacher/torchscript-without-trust-pickle",
    "foreign-teacher/torchscript-with-teacher-arch",
    "foreign-teacher/torchscript-as-state-dict-evaluate",
    "foreign-teacher/torchscript-as-student-init",
    "foreign-teacher/torchscript-compress",
    "foreign-teacher/pt2-garbage",
    "foreign-teacher/pt2-truncated",
    "foreign-teacher/pt2-without-trust-pickle",
    "foreign-teacher/pt2-fixed-batch-size",
    "foreign-teacher/pt2-as-state-dict-evaluate",
    "foreign-teacher/state-dict-without-arch",
    "foreign-teacher/state-dict-without-spec",
    "foreign-teacher/wrong-input-shape",
    "foreign-teacher/wrong-num-classes",
    "foreign-teacher/input-shape-without-num-classes",
    "foreign-teacher/spec-file-not-json",
    "foreign-teacher/spec-file-incomplete",
    "foreign-teacher/embedded-spec-disagrees-with-flags",
]

FAST = ["--no-progress", "--epochs", "1", "--batch-size", "32"]


# ---------------------------------------------------------------- helpers
def assert_one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> str:
    """``code`` is 2 and stderr is one ``datafree: error:`` line holding every needle (case-insensitive)."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, f"exit code {code}, stderr: {err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("datafree: error: "), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(path: Path) -> dict[str, str] | None:
    """sha256 of every file below ``path`` (hidden ones included), or None when it does not exist."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(path.rglob("*"))}


def temp_files(root: Path) -> list[Path]:
    """Leftovers of datafree.io.atomic_path (``.NAME.XXXX.tmp``)."""
    return list(root.rglob(".*.tmp"))


class _RunsCode:
    """Unpickling this creates ``marker`` (a stand-in for any code a pickle could run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def write_malicious(path: Path, obj_with_payload: Callable[[_RunsCode], object], marker: Path, *,
                    legacy: bool = False) -> Path:
    payload = obj_with_payload(_RunsCode(marker))
    if legacy:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    else:
        torch.save(payload, path)
    return path


def save_teacher(directory: Path, arch: str = "lenet5", spec=FASHION_MNIST, **kwargs) -> Path:
    model = build_model(arch, spec, seed=0, **kwargs)
    save_model(directory / "model.safetensors", model, ModelInfo(arch, spec, kwargs))
    return directory


def write_sidecar(weights: Path, arch: str, spec=FASHION_MNIST, **kwargs) -> None:
    info = ModelInfo(arch, spec, kwargs, sha256=checkpoint.sha256_file(weights))
    weights.with_suffix(".json").write_text(json.dumps(info.to_dict()))


def make_transfer_set(directory: Path, *, shards: int = 2, per_shard: int = 8, logits_fill: float | None = None) -> Path:
    header = {"kind": "synthetic", "method": "test", "config": {}, "seed": 0,
              "teacher": {"arch": "lenet5", "sha256": "0" * 64}, "spec": FASHION_MNIST.to_dict()}
    writer = TransferSetWriter(directory, header)
    g = torch.Generator().manual_seed(0)
    for _ in range(shards):
        x = torch.randn(per_shard, *FASHION_MNIST.shape, generator=g)
        y = torch.arange(per_shard) % FASHION_MNIST.num_classes
        logits = torch.randn(per_shard, FASHION_MNIST.num_classes, generator=g)
        if logits_fill is not None:
            logits.fill_(logits_fill)
        writer.append(x, y, logits)
    return directory


@pytest.fixture
def teacher(tmp_path: Path) -> Path:
    """An (untrained) lenet5 run directory: model.safetensors + model.json."""
    return save_teacher(tmp_path / "teacher")


@pytest.fixture
def bn_teacher(tmp_path: Path) -> Path:
    """A resnet8 (width 4) run directory: has BatchNorm, so synthesize/condense accept it."""
    return save_teacher(tmp_path / "bn-teacher", "resnet8", width=4)


@pytest.fixture
def cifar_teacher(cifar10_root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "cifar-teacher"
    assert main(["train-teacher", "--arch", "lenet5", "--dataset", "cifar10", "--data-root", str(cifar10_root),
                 "--out", str(out), *FAST]) == 0
    return out


def nan_net(spec) -> nn.Module:
    """A user architecture (``tests.test_hostile_inputs:nan_net``) whose every output is NaN."""

    class NaNOut(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * float("nan")

    return nn.Sequential(nn.Flatten(), nn.Linear(spec.channels * spec.height * spec.width, spec.num_classes), NaNOut())


# ---------------------------------------------------------------- 1. pickled code in a checkpoint
PICKLE_CODE = {
    "pickle-code/teacher-distill": lambda ev, fm, out: ["distill", "--teacher", ev, "--data-root", fm, "--out", out, *FAST],
    "pickle-code/teacher-synthesize": lambda ev, fm, out: [
        "synthesize", "--teacher", ev, "--method", "deepinversion", "--count", "8", "--out", out, "--no-progress",
        "--set", "batch_size=8", "--set", "iterations=1"],
    "pickle-code/teacher-condense": lambda ev, fm, out: [
        "condense", "--method", "teacher", "--ipc", "1", "--teacher", ev, "--out", out, "--no-progress",
        "--set", "iterations=1"],
    "pickle-code/evaluate": lambda ev, fm, out: ["evaluate", ev, "--data-root", fm],
    "pickle-code/evaluate-legacy-pickle-format": lambda ev, fm, out: ["evaluate", ev, "--data-root", fm],
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("case", list(PICKLE_CODE), ids=list(PICKLE_CODE))
def test_checkpoint_with_pickled_code_is_refused(case, fmnist_root, tmp_path, capsys):
    marker, out = tmp_path / "PWNED", tmp_path / "out"
    # resnet8 (with BatchNorm) so every command would accept the architecture; a valid sidecar
    # (sha256 included), so the refusal comes from the pickle itself
    sd = build_model("resnet8", FASHION_MNIST, width=4).state_dict()
    evil = write_malicious(tmp_path / "evil.pt", lambda payload: {"state_dict": {**sd, "x": payload}}, marker,
                           legacy="legacy" in case)
    write_sidecar(evil, "resnet8", width=4)
    code = main(PICKLE_CODE[case](str(evil), str(fmnist_root), str(out)))
    line = assert_one_line_error(capsys, code, "pickled code", "--trust-pickle", str(evil))
    assert "Weights only load failed" not in line  # torch's boilerplate is cut to its one informative sentence
    assert not marker.exists() and not out.exists()


# ---------------------------------------------------------------- 2./3. truncated or corrupted safetensors
def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip(start: int, stop: int) -> Callable[[bytes], bytes]:
    def flip(data: bytes) -> bytes:
        return data[:start] + bytes(b ^ 0xFF for b in data[start:stop]) + data[stop:]
    return flip


SAFETENSORS = {
    "safetensors-truncated/evaluate-no-sidecar": (_truncate, False, "truncated or corrupted"),
    "safetensors-truncated/teacher-distill-with-sidecar": (_truncate, True, "sha256"),
    "safetensors-header-flipped/evaluate-no-sidecar": (_flip(9, 40), False, "truncated or corrupted"),
    "safetensors-header-flipped/teacher-distill-with-sidecar": (_flip(9, 40), True, "sha256"),
    "safetensors-header-length-flipped/evaluate-no-sidecar": (_flip(0, 8), False, "truncated or corrupted"),
}


@pytest.mark.parametrize("case", list(SAFETENSORS), ids=list(SAFETENSORS))
def test_broken_safetensors_checkpoint(case, teacher, fmnist_root, tmp_path, capsys):
    corrupt, keep_sidecar, needle = SAFETENSORS[case]
    weights = teacher / "model.safetensors"
    weights.write_bytes(corrupt(weights.read_bytes()))
    out = tmp_path / "out"
    if keep_sidecar:
        argv = ["distill", "--teacher", str(teacher), "--data-root", str(fmnist_root), "--out", str(out), *FAST]
    else:
        (teacher / "model.json").unlink()
        argv = ["evaluate", str(weights), "--arch", "lenet5", "--data-root", str(fmnist_root)]
    before = snapshot(teacher)
    assert_one_line_error(capsys, main(argv), needle, str(weights))
    assert snapshot(teacher) == before and not out.exists()


# random bytes make torch.load fail in several ways: UnpicklingError (seed 0), IndexError (2, 61), KeyError (20),
# UnicodeDecodeError (195); each must still be one line
RANDOM_SEEDS = (0, 2, 20, 61, 195)


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("pt-random-bytes/")])
def test_pt_checkpoint_of_random_bytes(case, fmnist_root, tmp_path, capsys):
    pt, out = tmp_path / "weights.pt", tmp_path / "out"
    for seed in RANDOM_SEEDS:
        _random_bytes(pt, seed)
        if case.endswith("evaluate"):
            argv = ["evaluate", str(pt), "--arch", "lenet5", "--data-root", str(fmnist_root)]
        else:
            argv = ["distill", "--teacher", str(pt), "--teacher-arch", "lenet5", "--data-root", str(fmnist_root),
                    "--out", str(out), *FAST]
        line = assert_one_line_error(capsys, main(argv), str(pt))
        assert "Weights only load failed" not in line
        assert not out.exists()


# ---------------------------------------------------------------- 4.-6. broken transfer sets
def _modify_shard(d: Path) -> None:
    shard = d / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))


TRANSFER_DAMAGE = {
    "transfer-shard-sha256-mismatch": (_modify_shard, "sha256"),
    "transfer-manifest-not-json": (lambda d: (d / "manifest.json").write_text('{"format": "datafree-transfer/1", '),
                                   "not valid JSON"),
    "transfer-manifest-missing-shard": (lambda d: (d / "shard-00001.safetensors").unlink(), "missing"),
}
TRANSFER_COMMANDS = {
    "distill": lambda s, fm, out: ["distill", "--transfer", s, "--no-test", "--out", out, *FAST],
    "inspect": lambda s, fm, out: ["inspect", s, "--out", out],
    "evaluate-set": lambda s, fm, out: ["evaluate-set", s, "--models", "1", "--epochs", "1", "--arch", "mlp",
                                        "--augment", "none", "--data-root", fm, "--out", out + ".json", "--no-progress"],
}
TRANSFER_CASES = [c for c in CASES if c.split("/")[0] in TRANSFER_DAMAGE]


@pytest.mark.parametrize("case", TRANSFER_CASES, ids=TRANSFER_CASES)
def test_broken_transfer_set(case, fmnist_root, tmp_path, capsys):
    damage, command = case.split("/")
    damage_fn, needle = TRANSFER_DAMAGE[damage]
    tset, out = make_transfer_set(tmp_path / "set"), tmp_path / "out"
    damage_fn(tset)
    before = snapshot(tset)
    code = main(TRANSFER_COMMANDS[command](str(tset), str(fmnist_root), str(out)))
    assert_one_line_error(capsys, code, needle)
    assert snapshot(tset) == before
    assert not out.exists() and not Path(str(out) + ".json").exists()


# ---------------------------------------------------------------- 7. another architecture's state_dict
@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("arch-mismatch/")])
def test_state_dict_of_another_architecture(case, teacher, bn_teacher, fmnist_root, tmp_path, capsys):
    out, fm = tmp_path / "out", str(fmnist_root)
    if case == "arch-mismatch/lenet5-as-resnet8-distill":
        argv = ["distill", "--teacher", str(teacher), "--teacher-arch", "resnet8", "--data-root", fm, "--out", str(out), *FAST]
        needles = ("does not fit resnet8", "missing", "unexpected", "--arch")
    elif case == "arch-mismatch/lenet5-as-resnet8-evaluate":
        argv = ["evaluate", str(teacher), "--arch", "resnet8", "--data-root", fm]
        needles = ("does not fit resnet8", "missing", "unexpected")
    elif case == "arch-mismatch/plain-pt-lenet5-as-resnet8-distill":
        pt = tmp_path / "lenet5.pt"
        torch.save(build_model("lenet5", FASHION_MNIST).state_dict(), pt)
        argv = ["distill", "--teacher", str(pt), "--teacher-arch", "resnet8", "--data-root", fm, "--out", str(out), *FAST]
        needles = ("does not fit resnet8", "missing", "unexpected")
    else:
        argv = ["evaluate", str(bn_teacher), "--arch", "resnet8", "--arch-kwargs", '{"width": 8}', "--data-root", fm]
        needles = ("does not fit resnet8", "mis-shaped")
    line = assert_one_line_error(capsys, main(argv), *needles)
    assert "+" in line or line.count(",") < 12  # names a few keys, not hundreds
    assert not out.exists()


# ---------------------------------------------------------------- 8. 3x32x32 teacher on 1x28x28 data
@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("shape-mismatch/")])
def test_teacher_for_other_image_shape(case, cifar_teacher, fmnist_root, tmp_path, capsys):
    out, fm, t = tmp_path / "out", str(fmnist_root), str(cifar_teacher)
    needles: tuple[str, ...] = ("(3, 32, 32)", "(1, 28, 28)")
    if case.endswith("cifar-teacher-distill-fmnist"):
        argv = ["distill", "--teacher", t, "--data-root", fm, "--out", str(out), *FAST]
    elif case.endswith("evaluate-fmnist"):
        argv = ["evaluate", t, "--data-root", fm]
    elif case.endswith("as-fmnist-arch-distill"):  # forcing the arch on the fmnist spec: the weights do not fit
        argv = ["distill", "--teacher", t, "--teacher-arch", "lenet5", "--data-root", fm, "--out", str(out), *FAST]
        needles = ("does not fit lenet5", "mis-shaped", "[6, 3, 5, 5]")
    elif case.endswith("fmnist-transfer"):
        tset = make_transfer_set(tmp_path / "set")
        argv = ["distill", "--teacher", t, "--transfer", str(tset), "--no-test", "--out", str(out), *FAST]
    else:
        argv = ["condense", "--method", "random", "--ipc", "1", "--teacher", t, "--soft-labels", "--data-root", fm,
                "--out", str(out), "--no-progress"]
    assert_one_line_error(capsys, main(argv), *needles)
    assert not out.exists()


# ---------------------------------------------------------------- 9. a teacher that outputs NaN
@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("nan-teacher/")])
def test_nan_teacher_stops_with_one_line(case, fmnist_root, tmp_path, capsys):
    out, fm = tmp_path / "out", str(fmnist_root)
    if case.endswith("nan-weights-distill"):
        model = build_model("lenet5", FASHION_MNIST)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
        save_model(tmp_path / "nan" / "model.safetensors", model, ModelInfo("lenet5", FASHION_MNIST))
        argv = ["distill", "--teacher", str(tmp_path / "nan"), "--data-root", fm, "--out", str(out), *FAST]
    elif case.endswith("user-model-distill"):
        arch = f"{__name__}:nan_net"
        save_model(tmp_path / "nan" / "model.safetensors", nan_net(FASHION_MNIST), ModelInfo(arch, FASHION_MNIST))
        argv = ["distill", "--teacher", str(tmp_path / "nan"), "--data-root", fm, "--out", str(out), *FAST]
    else:  # stored teacher logits are NaN; distilled without a live teacher
        tset = make_transfer_set(tmp_path / "set", logits_fill=float("nan"))
        argv = ["distill", "--transfer", str(tset), "--no-test", "--out", str(out), *FAST]
    assert_one_line_error(capsys, main(argv), "non-finite loss", "kd=nan", "teacher")
    assert not (out / "model.safetensors").exists() and not temp_files(tmp_path)
    assert not out.exists()  # failed before its first epoch: no empty run directory either


# ---------------------------------------------------------------- 10. missing dataset files
@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("missing-data/")])
def test_missing_dataset_files(case, teacher, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", tmp_path / "no-system-copy")
    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    root = ["--data-root", str(empty)]
    needles: tuple[str, ...] = (str(empty), "--data-root")
    if case.endswith("fashion-mnist-train-teacher"):
        argv = ["train-teacher", *root, "--out", str(out), *FAST]
        needles = (*needles, "apt-get install")
    elif case.endswith("fashion-mnist-no-data-root"):
        argv = ["train-teacher", "--out", str(out), *FAST]
        needles = (str(tmp_path / "no-system-copy"), "--data-root")
    elif case.endswith("mnist-evaluate"):
        argv = ["evaluate", str(teacher), "--dataset", "mnist", *root]
        needles = (*needles, "idx")
    elif case.endswith("cifar10-distill"):
        argv = ["distill", "--teacher", str(teacher), "--dataset", "cifar10", *root, "--out", str(out), *FAST]
        needles = (*needles, "cifar-10-batches-py")
    elif case.endswith("cifar100-condense"):
        argv = ["condense", "--method", "random", "--ipc", "1", "--dataset", "cifar100", *root, "--out", str(out),
                "--no-progress"]
        needles = (*needles, "cifar-100-python")
    else:
        argv = ["train-teacher", "--dataset", "imagefolder", *root, "--out", str(out), *FAST]
        needles = (str(empty / "train"), "does not exist", "--data-root")
    assert_one_line_error(capsys, main(argv), *needles)
    assert not out.exists() and list(empty.iterdir()) == []


# ---------------------------------------------------------------- 11. an output directory with foreign content
@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("foreign-out/")])
def test_output_directory_with_foreign_content(case, teacher, bn_teacher, fmnist_root, tmp_path, capsys):
    out, fm = tmp_path / "mine", str(fmnist_root)
    out.mkdir()
    (out / "thesis.tex").write_text("three years of work")
    (out / "figures").mkdir()
    (out / "figures" / "plot.png").write_bytes(b"\x89PNG")
    before = snapshot(out)
    command = case.split("/")[1]
    if command == "train-teacher":
        argv = ["train-teacher", "--data-root", fm, "--out", str(out), *FAST]
    elif command == "distill":
        argv = ["distill", "--teacher", str(teacher), "--data-root", fm, "--out", str(out), *FAST]
    elif command == "synthesize":
        argv = ["synthesize", "--teacher", str(bn_teacher), "--method", "deepinversion", "--count", "8",
                "--out", str(out), "--no-progress", "--set", "batch_size=8", "--set", "iterations=1"]
    elif command == "condense":
        argv = ["condense", "--method", "random", "--ipc", "1", "--data-root", fm, "--out", str(out), "--no-progress"]
    elif command == "import-set":
        res = tmp_path / "res_DM.pt"
        torch.save({"data": [[torch.randn(10, *FASHION_MNIST.shape), torch.arange(10)]]}, res)
        argv = ["import-set", str(res), "--out", str(out)]
    else:
        argv = ["export-set", str(make_transfer_set(tmp_path / "set")), "--layout", "mtt", "--out", str(out)]
    line = assert_one_line_error(capsys, main(argv), str(out))
    assert any(w in line for w in ("another --out", "another path", "not empty")), line
    assert snapshot(out) == before


# ---------------------------------------------------------------- 12. a full disk
def _fail_midway(err: int, original: Callable, *, path_arg: int = 1) -> Callable:
    """A writer that writes half of what ``original`` would, then fails with ``err``."""

    def write(*args, **kwargs):
        original(*args, **kwargs)
        target = Path(args[path_arg])
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        raise OSError(err, os.strerror(err))

    return write


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith(("disk-full/", "disk-quota/", "read-only-fs/"))])
def test_full_disk_leaves_no_partial_file(case, bn_teacher, fmnist_root, tmp_path, monkeypatch, capsys):
    out, fm = tmp_path / "out", str(fmnist_root)
    err = {"disk-full": errno.ENOSPC, "disk-quota": errno.EDQUOT, "read-only-fs": errno.EROFS}[case.split("/")[0]]
    site = case.split("/")[1]
    argv = ["train-teacher", "--data-root", fm, "--out", str(out), *FAST]
    if site == "model-weights":
        monkeypatch.setattr(checkpoint, "save_file", _fail_midway(err, checkpoint.save_file))
        target = out / "model.safetensors"
    elif site == "model-weights-safetensors-error":  # how safetensors itself reports a full disk
        def save_file(tensors, filename, metadata=None):
            Path(filename).write_bytes(b"partial")
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

        monkeypatch.setattr(checkpoint, "save_file", save_file)
        target = out / "model.safetensors"
    elif site == "training-state":
        monkeypatch.setattr(torch, "save", _fail_midway(err, torch.save))
        target = out / "state.pt"
    elif site == "result-json":
        original = Path.write_text

        def write_text(self, *args, **kwargs):
            if self.name.startswith(".result.json."):
                return _fail_midway(err, original, path_arg=0)(self, *args, **kwargs)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
        target = out / "result.json"
    else:
        monkeypatch.setattr(transfer, "save_file", _fail_midway(err, transfer.save_file))
        argv = ["synthesize", "--teacher", str(bn_teacher), "--method", "deepinversion", "--count", "8",
                "--out", str(out), "--no-progress", "--set", "batch_size=8", "--set", "iterations=1"]
        target = out / "shard-00000.safetensors"
    keyword = {errno.ENOSPC: "no space left", errno.EDQUOT: "quota", errno.EROFS: "read-only"}[err]
    assert_one_line_error(capsys, main(argv), keyword, target.name)
    assert not target.exists() and not temp_files(tmp_path)
    if site == "transfer-shard":  # it failed before its first image: no empty set is left to ask for --resume
        assert not out.exists()


# ---------------------------------------------------------------- 13. a corrupted resume state
def _random_bytes(p: Path, seed: int = 0) -> None:
    p.write_bytes(random.Random(seed).randbytes(4096))


RESUME = {
    "resume-state/state-pt-random-bytes": None,  # several seeds, see below
    "resume-state/state-pt-truncated": lambda p: p.write_bytes(p.read_bytes()[:200]),
    "resume-state/state-pt-wrong-content": lambda p: torch.save({"epoch": 0, "model": {}}, p),
    "resume-state/state-pt-not-a-dict": lambda p: torch.save([1, 2, 3], p),
    "resume-state/state-pt-other-arch": None,  # the run is resumed with another --arch
    "resume-state/condense-state-random-bytes": _random_bytes,
    "resume-state/synth-state-random-bytes": _random_bytes,
}


@pytest.mark.parametrize("case", list(RESUME), ids=list(RESUME))
def test_corrupted_resume_state(case, bn_teacher, fmnist_root, tmp_path, capsys):
    out, fm = tmp_path / "run", str(fmnist_root)
    damage = RESUME[case]
    if "condense-state" in case:
        first = ["condense", "--method", "random", "--ipc", "1", "--data-root", fm, "--out", str(out), "--no-progress"]
        again, state, needles = [*first, "--resume"], out / "condense-state.pt", ("not a readable training state",)
    elif "synth-state" in case:
        first = ["synthesize", "--teacher", str(bn_teacher), "--method", "deepinversion", "--count", "8",
                 "--out", str(out), "--no-progress", "--set", "batch_size=8", "--set", "iterations=1"]
        again, state = [*first[:6], "16", *first[7:], "--resume"], out / "synth-state.pt"
        needles = ("not a readable training state",)
    else:
        first = ["train-teacher", "--data-root", fm, "--out", str(out), *FAST]
        again, state, needles = [*first, "--epochs", "2", "--resume"], out / "state.pt", ("cannot resume", "state.pt")
        if case.endswith("other-arch"):
            again = [*again, "--arch", "resnet8", "--arch-kwargs", '{"width": 4}']
            needles = (*needles, "does not fit resnet", "--arch")
    assert main(first) == 0
    capsys.readouterr()
    if case.endswith("state-pt-random-bytes"):
        for seed in RANDOM_SEEDS:
            _random_bytes(state, seed)
            before = snapshot(out)
            line = assert_one_line_error(capsys, main(again), "not a readable training state", str(state))
            assert "Weights only load failed" not in line and snapshot(out) == before
        return
    if damage is not None:
        damage(state)
    before = snapshot(out)
    line = assert_one_line_error(capsys, main(again), "cannot resume", *needles, str(state))
    assert "Weights only load failed" not in line
    if "random-bytes" in case or "truncated" in case:
        assert "not a readable training state" in line
    assert snapshot(out) == before


# ---------------------------------------------------------------- 14. import-set of a malicious pickle
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("import-pickle-code/")])
def test_import_set_refuses_pickled_code(case, tmp_path, capsys):
    marker, out = tmp_path / "PWNED", tmp_path / "imported"
    labels = torch.arange(10)
    if case.endswith("mtt-layout"):
        src = tmp_path / "mtt"
        src.mkdir()
        write_malicious(src / "images_best.pt", lambda payload: payload, marker)
        torch.save(labels, src / "labels_best.pt")
    else:
        src = write_malicious(tmp_path / "res_DM.pt", lambda payload: {"data": [[payload, labels]]}, marker,
                              legacy="legacy" in case)
    assert_one_line_error(capsys, main(["import-set", str(src), "--out", str(out)]), "pickled code", "will not run")
    assert not marker.exists() and not out.exists()


# ---------------------------------------------------------------- 15. a teacher datafree did not write
def _user_model() -> nn.Module:
    from tests.user_models import build

    return build(10, 1).eval()


def _torchscript(path: Path, model: nn.Module, extra: dict[str, str] | None = None) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model), str(path), _extra_files=extra or {})
    return path


def _exported(path: Path, model: nn.Module, *, dynamic: bool = True) -> Path:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(model, (torch.rand(4, 1, 28, 28),), dynamic_shapes=shapes), str(path))
    return path


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("foreign-teacher/")])
def test_foreign_teacher_errors_name_the_flag(case, fmnist_root, tmp_path, capsys):
    out, fm, name = tmp_path / "out", str(fmnist_root), case.split("/")[1]
    arch = "tests.user_models:build"
    synth = ["synthesize", "--method", "deepinversion", "--count", "4", "--set", "batch_size=4", "--set", "iterations=1",
             "--out", str(out), "--no-progress"]
    fmnist = ["--dataset", "fashion-mnist"]
    model = _user_model()
    pt = tmp_path / "teacher.pt"
    torch.save(model.state_dict(), pt)
    if name.startswith("torchscript"):
        ts = _torchscript(tmp_path / "teacher.ts", model)
        argv, needles = {
            "torchscript-truncated": ([*synth, "--teacher", str(ts), "--trust-pickle", *fmnist], ("cannot read", str(ts))),
            "torchscript-without-trust-pickle": ([*synth, "--teacher", str(ts), *fmnist],
                                                 ("TorchScript archive", "--trust-pickle")),
            "torchscript-with-teacher-arch": ([*synth, "--teacher", str(ts), "--teacher-arch", arch, "--trust-pickle",
                                               *fmnist], ("carries its own architecture", "drop --teacher-arch")),
            "torchscript-as-state-dict-evaluate": (["evaluate", str(ts), "--arch", arch, "--data-root", fm],
                                                   ("TorchScript archive", "not a state_dict")),
            "torchscript-as-student-init": (["distill", "--teacher", str(pt), "--teacher-arch", arch, "--student-init",
                                             str(ts), "--data-root", fm, "--out", str(out), *FAST],
                                            ("TorchScript archive", "not a state_dict")),
            "torchscript-compress": (["compress", "--teacher", str(ts), "--trust-pickle", *fmnist, "--rank-ratio", "0.5",
                                      "--out", str(out)], ("torchscript", "--teacher-arch")),
        }[name]
        if name == "torchscript-truncated":
            data = ts.read_bytes()
            ts.write_bytes(data[: len(data) // 2])
    elif name.startswith("pt2"):
        p2 = tmp_path / "teacher.pt2"
        if name == "pt2-garbage":
            _random_bytes(p2)
        else:
            _exported(p2, model, dynamic=name != "pt2-fixed-batch-size")
        if name == "pt2-truncated":
            p2.write_bytes(p2.read_bytes()[:3000])
        argv = [*synth, "--teacher", str(p2), "--trust-pickle", *fmnist]
        needles = {"pt2-garbage": ("cannot read", str(p2)), "pt2-truncated": ("cannot read", str(p2)),
                   "pt2-without-trust-pickle": ("torch.export program", "--trust-pickle"),
                   "pt2-fixed-batch-size": ("cannot run", "dynamic_shapes"),
                   "pt2-as-state-dict-evaluate": ("torch.export program", "not a state_dict")}[name]
        if name == "pt2-without-trust-pickle":
            argv.remove("--trust-pickle")
        if name == "pt2-as-state-dict-evaluate":
            argv = ["evaluate", str(p2), "--arch", arch, "--data-root", fm]
    else:
        spec = tmp_path / "spec.json"
        spec.write_text("{not json" if name == "spec-file-not-json" else '{"input_shape": [1, 28, 28]}')
        ts = _torchscript(tmp_path / "teacher.ts", model, {"datafree_spec.json": json.dumps(
            {"channels": 1, "height": 28, "width": 28, "num_classes": 10, "mean": [0.5], "std": [0.5]})})
        argv, needles = {
            "state-dict-without-arch": ([*synth, "--teacher", str(pt), *fmnist], ("--teacher-arch", "sidecar")),
            "state-dict-without-spec": ([*synth, "--teacher", str(pt), "--teacher-arch", arch],
                                        ("--dataset", "--input-shape", "--spec")),
            "wrong-input-shape": ([*synth, "--teacher", str(pt), "--teacher-arch", arch, "--input-shape", "3", "32", "32",
                                   "--num-classes", "10"], ("cannot run", "(3, 32, 32)", "--input-shape")),
            "wrong-num-classes": ([*synth, "--teacher", str(pt), "--teacher-arch", arch, "--teacher-kwargs",
                                   '{"num_classes": 10}', "--input-shape", "1", "28", "28", "--num-classes", "100"],
                                  ("returns (2, 10)", "--num-classes")),
            "input-shape-without-num-classes": ([*synth, "--teacher", str(pt), "--teacher-arch", arch, "--input-shape",
                                                 "1", "28", "28"], ("--input-shape needs --num-classes",)),
            "spec-file-not-json": ([*synth, "--teacher", str(pt), "--teacher-arch", arch, "--spec", str(spec)],
                                   ("not valid JSON", str(spec))),
            "spec-file-incomplete": ([*synth, "--teacher", str(pt), "--teacher-arch", arch, "--spec", str(spec)],
                                     ("lacks num_classes",)),
            "embedded-spec-disagrees-with-flags": ([*synth, "--teacher", str(ts), "--trust-pickle", *fmnist],
                                                   ("embedded spec", "normalisation")),
        }[name]
    assert_one_line_error(capsys, main(argv), *needles)
    assert not out.exists() and not temp_files(tmp_path)


# ---------------------------------------------------------------- the list is the corpus
def test_every_case_is_listed_once_and_run():
    """Each id in CASES is exactly one parametrised case above (so len(CASES) is the count to report)."""
    assert len(CASES) == len(set(CASES))
    used: list[str] = []
    for name, fn in globals().items():
        if name.startswith("test_") and name != "test_every_case_is_listed_once_and_run":
            marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
            assert len(marks) == 1, f"{name} must be parametrised over case ids from CASES"
            used += list(marks[0].args[1])
    assert sorted(used) == sorted(CASES)
