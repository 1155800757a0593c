"""int8 quantization (datafree.quantize, 'datafree quantize'): accuracy, reload, what calibration reads, bad inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

import datafree.data as data_pkg
import datafree.data.datasets as datasets
import datafree.data.transfer as transfer
from datafree.checkpoint import ModelInfo, load_model, save_model
from datafree.cli import main
from datafree.data import FASHION_MNIST, DataSpec, TensorImageDataset, load_dataset
from datafree.data.transfer import TransferSet, TransferSetWriter
from datafree.errors import DatafreeError
from datafree.models import fold_batchnorm
from datafree.quantize import (
    Int8Info,
    Int8Model,
    QuantizeConfig,
    backend,
    evaluate_int8,
    load_int8,
    quantize,
    quantize_model,
    save_int8,
)
from datafree.quantize import calibration as cal
from datafree.quantize.qat import WeightFakeQuant
from tests.test_hostile_inputs import snapshot, temp_files, write_malicious, write_sidecar


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("datafree: error: "), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


# ---------------------------------------------------------------- models used as user architectures
class GRUNet(nn.Module):
    """A conv layer, then a GRU: ONNX Runtime quantizes the conv but not the GRU (a float-only op)."""

    def __init__(self, spec=FASHION_MNIST) -> None:
        super().__init__()
        self.conv = nn.Conv2d(spec.channels, 4, 3, padding=1)
        self.gru = nn.GRU(4 * spec.width, 16, batch_first=True)
        self.fc = nn.Linear(16, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).permute(0, 2, 1, 3).flatten(2)
        return self.fc(self.gru(h)[0][:, -1])


class FFTNet(nn.Module):
    """An operation without an ONNX form (rfft2): the model cannot be exported at all."""

    def __init__(self, spec=FASHION_MNIST) -> None:
        super().__init__()
        self.fc = nn.Linear(spec.height * (spec.width // 2 + 1), spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.fft.rfft2(x[:, 0]).abs().flatten(1))


def save_user_model(directory: Path, name: str) -> Path:
    arch = f"tests.test_quantize:{name}"
    model = {"GRUNet": GRUNet, "FFTNet": FFTNet}[name]()
    save_model(directory / "model.safetensors", model, ModelInfo(arch, FASHION_MNIST, {}))
    return directory


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A LeNet-5-half trained on the tiny learnable Fashion-MNIST (bands per class), and that data."""
    from tests.conftest import write_mnist_family

    root = tmp_path_factory.mktemp("quant")
    data = write_mnist_family(root / "fmnist", n_train=512, n_test=256)
    out = root / "lenet"
    assert main(["train-teacher", "--arch", "lenet5_half", "--epochs", "4", "--batch-size", "32", "--lr", "0.05",
                 "--data-root", str(data), "--out", str(out), "--no-progress"]) == 0
    return out, data


@pytest.fixture(scope="module")
def bn_model(tmp_path_factory, trained) -> Path:
    """A ResNet-8 (width 4), with BatchNorm, trained one epoch on the tiny data."""
    _, data = trained
    out = tmp_path_factory.mktemp("bn") / "resnet8"
    assert main(["train-teacher", "--arch", "resnet8", "--arch-kwargs", '{"width": 4}', "--epochs", "2",
                 "--batch-size", "32", "--data-root", str(data), "--out", str(out), "--no-progress"]) == 0
    return out


def stored_set(directory: Path, images: torch.Tensor) -> Path:
    header = {"kind": "synthetic", "method": "test", "config": {}, "seed": 0,
              "teacher": {"arch": "lenet5_half", "sha256": "0" * 64}, "spec": FASHION_MNIST.to_dict()}
    writer = TransferSetWriter(directory, header)
    for part in images.split(24):
        writer.append(part, torch.zeros(len(part), dtype=torch.long), torch.zeros(len(part), 10))
    return directory


