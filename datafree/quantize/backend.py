"""The int8 backend: ONNX export, ONNX Runtime static/dynamic quantization, safe loading.

Why ONNX Runtime (measured in ``docs/quantization.md``): on this 2-core AVX-512-VNNI CPU its
int8 ResNet-14 ran about 2x its own fp32 graph at batch 256 with the same top-1 answers as fp32, a
tiny model quantizes in about a second, and the saved model is an ONNX protobuf: a graph of
standard operators and tensors, which loads without unpickling or running any Python code.
PyTorch's FX flow (deprecated) and torchao's PT2E flow were slower on this CPU, PT2E needs a
minute of Inductor compilation per shape, and neither saves a format that loads without code.

Scheme: the model is exported in eval mode (BatchNorm folded into the convolutions), then
quantized in the QDQ format with per-output-channel symmetric int8 weights (scale = max|w| / 127)
and per-tensor asymmetric uint8 activations, whose ranges come from the calibration images.
ONNX Runtime needs uint8 activations for its fast int8 kernels on x86 (int8 x int8 QDQ ran
3x slower here). Without calibration data (``dynamic``) activations are quantized on the fly
per batch (ConvInteger/MatMulInteger): the calibration-free floor.

Quantized inference runs on the CPU only (ONNX Runtime's CPU provider).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError

OPSET = 17
INPUT, OUTPUT = "input", "logits"
# (ONNX Runtime 1.32's entropy calibration gave ranges identical to minmax here, so it is not offered)
RANGES = ("minmax", "percentile")
# operators that carry a model's arithmetic: each must run in int8, or the user must accept it in float
COMPUTE_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "GRU", "LSTM", "RNN", "Attention",
               "MultiHeadAttention"}
FLOAT_IN_QDQ = {"GRU", "LSTM", "RNN", "Einsum"}  # ONNX Runtime's static quantizer has no int8 form of these
# operator domains ONNX Runtime implements itself (no custom-operator library is ever loaded)
KNOWN_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training", "ai.onnx.training",
                 "com.microsoft"}
DYNAMIC_INT8_OPS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM", "DynamicQuantizeMatMul"}


def backend_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"backend": "onnxruntime", "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "opset": str(OPSET)}


def first_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip()
    return (text.splitlines()[0].strip() if text else type(e).__name__)[:limit]


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Silence the exporter and the quantizer: Python warnings, root-logger advice, prints, and what
    their C++ side writes to file descriptor 2 (a CLI user error must stay one line)."""
    captured = io.StringIO()
    previous = logging.root.manager.disable
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        try:
            saved: int | None = os.dup(2)
            os.dup2(sink.fileno(), 2)
        except OSError:
            saved = None
        try:
            logging.disable(logging.WARNING)
            with warnings.catch_warnings(), contextlib.redirect_stdout(captured):
                warnings.simplefilter("ignore")
                yield captured
        finally:
            logging.disable(previous)
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)


def export_onnx(model: nn.Module, spec: DataSpec, path: str | Path, arch: str = "") -> str:
    """Write ``model`` (fp32, eval mode, BatchNorm folded) as ONNX with a dynamic batch dimension.

    Uses torch's TorchScript-based exporter (0.1-1.2 s for these models; it writes global average
    pooling as GlobalAveragePool, which ONNX Runtime runs in int8; the dynamo exporter took 3-12 s
    and writes ReduceMean instead); falls back to the dynamo exporter where the former is gone.
    Returns the exporter used. An operator without an ONNX form is a one-line error.
    """
    model = copy.deepcopy(model).cpu().float().eval()
    example = torch.zeros(2, *spec.shape)
    name = arch or type(model).__name__
    with quiet():
        try:
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT], output_names=[OUTPUT], do_constant_folding=True,
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
            return "torchscript"
        except TypeError:  # a torch without the TorchScript exporter
            pass
        except Exception as e:
            raise DatafreeError(f"cannot export {name} to ONNX, so it cannot be quantized: {first_line(e)} "
                                "(replace that operation, or keep the model in fp32)") from None
        try:
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False,
                              input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_shapes={next(iter(_forward_args(model))): {0: torch.export.Dim("batch")}})
            return "dynamo"
        except Exception as e:
            raise DatafreeError(f"cannot export {name} to ONNX, so it cannot be quantized: {first_line(e)} "
                                "(replace that operation, or keep the model in fp32)") from None


def _forward_args(model: nn.Module) -> list[str]:
    import inspect

    return [p for p in inspect.signature(model.forward).parameters if p != "self"] or ["x"]


def preprocess(src: Path, dst: Path) -> Path:
    """ONNX Runtime's recommended pre-processing (shape inference, graph optimisation); the raw export
    is used when a model defeats it."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with quiet():
            quant_pre_process(str(src), str(dst))
        return dst
    except Exception:
        return src


class Reader:
    """ONNX Runtime's calibration reader over batches of normalised images (an iterator of tensors)."""

    def __init__(self, batches: Iterator[torch.Tensor]) -> None:
        self.batches, self.images = batches, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.batches, None)
        if x is None:
            return None
        self.images += len(x)
        return {INPUT: x.detach().float().cpu().contiguous().numpy()}

    def rewind(self) -> None:  # ONNX Runtime calls it in some versions; one pass is all we give
        pass


