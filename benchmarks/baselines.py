"""Fashion-MNIST baselines: teacher, student from scratch, student with real-data KD.

Every run is a library call (:mod:`benchmarks.calls`), recorded as the command a user would type
(``datafree train-teacher`` / ``datafree distill``), and lands in its own run directory under
``--root``; finished runs are reused, interrupted ones are resumed, so running this twice costs
nothing the second time. Accuracy is the last epoch's on the test split. Teachers are kept in
``ROOT/teachers/`` for the data-free benchmarks.

    python -m benchmarks.baselines --profile quick     # LeNet pair, 1 seed (the README's main job)
    python -m benchmarks.baselines --profile full      # both pairs, 3 seeds; --update-readme
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.calls import call
from benchmarks.readme import publish, published
from datafree.bench.runner import finished_run, kwargs_args, merge_args, resumable_run
from datafree.bench.suites import FMNIST_DF_LIVE_LR, FMNIST_FAMILY_PAIRS, FMNIST_PAIRS, PairSpec, make_pairs
from datafree.io import write_json

REPO = Path(__file__).resolve().parent.parent


# the teacher/student pairs and their recipes (datafree.bench.suites); live_lr is datafree_kd's. The family pairs
# (benchmarks/datafree_families) are not in the profiles: that script runs them
PAIRS: dict[str, PairSpec] = {p.key: p for p in make_pairs({**FMNIST_PAIRS, **FMNIST_FAMILY_PAIRS}, FMNIST_DF_LIVE_LR)}
PROFILES = {"quick": (("lenet",), (0,)), "full": (("lenet", "resnet"), (0, 1, 2))}


def run(argv: list[str], out: Path) -> dict[str, Any]:
    """Run one recorded command (a library call, :mod:`benchmarks.calls`) into ``out`` unless an identical
    finished run is there already."""
    argv = [*argv, "--out", str(out), "--no-progress"]
    result_path = out / "result.json"
    finished = finished_run(out, argv)
    if finished is not None:
        print(f"  reuse  {out}")
        return finished
    extra = ["--resume"] if resumable_run(out) else ["--overwrite"]
    print(f"  run    datafree {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    call([*argv, *extra])
    result = json.loads(result_path.read_text())
    result["argv"] = ["datafree", *argv]  # the command as a user would type it
    result["bench_wall_time_s"] = time.perf_counter() - start
    write_json(result_path, result)
    return result


def teacher_dir(key: str, root: Path) -> Path:
    """Where the pair's teacher lives under ``root``: one place, since the data-free benchmarks distill from it."""
    return root / "teachers" / f"fashion-mnist-{PAIRS[key].teacher}"


def train_teacher(key: str, root: Path, data: list[str]) -> dict[str, Any]:
    """The pair's teacher (seed 0), kept in ``ROOT/teachers/`` where the data-free benchmarks look for it."""
    pair = PAIRS[key]
    return run(["train-teacher", "--arch", pair.teacher, *kwargs_args("--arch-kwargs", pair.teacher_kwargs),
                *pair.teacher_args, "--seed", "0", *data], teacher_dir(key, root))


def seeded_runs(folder: Path, name: str = "*", inner: str = "") -> list[tuple[str, int, Path]]:
    """(name, seed, directory of its result.json) of every finished run ``folder/NAME-seedSEED[/inner]``, in path
    order: every script here names its runs ``NAME-seedSEED``, and this is the one place that
    reads such a folder back. ``name`` narrows it to one name; it is not a glob, so ``x`` does not take
    ``x-jacobian``'s runs. ``inner``: the subfolder that holds the result (``student`` under a data-free run). A
    folder whose seed is not a number is not a run and is skipped."""
    found = []
    depth = len(Path(inner).parts)
    for path in sorted(folder.glob("/".join(part for part in (f"{name}-seed*", inner, "result.json") if part))):
        run = path.parents[depth]
        run_name, _, seed = run.name.rpartition("-seed")
        if seed.isdigit() and name in ("*", run_name):
            found.append((run_name, int(seed), path.parent))
    return found


def student_dir(key: str, kind: str, seed: int, root: Path) -> Path:
    """Where one baseline student (``kind`` "scratch" or "kd") of the pair and seed lives under ``root``."""
    return root / "baselines" / key / f"{kind}-seed{seed}"


def train_student(key: str, kind: str, seed: int, root: Path, data: list[str]) -> dict[str, Any]:
    """One baseline student of the pair: ``kind`` "scratch" (real labels only) or "kd" (real-data KD from the
    pair's teacher, which must be trained first)."""
    pair = PAIRS[key]
    if kind == "scratch":
        argv = ["train-teacher", "--arch", pair.student, *kwargs_args("--arch-kwargs", pair.student_kwargs),
                *pair.student_args]
    else:
        argv = ["distill", "--teacher", str(teacher_dir(key, root)), "--student", pair.student,
                *kwargs_args("--student-kwargs", pair.student_kwargs), *merge_args(pair.student_args, pair.kd_args)]
    return run([*argv, "--seed", str(seed), *data], student_dir(key, kind, seed, root))


