"""Trainer overhead: datafree's Trainer against a bare PyTorch loop on the same model and batches.

Both loops run the same optimiser (SGD, Nesterov momentum, weight decay) on the same
pre-made batches; the trainer adds its schedule, loss-term bookkeeping, the non-finite check
and metrics. Timings alternate between the two loops and report the median of ``--repeats``.

    python -m benchmarks.speed               # LeNet-5 (CE and KD) and ConvNet-128 on Fashion-MNIST
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from benchmarks.readme import publish
from datafree.data import FASHION_MNIST, load_dataset
from datafree.losses import kd_kl
from datafree.models import build_model
from datafree.train import TrainConfig, Trainer, peak_memory_mb

REPO = Path(__file__).resolve().parent.parent


def make_batches(n_batches: int, batch_size: int, data_root: str | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    ds = load_dataset("fashion-mnist", "train", data_root)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
    return [ds.get_batch(order[i * batch_size:(i + 1) * batch_size]) for i in range(n_batches)]


def bare_loop(model, batches, teacher=None, alpha=0.1, T=4.0) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    model.train()
    for x, y in batches:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if teacher is not None:
            with torch.no_grad():
                t = teacher(x)
            loss = alpha * loss + (1 - alpha) * kd_kl(logits, t, T)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def trainer_loop(model, batches, teacher=None, alpha=0.1, T=4.0) -> None:
    config = TrainConfig(epochs=1, lr=0.01, steps_per_epoch=len(batches), progress=False,
                         alpha=alpha if teacher is not None else 1.0, temperature=T)
    Trainer(model, config, teacher=teacher).fit(iter(batches))


def time_once(fn, arch, batches, teacher) -> float:
    model = build_model(arch, FASHION_MNIST, seed=0)
    start = time.perf_counter()
    fn(model, batches, teacher)
    return time.perf_counter() - start


def measure(arch: str, batches, teacher, repeats: int) -> dict[str, float]:
    time_once(bare_loop, arch, batches[:2], teacher)  # warm-up
    time_once(trainer_loop, arch, batches[:2], teacher)
    bare, ours = [], []
    for _ in range(repeats):
        bare.append(time_once(bare_loop, arch, batches, teacher))
        ours.append(time_once(trainer_loop, arch, batches, teacher))
    n = sum(len(b[1]) for b in batches)
    b, o = statistics.median(bare), statistics.median(ours)
    return {"bare_samples_per_s": n / b, "trainer_samples_per_s": n / o, "overhead": o / b - 1.0,
            "samples": n, "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-root")
    parser.add_argument("--update-readme", action="store_true", help="write the table into docs/results.md")
    args = parser.parse_args(argv)
    lenet_batches = make_batches(60, args.batch_size, args.data_root)
    teacher = build_model("lenet5", FASHION_MNIST, seed=1).eval()
    cases = [
        ("lenet5_half, CE", "lenet5_half", lenet_batches, None),
        ("lenet5_half, KD from lenet5", "lenet5_half", lenet_batches, teacher),
        ("lenet5, CE", "lenet5", lenet_batches, None),
        ("convnet (width 128, instance norm), CE", "convnet", lenet_batches[:6], None),
    ]
    rows = []
    start = time.perf_counter()
    for name, arch, batches, t in cases:
        r = measure(arch, batches, t, args.repeats)
        r["case"] = name
        rows.append(r)
        print(f"{name:42s} bare {r['bare_samples_per_s']:8.0f}/s  trainer {r['trainer_samples_per_s']:8.0f}/s  "
              f"overhead {100 * r['overhead']:+.1f}%", flush=True)
    lines = ["| case | bare loop (samples/s) | datafree Trainer (samples/s) | overhead |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['bare_samples_per_s']:.0f} | {r['trainer_samples_per_s']:.0f} "
              f"| {100 * r['overhead']:+.1f}% |" for r in rows]
    peak = peak_memory_mb(torch.device("cpu"))
    md = "\n".join(lines) + (f"\n\nBatch size {args.batch_size}, {torch.get_num_threads()} threads, median of "
                             f"{args.repeats}; `python -m benchmarks.speed`; peak RSS {peak:.0f} MB.")
    publish("speed", md, {"rows": rows, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                          "wall_time_s": time.perf_counter() - start, "torch": torch.__version__},
            section="speed" if args.update_readme else None)
    print(json.dumps({"max_overhead": max(r["overhead"] for r in rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
