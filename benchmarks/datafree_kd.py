"""Data-free students on Fashion-MNIST: every preset on both teacher/student pairs.

Uses the teachers of ``benchmarks.baselines`` (run that first). Online and adversarial methods
distill from a live stream (``datafree distill --method``); the others synthesize a transfer
set first (``datafree synthesize``) and distill from it (``datafree distill --transfer``).
Runs are reused when their command is unchanged. Accuracy is the last epoch's on the test split,
which the students never train on.

    python -m benchmarks.datafree_kd --pairs lenet --methods dafl dfad --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.baselines import PAIRS, REPO, fmt, kwargs_args, run, summarize
from datafree.cli import main as datafree_main
from datafree.data.transfer import read_manifest
from datafree.io import write_json
from datafree.synthesis import PRESETS, preset

# CPU-sized recipes: generator width, batch and schedule lengths that fit the 10-minute goal.
SCALE = {"ngf": 32, "batch_size": 128}
STUDENT = ("--epochs", "10", "--steps-per-epoch", "200", "--batch-size", "128", "--alpha", "0")
STORED = {"count": 6400, "student": ("--epochs", "20", "--batch-size", "128", "--alpha", "0")}


def set_args(overrides: dict[str, Any]) -> list[str]:
    return [a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def run_method(pair_key: str, method: str, seed: int, root: Path, data: list[str]) -> dict[str, Any]:
    pair = PAIRS[pair_key]
    teacher = root / "teachers" / f"fashion-mnist-{pair.teacher}"
    if not (teacher / "model.safetensors").is_file():
        raise SystemExit(f"no teacher at {teacher}: run 'python -m benchmarks.baselines' first")
    scale = {k: v for k, v in SCALE.items() if k != "ngf" or PRESETS[method]["generator"] != "pixels"}
    config = preset(method, **scale)
    overrides = set_args(scale)
    student = ["--student", pair.student, *kwargs_args("--student-kwargs", pair.student_kwargs)]
    out = root / "datafree" / pair_key / f"{method}-seed{seed}"
    synthesis_time = 0.0
    if config.needs_student or config.schedule == "online":
        argv = ["distill", "--teacher", str(teacher), "--method", method, *overrides, *student, *STUDENT,
                "--seed", str(seed), *data]
        result = run(argv, out / "student")
    else:
        tset = out / "transfer"
        if not (tset / "manifest.json").is_file() or read_manifest(tset)["count"] < STORED["count"]:
            argv = ["synthesize", "--teacher", str(teacher), "--method", method, *overrides, "--count",
                    str(STORED["count"]), "--seed", str(seed), "--out", str(tset), "--no-progress",
                    *(["--resume"] if (tset / "manifest.json").is_file() else [])]
            if datafree_main(argv) != 0:
                raise SystemExit(f"failed: datafree {' '.join(argv)}")
        synthesis_time = read_manifest(tset)["synthesis_time_s"]
        argv = ["distill", "--teacher", str(teacher), "--transfer", str(tset), *student, *STORED["student"],
                "--seed", str(seed), *data]
        result = run(argv, out / "student")
    result["synthesis_time_s"] = synthesis_time
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", choices=PAIRS, default=["lenet"])
    parser.add_argument("--methods", nargs="+", choices=sorted(PRESETS), default=["dafl", "dfad", "zskt"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--root", type=Path, default=Path("artifacts"))
    parser.add_argument("--device")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    data = ["--dataset", "fashion-mnist"] + (["--device", args.device] if args.device else [])
    start = time.perf_counter()
    rows = []
    for pair in args.pairs:
        for method in args.methods:
            results = [run_method(pair, method, s, args.root, data) for s in args.seeds]
            acc = summarize([r["metrics"]["test_accuracy"] for r in results])
            rows.append({"pair": PAIRS[pair].name, "method": method, "accuracy": acc,
                         "synthesis_time_s": statistics.fmean(r["synthesis_time_s"] for r in results),
                         "distill_time_s": statistics.fmean(r["metrics"]["wall_time_s"] for r in results),
                         "peak_memory_mb": max(r["metrics"]["peak_memory_mb"] for r in results),
                         "seeds": args.seeds, "commands": [" ".join(r["argv"]) for r in results]})
            print(f"{PAIRS[pair].name:34s} {method:14s} {fmt(acc)}", flush=True)
    lines = ["| pair | method | student accuracy | synthesis (s) | distillation (s) | peak memory (MB) | seeds |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['pair']} | {r['method']} | {fmt(r['accuracy'])} | {r['synthesis_time_s']:.0f} "
              f"| {r['distill_time_s']:.0f} | {r['peak_memory_mb']:.0f} | {len(r['seeds'])} |" for r in rows]
    md = "\n".join(lines)
    print("\n" + md)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "datafree_kd.json", {"rows": rows, "wall_time_s": time.perf_counter() - start})
    (out / "datafree_kd.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