def quantize_static_onnx(src: Path, dst: Path, batches: Iterator[torch.Tensor], *, ranges: str = "minmax",
                         percentile: float = 99.999, per_channel: bool = True) -> int:
    """QDQ int8 (per-channel int8 weights, uint8 activations calibrated on ``batches``); returns the
    number of calibration images read."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    if ranges not in RANGES:
        raise DatafreeError(f"unknown calibration ranges {ranges!r} ({', '.join(RANGES)})")
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[ranges]

    class _Reader(Reader, CalibrationDataReader):
        pass

    reader = _Reader(batches)
    extra: dict[str, Any] = {"CalibPercentile": percentile} if ranges == "percentile" else {}
    try:
        with quiet():
            quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, calibrate_method=method,
                            extra_options=extra)
    except DatafreeError:
        raise
    except Exception as e:  # onnxruntime.quantization raises plain exceptions of many kinds
        raise DatafreeError(f"ONNX Runtime could not quantize the model: {first_line(e)}") from None
    if reader.images == 0:
        raise DatafreeError("the calibration set yielded no images; give a non-empty set")
    return reader.images


def float_logits(model_bytes: bytes) -> bytes:
    """Drop the QuantizeLinear/DequantizeLinear pair on the graph's output, so the last layer writes fp32
    logits instead of logits rounded to 256 levels over the calibration range (synthetic images give a
    teacher logits up to three times larger than real ones, hence a three times coarser step)."""
    import onnx

    proto = onnx.load_from_string(model_bytes)
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    dq = producer.get(OUTPUT)
    if dq is None or dq.op_type != "DequantizeLinear":
        return model_bytes
    q = producer.get(dq.input[0])
    consumers = [n for n in graph.node if q is not None and q.output[0] in n.input]
    if q is None or q.op_type != "QuantizeLinear" or len(consumers) != 1:
        return model_bytes
    last = producer.get(q.input[0])
    if last is None or any(q.input[0] in n.input for n in graph.node if n is not q):
        return model_bytes
    last.output[list(last.output).index(q.input[0])] = OUTPUT
    graph.node.remove(q)
    graph.node.remove(dq)
    return proto.SerializeToString()


def quantize_dynamic_onnx(src: Path, dst: Path, *, per_channel: bool = True) -> None:
    """Int8 weights, activations quantized per batch at run time: no calibration data at all."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with quiet():
            quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8)
    except Exception as e:
        raise DatafreeError(f"ONNX Runtime could not quantize the model: {first_line(e)}") from None


def float_compute_ops(model_bytes: bytes, mode: str) -> tuple[list[str], int]:
    """Compute operators the quantized graph still runs in float, and how many run in int8."""
    import onnx

    graph = onnx.load_from_string(model_bytes).graph
    producer = {out: node for node in graph.node for out in node.output}
    left, int8 = [], 0
    for node in graph.node:
        if node.op_type in DYNAMIC_INT8_OPS:
            int8 += 1
        elif node.op_type in COMPUTE_OPS:
            # int8 in QDQ form: both the activation and the weight arrive through DequantizeLinear
            # (a GRU's input may be quantized on the way while its weights and arithmetic stay float)
            sources = [producer.get(name) for name in node.input[:2]]
            if mode == "static" and node.op_type not in FLOAT_IN_QDQ and len(sources) == 2 and all(
                    src is not None and src.op_type == "DequantizeLinear" for src in sources):
                int8 += 1
            else:
                left.append(f"{node.op_type} {node.name or '?'}".strip())
    return left, int8


def check_quantized(model_bytes: bytes, mode: str, allow_float: bool, name: str) -> dict[str, Any]:
    """Refuse (one line) a model whose arithmetic ONNX Runtime left in float, unless allowed."""
    left, int8 = float_compute_ops(model_bytes, mode)
    if int8 == 0:
        raise DatafreeError(f"{name} has no operation ONNX Runtime can run in int8 (float compute: "
                            f"{', '.join(left[:3]) or 'none'}); nothing to quantize")
    if left and not allow_float:
        raise DatafreeError(f"ONNX Runtime cannot quantize {len(left)} of the {len(left) + int8} compute operations of "
                            f"{name} ({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}); they would stay float: "
                            "pass --allow-float to accept a mixed int8/fp32 model, or replace them")
    return {"int8_ops": int8, "float_ops": left}


# ------------------------------------------------------------------ loading and running
def session_options(threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def open_session(model_bytes: bytes, where: str, threads: int | None = None):
    """An ONNX Runtime CPU session for a model held in memory, after checking it is self-contained."""
    import onnx
    import onnxruntime as ort
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load_from_string(model_bytes)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise DatafreeError(f"{where} is not a readable ONNX model ({first_line(e, 120)}); it may be truncated or "
                            "corrupted") from None
    if len(proto.graph.node) == 0:
        raise DatafreeError(f"{where} is not a readable ONNX model (an empty graph); it may be truncated or corrupted")
    external = [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise DatafreeError(f"{where} refers to external weight files ({external[0]}); datafree only loads "
                            "self-contained models")
    domains = {node.domain for node in proto.graph.node} - KNOWN_DOMAINS
    if domains:
        raise DatafreeError(f"{where} uses operators of unknown domain {sorted(domains)[0]!r}; datafree only loads "
                            "standard ONNX operators")
    inputs = [i.name for i in proto.graph.input]
    if INPUT not in inputs or OUTPUT not in [o.name for o in proto.graph.output]:
        raise DatafreeError(f"{where} is not a datafree int8 model (inputs {inputs}, expected {INPUT!r})")
    try:
        return ort.InferenceSession(model_bytes, session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types (InvalidGraph, Fail, ...)
        raise DatafreeError(f"ONNX Runtime cannot load {where}: {first_line(e, 160)}") from None


def run_session(session, x: torch.Tensor) -> torch.Tensor:
    """Logits of a batch of normalised images (CPU tensors)."""
    if x.device.type != "cpu":
        raise DatafreeError("int8 models run on the CPU only (ONNX Runtime's CPU provider); use --device cpu")
    out = session.run([OUTPUT], {INPUT: x.detach().float().contiguous().numpy()})[0]
    return torch.from_numpy(out)
