"""How the teacher sees a pair's stored sets, beside the real test split; where the students err.

Explains the gap between a data-free student and the same student on real images: for each set,
the teacher's mean top logit and top probability, how far its class means of penultimate features lie from
its classifier rows (datafree.losses.class_mean_alignment: 1 - cos, centred, classes by its answers), how often
its answer survives a horizontal flip and a 2-pixel shift (both part of the students' augmentation) and Gaussian
noise on every pixel (``--noise-std``'s, at a few standard deviations), the
per-class test accuracy of the students distilled from those sets, and how often each student gives the teacher's answer: on
its own sets (every stored set it read), and on the test images the teacher is sure of (top probability > 0.9) and
the rest.
A last column re-estimates each student's BatchNorm running statistics on real *training* images (a seeded
draw; never the test split) and tests it again: whether the statistics a student took from synthetic
images, rather than its weights, cost it accuracy. It is a diagnostic; no data-free student may do this.
Two more refit only the bias of each student's classifier (one number per class) and test again: to the labels of
the same real draw (a diagnostic: how much of the gap is a shift in which classes the student answers), and to the
teacher's answers on the whole, unaugmented images of the student's own sets (what a data-free refit recovers).
A student that agrees on its own images but not on test images the teacher finds easy has learnt
the synthetic images, not the teacher's view of real ones: the set misses some of the data's modes.

    python -m benchmarks.teacher_view --pair lenet --methods zskd real-images-6400 [--update-readme]
    python -m benchmarks.teacher_view --levers kd fourier-parts2-raw-adi-grown-200-long-mixup-rkd-distance \
        --results teacher_view_levers_teacherbc1112af

``--levers`` reads benchmarks.datafree_levers' rows instead (the main job's BatchNorm LeNet and its teacher);
``kd`` there is their real-data KD student, which has no set: only its test answers are read.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.baselines import PAIRS, REPO, seeded_runs
from benchmarks.datafree_kd import finished_students
from benchmarks.datafree_levers import LEVERS
from benchmarks.readme import publish
from datafree.audit import draw, gather
from datafree.checkpoint import load_model
from datafree.data import iterate_batches, load_dataset
from datafree.data.augment import GaussianNoise
from datafree.data.transfer import TransferSet
from datafree.hooks import InputHooks, class_weights, classifier_module, embed, penultimate_module
from datafree.losses import class_mean_alignment

SHIFTS = ((2, 0), (-2, 0), (0, 2), (0, -2))  # (dy, dx) in pixels, wrapped around (torch.roll)
# standard deviations of Gaussian noise on every pixel, in normalised input units (the trainer's --noise-std)
NOISE_STDS = (0.05, 0.1, 0.25)


@torch.no_grad()
def teacher_view(teacher: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """The teacher's confidence on ``images``, where its class means sit, and how stable its answer is under a
    flip, small shifts and Gaussian noise (``NOISE_STDS``; a seeded draw, so every set gets the same noise)."""
    top_logit, top_prob, flip_same, shift_same, features, answers = [], [], [], [], [], []
    noise_same: dict[float, list[torch.Tensor]] = {std: [] for std in NOISE_STDS}
    generator = torch.Generator().manual_seed(0)
    hooks = InputHooks(teacher, [penultimate_module(teacher)])
    for x in images.split(batch_size):
        logits = teacher(x)
        answer = logits.argmax(1)
        features.append(next(iter(hooks.features.values())).flatten(1))  # before the flip and shift passes
        answers.append(answer)
        top_logit.append(logits.max(1).values)
        top_prob.append(logits.softmax(1).max(1).values)
        flip_same.append((teacher(x.flip(3)).argmax(1) == answer).float())
        shift_same.append(torch.stack([(teacher(torch.roll(x, s, (2, 3))).argmax(1) == answer).float()
                                       for s in SHIFTS]).mean(0))
        for std, same in noise_same.items():
            same.append((teacher(GaussianNoise(std)(x, generator)).argmax(1) == answer).float())
    hooks.remove()
    mean = lambda parts: torch.cat(parts).mean().item()  # noqa: E731
    class_means = class_mean_alignment(torch.cat(features), torch.cat(answers), class_weights(teacher)).item()
    return {"images": len(images), "top_logit": mean(top_logit), "top_prob": mean(top_prob), "class_means": class_means,
            "same_after_flip": 100 * mean(flip_same), "same_after_shift": 100 * mean(shift_same),
            **{f"same_after_noise_{std}": 100 * mean(same) for std, same in noise_same.items()}}


def pixel_view(images: torch.Tensor, spec: Any) -> dict[str, float]:
    """The images' mean pixel and share (%) of dark pixels (< 0.1) in [0, 1] units: a teacher without BatchNorm says
    nothing of the background, and the data's is mostly dark."""
    pixels = spec.denormalize(images).clamp(0, 1)
    return {"pixel_mean": pixels.mean().item(), "dark_pixels": 100 * (pixels < 0.1).float().mean().item()}


