"""``evaluate-set --bf16`` against float32: the same models' accuracy (paired) and the time an epoch takes.

The condensation protocol's cost is training fresh ConvNet-128s for 1000 epochs; bfloat16 autocast of the
training steps (the trainer's ``bf16``; testing stays float32) makes that cheaper on CPUs with native bfloat16.
This measures what it costs in accuracy, model by model (model i is seeded i in both), under the reference
protocol (hard labels, DSA, 1000 epochs), and the speed-up, from short runs of both alternately in one
command (so machine load hits both alike). Evaluations already in ``--out`` are kept (``--resume``).

    python -m benchmarks.eval_bf16 --set artifacts/condense/random-ipc10/set --models 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.baselines import summarize
from benchmarks.calls import call
from benchmarks.readme import publish


def evaluate(set_dir: str, out: Path, *, models: int, epochs: int, bf16: bool, resume: bool) -> dict[str, Any]:
    """One ``datafree evaluate-set`` run (dc protocol, DSA); returns its result JSON."""
    out.parent.mkdir(parents=True, exist_ok=True)
    call(["evaluate-set", set_dir, "--protocol", "dc", "--models", str(models), "--augment", "dsa", "--epochs",
          str(epochs), "--seed", "0", "--no-progress", "--dataset", "fashion-mnist", "--out", str(out),
          *(["--bf16"] if bf16 else []), *(["--resume"] if resume else [])])
    return json.loads(out.read_text())


def report(result: dict[str, Any]) -> str:
    a, t = result["accuracy"], result["timing"]
    lines = [f"`datafree evaluate-set --bf16` against float32 on `{result['set']}` ({result['models']} ConvNet-128 "
             f"models, hard labels, DSA, {result['epochs']} epochs, last epoch, test split; model i seeded i in both). "
             f"Produced by `{' '.join(result['argv'])}`.", "",
             "| model | float32 | bfloat16 | difference |", "|---|---|---|---|"]
    for i, (f, b) in enumerate(zip(a["fp32"], a["bf16"], strict=True)):
        lines.append(f"| {i} | {f:.2f} | {b:.2f} | {b - f:+.2f} |")
    d = a["difference"]
    lines.append(f"| mean ± std | {statistics.fmean(a['fp32']):.2f} | {statistics.fmean(a['bf16']):.2f} "
                 f"| {d['mean']:+.2f} ± {d['std']:.2f} |")
    lines += ["", f"Training time of one model for {t['epochs']} epochs, {t['threads']} thread(s), alternately:", "",
              "| round | float32 (s) | bfloat16 (s) | speed-up |", "|---|---|---|---|"]
    for i, (f, b) in enumerate(zip(t["fp32_s"], t["bf16_s"], strict=True)):
        lines.append(f"| {i} | {f:.1f} | {b:.1f} | {f / b:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", required=True, help="a condensed set directory")
    p.add_argument("--models", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--timing-epochs", type=int, default=100)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="artifacts/eval-bf16")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    runs = {v: evaluate(args.set, out / f"{v}.json", models=args.models, epochs=args.epochs, bf16=v == "bf16",
                        resume=True) for v in ("fp32", "bf16")}
    timing: dict[str, list[float]] = {"fp32_s": [], "bf16_s": []}
    for r in range(args.rounds):
        for v in ("fp32", "bf16"):
            short = evaluate(args.set, out / f"timing-{v}-{r}.json", models=1, epochs=args.timing_epochs,
                             bf16=v == "bf16", resume=False)
            timing[f"{v}_s"].append(short["train_times_s"][0])
    fp32, bf16 = runs["fp32"]["accuracies"], runs["bf16"]["accuracies"]
    result = {"set": args.set, "models": args.models, "epochs": args.epochs,
              "argv": ["python", "-m", "benchmarks.eval_bf16", *sys.argv[1:]],
              "accuracy": {"fp32": fp32, "bf16": bf16,
                           "difference": summarize([b - f for f, b in zip(fp32, bf16, strict=True)])},
              "timing": {"epochs": args.timing_epochs, "threads": args.threads, **timing},
              "protocols": {v: r["protocol"] for v, r in runs.items()}}
    publish("eval_bf16", report(result), result)


if __name__ == "__main__":
    main()
