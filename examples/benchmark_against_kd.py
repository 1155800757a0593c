"""(c) Benchmark a data-free student against real-data KD, and plot it.

    python examples/benchmark_against_kd.py --out runs/bench-vs-kd

A suite is data: a teacher/student pair, the sources to compare and the seeds. This one trains the
teacher once, then three students of the same architecture: from scratch, by KD on the real
training set, and data-free (a stored DeepInversion set, distilled with the teacher's logits).
``run_suite`` reuses finished runs (run it again after an interruption), ``report`` writes
``report.md`` (mean +- std per source, fraction of KD's accuracy, times) and ``accuracy_vs_time.png``;
this script adds ``accuracy.png``, one bar per source. ``--tiny`` shrinks every budget to seconds
(the tests use it); the budgets without it take about 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from datafree.bench import PairSpec, Recipes, Suite, read_rows, report, run_suite  # noqa: E402


def suite(tiny: bool, seeds: list[int]) -> Suite:
    train = ("--epochs", "1", "--batch-size", "64") if tiny else ("--epochs", "10", "--lr", "0.05")
    pair = PairSpec(key="lenet-bn", name="LeNet-5-BN -> LeNet-5-half", teacher="lenet5_bn", student="lenet5_half",
                    teacher_args=train, student_args=train, kd_args=("--alpha", "0.1", "--temperature", "4", "--lr", "0.01"))
    recipes = Recipes(
        df_scale={"batch_size": 16 if tiny else 128},
        df_method_scale={"deepinversion": {"iterations": 2 if tiny else 100}},
        df_count=32 if tiny else 2560,
        df_stored_student=(("--epochs", "1", "--batch-size", "16", "--alpha", "0") if tiny else
                           ("--epochs", "40", "--batch-size", "128", "--alpha", "0", "--lr", "0.01",
                            "--augment", "crop-flip", "--clip-grad-norm", "5")))
    return Suite(name="example", dataset="fashion-mnist", pairs=[pair], sources=["scratch", "kd", "df:deepinversion"],
                 seeds=seeds, recipes=recipes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-sized budgets (a smoke test, not a result)")
    parser.add_argument("--data-root", help="where the dataset files are (default: $DATAFREE_DATA, the system copy)")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    summary = run_suite(suite(args.tiny, args.seeds), args.out, data_root=args.data_root, device=args.device,
                        log=lambda line: None)
    if summary.failed:
        raise SystemExit(f"failed runs: {', '.join(summary.failed)} (see {args.out / 'failures.jsonl'})")
    report(args.out)
    rows = [r for r in read_rows(args.out) if r["source"] != "teacher"]
    sources = list(dict.fromkeys(r["source"] for r in rows))
    means = [sum(r["accuracy"] for r in rows if r["source"] == s) / sum(r["source"] == s for r in rows) for s in sources]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(sources, means, color=["gray", "tab:blue", "tab:orange"][: len(sources)])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("LeNet-5-half students of a LeNet-5-BN teacher")
    fig.tight_layout()
    fig.savefig(args.out / "accuracy.png", dpi=120)
    print("  ".join(f"{s}: {m:.2f}%" for s, m in zip(sources, means)) + f" -> {args.out / 'report.md'}, accuracy.png")


if __name__ == "__main__":
    main()