# ---------------------------------------------------------------- accuracy and reload
def test_int8_is_close_to_fp32_and_reloads_bitwise(trained, tmp_path):
    model_dir, data = trained
    model, info = load_model(model_dir)
    test = load_dataset("fashion-mnist", "test", str(data))
    train = load_dataset("fashion-mnist", "train", str(data))
    calib = cal.Calibration("real", cal.Subset(train, torch.arange(0, 512, 4)), {"kind": "real"})
    onnx_bytes, record = quantize_model(model, info, calib)
    assert record["mode"] == "static" and record["calibration_images_read"] == 128 and record["float_ops"] == []
    assert record["int8_ops"] == 5  # 3 convolutions + 2 linear layers of LeNet-5-half
    fresh = Int8Model(backend.open_session(onnx_bytes, "new"), Int8Info(info.arch, info.spec))
    from datafree.train import evaluate

    fp32, int8 = evaluate(model, test)["accuracy"], evaluate_int8(fresh, test)["accuracy"]
    assert fp32 > 80 and abs(fp32 - int8) <= 1.6, (fp32, int8)  # 256 test images: 1.6 points = 4 images
    x = test.get_batch(torch.arange(64))[0]
    path = save_int8(tmp_path / "int8", onnx_bytes, Int8Info(info.arch, info.spec, calibration=calib.record))
    reloaded = load_int8(path.parent)
    assert torch.equal(fresh(x), reloaded(x))  # bitwise identical
    assert reloaded.info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (model(x).argmax(1) == reloaded(x).argmax(1)).float().mean() > 0.95


