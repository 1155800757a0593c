"""int8 on Fashion-MNIST: real vs synthetic vs no calibration, data-free QAT, size and CPU speed; and
the whole data-free chain (teacher -> synthesize -> compress + fine-tune -> quantize) beside the real one.

Models (trained here through the library, recorded as CLI commands, reused when present): LeNet-5-half (10 epochs),
ResNet-8 width 8 (5 epochs), ResNet-14 (10 epochs). For each model and seed (the calibration draw):
int8 calibrated on 256 real training images; on 256 images synthesized against the model itself
(ZeroQ: DeepInversion for the BatchNorm ResNets, ZSKD's recipe for LeNet-5-half, which has no
BatchNorm); the same synthetic images plus data-free QAT; and once, dynamic int8 with no calibration
data. Speed: PyTorch eager fp32, ONNX Runtime fp32 and int8, batch-1 latency and batch-256
throughput, on ``--threads`` threads, measured in alternating rounds and reported as medians.

    python -m benchmarks.quantize                    # everything, then the report
    python -m benchmarks.quantize --report-only --update-readme
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.baselines import REPO, fmt, run, summarize
from benchmarks.calls import call
from benchmarks.readme import publish
from datafree.checkpoint import load_model
from datafree.data.transfer import read_manifest
from datafree.quantize import backend, load_int8
from datafree.run import environment

ROOT = Path("artifacts/quant")
COUNT = 256  # calibration images, real or synthetic
MODELS: dict[str, dict[str, Any]] = {
    "lenet5_half": {
        "name": "LeNet-5-half",
        "train": ["--arch", "lenet5_half", "--epochs", "10", "--lr", "0.05"],
        # no BatchNorm: ZSKD's recipe (benchmarks.zskd_recipes' coarse2 images, 100 iterations)
        "preset": ["--calibration-method", "zskd", "--set", "iterations=100", "--set", "lr=0.05",
                   "--set", "pixel_scale=2", "--set", "dirichlet=[1.0, 0.1]"],
    },
    "resnet8w8": {
        "name": "ResNet-8 (width 8)",
        "train": ["--arch", "resnet8", "--arch-kwargs", '{"width": 8}', "--epochs", "5", "--lr", "0.05",
                  "--augment", "crop-flip"],
        "preset": ["--calibration-method", "deepinversion", "--set", "iterations=50"],
    },
    "resnet14": {
        "name": "ResNet-14",
        "train": ["--arch", "resnet14", "--epochs", "10", "--lr", "0.1", "--augment", "crop-flip"],
        "preset": ["--calibration-method", "deepinversion", "--set", "iterations=50"],
    },
}
QAT = ["--qat-epochs", "5", "--qat-lr", "0.001", "--qat-batch-size", "32"]
# the chain: ResNet-14 teacher -> Tucker-2 compressed copy (KegNet's student) -> fine-tuned -> int8
CHAIN_COUNT = 6400
CHAIN_SYNTH = ["--method", "fast5", "--set", "adv=0", "--set", "ngf=16", "--set", "batch_size=128",
               "--count", str(CHAIN_COUNT), "--seed", "0"]
CHAIN_RANK = "0.66"
CHAIN_TUNE = ["--epochs", "2", "--batch-size", "128", "--alpha", "0", "--lr", "0.01", "--augment", "crop-flip",
              "--clip-grad-norm", "5", "--temperature", "4", "--seed", "0"]


def datafree(argv: list[str]) -> None:
    print(f"  run    datafree {' '.join(argv)}", flush=True)
    call(argv)


def quantize_runs(key: str, seeds: list[int], root: Path, qat: bool) -> dict[str, Any]:
    spec = MODELS[key]
    model = root / "teachers" / key
    teacher = run(["train-teacher", *spec["train"]], model)
    rows: dict[str, list[dict[str, Any]]] = {"real": [], "synthetic": [], "qat": [], "none": []}
    base = ["quantize", "--model", str(model)]
    for seed in seeds:
        rows["real"].append(run([*base, "--calibration-real", "--calibration-count", str(COUNT), "--seed", str(seed)],
                                root / "int8" / key / f"real-seed{seed}"))
        syn_out = root / "int8" / key / f"synthetic-seed{seed}"
        rows["synthetic"].append(run([*base, *spec["preset"], "--calibration-count", str(COUNT), "--seed", str(seed)],
                                     syn_out))
        if qat:  # data-free QAT on the very images the synthetic row calibrated on
            rows["qat"].append(run([*base, "--calibration", str(syn_out / "calibration"), *QAT, "--seed", str(seed)],
                                   root / "int8" / key / f"qat-seed{seed}"))
    rows["none"].append(run([*base, "--no-calibration"], root / "int8" / key / "none"))
    return {"key": key, "name": spec["name"], "teacher": teacher, "rows": rows}


def _median_time(fn, x: torch.Tensor, calls: int) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def speed(engines: dict[str, Any], x256: torch.Tensor, rounds: int, latency_calls: int) -> dict[str, dict[str, Any]]:
    """Per engine: median batch-1 latency (ms, over ``latency_calls`` calls) and batch-256 throughput (images/s),
    medians over ``rounds`` round-robin rounds (a load change on the shared machine hits every engine alike)."""
    x1 = x256[:1].clone()
    latency: dict[str, list[float]] = {k: [] for k in engines}
    throughput: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            fn(x256)
            fn(x1)
            latency[name].append(1e3 * _median_time(fn, x1, latency_calls))
            throughput[name].append(256 / _median_time(fn, x256, 5))
    return {name: {"latency_b1_ms": statistics.median(latency[name]),
                   "throughput_b256": statistics.median(throughput[name]),
                   "latency_rounds_ms": latency[name], "throughput_rounds": throughput[name]} for name in engines}


def measure_speed(key: str, root: Path, threads: int, rounds: int) -> dict[str, Any]:
    """Batch-1 latency (ms) and batch-256 throughput (images/s): PyTorch fp32, ONNX Runtime fp32 and int8,
    measured round-robin so a load change on the shared machine hits every engine alike."""
    import tempfile

    torch.set_num_threads(threads)
    model, info = load_model(root / "teachers" / key)
    model.eval()
    int8 = load_int8(root / "int8" / key / "real-seed0", threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        backend.export_onnx(model, info.spec, fp32_path, info.arch)
        fp32_bytes = fp32_path.read_bytes()
    fp32 = backend.open_session(fp32_bytes, "fp32", threads)
    x256 = torch.randn(256, *info.spec.shape, generator=torch.Generator().manual_seed(0))

    def torch_fp32(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    engines = {"torch_fp32": torch_fp32, "ort_fp32": lambda x: backend.run_session(fp32, x), "ort_int8": int8}
    result: dict[str, Any] = speed(engines, x256, rounds, latency_calls=100)
    result["profile_b256"] = {"ort_fp32": op_profile(fp32_bytes, x256, threads),
                              "ort_int8": op_profile((root / "int8" / key / "real-seed0" / "model.onnx").read_bytes(),
                                                     x256, threads)}
    return result


def op_profile(model_bytes: bytes, x: torch.Tensor, threads: int, runs: int = 5) -> dict[str, float]:
    """Share of ONNX Runtime's kernel time per operator type at batch 256 (where the time goes)."""
    import onnxruntime as ort

    options = backend.session_options(threads)
    options.enable_profiling = True
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, {backend.INPUT: x.numpy()})
    path = Path(session.end_profiling())
    events = json.loads(path.read_text())
    path.unlink()
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + float(e.get("dur", 0))
    total = sum(per_op.values()) or 1.0
    return {op: round(100 * t / total, 1) for op, t in sorted(per_op.items(), key=lambda kv: -kv[1])}