@torch.no_grad()
def logits_of(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    return torch.cat([model(x) for x in images.split(batch_size)])


def agreement(teacher_logits: torch.Tensor, student_answers: torch.Tensor, sure: float = 0.9) -> dict[str, float]:
    """How often the student's answers are the teacher's (%), over all images and split by whether the
    teacher's top probability exceeds ``sure``; ``sure_share`` is the share (%) of images it is sure of."""
    same = (student_answers == teacher_logits.argmax(1)).float()
    sure_mask = teacher_logits.softmax(1).max(1).values > sure
    pct = lambda v: 100 * v.mean().item() if len(v) else float("nan")  # noqa: E731
    return {"all": pct(same), "sure": pct(same[sure_mask]), "unsure": pct(same[~sure_mask]),
            "sure_share": pct(sure_mask.float())}


@torch.no_grad()
def with_batchnorm_from(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> nn.Module:
    """A copy of ``model`` in eval mode whose BatchNorm running statistics are the plain average of those of
    ``images``' batches (each layer reset, then fed every batch in train mode): nothing else changes."""
    copied = copy.deepcopy(model)
    for module in copied.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average, not an exponential one
    copied.train()
    for x in images.split(batch_size):
        copied(x)
    return copied.eval()


def refit_bias(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose classifier bias alone is refitted (L-BFGS, the rest frozen) to ``targets`` on
    ``images``: class labels (cross-entropy) or a teacher's logits (KL from its softmax at temperature 1)."""
    copied = copy.deepcopy(model).eval()
    classifier = classifier_module(copied)
    with torch.no_grad():
        features = torch.cat([embed(copied, x) for x in images.split(1000)])
        weight = classifier.weight.detach()
    bias = classifier.bias.detach().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([bias], max_iter=300)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = features @ weight.T + bias
        loss = (nn.functional.cross_entropy(logits, targets) if targets.dim() == 1 else
                nn.functional.kl_div(logits.log_softmax(1), targets.softmax(1), reduction="batchmean"))
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        classifier.bias.copy_(bias)
    return copied


def per_class_accuracy(answers: torch.Tensor, labels: torch.Tensor, classes: int) -> list[float]:
    return [100 * (answers[labels == c] == c).float().mean().item() for c in range(classes)]


def student_runs(root: Path, pair: str, methods: list[str], levers: list[str] | None
                 ) -> list[tuple[str, int, str, Path, dict[str, Any]]]:
    """(method or lever, seed, run name, student checkpoint, result) of every finished run to read, by seed:
    benchmarks.datafree_kd's students under ``root/datafree/pair`` or, with ``levers``, benchmarks.datafree_levers'
    under ``root/levers``."""
    found = []
    for name in levers or methods:
        if levers:  # a levers run is its student directory
            runs = [(seed, student) for _, seed, student in seeded_runs(root / "levers", name)]
        else:
            runs = [(seed, student) for _, _, seed, student in finished_students(root, pair, name)]
        for seed, student in runs:
            result = json.loads((student / "result.json").read_text())
            if levers or result.get("transfer"):  # datafree_kd's rows without a set are not data-free students
                found.append((name, seed, student.name if levers else student.parent.name, student, result))
    return sorted(found, key=lambda r: ((levers or methods).index(r[0]), r[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=PAIRS, default="lenet")
    parser.add_argument("--methods", nargs="+", default=["zskd", "real-images-6400"],
                        help="benchmarks.datafree_kd methods whose stored sets and students to read")
    parser.add_argument("--max-images", type=int, default=0,
                        help="look at this many images of each stored set (a seeded draw, datafree.audit.draw; 0: all)")
    parser.add_argument("--recalibrate-images", type=int, default=5120,
                        help="real training images (a seeded draw) to re-estimate the students' BatchNorm statistics on")
    parser.add_argument("--levers", nargs="+", choices=["kd", *LEVERS],
                        help="read these benchmarks.datafree_levers rows instead, with their teacher (the main job's "
                             "BatchNorm LeNet); kd: their real-data KD students")
    parser.add_argument("--root", type=Path, default=Path("artifacts"))
    parser.add_argument("--results", metavar="STEM", help="benchmarks/results/STEM.{json,md} (default: teacher_view_PAIR, "
                        "or teacher_view_levers with --levers)")
    parser.add_argument("--update-readme", action="store_true", help="write the tables into docs/results.md")
    args = parser.parse_args(argv)
    stem = args.results or ("teacher_view_levers" if args.levers else f"teacher_view_{args.pair}")
    if args.update_readme and stem != f"teacher_view_{args.pair}":
        parser.error("--update-readme publishes a pair's default table only")
    os.chdir(REPO)
    pair = PAIRS[args.pair]
    teacher_name = "lenet5_bn" if args.levers else pair.teacher
    teacher, info = load_model(args.root / "teachers" / f"fashion-mnist-{teacher_name}")
    teacher.eval()
    test = load_dataset("fashion-mnist", "test")
    batches = list(iterate_batches(test, 1000))
    x_test, y_test = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    views = {"real test split": {**teacher_view(teacher, x_test), **pixel_view(x_test, info.spec)}}
    teacher_test = logits_of(teacher, x_test)
    train = load_dataset("fashion-mnist", "train")
    x_recalibrate, y_recalibrate = gather(train, draw(len(train), args.recalibrate_images, seed=0, stream=1))[:2]
    accuracy = lambda model: 100 * (logits_of(model, x_test).argmax(1) == y_test).float().mean().item()  # noqa: E731
    students: dict[str, dict[int, list[float]]] = {}
    agreements: dict[str, dict[str, Any]] = {}
    read: dict[str, tuple[torch.Tensor, dict[str, float], torch.Tensor]] = {}  # per set: images, view, teacher logits
    for method, seed, run, student_dir, result in student_runs(args.root, args.pair, args.methods, args.levers):
        student, _ = load_model(student_dir)
        student.eval()
        student_test = logits_of(student, x_test).argmax(1)
        students.setdefault(method, {})[seed] = per_class_accuracy(student_test, y_test, info.spec.num_classes)
        own_set = own_bias = float("nan")
        if result.get("transfer"):
            sets = result.get("transfers") or [result["transfer"]]  # a student that read several sets: all of them
            for path in sets:
                if path not in read:  # rows that share a set (a student-only lever's) read it once
                    tset = TransferSet(path)
                    own = gather(tset, draw(len(tset), args.max_images or len(tset), seed=0, stream=0))[0]
                    read[path] = (own, {**teacher_view(teacher, own), **pixel_view(own, info.spec)},
                                  logits_of(teacher, own))
                set_name = Path(path).name if args.levers else Path(path).parent.name
                views[f"{method} ({set_name})"] = read[path][1]
            own, teacher_own = (torch.cat([read[path][k] for path in sets]) for k in (0, 2))
            own_set = agreement(teacher_own, logits_of(student, own).argmax(1))["all"]
            own_bias = accuracy(refit_bias(student, own, teacher_own))
        agreements[run] = {"own_set": own_set, "test": agreement(teacher_test, student_test),
                           "test_accuracy": result["metrics"]["test_accuracy"],
                           "test_accuracy_real_batchnorm": accuracy(with_batchnorm_from(student, x_recalibrate)),
                           "test_accuracy_real_bias": accuracy(refit_bias(student, x_recalibrate, y_recalibrate)),
                           "test_accuracy_own_set_bias": own_bias}
    names = list(info.spec.class_names) or [str(c) for c in range(info.spec.num_classes)]
    lines = ["| images | count | teacher's mean top logit | mean top probability | class means from its rows (1 - cos) "
             "| same answer after a flip (%) | after a 2-pixel shift (%) | "
             + "".join(f"after noise of std {std} (%) | " for std in NOISE_STDS)
             + "mean pixel | dark pixels (< 0.1, %) |",
             "|---|---|---|---|---|---|---|" + "---|" * len(NOISE_STDS) + "---|---|"]
    lines += [f"| {k} | {v['images']} | {v['top_logit']:.1f} | {v['top_prob']:.3f} | {v['class_means']:.3f} "
              f"| {v['same_after_flip']:.1f} | {v['same_after_shift']:.1f} | "
              + "".join(f"{v[f'same_after_noise_{std}']:.1f} | " for std in NOISE_STDS)
              + f"{v['pixel_mean']:.3f} | {v['dark_pixels']:.1f} |" for k, v in views.items()]
    lines += ["", "| students of | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append("| teacher | " + " | ".join(f"{a:.1f}" for a in per_class_accuracy(teacher_test.argmax(1), y_test,
                                                                                        info.spec.num_classes)) + " |")
    for method, rows in students.items():
        for seed, row in rows.items():
            lines.append(f"| {method}, seed {seed} | " + " | ".join(f"{a:.1f}" for a in row) + " |")
        lines.append(f"| {method}, mean | " + " | ".join(f"{statistics.fmean(col):.1f}" for col in zip(*rows.values()))
                     + " |")
    base = next(iter(students), None)
    for method, rows in students.items():  # per class, each row against the first one on the seeds both have
        seeds = sorted(set(rows) & set(students[base])) if method != base else []
        if seeds:
            diffs = [[rows[s][c] - students[base][s][c] for s in seeds] for c in range(len(names))]
            lines.append(f"| {method} minus {base}, seeds {', '.join(map(str, seeds))} | "
                         + " | ".join(f"{statistics.fmean(d):+.1f}" for d in diffs) + " |")
    sure_share = next(iter(agreements.values()))["test"]["sure_share"] if agreements else float("nan")
    lines += ["", "| student | test accuracy | gives the teacher's answer: on its own set (%) | on the test split | "
              f"on test images the teacher is sure of ({sure_share:.0f}%) | on the others | test accuracy, BatchNorm "
              f"statistics from {args.recalibrate_images} real training images (diagnostic) | classifier bias refitted "
              "to their labels (diagnostic) | classifier bias refitted to the teacher on its own set (data-free) |",
              "|---|---|---|---|---|---|---|---|---|"]
    own_cell = lambda v, digits=1: "no set" if math.isnan(v) else f"{v:.{digits}f}"  # noqa: E731
    lines += [f"| {name} | {a['test_accuracy']:.2f} | {own_cell(a['own_set'])} | {a['test']['all']:.1f} | "
              f"{a['test']['sure']:.1f} | {a['test']['unsure']:.1f} | {a['test_accuracy_real_batchnorm']:.2f} | "
              f"{a['test_accuracy_real_bias']:.2f} | {own_cell(a['test_accuracy_own_set_bias'], 2)} |"
              for name, a in agreements.items()]
    drawn = f" ({args.max_images} seeded images of each set)" if args.max_images else ""
    source = ("benchmarks.datafree_levers (the main job's BatchNorm LeNet-5 -> LeNet-5-half, teacher sha256 "
              f"{info.sha256[:8]})" if args.levers else f"{pair.name}: benchmarks.datafree_kd")
    md = (f"Fashion-MNIST, {source}: the teacher on each stored set{drawn} and on the "
          "test split (shifts wrap around; the students train with 2-pixel crops and flips; noise is Gaussian on "
          "every pixel, in normalised input units, as the trainer's --noise-std), then the per-class "
          "test accuracy (%) of the teacher and of each set's student, then how often each student gives the "
          "teacher's answer (sure: top probability > 0.9).\n\n" + "\n".join(lines)
          + "\n\nProduced by `python -m benchmarks.teacher_view "
          + (f"--levers {' '.join(args.levers)}" if args.levers else f"--pair {args.pair} --methods {' '.join(args.methods)}")
          + (f" --max-images {args.max_images}" if args.max_images else "")
          + (f" --root {args.root}" if args.root != parser.get_default("root") else "")
          + (f" --results {stem}`." if args.results else "` (then `--update-readme`)."))
    publish(stem, md, {"views": views, "students": students, "agreement": agreements,
                                              "classes": names},
            section=f"teacher-view-{args.pair}" if args.update_readme else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
