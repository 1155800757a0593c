"""Per-class test accuracy of a pair's students: the teacher, real-data KD, scratch and a data-free recipe, by seed.

Where a data-free student's gap to real-data KD sits: on the own-family pairs most of it is one class (Shirt,
docs/datafree_recipes.md, "Fifty-third round"). benchmarks/teacher_view does this and more for the LeNet and ResNet
pairs' sets; this reads only the students' answers on the test split, so it works for any pair
benchmarks.datafree_families ran. Reads runs, trains nothing.

    python -m benchmarks.family_per_class --pairs wrn-own mobilenet-own --seeds 0 1 --root artifacts-fam
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from benchmarks.baselines import PAIRS, student_dir, teacher_dir
from benchmarks.datafree_kd import run_dir
from benchmarks.teacher_view import logits_of, per_class_accuracy
from datafree.api import load_teacher
from datafree.data.datasets import load_dataset


def per_class_rows(models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor,
                   classes: int) -> list[str]:
    """One markdown row per model: its test accuracy (%) on each class."""
    rows = []
    with torch.inference_mode():
        for name, model in models.items():
            acc = per_class_accuracy(logits_of(model.eval(), images).argmax(1), labels, classes)
            rows.append(f"| {name} | " + " | ".join(f"{a:.1f}" for a in acc) + " |")
    return rows


def pair_runs(key: str, seed: int, method: str, root: Path) -> dict[str, Path]:
    """The run directories of one pair and seed, as benchmarks.baselines and benchmarks.datafree_kd write them."""
    return {"teacher": teacher_dir(key, root), "kd": student_dir(key, "kd", seed, root),
            "scratch": student_dir(key, "scratch", seed, root), method: run_dir(root, key, method, seed) / "student"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--method", default="fast5-stored-ngf32-inherit")
    parser.add_argument("--root", type=Path, default=Path("artifacts"))
    args = parser.parse_args(argv)
    test = load_dataset("fashion-mnist", "test")
    images, labels = test.get_batch(torch.arange(len(test)))[:2]
    classes = int(labels.max()) + 1
    for key in args.pairs:
        for seed in args.seeds:
            models = {name: load_teacher(path)[0] for name, path in pair_runs(key, seed, args.method, args.root).items()}
            print(f"\n{PAIRS[key].name}, seed {seed}\n")
            print("| model | " + " | ".join(f"class {c}" for c in range(classes)) + " |")
            print("|---" * (classes + 1) + "|")
            print("\n".join(per_class_rows(models, images, labels, classes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