def test_weight_fake_quant_is_what_onnx_runtime_stores(bn_model, trained):
    """QAT trains the very int8 weights ONNX Runtime stores: BN folded, per-channel max|w|/127."""
    model, info = load_model(bn_model)
    _, data = trained
    train = load_dataset("fashion-mnist", "train", str(data))
    onnx_bytes, _ = quantize_model(model, info, cal.Calibration("real", cal.Subset(train, torch.arange(64)), {}))
    graph = onnx.load_from_string(onnx_bytes).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    stored = {}
    for node in graph.node:  # weights: DequantizeLinear(int8 initializer, per-channel scale)
        if node.op_type == "DequantizeLinear" and init.get(node.input[0]) is not None and init[node.input[0]].ndim == 4:
            q, scale = init[node.input[0]], init[node.input[1]]
            stored[q.shape] = stored.get(q.shape, []) + [torch.tensor(q.astype("float32") * scale.reshape(-1, 1, 1, 1))]
    folded = fold_batchnorm(model)
    convs = [m.weight.detach() for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == sum(len(v) for v in stored.values()) == 9
    for w in convs:
        mine = WeightFakeQuant()(w)
        assert any(torch.allclose(mine, s, atol=1e-6) for s in stored[tuple(w.shape)]), w.shape


# ---------------------------------------------------------------- what calibration reads
def test_calibration_reads_only_the_set_it_is_given(trained, tmp_path, monkeypatch):
    model_dir, _ = trained
    g = torch.Generator().manual_seed(0)
    given = stored_set(tmp_path / "given", torch.randn(60, *FASHION_MNIST.shape, generator=g))
    other = stored_set(tmp_path / "other", torch.randn(30, *FASHION_MNIST.shape, generator=g))
    assert len(TransferSet(other)) == 30
    reads: list[tuple[str, list[int]]] = []
    loaded: list[str] = []
    original_get_batch, original_load = TransferSet.get_batch, datasets.load_dataset

    def spy_get_batch(self, index):
        reads.append((str(self.dir), torch.as_tensor(index).tolist()))
        return original_get_batch(self, index)

    def spy_load(name, split, *args, **kwargs):
        loaded.append(split)
        return original_load(name, split, *args, **kwargs)

    monkeypatch.setattr(transfer.TransferSet, "get_batch", spy_get_batch)
    monkeypatch.setattr(datasets, "load_dataset", spy_load)
    monkeypatch.setattr(data_pkg, "load_dataset", spy_load)
    result = quantize(model_dir, tmp_path / "q", calibration=[given], test=False, progress=False)
    assert loaded == []  # no real split at all, not even the test split
    assert {d for d, _ in reads} == {str(given)}
    assert sorted(i for _, index in reads for i in index) == list(range(60))  # each image once
    assert result["quantization"]["calibration_images_read"] == 60
    assert result["calibration"]["real_images_read"] == 0 and result["calibration"]["sets"][0]["count"] == 60
    # a seeded subset reads exactly those images, the same ones for the same seed
    reads.clear()
    quantize(model_dir, tmp_path / "q", calibration=[given], calibration_count=20, seed=3, test=False, overwrite=True,
             progress=False)
    first = sorted(i for _, index in reads for i in index)
    reads.clear()
    quantize(model_dir, tmp_path / "q", calibration=[given], calibration_count=20, seed=3, test=False, overwrite=True,
             progress=False)
    assert len(first) == 20 == len(set(first)) and first == sorted(i for _, index in reads for i in index)
    assert loaded == []


def test_real_calibration_reads_the_drawn_training_images_only(trained, tmp_path, monkeypatch):
    model_dir, data = trained
    seen: list[int] = []
    original = TensorImageDataset.get_batch

    def spy(self, index):
        seen.extend(torch.as_tensor(index).tolist())
        return original(self, index)

    monkeypatch.setattr(TensorImageDataset, "get_batch", spy)
    result = quantize(model_dir, tmp_path / "q", calibration_real=True, calibration_count=40, data_root=str(data),
                      test=False, progress=False)
    assert len(seen) == 40 == len(set(seen)) and result["calibration"]["real_images_read"] == 40
    assert result["calibration"]["kind"] == "real"


# ---------------------------------------------------------------- the command
def test_quantize_command_synthetic_calibration_qat_and_evaluate(bn_model, trained, tmp_path, capsys):
    _, data = trained
    out = tmp_path / "int8"
    argv = ["quantize", "--model", str(bn_model), "--calibration-method", "deepinversion", "--calibration-count", "16",
            "--set", "batch_size=8", "--set", "iterations=2", "--data-root", str(data), "--out", str(out), "--no-progress"]
    assert main([*argv, "--qat-epochs", "1", "--qat-batch-size", "8"]) == 0
    assert "int8 static, calibration synthetic (16 images)" in capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert result["calibration"]["kind"] == "synthetic" and result["calibration"]["real_images_read"] == 0
    assert result["calibration"]["method"] == "deepinversion" and len(TransferSet(out / "calibration")) == 16
    assert result["quantization"]["qat"]["epoch"] == 1 and result["argv"][:2] == ["datafree", "quantize"]
    side = json.loads((out / "model.json").read_text())
    assert side["format"] == "datafree-int8/1" and side["arch"] == "resnet8" and side["arch_kwargs"] == {"width": 4}
    assert side["sha256"] == hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert main(["evaluate", str(out), "--data-root", str(data), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["precision"] == "int8" and record["accuracy"] == pytest.approx(result["metrics"]["test_accuracy"])
    # again: refused without --overwrite; with it, the same calibration set is reused, not synthesized again
    one_line_error(capsys, main(argv), "already holds an int8 model", "--overwrite")

    def shards() -> dict[str, str]:
        return {k: v for k, v in (snapshot(out / "calibration") or {}).items() if k.startswith("shard-")}

    before = shards()
    assert main([*argv, "--overwrite"]) == 0
    assert shards() == before and len(before) == 2
    # another recipe in the same --out needs --overwrite, which synthesizes it again
    assert main([*argv[:-5], "--set", "iterations=3", *argv[-5:], "--overwrite"]) == 0
    assert shards() != before and TransferSet(out / "calibration").manifest["config"]["iterations"] == 3


def test_no_calibration_is_dynamic_int8(trained, tmp_path, capsys):
    model_dir, data = trained
    assert main(["quantize", "--model", str(model_dir), "--no-calibration", "--data-root", str(data),
                 "--out", str(tmp_path / "dyn"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "dyn" / "result.json").read_text())
    assert result["mode"] == "dynamic" and result["quantization"]["calibration_images_read"] == 0
    assert abs(result["metrics"]["test_accuracy"] - result["metrics"]["fp32_test_accuracy"]) <= 1.6
    ops = {n.op_type for n in onnx.load(str(tmp_path / "dyn" / "model.onnx")).graph.node}
    assert {"ConvInteger", "MatMulInteger"} <= ops


# ---------------------------------------------------------------- bad inputs: one line each
def test_float_only_operation_is_one_line(trained, tmp_path, capsys):
    _, data = trained
    ckpt = save_user_model(tmp_path / "gru", "GRUNet")
    argv = ["quantize", "--model", str(ckpt), "--calibration-real", "--calibration-count", "16", "--no-test",
            "--data-root", str(data), "--out", str(tmp_path / "q"), "--no-progress"]
    one_line_error(capsys, main(argv), "cannot quantize", "GRU", "--allow-float")
    assert not (tmp_path / "q" / "model.onnx").exists() and temp_files(tmp_path) == []
    assert main([*argv, "--allow-float"]) == 0  # accepted as a mixed int8/fp32 model when asked
    result = json.loads((tmp_path / "q" / "result.json").read_text())
    assert [op.split()[0] for op in result["quantization"]["float_ops"]] == ["GRU"]


def test_operation_without_onnx_form_is_one_line(trained, tmp_path, capsys):
    _, data = trained
    ckpt = save_user_model(tmp_path / "fft", "FFTNet")
    one_line_error(capsys, main(["quantize", "--model", str(ckpt), "--no-calibration", "--no-test",
                                 "--out", str(tmp_path / "q"), "--no-progress"]), "cannot export", "fft")
    assert not (tmp_path / "q").exists()


def test_empty_calibration_set_is_one_line(trained, tmp_path, capsys):
    model_dir, _ = trained
    empty = tmp_path / "empty"
    TransferSetWriter(empty, {"kind": "synthetic", "method": "test", "config": {}, "seed": 0, "teacher": {},
                              "spec": FASHION_MNIST.to_dict()})
    one_line_error(capsys, main(["quantize", "--model", str(model_dir), "--calibration", str(empty), "--no-test",
                                "--out", str(tmp_path / "q"), "--no-progress"]), "empty", str(empty))
    assert not (tmp_path / "q").exists()
    with pytest.raises(DatafreeError, match="empty"):
        quantize_model(*load_model(model_dir), cal.Calibration("transfer", TransferSet(empty), {}))


def test_other_bad_inputs_are_one_line(trained, bn_model, tmp_path, capsys):
    model_dir, data = trained
    out = tmp_path / "q"
    base = ["--no-test", "--out", str(out), "--no-progress"]
    # a BatchNorm preset against a model without BatchNorm
    one_line_error(capsys, main(["quantize", "--model", str(model_dir), "--calibration-method", "deepinversion", *base]),
                   "batchnorm")
    # a calibration set for other images
    cifar = DataSpec(3, 32, 32, 10, (0.5,) * 3, (0.5,) * 3)
    writer = TransferSetWriter(tmp_path / "cifar-set", {"kind": "synthetic", "method": "t", "config": {}, "seed": 0,
                                                        "teacher": {}, "spec": cifar.to_dict()})
    writer.append(torch.zeros(2, *cifar.shape), torch.zeros(2, dtype=torch.long), torch.zeros(2, 10))
    one_line_error(capsys, main(["quantize", "--model", str(model_dir), "--calibration", str(tmp_path / "cifar-set"),
                                 *base]), "(3, 32, 32)")
    # a checkpoint whose unpickling would run code
    marker = tmp_path / "PWNED"
    evil = write_malicious(tmp_path / "evil.pt", lambda p: {"state_dict": {"w": torch.zeros(1)}, "x": p}, marker)
    write_sidecar(evil, "lenet5_half")
    one_line_error(capsys, main(["quantize", "--model", str(evil), "--no-calibration", *base]), "pickled code")
    assert not marker.exists()
    # an output directory with foreign content
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    one_line_error(capsys, main(["quantize", "--model", str(model_dir), "--no-calibration", "--no-test",
                                 "--out", str(tmp_path / "foreign"), "--no-progress"]), "not an int8 run")
    # --calibration-count 0
    one_line_error(capsys, main(["quantize", "--model", str(model_dir), "--calibration-real", "--calibration-count", "0",
                                 "--data-root", str(data), *base]), "at least 1")


@pytest.fixture(scope="module")
def int8_once(trained, tmp_path_factory) -> Path:
    model_dir, _ = trained
    root = tmp_path_factory.mktemp("int8")
    out = root / "int8"
    quantize(model_dir, out, calibration=[stored_set(root / "s", torch.randn(24, *FASHION_MNIST.shape))],
             test=False, progress=False)
    return out


@pytest.fixture
def saved_int8(int8_once, tmp_path) -> Path:
    """A fresh copy of one int8 run (each test may damage its own)."""
    return Path(shutil.copytree(int8_once, tmp_path / "int8"))


def _damage(out: Path, how: str) -> None:
    onnx_path, side = out / "model.onnx", out / "model.json"
    if how == "flipped-byte":
        raw = bytearray(onnx_path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        onnx_path.write_bytes(bytes(raw))
        return
    if how == "sidecar-not-json":
        side.write_text("{not json")
        return
    if how == "sidecar-missing":
        side.unlink()
        return
    if how == "truncated-resigned":  # a truncated file whose sidecar was updated to match it
        onnx_path.write_bytes(onnx_path.read_bytes()[:200])
    elif how == "random-bytes-resigned":
        onnx_path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                            dtype=torch.uint8).numpy().tobytes())
    elif how == "external-data-resigned":  # weights pointing at a file outside the model
        proto = onnx.load(str(onnx_path))
        t = proto.graph.initializer[0]
        t.data_location = onnx.TensorProto.EXTERNAL
        t.ClearField("raw_data")
        entry = t.external_data.add()
        entry.key, entry.value = "location", "../../../etc/passwd"
        onnx_path.write_bytes(proto.SerializeToString())
    elif how == "custom-op-resigned":
        proto = onnx.load(str(onnx_path))
        proto.graph.node[0].domain = "evil.ops"
        onnx_path.write_bytes(proto.SerializeToString())
    info = json.loads(side.read_text())
    info["sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    side.write_text(json.dumps(info))


@pytest.mark.parametrize("how, needle", [
    ("flipped-byte", "does not match the sha256"),
    ("sidecar-not-json", "not valid json"),
    ("sidecar-missing", "no model.json sidecar"),
    ("truncated-resigned", "not a readable onnx model"),
    ("random-bytes-resigned", "not a readable onnx model"),
    ("external-data-resigned", "external weight files"),
    ("custom-op-resigned", "unknown domain"),
])
def test_damaged_int8_model_is_refused_in_one_line(saved_int8, trained, how, needle, capsys):
    _, data = trained
    _damage(saved_int8, how)
    one_line_error(capsys, main(["evaluate", str(saved_int8), "--data-root", str(data)]), needle)


def test_int8_on_cuda_is_refused(saved_int8, trained, capsys):
    _, data = trained
    one_line_error(capsys, main(["evaluate", str(saved_int8), "--device", "cuda", "--data-root", str(data)]),
                   "cpu only")
    with pytest.raises(DatafreeError, match="CPU only"):
        backend.run_session(load_int8(saved_int8).session, torch.zeros(1, 1, 28, 28, device="meta"))


def test_quantize_config_validation():
    with pytest.raises(DatafreeError, match="ranges"):
        QuantizeConfig(ranges="entropy")
    with pytest.raises(DatafreeError, match="empty"):
        cal.pick(TensorImageDataset(torch.zeros(0, 1, 28, 28, dtype=torch.uint8), torch.zeros(0), FASHION_MNIST), None,
                 0, "x")
