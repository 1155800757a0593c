"""What DeepInversion's images look like on the main job's BatchNorm LeNet-5, by pixel steps and start.

Synthesizes 40 images (4 per class, one batch) per setting from the levers' teacher (``benchmarks.datafree_levers``
trains it) and draws them side by side, one row per class: benchmarks/results/synthesis_look.png, with the time
of each setting in synthesis_look.json. The main job's sets use 100 steps from uniform noise; garment silhouettes
need about ten times that, or a start near the teacher's input mean, and neither teaches the student more
(docs/datafree_recipes.md, "Seventh round").

    python -m benchmarks.synthesis_look
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

SETTINGS = [  # (title, --set overrides of the deepinversion preset)
    ("100 steps, uniform start (main job)", {"iterations": 100}),
    ("300 steps", {"iterations": 300}),
    ("1000 steps", {"iterations": 1000}),
    ("100 steps, mean start", {"iterations": 100, "pixel_init": "mean"}),
    ("1000 steps, mean start", {"iterations": 1000, "pixel_init": "mean"}),
]
PER_CLASS = 4


def main(argv: list[str] | None = None) -> int:
    from datafree import api
    from datafree.data.transfer import TransferSet
    from datafree.synthesis import preset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("artifacts"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.chdir(REPO)
    teacher_dir = args.root / "teachers" / "fashion-mnist-lenet5_bn"
    if not (teacher_dir / "model.safetensors").is_file():
        raise SystemExit(f"no teacher at {teacher_dir}: run 'python -m benchmarks.datafree_levers' first")
    teacher, info = api.load_teacher(teacher_dir)
    count = PER_CLASS * info.spec.num_classes
    panels, rows = [], []
    for i, (title, overrides) in enumerate(SETTINGS):
        out = args.root / "synthesis_look" / f"setting{i}"
        shutil.rmtree(out, ignore_errors=True)  # a few seconds each: always made afresh
        config = preset("deepinversion", batch_size=count, **overrides)
        start = time.perf_counter()
        api.synthesize(out, teacher, info, "deepinversion", count, config=config, seed=args.seed, progress=False)
        seconds = time.perf_counter() - start
        tset = TransferSet(out)
        images, labels = tset.get_batch(torch.arange(len(tset)))[:2]
        order = torch.argsort(labels, stable=True)  # one row per class
        panels.append((title, info.spec.denormalize(images[order]).clamp(0, 1)))
        rows.append({"setting": title, "overrides": overrides, "images": count, "seconds": round(seconds, 1)})
        print(f"  {title}: {seconds:.1f} s", flush=True)
    draw(panels, info.spec.num_classes, REPO / "benchmarks" / "results" / "synthesis_look.png")
    md = ("DeepInversion (`--method deepinversion`, 40 images in one batch, seed "
          f"{args.seed}) on the main job's BatchNorm LeNet-5, by pixel steps and start; one thread:\n\n"
          "| setting | seconds |\n|---|---|\n" + "\n".join(f"| {r['setting']} | {r['seconds']} |" for r in rows)
          + "\n\nImages: benchmarks/results/synthesis_look.png. Produced by `python -m benchmarks.synthesis_look`.")
    publish("synthesis_look", md, {"seed": args.seed, "settings": rows})
    return 0


def draw(panels: list[tuple[str, torch.Tensor]], classes: int, path: Path) -> None:
    """Panels side by side; each a grid of ``classes`` rows of ``PER_CLASS`` images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 5.2))
    for ax, (title, images) in zip(axes, panels):
        grid = make_grid(images, nrow=PER_CLASS, padding=1, pad_value=0.5)
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.suptitle(f"DeepInversion on a BatchNorm LeNet-5: {PER_CLASS} images per class, one row per class", fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
