"""Privacy audit of the benchmark's transfer sets: does a synthetic or condensed set reveal training images?

For each set, ``datafree audit`` measures every image's distance to its nearest Fashion-MNIST
training image (pixels, and the teacher's penultimate features) against the same distance for
real test images, and, where students exist, a membership-inference attack on the data-free
student and on the real-data KD student. Herding selects real training images, so it is the
positive control: its images must be flagged.

    python -m benchmarks.audit --update-readme

``--update-readme`` writes the whole table to docs/results.md and goal 5's summary (each pair's best set and
student, README_ROWS) to the README. Uses the runs of benchmarks.baselines, benchmarks.datafree_kd and
benchmarks.condense (missing ones are skipped). Results: benchmarks/results/audit.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.baselines import REPO
from benchmarks.calls import call
from benchmarks.datafree_levers import MAIN_JOB_ROW
from benchmarks.readme import README, publish, published, update_section
from datafree.audit import difference_text, paired_difference
from datafree.bench.runner import teacher_sha256

# the audit's options for the cases that use more members than its default 2,000 (Fashion-MNIST's test split holds
# 10,000 non-members)
MORE_MEMBERS = ("--mia-count", "10000")

# (name, transfer set, teacher, students: data-free then real-data KD[, then others][, audit options])
CASES: list[tuple] = [
    # each pair's best data-free sets and student (benchmarks.datafree_kd: zskd+augment-inherit-grown trains on the
    # zskd and zskd-augment sets of its seed, grown during distillation by batches that are not stored;
    # fast5-stored-inherit on the fast5-stored sets), and its real-data KD student
    ("zskd, LeNet-5 teacher", "datafree/lenet/zskd-seed0/transfer", "teachers/fashion-mnist-lenet5",
     ["datafree/lenet/zskd+augment-inherit-grown-seed0/student", "baselines/lenet/kd-seed0"]),
    ("zskd-augment, LeNet-5 teacher", "datafree/lenet/zskd-augment-seed0/transfer", "teachers/fashion-mnist-lenet5", []),
    # the BN-free pair's best since the input-normalisation term (zskd+augment-T4-is1-inherit-grown: its plain ZSKD set
    # is the variant's own, the augmented one zskd-augment-T4-is1's; both at oh_temperature 4 with input_stats 1)
    ("zskd (T4, input_stats), LeNet-5 teacher", "datafree/lenet/zskd+augment-T4-is1-inherit-grown-seed0/transfer",
     "teachers/fashion-mnist-lenet5",
     ["datafree/lenet/zskd+augment-T4-is1-inherit-grown-seed0/student", "baselines/lenet/kd-seed0"]),
    ("zskd-augment (T4, input_stats), LeNet-5 teacher", "datafree/lenet/zskd-augment-T4-is1-seed0/transfer",
     "teachers/fashion-mnist-lenet5", []),
    # and since full-resolution pixels under the TV prior (zskd+augment-T4-is1-tv10-px1-inherit-grown), measured on the
    # teacher file 4dbf5be6 (see benchmarks.datafree_kd --results), with that teacher's own real-data KD student
    ("zskd (T4, input_stats, tv, full resolution), LeNet-5 teacher",
     "datafree/lenet/zskd+augment-T4-is1-tv10-px1-inherit-grown-seed0/transfer", "teachers/fashion-mnist-lenet5",
     ["datafree/lenet/zskd+augment-T4-is1-tv10-px1-inherit-grown-seed0/student", "baselines/lenet/kd-seed0"]),
    ("zskd-augment (T4, input_stats, tv, full resolution), LeNet-5 teacher",
     "datafree/lenet/zskd-augment-T4-is1-tv10-px1-seed0/transfer", "teachers/fashion-mnist-lenet5", []),
    # seeds 1 and 2 of that recipe, each student against the KD student of its seed: goal 5 over three seeds
    *((f"zskd (T4, input_stats, tv, full resolution), LeNet-5 teacher, seed {s}",
       f"datafree/lenet/zskd+augment-T4-is1-tv10-px1-inherit-grown-seed{s}/transfer", "teachers/fashion-mnist-lenet5",
       [f"datafree/lenet/zskd+augment-T4-is1-tv10-px1-inherit-grown-seed{s}/student", f"baselines/lenet/kd-seed{s}"])
      for s in (1, 2)),
    ("fast5-stored, ResNet-14 teacher", "datafree/resnet/fast5-stored-seed0/transfer", "teachers/fashion-mnist-resnet14",
     ["datafree/resnet/fast5-stored-inherit-seed0/student", "baselines/resnet/kd-seed0"]),
    # the ResNet pair's best set since the generator's width was doubled (fast5-stored-ngf32-inherit)
    ("fast5-stored-ngf32, ResNet-14 teacher", "datafree/resnet/fast5-stored-ngf32-inherit-seed0/transfer",
     "teachers/fashion-mnist-resnet14",
     ["datafree/resnet/fast5-stored-ngf32-inherit-seed0/student", "baselines/resnet/kd-seed0"]),
    ("condensed: dm, IPC 10", "condense/dm-ipc10/set", "teachers/fashion-mnist-resnet14", []),
    ("condensed: teacher-only, IPC 10", "condense/teacher-ipc10/set", "teachers/fashion-mnist-resnet14", []),
    ("condensed: herding, IPC 10 (real images: positive control)", "condense/herding-ipc10/set",
     "teachers/fashion-mnist-resnet14", []),
    # goal 5 at five times the members (10,000 of each, the test split's whole): the paired interval narrows from
    # about +-0.017 to +-0.008; the teacher is attacked too, as the source of any signal its students carry. The
    # BN-free pair's full-resolution recipe (teacher 4dbf5be6), then the main job's recipe on the levers' teacher
    # (benchmarks.datafree_levers; bc1112af) with the same student from random weights (its random-start lever)
    *((f"zskd (T4, input_stats, tv, full resolution), LeNet-5 teacher, seed {s}, 10,000 members",
       f"datafree/lenet/zskd+augment-T4-is1-tv10-px1-inherit-grown-seed{s}/transfer", "teachers/fashion-mnist-lenet5",
       [f"datafree/lenet/zskd+augment-T4-is1-tv10-px1-inherit-grown-seed{s}/student", f"baselines/lenet/kd-seed{s}",
        "teachers/fashion-mnist-lenet5"], MORE_MEMBERS)
      for s in (0, 1, 2)),
    *((f"the main job's recipe (Fourier DeepInversion), LeNet-5-BN teacher, seed {s}, 10,000 members",
       f"levers/sets/inherit-fourier-parts2-seed{s}", "teachers/fashion-mnist-lenet5_bn",
       [f"levers/{MAIN_JOB_ROW}-seed{s}", f"levers/kd-seed{s}", "teachers/fashion-mnist-lenet5_bn",
        f"levers/{MAIN_JOB_ROW}-random-start-seed{s}"], MORE_MEMBERS)
      for s in (0, 1, 2)),
    # the BN-free pair's recipe since the thirty-fifth round (benchmarks.datafree_kd's
    # zskd-detour+augment+pairs-T4-is1-tv10-px1-inherit-grown): its student reads three stored sets, the detours'
    # plain set, the augmented set (the previous recipe's, audited above) and the boundary pairs' set, so the two new
    # sets are audited, the student with the first
    ("zskd detours (T4, input_stats, tv, full resolution), LeNet-5 teacher, seed 0, 10,000 members",
     "datafree/lenet/zskd-detour-T4-is1-tv10-px1-seed0/transfer", "teachers/fashion-mnist-lenet5",
     ["datafree/lenet/zskd-detour+augment+pairs-T4-is1-tv10-px1-inherit-grown-seed0/student", "baselines/lenet/kd-seed0",
      "teachers/fashion-mnist-lenet5"], MORE_MEMBERS),
    ("zskd boundary pairs (T4, input_stats, tv, full resolution), LeNet-5 teacher, seed 0",
     "datafree/lenet/zskd-pairs-T4-is1-tv10-px1-seed0/transfer", "teachers/fashion-mnist-lenet5", []),
    # the same recipe with its growth started from dead leaves (...-inherit-grown-deadleaves, "Fortieth round"): the
    # same stored sets, so the detours' set again, with that student
    ("zskd detours (T4, input_stats, tv, full resolution), LeNet-5 teacher, seed 0, 10,000 members, the growth from "
     "dead leaves", "datafree/lenet/zskd-detour-T4-is1-tv10-px1-seed0/transfer", "teachers/fashion-mnist-lenet5",
     ["datafree/lenet/zskd-detour+augment+pairs-T4-is1-tv10-px1-inherit-grown-deadleaves-seed0/student",
      "baselines/lenet/kd-seed0", "teachers/fashion-mnist-lenet5"], MORE_MEMBERS),
    # the same recipe with the student started from the teacher's important channels (...-inherit-grown-important,
    # "Forty-third round"): the same stored sets, so the detours' set again, with that student; seeds 0-2, each
    # student against the KD student of its seed
    *((f"zskd detours (T4, input_stats, tv, full resolution), LeNet-5 teacher, seed {s}, 10,000 members, the "
       "important channels", f"datafree/lenet/zskd-detour-T4-is1-tv10-px1-seed{s}/transfer",
       "teachers/fashion-mnist-lenet5",
       [f"datafree/lenet/zskd-detour+augment+pairs-T4-is1-tv10-px1-inherit-grown-important-seed{s}/student",
        f"baselines/lenet/kd-seed{s}", "teachers/fashion-mnist-lenet5"], MORE_MEMBERS)
      for s in (0, 1, 2)),
]


# goal 5's summary in the README: each pair's best data-free set and student when they were audited, by case name (a
# row of several cases is one recipe's seeds, each against the real-data KD student of its seed)
README_ROWS: list[tuple[str, str, tuple[str, ...]]] = [
    ("LeNet-5 -> LeNet-5-half", "zskd+augment-T4-is1-inherit-grown, seed 0",
     ("zskd (T4, input_stats), LeNet-5 teacher",)),
    ("ResNet-14 -> ResNet-8 (width 8)", "fast5-stored-ngf32-inherit, seed 0", ("fast5-stored-ngf32, ResNet-14 teacher",)),
    ("LeNet-5 -> LeNet-5-half (teacher 4dbf5be6)",
     "zskd-detour+augment+pairs-T4-is1-tv10-px1-inherit-grown-important (the recipe), seeds 0-2",
     tuple(f"zskd detours (T4, input_stats, tv, full resolution), LeNet-5 teacher, seed {s}, 10,000 members, the "
           "important channels" for s in (0, 1, 2))),
    ("LeNet-5 -> LeNet-5-half (teacher 4dbf5be6)",
     "zskd-detour+augment+pairs-T4-is1-tv10-px1-inherit-grown (the recipe before, evenly spaced channels), seed 0",
     ("zskd detours (T4, input_stats, tv, full resolution), LeNet-5 teacher, seed 0, 10,000 members",)),
    ("LeNet-5 -> LeNet-5-half (teacher 4dbf5be6)",
     "zskd-detour+augment+pairs-T4-is1-tv10-px1-inherit-grown-deadleaves (the growth from dead leaves), seed 0",
     ("zskd detours (T4, input_stats, tv, full resolution), LeNet-5 teacher, seed 0, 10,000 members, the growth from "
      "dead leaves",)),
    ("LeNet-5 -> LeNet-5-half (teacher 4dbf5be6)", "zskd+augment-T4-is1-tv10-px1-inherit-grown (an earlier recipe), "
     "seeds 0-2", tuple(f"zskd (T4, input_stats, tv, full resolution), LeNet-5 teacher, seed {s}, 10,000 members"
                        for s in (0, 1, 2))),
    ("main job's: LeNet-5-BN -> LeNet-5-half (teacher bc1112af)", f"{MAIN_JOB_ROW}, seeds 0-2",
     tuple(f"the main job's recipe (Fourier DeepInversion), LeNet-5-BN teacher, seed {s}, 10,000 members"
           for s in (0, 1, 2))),
]


def minus_kd(case: dict[str, Any], attack: str) -> tuple[float, tuple[float, float] | None]:
    """The data-free student's AUC (a case's first student) minus the real-data KD student's (its second), with the
    paired 95% interval where the audit measured one (the audit stores the second minus the first)."""
    first, kd = case["membership_inference"]["students"][:2]
    if f"auc_{attack}_minus_first_95" in kd:
        low, high = kd[f"auc_{attack}_minus_first_95"]
        return -kd[f"auc_{attack}_minus_first"], (-high, -low)
    return first[f"auc_{attack}"] - kd[f"auc_{attack}"], None


def readme_table(results: list[dict[str, Any]]) -> str:
    """Goal 5 per pair: how close the images come to the training data, and whether the data-free student carries
    more membership signal than the real-data KD student (README_ROWS; a row whose cases are not all published is
    left out). A row of several seeds shows the largest share of close images, and each seed's AUCs."""
    by_name = {r["name"]: r for r in results}
    lines = ["| pair | data-free set and student | images closer than the test split's 5th percentile "
             "(pixels / features) | members | AUC loss / calibrated: data-free | real-data KD "
             "| data-free minus KD, loss | calibrated |",
             "|---|---|---|---|---|---|---|---|"]
    for pair, source, names in README_ROWS:
        if not all(n in by_name for n in names):
            continue
        cases = [by_name[n] for n in names]
        closer = " / ".join(
            f"{100 * max(c['nearest_neighbour'][space]['fraction_below_baseline_q05'] for c in cases):.1f}%"
            for space in ("pixel", "teacher_feature"))
        students = [c["membership_inference"]["students"][:2] for c in cases]
        aucs = ["; ".join(f"{s[i]['auc_loss']:.3f} / {s[i]['auc_calibrated']:.3f}" for s in students) for i in (0, 1)]
        diffs = ["; ".join(difference_text(*minus_kd(c, attack)) for c in cases) for attack in ("loss", "calibrated")]
        members = cases[0]["membership_inference"]["members"]
        lines.append(f"| {pair} | {source} | {closer} | {members:,} | {aucs[0]} | {aucs[1]} | {diffs[0]} "
                     f"| {diffs[1]} |")
    return "\n".join(lines)


