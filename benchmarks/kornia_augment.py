"""kornia against the hand-written differentiable crop/flip of synthesis (issue 19, item 6).

    OMP_NUM_THREADS=1 python -m benchmarks.kornia_augment

Synthesis augments every generated batch before the teacher sees it (DeepInversion's jitter/flip,
Fast-DFKD's and CMI's random resized crop), so the augmentation's forward + backward cost is paid
on every generator step. Both versions do the same thing: square crops of a random area fraction
in [0.5, 1] at a random position, resized back, and a random horizontal flip, differentiable in
the images. kornia's parameters come from the global random state, so the kornia version draws
one seed from the engine's generator and runs under ``torch.random.fork_rng`` (the engine's draws
stay explicit). Timed interleaved, median of rounds, one thread: per call on two batch shapes, and
per whole DeepInversion generator step (pixels, 128 images, an untrained LeNet-5-BN). Written to
benchmarks/results/kornia_augment.json and .md. The result keeps the hand-written version
(datafree/synthesis/augment.py): docs/restructuring.md, "kornia".
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.readme import publish
from datafree.synthesis.augment import random_resized_crop_flip


def kornia_call(aug_by_size: dict, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    import kornia.augmentation as K

    size = tuple(x.shape[-2:])
    if size not in aug_by_size:
        aug_by_size[size] = torch.nn.Sequential(K.RandomResizedCrop(size, scale=(0.5, 1.0), ratio=(1.0, 1.0)),
                                                K.RandomHorizontalFlip())
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return aug_by_size[size](x)


def step_time(fn, shape: tuple[int, ...], calls: int) -> float:
    x = torch.rand(shape, requires_grad=True)
    start = time.perf_counter()
    for _ in range(calls):
        fn(x).square().mean().backward()
    return (time.perf_counter() - start) / calls * 1e3


def synthesis_step_time(augment, calls: int, iterations: int = 5) -> float:
    """ms per generator step of DeepInversion (pixels, batch 128) against an untrained LeNet-5-BN, with ``augment``."""
    from unittest import mock

    from datafree.data import FASHION_MNIST
    from datafree.models import build_model
    from datafree.synthesis import Synthesizer, preset

    teacher = build_model("lenet5_bn", FASHION_MNIST, seed=0)
    synth = Synthesizer(teacher, FASHION_MNIST, preset("deepinversion", iterations=iterations), seed=0)
    with mock.patch("datafree.synthesis.engine.random_resized_crop_flip", augment):
        start = time.perf_counter()
        for _ in range(calls):
            synth.synthesize()
        elapsed = time.perf_counter() - start
    synth.close()
    return elapsed / (calls * iterations) * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    shapes = {"Fashion-MNIST batch 128": (128, 1, 28, 28), "CIFAR batch 256": (256, 3, 32, 32)}
    g1, g2, cache = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0), {}
    engines = {"hand-written (affine grid)": lambda x: random_resized_crop_flip(x, g1),
               "kornia (RandomResizedCrop + RandomHorizontalFlip)": lambda x: kornia_call(cache, x, g2)}
    times = {(s, e): [] for s in shapes for e in engines}
    for fn in engines.values():  # warm-up
        for shape in shapes.values():
            step_time(fn, shape, 2)
    for _ in range(args.rounds):
        for s, shape in shapes.items():
            for e, fn in engines.items():
                times[(s, e)].append(step_time(fn, shape, args.calls))
    cache2 = {}
    step = {"hand-written (affine grid)": random_resized_crop_flip,
            "kornia (RandomResizedCrop + RandomHorizontalFlip)": lambda x, g, flip=True: kornia_call(cache2, x, g)}
    step_times = {e: [] for e in step}
    for _ in range(args.rounds):
        for e, fn in step.items():
            step_times[e].append(synthesis_step_time(fn, 2))
    rows = [{"batch": s, "engine": e, "ms_per_call": statistics.median(v)} for (s, e), v in times.items()]
    rows += [{"batch": "DeepInversion generator step (LeNet-5-BN, 128 images)", "engine": e,
              "ms_per_call": statistics.median(v)} for e, v in step_times.items()]
    md = ["| batch | augmentation | forward + backward (ms per call, median) |", "|---|---|---|"]
    md += [f"| {r['batch']} | {r['engine']} | {r['ms_per_call']:.2f} |" for r in rows]
    md.append("")
    md.append(f"One thread, median of {args.rounds} rounds of {args.calls} calls, interleaved "
              "(`python -m benchmarks.kornia_augment`).")
    publish("kornia_augment", "\n".join(md), {"rows": rows, "rounds": args.rounds, "calls": args.calls,
                                              "torch": torch.__version__})


if __name__ == "__main__":
    main()
