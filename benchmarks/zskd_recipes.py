"""ZSKD synthesis recipes on the LeNet pair, each judged over several student seeds.

One student seed cannot rank synthesis recipes here: students distilled from the same synthetic
set generalise very differently to real images. So each recipe's set is made once (seed 0) and
distilled by ``--student-seeds`` students; the table gives their mean ± std, min and max.

    python -m benchmarks.zskd_recipes --recipes coarse4-50 coarse2-300 --student-steps 8000
    python -m benchmarks.zskd_recipes --recipes paper --student-seeds 0 1 2 3 4
    python -m benchmarks.zskd_recipes --recipes coarse2-300 --student-steps 8000 --student-args "--mix mixup"
    python -m benchmarks.zskd_recipes --report-only --update-readme   # every finished run, by recipe and budget

Uses the LeNet-5 teacher of ``benchmarks.baselines``. Runs are reused when their result exists; the
report groups every finished student by (recipe, images, student steps, student overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.baselines import REPO, fmt, summarize
from benchmarks.calls import call
from benchmarks.datafree_kd import same_synthesis
from benchmarks.readme import publish
from datafree.bench.runner import merge_args, set_args
from datafree.bench.suites import FMNIST_DF_STORED_TRAIN, FMNIST_DF_ZSKD_CHEAP, FMNIST_RECIPES
from datafree.data.transfer import read_manifest
from datafree.synthesis import preset

TEACHER = "teachers/fashion-mnist-lenet5"  # under --root
# --set overrides of the zskd preset: the benchmarks' earlier recipe (4x-coarse pixels, 50 iterations at
# lr 0.01), the paper's (full-resolution pixels, 1500 iterations at lr 0.01, betas 1.0 and 0.1), and
# variants between them; coarse2-300 is the current FMNIST_DF_METHOD_SCALE recipe of benchmarks.datafree_kd
RECIPES: dict[str, dict[str, Any]] = {
    "coarse4-50": {"batch_size": 128, **FMNIST_DF_ZSKD_CHEAP},
    "paper": {"pixel_scale": 1, "iterations": 1500, "lr": 0.01, "dirichlet": [1.0, 0.1]},
    "paper-beta1": {"pixel_scale": 1, "iterations": 1500, "lr": 0.01, "dirichlet": 1.0},
    "coarse2-300": {"pixel_scale": 2, "iterations": 300, "lr": 0.05, "dirichlet": [1.0, 0.1]},
    "coarse2-300-beta0.1": {"pixel_scale": 2, "iterations": 300, "lr": 0.05, "dirichlet": 0.1},
}
# the stored-set student of benchmarks.datafree_kd, its --epochs set per set size here: by default as
# many student steps as that benchmark's (640 epochs of 6400 images at batch 128: 32000)
BATCH = int(FMNIST_DF_STORED_TRAIN[FMNIST_DF_STORED_TRAIN.index("--batch-size") + 1])
_STORED = FMNIST_RECIPES.df_stored_student
STUDENT_STEPS = int(_STORED[_STORED.index("--epochs") + 1]) * FMNIST_RECIPES.df_count // BATCH
STUDENT_DIR = re.compile(r"student-(\d+)steps(?:-(.+))?-seed(\d+)")


def student_dir(out: Path, steps: int, overrides: list[str], seed: int) -> Path:
    """``student-<steps>steps[-<flag>=<value>,...]-seed<N>``: students without overrides keep their
    earlier names."""
    pairs = ",".join(f"{flag.lstrip('-')}={value}" for flag, value in zip(overrides[::2], overrides[1::2]))
    return out / f"student-{steps}steps{f'-{pairs}' if pairs else ''}-seed{seed}"


def student_args(overrides: list[str]) -> list[str]:
    """The stored-set student's arguments with ``overrides`` (flag, value pairs) replacing its values or
    added to them."""
    if len(overrides) % 2 or not all(f.startswith("--") for f in overrides[::2]):
        raise SystemExit(f"--student-args takes '--flag value' pairs, got {overrides}")
    return ["--student", "lenet5_half", *merge_args(FMNIST_DF_STORED_TRAIN, tuple(overrides)), "--no-progress"]


STUDENT = student_args([])  # the base student, without overrides


def run_recipe(name: str, count: int, seeds: list[int], root: Path, data: list[str], steps: int,
               overrides: list[str] | None = None) -> None:
    """Make ``name``'s set of ``count`` images (seed 0) unless it exists, and distill it by each student seed."""
    out = root / "zskd-recipes" / f"{name}-n{count}"
    teacher = root / TEACHER
    tset = out / "transfer"
    if (tset / "manifest.json").is_file() and not same_synthesis(read_manifest(tset), preset("zskd", **RECIPES[name]),
                                                                  count, teacher):
        print(f"  redo   {out}: its set was made with another synthesis config or count, or teacher", flush=True)
        shutil.rmtree(out)  # the students trained on it too
    if not (tset / "manifest.json").is_file() or read_manifest(tset)["count"] < count:
        argv = ["synthesize", "--teacher", str(teacher), "--method", "zskd", *set_args(RECIPES[name]), "--count",
                str(count), "--seed", "0", "--out", str(tset), "--no-progress",
                *(["--resume"] if (tset / "manifest.json").is_file() else [])]
        print(f"  run    datafree {' '.join(argv)}", flush=True)
        call(argv)
    epochs = max(1, steps * BATCH // count)
    for seed in seeds:
        student = student_dir(out, steps, overrides or [], seed)
        argv = ["distill", "--teacher", str(teacher), "--transfer", str(tset), *student_args(overrides or []),
                "--epochs", str(epochs), "--eval-every", str(epochs), "--seed", str(seed), "--out", str(student), *data]
        if not (student / "result.json").is_file():
            print(f"  run    datafree {' '.join(argv)}", flush=True)
            call([*argv, "--overwrite"])


def finished(root: Path) -> list[dict[str, Any]]:
    """One row per (recipe, images, student steps, student overrides) with every finished student seed, read
    from disk."""
    groups: dict[tuple[str, int, int, str], list[dict[str, Any]]] = {}
    for path in sorted((root / "zskd-recipes").glob("*-n*/student-*steps*-seed*/result.json")):
        name, count = path.parts[-3].rsplit("-n", 1)
        match = STUDENT_DIR.fullmatch(path.parts[-2])
        if match is None:
            continue
        groups.setdefault((name, int(count), int(match[1]), match[2] or ""), []).append(json.loads(path.read_text()))
    rows = []
    for (name, count, steps, student), results in sorted(groups.items()):
        manifest = read_manifest(root / "zskd-recipes" / f"{name}-n{count}" / "transfer")
        rows.append({"recipe": name, "overrides": RECIPES.get(name, manifest["config"]), "count": count,
                     "student_steps": steps, "student_overrides": student,
                     "accuracies": [r["metrics"]["test_accuracy"] for r in results],
                     "distillation_time_s": [r["metrics"]["wall_time_s"] for r in results],
                     "synthesis_time_s": manifest["synthesis_time_s"], "argv": [r["argv"] for r in results]})
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    lines = ["| recipe | --set overrides | images | student steps | student overrides | student accuracy | min / max "
             "| synthesis (s) | distillation (s, mean) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = summarize(r["accuracies"])
        student = r.get("student_overrides", "").replace(",", " ") or "-"
        lines.append(f"| {r['recipe']} | {' '.join(set_args(r['overrides'])[1::2])} | {r['count']} | "
                     f"{r['student_steps']} | {student} | {fmt(acc)} (n={acc['n']}) | {min(r['accuracies']):.2f} / "
                     f"{max(r['accuracies']):.2f} | {r['synthesis_time_s']:.0f} | "
                     f"{statistics.fmean(r['distillation_time_s']):.0f} |")
    return ("Fashion-MNIST, LeNet-5 -> LeNet-5-half: ZSKD sets (synthesis seed 0), each distilled by several "
            "student seeds; last-epoch test accuracy, mean ± std over student seeds (one process per core, up to "
            "four processes on the 2 cores, so times are loaded). Students: `datafree distill "
            f"{' '.join(STUDENT)}` with the step count's epochs and the 'student overrides' column's flags "
            "replaced.\n\n" + "\n".join(lines)
            + "\n\nProduced by `python -m benchmarks.zskd_recipes --recipes R --student-steps N "
            "[--student-args '--flag value ...']` (then "
            "`--report-only --update-readme`); each run's command is in benchmarks/results/zskd_recipes.json.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--count", type=int, default=6400, help="images per recipe (default: 6400)")
    parser.add_argument("--student-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path("artifacts"))
    parser.add_argument("--data-root")
    parser.add_argument("--student-steps", type=int, default=STUDENT_STEPS, help="student steps per set")
    parser.add_argument("--student-args", default="",
                        help="'--flag value' pairs replacing or extending the student's distill arguments, e.g. "
                             "'--lr 0.05 --mix mixup' (default: none)")
    parser.add_argument("--report-only", action="store_true", help="only tabulate the finished runs")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    if not args.report_only:
        if not (args.root / TEACHER / "model.safetensors").is_file():
            raise SystemExit(f"no teacher at {args.root / TEACHER}: run 'python -m benchmarks.baselines' first")
        data = ["--dataset", "fashion-mnist", *(["--data-root", args.data_root] if args.data_root else [])]
        for name in args.recipes:
            run_recipe(name, args.count, args.student_seeds, args.root, data, args.student_steps,
                       shlex.split(args.student_args))
    rows = finished(args.root)
    publish("zskd_recipes", report(rows), {"rows": rows}, section="zskd-recipes" if args.update_readme else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
