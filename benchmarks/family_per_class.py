"""Per-class test accuracy of a pair's students: the teacher, real-data KD, scratch and a data-free recipe, by seed.

Where a data-free student's gap to real-data KD sits: on the own-family pairs most of it is one class (Shirt,
docs/datafree_recipes.md, "Fifty-third round"). benchmarks/teacher_view does this and more for the LeNet and ResNet
pairs' sets; this reads only the students' answers on the test split, so it works for any pair
benchmarks.datafree_families ran. Reads runs, trains nothing; a run that is not there is left out.

``--own-set N`` adds, for the data-free student, how far it is from the teacher on each class the teacher answers:
its KD term (``T^2 * KL`` at the students' temperature, :func:`datafree.losses.kd_kl`) and how often it gives the
teacher's answer, on N images of its own stored set (a seeded draw, unaugmented) and on the test split. A loss
that weights classes or images by how far the student is from the teacher can only aim at a class that stands out
on the set.

    python -m benchmarks.family_per_class --pairs wrn-own mobilenet-own --seeds 0 1 --root artifacts-fam
    python -m benchmarks.family_per_class --pairs resnet --seeds 0 --root artifacts-res --own-set 8000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from benchmarks.baselines import PAIRS, student_dir, teacher_dir
from benchmarks.datafree_kd import RECIPES, run_dir, transfer_dir
from benchmarks.teacher_view import logits_of, per_class_accuracy
from datafree.api import load_teacher
from datafree.audit import draw, gather
from datafree.bench.jobs import train_fields
from datafree.data.datasets import load_dataset
from datafree.data.transfer import TransferSet
from datafree.losses import kd_kl

TEMPERATURE = float(train_fields(RECIPES.df_stored_student)["temperature"])  # the stored-set students' KD temperature


def per_class_rows(models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor,
                   classes: int) -> list[str]:
    """One markdown row per model: its test accuracy (%) on each class."""
    rows = []
    with torch.inference_mode():
        for name, model in models.items():
            acc = per_class_accuracy(logits_of(model.eval(), images).argmax(1), labels, classes)
            rows.append(f"| {name} | " + " | ".join(f"{a:.1f}" for a in acc) + " |")
    return rows


def distance_by_class(teacher_logits: torch.Tensor, student_logits: torch.Tensor, classes: int,
                      temperature: float = TEMPERATURE) -> list[tuple[int, float, float]]:
    """For each class the teacher answers: ``(images, the student's mean KD term, % of them it answers alike)``."""
    answers = teacher_logits.argmax(1)
    rows = []
    for c in range(classes):
        mask = answers == c
        n = int(mask.sum())
        if n == 0:
            rows.append((0, float("nan"), float("nan")))
            continue
        kd = kd_kl(student_logits[mask], teacher_logits[mask], temperature).item()
        rows.append((n, kd, 100 * (student_logits[mask].argmax(1) == c).float().mean().item()))
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
    parser.add_argument("--own-set", type=int, default=0, metavar="N",
                        help="also the student's distance to the teacher by class on N images of its own set")
    args = parser.parse_args(argv)
    test = load_dataset("fashion-mnist", "test")
    images, labels = test.get_batch(torch.arange(len(test)))[:2]
    classes = int(labels.max()) + 1
    for key in args.pairs:
        for seed in args.seeds:
            runs = pair_runs(key, seed, args.method, args.root)
            models = {name: load_teacher(path)[0] for name, path in runs.items() if path.is_dir()}
            print(f"\n{PAIRS[key].name}, seed {seed}" + "".join(f" (no {n} run)" for n in runs if n not in models))
            print("\n| model | " + " | ".join(f"class {c}" for c in range(classes)) + " |")
            print("|---" * (classes + 1) + "|")
            print("\n".join(per_class_rows(models, images, labels, classes)))
            if args.own_set and args.method in models:
                print_distances(models["teacher"], models[args.method], images,
                                own_images(transfer_dir(args.root, key, args.method, seed), args.own_set, seed), classes)
    return 0


def own_images(directory: Path, count: int, seed: int) -> torch.Tensor:
    """``count`` images of a stored set, drawn without replacement (:func:`datafree.audit.draw`, the run's seed as
    the draw's stream, as benchmarks/teacher_view draws a set's images)."""
    tset = TransferSet(directory)
    return gather(tset, draw(len(tset), count, seed=0, stream=seed))[0]


def print_distances(teacher: nn.Module, student: nn.Module, test_images: torch.Tensor, set_images: torch.Tensor,
                    classes: int) -> None:
    """A table: by the class the teacher answers, the student's KD term and agreement on its set and on test."""
    with torch.inference_mode():
        cols = [distance_by_class(logits_of(teacher.eval(), x), logits_of(student.eval(), x), classes)
                for x in (set_images, test_images)]
    print(f"\nThe student's KD term (T^2 KL, T={TEMPERATURE:g}) and agreement (%) by the teacher's answer, on "
          f"{len(set_images)} images of its own set and on the test split\n")
    print("| teacher's answer | set: images | set: KD term | set: agree | test: images | test: KD term | test: agree |")
    print("|---|---|---|---|---|---|---|")
    for c in range(classes):
        (n_s, kd_s, ag_s), (n_t, kd_t, ag_t) = cols[0][c], cols[1][c]
        print(f"| class {c} | {n_s} | {kd_s:.3f} | {ag_s:.1f} | {n_t} | {kd_t:.3f} | {ag_t:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
