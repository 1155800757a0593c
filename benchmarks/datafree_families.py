"""The ResNet pair's best data-free recipe, unchanged, on BatchNorm teachers of other families.

Issue 17 asks whether the recipe generalises without tuning per teacher. For each teacher family
(``FMNIST_FAMILY_PAIRS``: WRN-16-1, MobileNetV2 at width 0.5) this trains the teacher with the
ResNet-14 teacher's recipe, a real-data KD student and a scratch student (``benchmarks.baselines``),
then the data-free student with one or more of ``benchmarks.datafree_kd``'s recipes (default
fast5-stored) into the same student. Each teacher has two pairs: into the ResNet pair's ResNet-8
(width 8), and into a smaller network of its own family (``wrn-own``, ``mobilenet-own``), which the
recipes with ``--inherit`` need. Nothing is chosen per teacher. The table
gives, per recipe, the gap to real KD and the data-free time (synthesis + distillation) as a multiple
of KD's training time; the ResNet-14 rows are the published ones of ``benchmarks.datafree_kd``.

    python -m benchmarks.datafree_families --seeds 0
    python -m benchmarks.datafree_families --methods fast5-stored-ngf32 --seeds 0
    python -m benchmarks.datafree_families --families wrn-own mobilenet-own --methods fast5-stored-ngf32-inherit
    python -m benchmarks.datafree_families --report-only --update-readme

Runs are reused when their command is unchanged. Results are merged by seed into the published JSON, so
seeds run on another machine or by a parallel process are kept, as long as they distilled the same teacher
file. Accuracy is the last epoch's on the test split.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.baselines import REPO, fmt, run_pair, summarize
from benchmarks.datafree_kd import merge_by_seed, run_method, seed_of, teacher_of
from benchmarks.readme import publish, published
from datafree.bench.suites import FMNIST_FAMILY_PAIRS

METHOD = "fast5-stored"  # the best recipe on the ResNet pair at the suites' ngf 16 (benchmarks/datafree_kd)
REFERENCE = "resnet"  # the pair the recipes were chosen on
# the ResNet pair's run of a recipe, where it ran only with --inherit (its student is of the teacher's family; the
# families' ResNet-8 is not): the generator-width variant (docs/datafree_recipes.md, "Sixteenth" and "Seventeenth round")
REFERENCE_SOURCES = {"fast5-stored-ngf32": "fast5-stored-ngf32-inherit"}


def merge_family(kept: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """A family's fresh runs merged into its published ones, seed by seed; published runs of another teacher file
    (a retrained teacher that came out different) are dropped, since they would not pair with the fresh ones."""
    teachers = {teacher_of(fresh["baselines"]["students"]["kd"][0]), None}  # None: the scratch students
    students = kept.get("baselines", {}).get("students", {})
    baselines = {**fresh["baselines"], "students": {kind: merge_by_seed(students.get(kind, []), runs, teachers)
                                                    for kind, runs in fresh["baselines"]["students"].items()}}
    kept_df, fresh_df = kept.get("datafree", {}), fresh["datafree"]
    datafree = {method: merge_by_seed(kept_df.get(method, []), fresh_df.get(method, []), teachers)
                for method in dict.fromkeys([*kept_df, *fresh_df])}  # the published methods first, as before
    return {"baselines": baselines, "datafree": datafree}


def mean_times(df: list[dict[str, Any]], kd: list[dict[str, Any]]) -> tuple[float, float, float]:
    """``(synthesis, distillation wall, KD training)`` seconds, each a mean over its runs."""
    return (statistics.fmean(r["synthesis_time_s"] for r in df), statistics.fmean(r["metrics"]["wall_time_s"] for r in df),
            statistics.fmean(r["metrics"]["train_time_total_s"] for r in kd))


def time_ratio(df: list[dict[str, Any]], kd: list[dict[str, Any]]) -> float:
    """Data-free time (synthesis + distillation wall time, means over runs) over the real-data KD student's training
    time: the issue's time goal compares the two on one machine."""
    synth, distill, kd_time = mean_times(df, kd)
    return (synth + distill) / kd_time


