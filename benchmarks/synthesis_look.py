"""What DeepInversion's loss makes of a BatchNorm teacher's inputs, by pixel steps, start, image prior and generator.

Synthesizes 40 images (4 per class, one batch) per setting and draws them side by side, one row per class:
benchmarks/results/synthesis_look[_TEACHER].png, with each setting's time in the matching .json. Teachers: the main
job's BatchNorm LeNet-5 (the levers' teacher, which ``benchmarks.datafree_levers`` trains) and the BN pair's ResNet-14
(``benchmarks.baselines``). On the LeNet-5, 100 pixel steps from uniform noise (the main job's sets) give blobs, and
no image prior at that cost changes it; garment silhouettes need ten times the steps, a start near the teacher's input
mean, a DCGAN generator at 1000 steps a batch, or Fourier pixels (the one at the main job's cost), and none of them
teaches the student more (Fourier pixels teach it less). On the ResNet-14, pixels give textures: its garments come
from a generator (docs/datafree_recipes.md, "Seventh round", "Fourteenth round").

    python -m benchmarks.synthesis_look                      # the LeNet-5
    python -m benchmarks.synthesis_look --teacher resnet14
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from benchmarks.baselines import REPO
from benchmarks.readme import publish

# a DCGAN generator (as CMI's) with DeepInversion's loss, one fresh generator for the batch
DCGAN = {"generator": "dcgan", "lr": 1e-3, "ngf": 16, "conditional": True}
SETTINGS = {  # teacher -> [(title, --set overrides of the deepinversion preset)]
    "lenet5_bn": [
        ("100 steps, uniform start (main job)", {"iterations": 100}),
        ("300 steps", {"iterations": 300}),
        ("1000 steps", {"iterations": 1000}),
        ("100 steps, mean start", {"iterations": 100, "pixel_init": "mean"}),
        ("1000 steps, mean start", {"iterations": 1000, "pixel_init": "mean"}),
        ("100 steps, 2x coarser pixels", {"iterations": 100, "pixel_scale": 2}),
        ("100 steps, 10x total variation", {"iterations": 100, "tv": 1e-3 * 784}),
        ("100 steps, 5x first-BN weight", {"iterations": 100, "bn_first": 50.0}),
        ("100 steps, Fourier pixels", {"iterations": 100, "pixel_param": "fourier"}),
        ("100 steps, Fourier pixels, 30x wider start", {"iterations": 100, "pixel_param": "fourier", "fourier_std": 0.3}),
        ("DCGAN generator, 200 steps", {**DCGAN, "iterations": 200}),
        ("DCGAN generator, 1000 steps", {**DCGAN, "iterations": 1000}),
    ],
    "resnet14": [
        ("100 steps, uniform start", {"iterations": 100}),
        ("300 steps", {"iterations": 300}),
        ("100 steps, mean start", {"iterations": 100, "pixel_init": "mean"}),
        ("100 steps, Fourier pixels", {"iterations": 100, "pixel_param": "fourier"}),
    ],
}
TEACHERS = {"lenet5_bn": ("the main job's BatchNorm LeNet-5", "python -m benchmarks.datafree_levers"),
            "resnet14": ("the BN pair's ResNet-14", "python -m benchmarks.baselines")}
PER_CLASS = 4


def main(argv: list[str] | None = None) -> int:
    from datafree import api
    from datafree.data.transfer import TransferSet
    from datafree.synthesis import preset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("artifacts"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", choices=SETTINGS, default="lenet5_bn")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    teacher_dir = args.root / "teachers" / f"fashion-mnist-{args.teacher}"
    described, trains_it = TEACHERS[args.teacher]
    if not (teacher_dir / "model.safetensors").is_file():
        raise SystemExit(f"no teacher at {teacher_dir}: run '{trains_it}' first")
    teacher, info = api.load_teacher(teacher_dir)
    count = PER_CLASS * info.spec.num_classes
    panels, rows = [], []
    for i, (setting, overrides) in enumerate(SETTINGS[args.teacher]):
        out = args.root / "synthesis_look" / args.teacher / f"setting{i}"
        shutil.rmtree(out, ignore_errors=True)  # a few seconds each: always made afresh
        config = preset("deepinversion", batch_size=count, **overrides)
        start = time.perf_counter()
        api.synthesize(out, teacher, info, "deepinversion", count, config=config, seed=args.seed, progress=False)
        seconds = time.perf_counter() - start
        tset = TransferSet(out)
        images, labels = tset.get_batch(torch.arange(len(tset)))[:2]
        order = torch.argsort(labels, stable=True)  # one row per class
        panels.append((setting, info.spec.denormalize(images[order]).clamp(0, 1)))
        rows.append({"setting": setting, "overrides": overrides, "images": count, "seconds": round(seconds, 1)})
        print(f"  {setting}: {seconds:.1f} s", flush=True)
    stem = "synthesis_look" + ("" if args.teacher == "lenet5_bn" else f"_{args.teacher}")
    title = f"DeepInversion's loss on {described}: {PER_CLASS} images per class, one row per class"
    draw(panels, info.spec.num_classes, REPO / "benchmarks" / "results" / f"{stem}.png", title)
    flag = "" if args.teacher == "lenet5_bn" else f" --teacher {args.teacher}"
    md = (f"DeepInversion's loss (`--method deepinversion`, 40 images in one batch, seed {args.seed}) on {described}, "
          "by pixel steps, start, image prior and generator; one thread (other runs may share the cores: compare "
          "times within one table only):\n\n"
          "| setting | seconds |\n|---|---|\n" + "\n".join(f"| {r['setting']} | {r['seconds']} |" for r in rows)
          + f"\n\nImages: benchmarks/results/{stem}.png. Produced by `python -m benchmarks.synthesis_look{flag}`.")
    publish(stem, md, {"seed": args.seed, "teacher": args.teacher, "settings": rows})
    return 0


def draw(panels: list[tuple[str, torch.Tensor]], classes: int, path: Path, title: str) -> None:
    """Panels side by side; each a grid of ``classes`` rows of ``PER_CLASS`` images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 5.2))
    for ax, (name, images) in zip(axes, panels):
        grid = make_grid(images, nrow=PER_CLASS, padding=1, pad_value=0.5)
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
