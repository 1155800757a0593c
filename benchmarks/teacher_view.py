"""How the teacher sees a pair's stored sets, beside the real test split; where the students err.

Explains the gap between a data-free student and the same student on real images: for each set,
the teacher's mean top logit and top probability, how often its answer survives a horizontal flip
and a 2-pixel shift (both part of the students' augmentation), and the per-class test accuracy of
the students distilled from those sets.

    python -m benchmarks.teacher_view --pair lenet --methods zskd real-images-6400 [--update-readme]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

from benchmarks.baselines import PAIRS, REPO
from benchmarks.readme import publish
from datafree.checkpoint import load_model
from datafree.data import iterate_batches, load_dataset
from datafree.data.transfer import TransferSet

SHIFTS = ((2, 0), (-2, 0), (0, 2), (0, -2))  # (dy, dx) in pixels, wrapped around (torch.roll)


@torch.no_grad()
def teacher_view(teacher: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """The teacher's confidence on ``images`` and how stable its answer is under a flip and small shifts."""
    top_logit, top_prob, flip_same, shift_same = [], [], [], []
    for x in images.split(batch_size):
        logits = teacher(x)
        answer = logits.argmax(1)
        top_logit.append(logits.max(1).values)
        top_prob.append(logits.softmax(1).max(1).values)
        flip_same.append((teacher(x.flip(3)).argmax(1) == answer).float())
        shift_same.append(torch.stack([(teacher(torch.roll(x, s, (2, 3))).argmax(1) == answer).float()
                                       for s in SHIFTS]).mean(0))
    mean = lambda parts: torch.cat(parts).mean().item()  # noqa: E731
    return {"images": len(images), "top_logit": mean(top_logit), "top_prob": mean(top_prob),
            "same_after_flip": 100 * mean(flip_same), "same_after_shift": 100 * mean(shift_same)}


@torch.no_grad()
def per_class_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: int) -> list[float]:
    pred = torch.cat([model(x).argmax(1) for x in images.split(1000)])
    return [100 * (pred[labels == c] == c).float().mean().item() for c in range(classes)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=PAIRS, default="lenet")
    parser.add_argument("--methods", nargs="+", default=["zskd", "real-images-6400"],
                        help="benchmarks.datafree_kd methods whose stored sets and students to read")
    parser.add_argument("--root", type=Path, default=Path("artifacts"))
    parser.add_argument("--update-readme", action="store_true", help="write the tables into docs/results.md")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    pair = PAIRS[args.pair]
    teacher, info = load_model(args.root / "teachers" / f"fashion-mnist-{pair.teacher}")
    teacher.eval()
    test = load_dataset("fashion-mnist", "test")
    batches = list(iterate_batches(test, 1000))
    x_test, y_test = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    views = {"real test split": teacher_view(teacher, x_test)}
    students: dict[str, list[list[float]]] = {}
    for method in args.methods:
        for run in sorted((args.root / "datafree" / args.pair).glob(f"{method}-seed*")):
            result = json.loads((run / "student" / "result.json").read_text()) if (
                run / "student" / "result.json").is_file() else None
            if result is None or not result.get("transfer"):
                continue
            tset = TransferSet(result["transfer"])
            views[f"{method} ({Path(result['transfer']).parent.name})"] = teacher_view(
                teacher, tset.get_batch(torch.arange(len(tset)))[0])
            student, _ = load_model(run / "student")
            students.setdefault(method, []).append(per_class_accuracy(student.eval(), x_test, y_test,
                                                                      info.spec.num_classes))
    names = list(info.spec.class_names) or [str(c) for c in range(info.spec.num_classes)]
    lines = ["| images | count | teacher's mean top logit | mean top probability | same answer after a flip (%) "
             "| after a 2-pixel shift (%) |", "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['images']} | {v['top_logit']:.1f} | {v['top_prob']:.3f} | {v['same_after_flip']:.1f} "
              f"| {v['same_after_shift']:.1f} |" for k, v in views.items()]
    lines += ["", "| students of | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append("| teacher | " + " | ".join(f"{a:.1f}" for a in per_class_accuracy(teacher, x_test, y_test,
                                                                                        info.spec.num_classes)) + " |")
    for method, rows in students.items():
        for seed, row in enumerate(rows):
            lines.append(f"| {method}, seed {seed} | " + " | ".join(f"{a:.1f}" for a in row) + " |")
        lines.append(f"| {method}, mean | " + " | ".join(f"{statistics.fmean(col):.1f}" for col in zip(*rows)) + " |")
    md = (f"Fashion-MNIST, {pair.name}: the teacher on each stored set of benchmarks.datafree_kd and on the "
          "test split (shifts wrap around; the students train with 2-pixel crops and flips), then the per-class "
          "test accuracy (%) of the teacher and of each set's student.\n\n" + "\n".join(lines)
          + f"\n\nProduced by `python -m benchmarks.teacher_view --pair {args.pair} --methods "
          + " ".join(args.methods) + "` (then `--update-readme`).")
    publish("teacher_view", md, {"views": views, "students": students, "classes": names},
            section="teacher-view" if args.update_readme else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