def row(name: str, method: str, teacher: float, kd: list[dict[str, Any]], df: list[dict[str, Any]]) -> str:
    """One table row: accuracies over seeds, the paired-by-seed gap, and the time ratio. Real-data KD is given over
    the recipe's seeds, so both columns cover the same seeds."""
    kd_by_seed = {seed_of(r): r for r in kd}
    missing = sorted(seed_of(d) for d in df if seed_of(d) not in kd_by_seed)
    if missing:
        raise ValueError(f"{name} {method}: no real-data KD student for seeds {missing}; run the baselines first")
    kd = [kd_by_seed[seed_of(d)] for d in df]
    kd_acc = summarize([r["metrics"]["test_accuracy"] for r in kd])
    df_acc = summarize([r["metrics"]["test_accuracy"] for r in df])
    gaps = [d["metrics"]["test_accuracy"] - k["metrics"]["test_accuracy"] for k, d in zip(kd, df)]
    synth, distill, kd_time = mean_times(df, kd)
    return (f"| {name} | {method} | {teacher:.2f} | {fmt(kd_acc)} | {fmt(df_acc)} | {fmt(summarize(gaps))} "
            f"| {synth:.0f} + {distill:.0f} vs {kd_time:.0f} ({time_ratio(df, kd):.1f}x) | {len(df)} |")


def report(families: dict[str, dict[str, Any]]) -> str:
    """The table: per recipe, the reference pair's published row, then each family's baselines and data-free runs."""
    methods = list(dict.fromkeys(m for fam in families.values() for m in fam["datafree"])) or [METHOD]
    reference = {p["key"]: p for p in published("baselines-full").get("pairs", [])}.get(REFERENCE)
    reference_runs = published("datafree_kd").get("runs", {})
    lines = ["| teacher -> student | recipe | teacher | real-data KD | data-free | gap (paired) "
             "| data-free time vs KD (s) | seeds |", "|---|---|---|---|---|---|---|---|"]
    shown: set[str] = set()  # a reference run is listed once, above the first recipe it stands for
    for method in methods:
        source = REFERENCE_SOURCES.get(method, method)
        df = reference_runs.get(f"{REFERENCE}/{source}", [])
        if reference is not None and df and source not in shown:
            shown.add(source)
            lines.append(row(reference["pair"] + " (where the recipe was chosen)", source,
                             reference["teacher"]["metrics"]["test_accuracy"], reference["students"]["kd"], df))
        for fam in families.values():  # only where the recipe ran: an --inherit recipe cannot run into ResNet-8
            base = fam["baselines"]
            if not fam["datafree"].get(method):
                continue
            lines.append(row(base["pair"], method, base["teacher"]["metrics"]["test_accuracy"],
                             base["students"]["kd"], fam["datafree"][method]))
    return ("Fashion-MNIST, top-1 test accuracy (%) after the last epoch. Each data-free recipe is one of "
            "benchmarks/datafree_kd's, unchanged for every teacher. A ResNet-8 (width 8) student cannot start from "
            "a teacher of another family (no --inherit; where the ResNet pair ran such a recipe only with --inherit, "
            "that run is its reference row); the own-family students (WRN-10-1, MobileNetV2 at width 0.25) run the "
            "--inherit recipes as the ResNet pair does. The gap is data-free minus real-data KD, paired by "
            "seed. Times: synthesis + distillation of the data-free student against the KD student's training epochs, "
            "one thread per run, two to four runs at a time on the 2-core machine.\n\n" + "\n".join(lines) +
            "\n\nProduced by `python -m benchmarks.datafree_families --methods ... --seeds ...` (then `--report-only`).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", choices=FMNIST_FAMILY_PAIRS, default=list(FMNIST_FAMILY_PAIRS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=[METHOD], metavar="METHOD",
                        help="datafree_kd methods (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("artifacts"))
    parser.add_argument("--device")
    parser.add_argument("--report-only", action="store_true", help="only tabulate finished runs (none are started)")
    parser.add_argument("--update-readme", action="store_true", help="write the table into docs/results.md")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    data = ["--dataset", "fashion-mnist"] + (["--device", args.device] if args.device else [])
    fresh: dict[str, dict[str, Any]] = {}
    for key in [] if args.report_only else args.families:
        base = run_pair(key, tuple(args.seeds), args.root, data)
        fresh[key] = {"baselines": base, "datafree": {}}
        for method in args.methods:
            runs = fresh[key]["datafree"][method] = []
            for seed in args.seeds:
                runs.append(run_method(key, method, seed, args.root, data))
                print(f"{base['pair']:48s} {method} seed {seed}: {runs[-1]['metrics']['test_accuracy']:.2f}", flush=True)
    # read at the end and merged by seed: what was published meanwhile (a parallel process) or elsewhere is kept
    families: dict[str, dict[str, Any]] = published("datafree_families").get("families", {})
    for key, fam in fresh.items():
        families[key] = merge_family(families.get(key, {}), fam)
    publish("datafree_families", report(families), {"families": families},
            section="datafree-families" if args.update_readme else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