def chain(root: Path) -> dict[str, Any]:
    """teacher -> synthesize -> compress + fine-tune -> quantize, data-free and with real data."""
    teacher = root / "teachers" / "resnet14"
    base = root / "chain"
    synth = base / "fast5-set"
    t0 = time.perf_counter()
    datafree(["synthesize", "--teacher", str(teacher), *CHAIN_SYNTH, "--out", str(synth), "--resume", "--no-progress"])
    tucker = base / f"tucker-r{CHAIN_RANK}"
    if not (tucker / "model.safetensors").is_file():
        datafree(["compress", "--teacher", str(teacher), "--rank-ratio", CHAIN_RANK, "--out", str(tucker)])
    runs: dict[str, dict[str, Any]] = {}
    tuned = run(["distill", "--teacher", str(teacher), "--student-init", str(tucker), "--transfer", str(synth),
                 *CHAIN_TUNE], base / "datafree" / "student")
    int8 = run(["quantize", "--model", str(base / "datafree" / "student"), "--calibration", str(synth),
                "--calibration-count", str(COUNT), "--seed", "0"], base / "datafree" / "int8")
    runs["datafree"] = {"student": tuned, "int8": int8, "synthesis": read_manifest(synth)}
    # the same 100 steps of 128 images on real training images (12800 of them)
    steps = str(CHAIN_COUNT // 128)
    tuned = run(["distill", "--teacher", str(teacher), "--student-init", str(tucker), *CHAIN_TUNE,
                 "--steps-per-epoch", steps], base / "real" / "student")
    int8 = run(["quantize", "--model", str(base / "real" / "student"), "--calibration-real",
                "--calibration-count", str(COUNT), "--seed", "0"], base / "real" / "int8")
    runs["real"] = {"student": tuned, "int8": int8}
    _, tucker_info = load_model(tucker)
    runs["compressed"] = {"parameters": tucker_info.metrics["parameters"],
                          "compression": tucker_info.metrics["compression"],
                          "bytes": (tucker / "model.safetensors").stat().st_size}
    runs["wall_time_s"] = time.perf_counter() - t0
    return runs


# ---------------------------------------------------------------- report
def _acc(rows: list[dict[str, Any]]) -> dict[str, float]:
    return summarize([r["metrics"]["test_accuracy"] for r in rows])


def report(data: dict[str, Any]) -> str:
    lines = [f"Fashion-MNIST test split (10,000 images), top-1 %. int8: ONNX Runtime {data['environment']['onnxruntime']}, "
             "QDQ, per-channel int8 weights, uint8 activations (MinMax ranges), fp32 logits. Calibration: "
             f"{COUNT} images, mean ± std over seeds {', '.join(map(str, data['seeds']))} (the draw of real images, or "
             "the synthesis seed); *synthetic*: synthesized against the model being quantized (ZeroQ), DeepInversion "
             "(50 iterations) for the ResNets, ZSKD's recipe (100 iterations, 2x-coarse pixels) for LeNet-5-half, "
             "which has no BatchNorm; *+QAT*: the synthetic images, then 5 epochs of KD from the fp32 model into its "
             "fake-quantized copy; *none*: dynamic int8. Sizes: the fp32 safetensors checkpoint and the int8 ONNX file.",
             "",
             "| model | fp32 | int8, real calibration | int8, synthetic (data-free) | synthetic - real | "
             "int8, synthetic + QAT | int8, no calibration | size fp32 -> int8 (KiB) |",
             "|---|---|---|---|---|---|---|---|"]
    for m in data["models"]:
        rows = m["rows"]
        real, syn = _acc(rows["real"]), _acc(rows["synthetic"])
        gap = summarize([s["metrics"]["test_accuracy"] - r["metrics"]["test_accuracy"]
                         for s, r in zip(rows["synthetic"], rows["real"])])
        qat = fmt(_acc(rows["qat"])) if rows["qat"] else "-"
        fp32 = rows["real"][0]["metrics"]["fp32_test_accuracy"]
        size32 = m["sizes"]["fp32_safetensors_bytes"] / 1024
        size8 = m["sizes"]["int8_onnx_bytes"] / 1024
        lines.append(f"| {m['name']} | {fp32:.2f} | {fmt(real)} | {fmt(syn)} | {gap['mean']:+.2f} | {qat} | "
                     f"{_acc(rows['none'])['mean']:.2f} | {size32:.0f} -> {size8:.0f} ({size32 / size8:.1f}x) |")
    lines += ["", f"CPU speed, {data['threads']} threads, median of {data['rounds']} alternating rounds (latency: median "
              "of 100 batch-1 calls per round; throughput: median of 5 batch-256 calls per round). The machine's 2 cores "
              "were shared with other work, so absolute numbers are noisy; the ratios come from the same rounds.", "",
              "| model | batch-1 latency (ms): PyTorch fp32 / ORT fp32 / ORT int8 | batch-256 throughput (images/s): "
              "PyTorch fp32 / ORT fp32 / ORT int8 | int8 vs ORT fp32 | int8 vs PyTorch fp32 |",
              "|---|---|---|---|---|"]
    for m in data["models"]:
        s = m["speed"]
        lat = " / ".join(f"{s[k]['latency_b1_ms']:.2f}" for k in ("torch_fp32", "ort_fp32", "ort_int8"))
        thr = " / ".join(f"{s[k]['throughput_b256']:.0f}" for k in ("torch_fp32", "ort_fp32", "ort_int8"))
        lines.append(f"| {m['name']} | {lat} | {thr} | {s['ort_int8']['throughput_b256'] / s['ort_fp32']['throughput_b256']:.2f}x"
                     f" | {s['ort_int8']['throughput_b256'] / s['torch_fp32']['throughput_b256']:.2f}x |")
    r14 = next((m for m in data["models"] if m["key"] == "resnet14"), None)
    if r14 is not None:
        prof = r14["speed"]["profile_b256"]
        top = lambda p: ", ".join(f"{op} {share:.0f}%" for op, share in sorted(p.items(), key=lambda kv: -kv[1])[:3])  # noqa: E731
        lines += ["", f"Where ResNet-14's batch-256 time goes (share of ONNX Runtime kernel time): fp32: "
                  f"{top(prof['ort_fp32'])}; int8: {top(prof['ort_int8'])}."]
    if data.get("chain"):
        c = data["chain"]
        lines += ["", "The whole chain, one seed: ResNet-14 teacher -> Tucker-2 compressed copy (rank ratio "
                  f"{CHAIN_RANK}, {c['compressed']['parameters']:,} parameters, {c['compressed']['compression']:.2f}x "
                  "fewer) -> fine-tuned by KD (`distill --student-init`, 100 steps of 128 images, lr 0.01) -> int8. "
                  f"Data-free: fine-tuned on {CHAIN_COUNT} fast5 images (`--set adv=0`, synthesized from the teacher "
                  f"alone; 2 epochs) and calibrated on {COUNT} of them; real: 2 epochs of 50 steps on the training set (each "
                  f"epoch a fresh random draw of {CHAIN_COUNT} images), calibrated on {COUNT} training images. The "
                  "data-free chain reads only the test split, for reporting.", "",
                  "| chain | real training images read | fp32 student | int8 student | size fp32 -> int8 (KiB) | "
                  "synthesis (s) | fine-tuning (s) | quantization (s) |", "|---|---|---|---|---|---|---|---|"]
        for kind, label in (("datafree", "data-free"), ("real", "real data")):
            r = c[kind]
            fp32_bytes = c["student_bytes"][kind]
            int8_bytes = r["int8"]["sizes"]["int8_onnx_bytes"]
            synth = f"{float(r['synthesis']['synthesis_time_s']):.0f}" if "synthesis" in r else "-"
            read = "0" if kind == "datafree" else f"up to {CHAIN_COUNT * 2:,} + {COUNT}"
            lines.append(f"| {label} | {read} | {r['student']['metrics']['test_accuracy']:.2f} | "
                         f"{r['int8']['metrics']['test_accuracy']:.2f} | {fp32_bytes / 1024:.0f} -> {int8_bytes / 1024:.0f} |"
                         f" {synth} | {r['student']['metrics']['train_time_total_s']:.0f} | {r['int8']['wall_time_s']:.0f} |")
    steps = [r for m in data["models"] for rows in m["rows"].values() for r in rows]
    if data.get("chain"):
        steps += [data["chain"][k][part] for k in ("datafree", "real") for part in ("student", "int8")]
    step_s = sum(float(r.get("bench_wall_time_s", 0.0)) for r in steps)
    if data.get("chain"):
        step_s += float(data["chain"]["datafree"]["synthesis"].get("synthesis_time_s", 0.0))
    teachers_s = sum(float(m["teacher"]["metrics"]["train_time_total_s"]) for m in data["models"])
    lines += ["", f"Produced by `python -m benchmarks.quantize`: {data['wall_time_s'] / 60:.1f} minutes for the last "
              f"invocation; its quantization and chain steps (synthesis included) took {step_s / 60:.1f} minutes in all, "
              f"counting those reused from an earlier invocation, and the teachers {teachers_s / 60:.1f} minutes "
              "of training; times are wall times on the 2 shared cores, loaded by other work for most of the run "
              "(the speed rounds ran when it was quiet). Every command is in benchmarks/results/quantize.json."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--root", type=Path, default=ROOT, help="where the runs go (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-qat", dest="qat", action="store_false")
    p.add_argument("--no-chain", dest="chain", action="store_false")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from benchmarks/results/quantize.json")
    p.add_argument("--update-readme", action="store_true")
    args = p.parse_args()
    results = REPO / "benchmarks" / "results" / "quantize.json"
    if args.report_only:
        data = json.loads(results.read_text())
    else:
        torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        models = [quantize_runs(key, args.seeds, args.root, args.qat) for key in args.models]
        data = {"seeds": args.seeds, "threads": args.threads, "rounds": args.rounds, "count": COUNT,
                "command": "python -m benchmarks.quantize " + " ".join(
                    f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in vars(args).items() if k in ("models", "seeds", "threads", "rounds")),
                "models": models, "environment": {**environment(), **backend.backend_versions()}}
        data["chain"] = chain(args.root) if args.chain else None
        if data["chain"]:
            data["chain"]["student_bytes"] = {k: (args.root / "chain" / k / "student" / "model.safetensors").stat().st_size
                                              for k in ("datafree", "real")}
        for m in models:  # speed last, after every accuracy run, on a quieter machine
            model_dir = args.root / "teachers" / m["key"]
            m["sizes"] = {"fp32_safetensors_bytes": (model_dir / "model.safetensors").stat().st_size,
                          "int8_onnx_bytes": (args.root / "int8" / m["key"] / "real-seed0" / "model.onnx").stat().st_size,
                          "fp32_onnx_bytes": m["rows"]["real"][0]["sizes"]["fp32_onnx_bytes"]}
            m["speed"] = measure_speed(m["key"], args.root, args.threads, args.rounds)
            print(f"  speed  {m['key']}: " + ", ".join(f"{k} {m['speed'][k]['throughput_b256']:.0f} img/s"
                                                      for k in ("torch_fp32", "ort_fp32", "ort_int8")), flush=True)
        data["wall_time_s"] = time.perf_counter() - t0
    md = report(data)
    publish("quantize", md, data, section="quantize" if args.update_readme else None)


if __name__ == "__main__":
    main()