def run_pair(key: str, seeds: tuple[int, ...], root: Path, data: list[str]) -> dict[str, Any]:
    pair = PAIRS[key]
    print(f"{pair.name}")
    teacher = train_teacher(key, root, data)
    rows = {kind: [train_student(key, kind, seed, root, data) for seed in seeds] for kind in ("scratch", "kd")}
    return {"pair": pair.name, "key": key, "teacher": teacher, "students": rows}


def summarize(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def fmt(s: dict[str, float]) -> str:
    return f"{s['mean']:.2f} ± {s['std']:.2f}" if s["n"] > 1 else f"{s['mean']:.2f}"


def table(pairs: list[dict[str, Any]]) -> str:
    lines = [
        "| pair | params (T / S) | teacher | student, scratch | student, real KD | train time T / scratch / KD (s) | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        t = p["teacher"]
        s_rows, k_rows = p["students"]["scratch"], p["students"]["kd"]
        acc = {k: summarize([r["metrics"]["test_accuracy"] for r in rows]) for k, rows in (("s", s_rows), ("k", k_rows))}
        # training time summed over every epoch, so a resumed run counts all of its epochs
        train_time = [statistics.fmean([r["metrics"]["train_time_total_s"] for r in rows]) for rows in (s_rows, k_rows)]
        lines.append(
            f"| {p['pair']} | {t['model']['parameters']:,} / {s_rows[0]['model']['parameters']:,} "
            f"| {t['metrics']['test_accuracy']:.2f} | {fmt(acc['s'])} | {fmt(acc['k'])} "
            f"| {t['metrics']['train_time_total_s']:.0f} / {train_time[0]:.0f} / {train_time[1]:.0f} | {len(s_rows)} |"
        )
    return "\n".join(lines)


def commands(pairs: list[dict[str, Any]]) -> str:
    out = []
    for p in pairs:
        out.append(" ".join(p["teacher"]["argv"]))
        out.append(" ".join(p["students"]["scratch"][0]["argv"]))
        out.append(" ".join(p["students"]["kd"][0]["argv"]))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--pairs", nargs="+", choices=PAIRS, help="override the profile's pairs")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the profile's seeds")
    parser.add_argument("--root", type=Path, default=Path("artifacts"),
                        help="where runs and teachers go, relative to the repository (default: %(default)s)")
    parser.add_argument("--data-root", help="passed to datafree (default: its own lookup)")
    parser.add_argument("--device", help="passed to datafree (default: cuda if available)")
    parser.add_argument("--update-readme", action="store_true", help="write the table into docs/results.md")
    parser.add_argument("--results", metavar="STEM",
                        help="the table's file, benchmarks/results/STEM.{json,md} (default: baselines-PROFILE); "
                             "another name keeps a teacher retrained to another file (another CPU's kernels) out of "
                             "the published table, for benchmarks.datafree_kd --baselines STEM")
    args = parser.parse_args(argv)
    published_stem = f"baselines-{args.profile}"
    stem = args.results or published_stem
    if args.update_readme and stem != published_stem:
        parser.error("--update-readme publishes the profile's own table only")
    os.chdir(REPO)  # recorded commands use paths relative to the repository
    keys, seeds = PROFILES[args.profile]
    keys, seeds = tuple(args.pairs or keys), tuple(args.seeds or seeds)
    data = ["--dataset", "fashion-mnist"]
    data += ["--data-root", args.data_root] if args.data_root else []
    data += ["--device", args.device] if args.device else []

    start = time.perf_counter()
    pairs = [run_pair(k, seeds, args.root, data) for k in keys]
    wall = time.perf_counter() - start
    # a pair this call did not run keeps its published rows (``--pairs lenet`` regenerates one pair only)
    kept = [p for p in published(stem).get("pairs", []) if p["key"] not in keys]
    pairs = sorted([*pairs, *kept], key=lambda p: list(PAIRS).index(p["key"]))
    md = (f"Fashion-MNIST, top-1 test accuracy (%) after the last epoch; students mean ± std over seeds "
          f"{', '.join(map(str, seeds))}.\n\n{table(pairs)}\n\nProduced by `python -m benchmarks.baselines "
          f"--profile {args.profile}{f' --results {args.results}' if args.results else ''}` (machine: 2 CPU cores; "
          f"times are per run, training epochs only, "
          f"threads per run as recorded in each result.json).\n"
          f"Commands (seed 0):\n\n```\n{commands(pairs)}\n```")
    publish(stem, md, {"profile": args.profile, "seeds": seeds, "pairs": pairs, "suite_wall_time_s": wall},
            section="baselines" if args.update_readme else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