def audit(name: str, transfer: str, teacher: str, students: list[str], root: Path, out: Path,
          options: tuple[str, ...] = ()) -> dict[str, Any] | None:
    if not (root / transfer / "manifest.json").is_file() or any(not (root / s).is_dir() for s in students):
        print(f"  skip   {name}: run the benchmark that makes {transfer} first (its published result, if any, is kept)")
        return None
    argv = ["audit", "--transfer", str(root / transfer), "--teacher", str(root / teacher), "--out", str(out),
            "--overwrite", "--dataset", "fashion-mnist"]
    for s in students:
        argv += ["--student", str(root / s)]
    argv += options
    print(f"  run    datafree {' '.join(argv)}", flush=True)
    call(argv)
    return {"name": name, "argv": ["datafree", *argv], "teacher_sha256": teacher_sha256(root / teacher) or "",
            **json.loads((out / "audit.json").read_text())}


def _paired(student: dict[str, Any]) -> str:
    """A later student's AUC minus the first's, both attacks, with their paired 95% intervals (audits since added)."""
    if not paired_difference(student, "loss"):
        return ""
    return f" (minus the first: {paired_difference(student, 'loss')} / {paired_difference(student, 'calibrated')})"


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| transfer set | images | closer than the 5% nearest real test image (pixels / teacher features) "
             "| median NN distance, synthetic vs real test (pixels) | membership AUC, loss / calibrated | teacher |",
             "|---|---|---|---|---|---|"]
    for r in results:
        nn_ = r["nearest_neighbour"]
        px, ft = nn_["pixel"], nn_.get("teacher_feature")
        closer = f"{100 * px['fraction_below_baseline_q05']:.1f}%"
        closer += f" / {100 * ft['fraction_below_baseline_q05']:.1f}%" if ft else ""
        median = f"{px['synthetic']['median']:.2f} vs {px['baseline']['median']:.2f}"
        mia = "; ".join(f"{Path(s['student']).parent.name}/{Path(s['student']).name}: {s['auc_loss']:.3f} / "
                        f"{s['auc_calibrated']:.3f}{_paired(s)}"
                        for s in r.get("membership_inference", {}).get("students", []))
        lines.append(f"| {r['name']} | {r['transfer']['count']} | {closer} | {median} | {mia or 'n/a'} "
                     f"| {r.get('teacher_sha256', '')[:8] or '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("artifacts"))
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    # a case whose runs are not under --root keeps its published result (made on another machine or before a clean)
    kept = {r["name"]: r for r in published("audit").get("results", [])}
    results = []
    for i, (name, transfer, teacher, students, *options) in enumerate(CASES):
        r = audit(name, transfer, teacher, students, args.root, args.root / "audit" / f"case{i}",
                  options[0] if options else ()) or kept.get(name)
        if r is not None:
            results.append(r)
    md = (f"{table(results)}\n\nProduced by `python -m benchmarks.audit`: `datafree audit` per set (nearest "
          f"neighbours among the 60,000 training images; baseline: 1,000 real test images; membership inference "
          f"on 2,000 training members vs 2,000 test non-members (10,000 of each where the case says so), seed 0; "
          f"where shown, a later student's AUC minus the first's with its 95% interval from 1,000 paired bootstrap "
          f"resamples). A fraction near 5% means the set is no closer to the training data than fresh real images "
          f"are; AUC 0.5 means no membership signal. The teacher column is the start of the sha256 of the teacher "
          f"file the set was made from (-: not recorded).")
    publish("audit", md, {"results": results}, section="audit" if args.update_readme else None)
    if args.update_readme:
        update_section("privacy", readme_table(results), README)
    return 0


if __name__ == "__main__":
    sys.exit(main())
