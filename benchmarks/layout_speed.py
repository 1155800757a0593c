"""Memory layout on the CPU: channels_last against the default (NCHW) layout, per architecture.

Three passes a distillation run makes, each timed in both layouts on the same batch (median of
``--repeats`` after a warm-up, layouts alternating):

- *label*: the teacher's forward pass without gradient (KD's labelling of every batch);
- *train*: the student's training step (forward, backward to its weights, SGD);
- *input grad*: forward and backward to the input with frozen weights (what the synthesis engine
  does through the teacher, and through the student for adversarial terms).

The input is one-channel 28x28 (Fashion-MNIST) in the NCHW layout a loader yields; only the model
is converted, as :mod:`datafree.models.layout` does. Timing runs on weights as initialised: the cost
does not depend on what the networks learned. The library uses channels_last for the passes without
weight gradients only (label, input grad): the training step's column is measured, not used, because
oneDNN's weight gradient of a strided 1x1 convolution corrupts the heap in channels_last (torch 2.14.1).

    OMP_NUM_THREADS=1 python -m benchmarks.layout_speed      # ~3 min on one core
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from benchmarks.readme import publish
from datafree.data import FASHION_MNIST
from datafree.models import build_model
from datafree.train import peak_memory_mb

ARCHS: list[tuple[str, dict[str, Any]]] = [
    ("lenet5", {}), ("lenet5_bn", {}), ("lenet5_half", {}), ("resnet8", {"width": 8}), ("resnet14", {}),
    ("wrn_16_2", {}), ("mobilenetv2", {}), ("convnet", {"width": 32}), ("convnet", {}),
]
LAYOUTS = {"default": torch.contiguous_format, "channels_last": torch.channels_last}


def passes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Callable[[], None]]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def label() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    def train() -> None:
        model.train().requires_grad_(True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def input_grad() -> None:
        model.eval().requires_grad_(False)
        xi = x.clone().requires_grad_(True)
        model(xi).logsumexp(1).sum().backward()

    return {"label": label, "train": train, "input grad": input_grad}


def measure(arch: str, kwargs: dict[str, Any], batch: int, repeats: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *FASHION_MNIST.shape, generator=gen)
    y = torch.randint(0, FASHION_MNIST.num_classes, (batch,), generator=gen)
    models = {name: build_model(arch, FASHION_MNIST, seed=0, **kwargs).to(memory_format=fmt)
              for name, fmt in LAYOUTS.items()}
    fns = {name: passes(m, x, y) for name, m in models.items()}
    times: dict[str, dict[str, list[float]]] = {p: {name: [] for name in LAYOUTS} for p in fns["default"]}
    for p in times:
        for name in LAYOUTS:
            fns[name][p]()  # warm-up
        for _ in range(repeats):
            for name in LAYOUTS:
                start = time.perf_counter()
                fns[name][p]()
                times[p][name].append(time.perf_counter() - start)
    label = arch + (f" ({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")
    return {"arch": label, **{f"{p} {name} ms": 1000 * statistics.median(t[name])
                              for p, t in times.items() for name in LAYOUTS}}


def to_markdown(data: dict[str, Any]) -> str:
    lines = ["| model | teacher labelling pass (ms) | student training step (ms) | forward+backward to the input (ms) |",
             "|---|---|---|---|"]
    for r in data["rows"]:
        cells = []
        for p in ("label", "train", "input grad"):
            d, c = r[f"{p} default ms"], r[f"{p} channels_last ms"]
            cells.append(f"{d:.1f} -> {c:.1f} ({d / c:.2f}x)")
        lines.append(f"| {r['arch']} | " + " | ".join(cells) + " |")
    lines.append("\nThe library runs the teacher's passes and the frozen student's gradient to the input in channels_last "
                 "(not for GroupNorm/InstanceNorm networks); the training step stays in the default layout (a oneDNN "
                 "bug, datafree.models.layout).")
    lines.append(f"\nDefault layout -> channels_last (speed-up); batch {data['batch']}, one-channel 28x28, "
                 f"{data['threads']} thread(s), median of {data['repeats']}; `{data['command']}`; "
                 f"peak RSS {data['peak_rss_mb']:.0f} MB.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    rows = []
    for arch, kwargs in ARCHS:
        rows.append(measure(arch, kwargs, args.batch, args.repeats))
        print(rows[-1], flush=True)
    data = {"rows": rows, "batch": args.batch, "repeats": args.repeats, "threads": torch.get_num_threads(),
            "command": "python -m benchmarks.layout_speed " + " ".join(sys.argv[1:] if argv is None else argv),
            "peak_rss_mb": peak_memory_mb(torch.device("cpu"))}
    publish("layout_speed", to_markdown(data), data)


if __name__ == "__main__":
    main()
