"""What makes a teacher file easy or hard for the main job's recipe: its images, or the channels its student keeps?

Two controls on a teacher file's recipe students ("Forty-third round" of docs/datafree_recipes.md), each the published
recipe run's own recorded command (``benchmarks/results/STEM.json``, row
``fourier-parts2-raw-adi-grown-200-long-mixup-rkd-distance``) with one thing changed:

- ``--order random:K``: the teacher with every hidden layer's channels in a random order (seeded by K; its
  BatchNorm and the next layer's inputs follow, so the function is the same, checked on a probe batch). Weight
  selection keeps evenly spaced channels, so the student starts from other channels of the same teacher.
- ``--set-from ROOT2``: the stored set of another teacher file (the same seed); the teacher that labels every view
  and makes the ADI growth stays the file's own.

    python -m benchmarks.channel_order --root ROOT --results STEM --order random:1 --seeds 0 1
    python -m benchmarks.channel_order --root ROOT --results STEM --set-from ROOT2 --seeds 0

Runs go under ROOT/channel_order/; the table (every run under ``--root``, with the published recipe student of the
same seed beside it) is printed and written to ``benchmarks/results/channel_order_STEM.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.baselines import run, seeded_runs
from benchmarks.datafree_levers import MAIN_JOB_ROW, acc, published_runs, selection
from benchmarks.readme import publish
from benchmarks.selection import selection_accuracy
from datafree.checkpoint import load_model, save_model, sidecar_path
from datafree.models.rank import channel_groups, permute

TEACHER = "teachers/fashion-mnist-lenet5_bn"


def reordered_teacher(root: Path, k: int) -> Path:
    """The file's teacher with each hidden layer's channels in a random order drawn from seed ``k`` (made once)."""
    out = root / "channel_order" / "teachers" / f"random{k}"
    if sidecar_path(out / "model.safetensors").is_file():
        return out
    model, info = load_model(root / TEACHER)
    model.eval()
    reordered = copy.deepcopy(model)
    g = torch.Generator().manual_seed(k)
    probe = torch.randn(64, *info.spec.shape, generator=torch.Generator().manual_seed(0))
    for group in channel_groups(reordered, probe):
        if not group.fixed:
            permute(group, torch.randperm(group.size, generator=g))
    with torch.no_grad():
        if not torch.allclose(model(probe), reordered(probe), rtol=1e-4, atol=1e-4):
            sys.exit(f"reordering {root / TEACHER} changed its function: a tie the trace does not show")
    out.mkdir(parents=True, exist_ok=True)
    save_model(out / "model.safetensors", reordered, info)
    return out


def control_run(root: Path, stem: str, seed: int, order: int | None, set_from: Path | None) -> dict[str, Any]:
    argv = list(published_runs(stem)[MAIN_JOB_ROW][seed]["argv"][1:])
    argv[argv.index("--teacher") + 1] = str(reordered_teacher(root, order) if order is not None else root / TEACHER)
    sets = set_from if set_from is not None else root  # the recorded set path may name a root since renamed
    argv[argv.index("--transfer") + 1] = str(sets / "levers" / "sets" / f"inherit-fourier-parts2-seed{seed}")
    name = f"random{order}" if order is not None else f"set-from-{set_from.name}"
    i = argv.index("--out")
    del argv[i:i + 2]
    argv = [a for a in argv if a != "--no-progress"]  # run() adds --out and --no-progress
    return run(argv, root / "channel_order" / f"{name}-seed{seed}")


def table(root: Path, stem: str) -> tuple[str, dict[str, Any]]:
    """Every control run under ``root`` beside the published recipe student of its seed, on the test and the
    selection split, and per seed the draws side by side: evenly spaced channels of the file's own order (the
    recipe) and of each random order are draws of the same teacher's features, and the important channels
    (the levers table's row, where it ran) are set against their mean."""
    published = published_runs(stem)
    recipe = published[MAIN_JOB_ROW]
    rows, runs, draws = [], {}, {}
    for name, seed, run_path in seeded_runs(root / "channel_order"):
        result = json.loads((run_path / "result.json").read_text())
        result["selection_accuracy"] = selection_accuracy(run_path)
        runs.setdefault(name, {})[str(seed)] = result  # JSON's keys: as published
        base = recipe[seed]
        cells = [f"{acc(result):.2f} / {_sel(result)}", f"{acc(base):.2f} / {_sel(base)}",
                 f"{acc(result) - acc(base):+.2f}"]
        rows.append(f"| {name} | {seed} | " + " | ".join(cells) + " |")
        if name.startswith("random"):
            draws.setdefault(seed, [base]).append(result)
    md = ("| control | seed | student: test / selection (%) | the recipe's student, same seed | difference, test |\n"
          "|---|---|---|---|---|\n" + "\n".join(rows))
    important = published.get(f"{MAIN_JOB_ROW}-important", {})
    lines = []
    for seed, results in sorted(draws.items()):
        mean = statistics.fmean(acc(r) for r in results)
        sel = [selection(r) for r in results]
        mean_sel = statistics.fmean(sel) if None not in sel else None
        cells = [f"{seed}", f"{len(results)}", " / ".join(f"{acc(r):.2f}" for r in results),
                 f"{mean:.2f} / " + ("" if mean_sel is None else f"{mean_sel:.2f}")]
        best = important.get(seed)
        if best is not None:
            diff_sel = "" if mean_sel is None or selection(best) is None else f"{selection(best) - mean_sel:+.2f}"
            cells += [f"{acc(best):.2f} / {_sel(best)}", f"{acc(best) - mean:+.2f} / {diff_sel}"]
        else:
            cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    if lines:
        md += ("\n\nThe draws of a seed (evenly spaced channels of the file's order, then of each random order) and "
               "the important channels against their mean:\n\n| seed | draws | test (%) | mean: test / selection | "
               "important: test / selection | important - mean: test / selection |\n|---|---|---|---|---|---|\n"
               + "\n".join(lines))
    return md, runs


def _sel(result: dict[str, Any]) -> str:
    value = selection(result)
    return "" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="the teacher file's levers root")
    parser.add_argument("--results", required=True, metavar="STEM", help="that file's published levers table")
    parser.add_argument("--order", type=lambda t: int(t.removeprefix("random:")), metavar="random:K",
                        help="the teacher's channels in random order K")
    parser.add_argument("--set-from", type=Path, metavar="ROOT2", help="another teacher file's levers root")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.report_only:
        if (args.order is None) == (args.set_from is None):
            parser.error("give one of --order random:K and --set-from ROOT2")
        for seed in args.seeds:
            result = control_run(args.root, args.results, seed, args.order, args.set_from)
            print(f"seed {seed}: {result['metrics']['test_accuracy']:.2f}", flush=True)
    md, runs = table(args.root, args.results)
    publish(f"channel_order_{args.results}", md, {"runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
