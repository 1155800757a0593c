"""Choosing the int8 backend by measurement: ONNX Runtime vs PyTorch FX vs torchao PT2E (x86 Inductor).

Same trained model, same 256 real calibration images, same test split; for each backend: int8 test
accuracy, batch-256 throughput and batch-1 latency against PyTorch eager fp32 (on ``--threads``
threads, alternating rounds, medians), quantization time, and how the result is saved and loaded.
torchao is not a datafree dependency: ``pip install torchao`` to run its row (it is skipped otherwise).

    python -m benchmarks.quantize_backends --model artifacts/quant/teachers/resnet14
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from benchmarks.quantize import speed
from benchmarks.readme import publish
from datafree.checkpoint import load_model
from datafree.data import load_dataset
from datafree.quantize import Int8Info, Int8Model, QuantizeConfig, backend, evaluate_int8, quantize_model
from datafree.quantize import calibration as cal
from datafree.run import environment
from datafree.train import evaluate


def accuracy(fn, test) -> float:
    correct = n = 0
    for i in range(0, len(test), 1000):
        x, y = test.get_batch(torch.arange(i, min(i + 1000, len(test))))
        correct += int((fn(x).argmax(1) == y).sum())
        n += len(y)
    return 100.0 * correct / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="artifacts/quant/teachers/resnet14")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    model, info = load_model(args.model)
    model.eval()
    test = load_dataset("fashion-mnist", "test")
    calib = cal.from_real("fashion-mnist", None, info.spec, count=256, seed=0)
    calib_x = torch.cat(list(calib.batches(64)))
    rows: dict[str, dict[str, Any]] = {}
    def no_grad(fn):
        def call(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return fn(x)
        return call

    engines: dict[str, Any] = {"torch_fp32": no_grad(model)}
    rows["torch_fp32"] = {"accuracy": evaluate(model, test)["accuracy"], "saved_as": "safetensors + JSON (datafree)"}

    t0 = time.perf_counter()
    data, _ = quantize_model(model, info, calib, QuantizeConfig())
    ort_model = Int8Model(backend.open_session(data, "ort", args.threads), Int8Info(info.arch, info.spec))
    rows["onnxruntime_int8"] = {"accuracy": evaluate_int8(ort_model, test)["accuracy"],
                                "quantize_s": time.perf_counter() - t0, "bytes": len(data),
                                "saved_as": "ONNX protobuf (operators + tensors; loading runs no code)"}
    engines["onnxruntime_int8"] = ort_model
    with tempfile.TemporaryDirectory() as tmp:
        backend.export_onnx(model, info.spec, Path(tmp) / "fp32.onnx", info.arch)
        fp32_session = backend.open_session((Path(tmp) / "fp32.onnx").read_bytes(), "fp32", args.threads)
    engines["onnxruntime_fp32"] = lambda x: backend.run_session(fp32_session, x)
    rows["onnxruntime_fp32"] = {"accuracy": accuracy(engines["onnxruntime_fp32"], test), "saved_as": "ONNX protobuf"}

    try:  # PyTorch's FX graph mode (deprecated in favour of torchao's PT2E)
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = "x86"
        t0 = time.perf_counter()
        prepared = prepare_fx(load_model(args.model)[0].eval(), get_default_qconfig_mapping("x86"), (calib_x[:2],))
        with torch.no_grad():
            for i in range(0, len(calib_x), 64):
                prepared(calib_x[i:i + 64])
        fx = convert_fx(prepared)
        rows["fx_x86_int8"] = {"accuracy": accuracy(fx, test), "quantize_s": time.perf_counter() - t0,
                               "saved_as": "TorchScript (torch.jit.save: a program, run by the TorchScript "
                                           "interpreter) or the Python code that rebuilds it plus a state_dict"}
        engines["fx_x86_int8"] = no_grad(fx)
    except Exception as e:  # noqa: BLE001 - a backend that does not run here is a result too
        rows["fx_x86_int8"] = {"error": str(e).splitlines()[0][:200]}

    try:  # torchao's PT2E flow, lowered by Inductor
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        t0 = time.perf_counter()
        exported = torch.export.export(load_model(args.model)[0].eval(), (calib_x[:2],),
                                       dynamic_shapes={"x": {0: torch.export.Dim("batch")}}).module()
        prepared = prepare_pt2e(exported, xiq.X86InductorQuantizer().set_global(
            xiq.get_default_x86_inductor_quantization_config()))
        with torch.no_grad():
            for i in range(0, len(calib_x), 64):
                prepared(calib_x[i:i + 64])
        converted = convert_pt2e(prepared)
        from torch._inductor import config as inductor_config

        inductor_config.freezing = True
        compiled = torch.compile(converted, dynamic=True)
        with torch.no_grad():
            compiled(calib_x.contiguous())
            compiled(calib_x[:1].contiguous())
        pt2e = no_grad(lambda x: compiled(x.contiguous()))
        rows["pt2e_x86_inductor_int8"] = {"accuracy": accuracy(pt2e, test), "quantize_s": time.perf_counter() - t0,
                                          "saved_as": "torch.export program (.pt2); needs torch.compile (a C++ "
                                                      "compiler) again after loading for int8 speed"}
        engines["pt2e_x86_inductor_int8"] = pt2e
    except Exception as e:  # noqa: BLE001
        rows["pt2e_x86_inductor_int8"] = {"error": str(e).splitlines()[0][:200]}

    x256 = torch.randn(256, *info.spec.shape, generator=torch.Generator().manual_seed(0))
    for name, s in speed(engines, x256, args.rounds, latency_calls=50).items():
        rows[name].update(latency_b1_ms=s["latency_b1_ms"], throughput_b256=s["throughput_b256"])
    base = rows["torch_fp32"]["throughput_b256"]
    lines = [f"Backends for int8, {info.arch} ({args.model}), Fashion-MNIST test split, 256 real calibration images, "
             f"{args.threads} threads, median of {args.rounds} alternating rounds (a shared 2-core machine: noisy).", "",
             "| backend | top-1 (%) | batch-256 images/s | vs PyTorch fp32 | batch-1 latency (ms) | quantize (s) | saved as |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | |")
            continue
        q = f"{r['quantize_s']:.1f}" if "quantize_s" in r else "-"
        lines.append(f"| {name} | {r['accuracy']:.2f} | {r['throughput_b256']:.0f} | {r['throughput_b256'] / base:.2f}x | "
                     f"{r['latency_b1_ms']:.2f} | {q} | {r['saved_as']} |")
    md = "\n".join(lines) + "\n\nProduced by `python -m benchmarks.quantize_backends`."
    publish("quantize_backends", md, {"rows": rows, "model": args.model, "threads": args.threads, "rounds": args.rounds,
                                      "environment": {**environment(), **backend.backend_versions()}})


if __name__ == "__main__":
    main()
