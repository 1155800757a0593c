"""Distill, then quantize: int8 models calibrated on synthetic data, with no real image.

:func:`quantize` (``datafree quantize``) turns a fp32 checkpoint into a post-training static int8
model (per-channel int8 weights, uint8 activations calibrated on the images it is given), optionally
after data-free quantization-aware fine-tuning (:mod:`datafree.quantize.qat`). Calibration images
(:mod:`datafree.quantize.calibration`): any transfer set (data-free), a preset synthesized on the fly
against the model itself (ZeroQ), real training images (the reference), or none (dynamic int8).

An int8 run directory::

    model.onnx     the int8 graph (ONNX protobuf: loading it runs no code)
    model.json     sidecar: format, arch, arch kwargs, DataSpec, calibration record, sha256 of
                   model.onnx, backend versions, metrics
    result.json    the full record: config, calibration, accuracies, sizes, times, command, environment
    calibration/   the synthesized calibration set (only with a synthesis preset)

Backend and its measurements: :mod:`datafree.quantize.backend` and ``docs/quantization.md``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

import datafree
from datafree.checkpoint import ModelInfo
from datafree.data.loader import iterate_batches
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.io import atomic_path, remove_stale_temps, run_dir_contents, write_json
from datafree.quantize import backend
from datafree.quantize.calibration import Calibration
from datafree.quantize.qat import QATConfig

INT8_FILE = "model.onnx"
SIDECAR = "model.json"
RESULT_FILE = "result.json"
CALIBRATION_DIR = "calibration"
FORMAT = "datafree-int8/1"
RUN_FILES = {INT8_FILE, SIDECAR, RESULT_FILE, CALIBRATION_DIR}


@dataclass
class QuantizeConfig:
    """How to quantize (recorded next to the model)."""

    ranges: str = "minmax"  # activation ranges from the calibration images: minmax | percentile
    percentile: float = 99.999
    per_channel: bool = True
    batch_size: int = 64  # calibration batch
    allow_float: bool = False  # accept compute operations ONNX Runtime leaves in float
    float_logits: bool = True  # the last layer writes fp32 logits (not rounded to uint8 over the calibration range)
    qat: QATConfig = field(default_factory=QATConfig)

    def __post_init__(self) -> None:
        if self.ranges not in backend.RANGES:
            raise DatafreeError(f"unknown --ranges {self.ranges!r} ({', '.join(backend.RANGES)})")
        if not 0 < self.percentile <= 100:
            raise DatafreeError("--percentile must be in (0, 100]")
        if self.batch_size < 1:
            raise DatafreeError("--batch-size must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Int8Info:
    """What the sidecar says about an int8 model."""

    arch: str
    spec: DataSpec
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    mode: str = "static"  # static (calibrated) | dynamic (no calibration data)
    calibration: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "datafree_version": datafree.__version__, "arch": self.arch,
                "arch_kwargs": self.arch_kwargs, "spec": self.spec.to_dict(), "mode": self.mode,
                "calibration": self.calibration, "metrics": self.metrics, "sha256": self.sha256,
                "source": self.source, "backend": backend.backend_versions(),
                "runs_on": "cpu (ONNX Runtime CPU provider)"}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> Int8Info:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise DatafreeError(f"{where}: unknown format {got!r} (expected {FORMAT})")
        try:
            return cls(str(d["arch"]), DataSpec.from_dict(d["spec"]), dict(d.get("arch_kwargs", {})),
                       str(d.get("mode", "static")), dict(d.get("calibration", {})), dict(d.get("metrics", {})),
                       str(d["sha256"]), dict(d.get("source", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise DatafreeError(f"{where} is missing {e}") from None


class Int8Model:
    """A loaded int8 model: call it on a batch of normalised CPU images to get fp32 logits."""

    def __init__(self, session: Any, info: Int8Info, path: Path | None = None) -> None:
        self.session, self.info, self.path = session, info, path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.info.spec.shape:
            raise DatafreeError(f"the int8 model expects {self.info.spec.shape} images, got {tuple(x.shape[1:])}")
        return backend.run_session(self.session, x)


# ------------------------------------------------------------------ files
def is_int8(path: str | Path) -> bool:
    """Whether ``path`` is an int8 run directory or its ``model.onnx``."""
    p = Path(path)
    return (p.is_dir() and (p / INT8_FILE).is_file()) or p.suffix == ".onnx"


def load_int8(path: str | Path, *, threads: int | None = None) -> Int8Model:
    """Load an int8 model (a run directory or its ``model.onnx``) after checking its sha256 against the
    sidecar. Nothing in the files is executed: ONNX is a protobuf of operators and tensors."""
    p = Path(path)
    onnx_path = p / INT8_FILE if p.is_dir() else p
    if not onnx_path.is_file():
        raise DatafreeError(f"int8 model {path} not found (expected {INT8_FILE})")
    side = onnx_path.with_suffix(".json")
    if not side.is_file():
        raise DatafreeError(f"{onnx_path} has no {side.name} sidecar; it was not written by 'datafree quantize'")
    try:
        info = Int8Info.from_dict(json.loads(side.read_text()), str(side))
    except json.JSONDecodeError as e:
        raise DatafreeError(f"{side} is not valid JSON ({e}); restore it or quantize the model again") from None
    data = onnx_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise DatafreeError(f"{onnx_path} does not match the sha256 in {side.name}: the file was modified or corrupted")
    return Int8Model(backend.open_session(data, str(onnx_path), threads), info, onnx_path)


def prepare_out(out: str | Path, overwrite: bool) -> Path:
    """``out`` may hold only an int8 run; an existing model needs ``overwrite``."""
    out = Path(out)
    contents = run_dir_contents(out, RUN_FILES, "an int8 run")
    if INT8_FILE in contents and not overwrite:
        raise DatafreeError(f"{out} already holds an int8 model; pass --overwrite to replace it")
    remove_stale_temps(out)
    return out


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_int8(model: Int8Model, dataset: Dataset, batch_size: int = 1000) -> dict[str, float]:
    """Top-1 accuracy (%) and mean cross-entropy, as :func:`datafree.train.evaluate` reports them."""
    correct, loss, n = 0, 0.0, 0
    for batch in iterate_batches(dataset, batch_size):
        logits = model(batch[0])
        loss += float(F.cross_entropy(logits, batch[1], reduction="sum"))
        correct += int((logits.argmax(1) == batch[1]).sum())
        n += len(batch[1])
    if n == 0:
        raise DatafreeError("evaluation set is empty")
    return {"accuracy": 100.0 * correct / n, "loss": loss / n}


# ------------------------------------------------------------------ the library call
def quantize_model(model: nn.Module, info: ModelInfo, calibration: Calibration, config: QuantizeConfig | None = None,
                   *, teacher: nn.Module | None = None, device: str = "cpu",
                   progress: bool = False) -> tuple[bytes, dict[str, Any]]:
    """Quantize an in-memory fp32 model; returns the int8 ONNX bytes and a record of what was done.

    ``calibration.kind == "none"`` gives dynamic int8 (no data); otherwise static int8 calibrated on
    exactly ``calibration``'s images. With ``config.qat.epochs > 0`` the model is first fine-tuned
    by KD (from ``teacher``, default the model itself) into its fake-quantized copy on those images.
    """
    config = config or QuantizeConfig()
    mode = "dynamic" if calibration.kind == "none" else "static"
    if mode == "static" and calibration.dataset is not None and len(calibration.dataset) == 0:  # type: ignore[arg-type]
        raise DatafreeError("the calibration set is empty: calibration needs at least one image")
    record: dict[str, Any] = {"mode": mode, "config": config.to_dict()}
    with tempfile.TemporaryDirectory(prefix="datafree-int8-") as tmp_dir:
        tmp = Path(tmp_dir)
        source = model
        if config.qat.epochs > 0:
            if calibration.dataset is None:
                raise DatafreeError("quantization-aware fine-tuning needs calibration images (not --no-calibration)")
            from datafree.quantize.qat import finetune

            t0 = time.perf_counter()
            source, qat_metrics = finetune(model, calibration.dataset, config.qat, teacher=teacher, device=device,
                                           progress=progress)
            record["qat"] = {**qat_metrics, "time_s": time.perf_counter() - t0,
                             "teacher": "given" if teacher is not None else "the fp32 model itself"}
        t0 = time.perf_counter()
        fp32 = tmp / "fp32.onnx"
        record["exporter"] = backend.export_onnx(source, info.spec, fp32, info.arch)
        record["fp32_onnx_bytes"] = fp32.stat().st_size
        pre = backend.preprocess(fp32, tmp / "pre.onnx")
        int8 = tmp / "int8.onnx"
        if mode == "static":
            record["calibration_images_read"] = backend.quantize_static_onnx(
                pre, int8, calibration.batches(config.batch_size), ranges=config.ranges,
                percentile=config.percentile, per_channel=config.per_channel)
            if config.float_logits:
                int8.write_bytes(backend.float_logits(int8.read_bytes()))
        else:
            backend.quantize_dynamic_onnx(pre, int8, per_channel=config.per_channel)
            record["calibration_images_read"] = 0
        data = int8.read_bytes()
        record["quantize_time_s"] = time.perf_counter() - t0
    record.update(backend.check_quantized(data, mode, config.allow_float, info.arch))
    record["int8_onnx_bytes"] = len(data)
    return data, record


def save_int8(out: str | Path, data: bytes, info: Int8Info) -> Path:
    """Write ``model.onnx`` and its sidecar atomically (the sidecar last: a model without one is refused)."""
    path = Path(out) / INT8_FILE
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    info.sha256 = hashlib.sha256(data).hexdigest()
    write_json(path.with_suffix(".json"), info.to_dict())
    return path


def quantize(
    model_path: str | Path,
    out: str | Path,
    *,
    calibration: Sequence[str | Path] = (),
    calibration_method: str | None = None,
    calibration_real: bool = False,
    calibration_count: int | None = None,
    synthesis_overrides: dict[str, Any] | None = None,
    config: QuantizeConfig | None = None,
    teacher_path: str | Path | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    test: bool = True,
    seed: int = 0,
    device: str = "cpu",
    trust_pickle: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``datafree quantize``: load a fp32 checkpoint, gather calibration images, quantize, save, test.

    Exactly one source of calibration images: ``calibration`` (transfer sets), ``calibration_method``
    (a preset synthesized against the model into ``OUT/calibration``), ``calibration_real``, or none
    of them (dynamic int8). The real test split is read only to report accuracy (``test``); ``dataset``
    defaults to the one the model's DataSpec names.
    """
    from datafree.checkpoint import load_model
    from datafree.quantize import calibration as cal
    from datafree.run import environment

    config = config or QuantizeConfig()
    chosen = [bool(calibration), calibration_method is not None, calibration_real]
    if sum(chosen) > 1:
        raise DatafreeError("choose one calibration source: --calibration SET, --calibration-method PRESET, "
                            "--calibration-real or --no-calibration")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DatafreeError("--device cuda requested but CUDA is not available")
    out = prepare_out(out, overwrite)
    model, info = load_model(model_path, trust_pickle=trust_pickle)
    model.eval()
    if dataset is None:  # the dataset the model was trained for (its DataSpec names it)
        from datafree.data import DATASETS

        dataset = info.spec.name if info.spec.name in DATASETS else "fashion-mnist"
    teacher = None
    if teacher_path is not None:
        teacher, teacher_info = load_model(teacher_path, trust_pickle=trust_pickle)
        cal.check_spec(teacher_info.spec, info.spec, f"teacher {teacher_path}")
    test_set = None
    if test:
        from datafree.data import dataset_spec, load_dataset

        test_set = load_dataset(dataset, "test", data_root)
        cal.check_spec(dataset_spec(test_set), info.spec, f"the {dataset} test split")
    t0 = time.perf_counter()
    if calibration:
        source = cal.from_transfer(list(calibration), info.spec, count=calibration_count, seed=seed)
    elif calibration_method is not None:
        source = cal.synthesized(out / CALIBRATION_DIR, model, info, calibration_method, overrides=synthesis_overrides,
                                 count=calibration_count, seed=seed, device=device, progress=progress, overwrite=overwrite)
    elif calibration_real:
        source = cal.from_real(dataset, data_root, info.spec, count=calibration_count, seed=seed)
    else:
        source = cal.none()
    if config.qat.epochs > 0:  # the fine-tuning draws (batch order) follow --seed too
        config = replace(config, qat=replace(config.qat, seed=seed))
    data, record = quantize_model(model, info, source, config, teacher=teacher, device=device, progress=progress)
    int8_info = Int8Info(info.arch, info.spec, info.arch_kwargs, record["mode"], source.record,
                         source={"path": str(model_path), "arch": info.arch, "sha256": info.sha256})
    metrics: dict[str, Any] = {}
    if test_set is not None:
        from datafree.train import evaluate

        metrics["fp32_test_accuracy"] = evaluate(model, test_set, 1000, "cpu")["accuracy"]
        int8_model = Int8Model(backend.open_session(data, "the new int8 model"), int8_info)
        m = evaluate_int8(int8_model, test_set)
        metrics.update(test_accuracy=m["accuracy"], test_loss=m["loss"])
    int8_info.metrics = metrics
    path = save_int8(out, data, int8_info)
    result = {"model": str(path), "source": int8_info.source, "mode": record["mode"], "calibration": source.record,
              "quantization": record, "metrics": metrics, "spec": info.spec.to_dict(),
              "sizes": {"int8_onnx_bytes": len(data), "fp32_onnx_bytes": record["fp32_onnx_bytes"]},
              "wall_time_s": time.perf_counter() - t0, "argv": list(argv or []),
              "environment": {**environment(), **backend.backend_versions()},
              "protocol": "top-1 accuracy on the test split; the int8 model runs on ONNX Runtime's CPU provider"}
    write_json(out / RESULT_FILE, result)
    return result


__all__ = ["FORMAT", "Int8Info", "Int8Model", "QATConfig", "QuantizeConfig", "evaluate_int8", "is_int8", "load_int8",
           "quantize", "quantize_model", "save_int8"]
