"""Where a data-free student's extra membership signal sits: within classes, or in how the classes pool.

``datafree audit``'s calibrated attack standardises each candidate's loss by its class's non-member loss
distribution, then ranks all candidates together. Within one class that orders images as the plain loss does, so a
student that leaks more *within* classes shows it in the per-class loss AUCs; a pooled excess larger than their
mean comes from how the standardised losses of different classes compare (their shape), not from any one class.
For each (data-free, reference) pair of students: the pooled loss and calibrated AUCs and the ten per-class loss
AUCs, data-free minus reference, on ``datafree audit``'s own member/non-member draw (``--mia-count``, its seed).

    python -m benchmarks.membership_by_class --pair DF_RUN KD_RUN [--pair ...] --results NAME
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.readme import publish
from datafree.audit import (
    AuditConfig,
    attack_aucs,
    attack_scores,
    bootstrap_auc,
    interval,
    membership_candidates,
    per_sample_loss,
    roc_auc,
)
from datafree.checkpoint import load_model
from datafree.data import load_dataset


def student_aucs(loss: torch.Tensor, labels: torch.Tensor, member: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Pooled loss and calibrated AUCs, and the loss AUC within each class, of one student's per-candidate losses."""
    pooled = attack_aucs(dict(zip(("loss", "calibrated"), attack_scores(loss, labels, None, ~member, num_classes))),
                         member)
    within = [roc_auc(-loss[member & (labels == c)], -loss[~member & (labels == c)]) for c in range(num_classes)]
    return {"loss": pooled["auc_loss"], "calibrated": pooled["auc_calibrated"], "within_class": within}


def within_class_interval(losses: torch.Tensor, labels: torch.Tensor, member: torch.Tensor, num_classes: int,
                          resamples: int, seed: int) -> list[float]:
    """95% interval of the mean within-class AUC difference (first row minus second), members and non-members of each
    class resampled with replacement, the same draws for both students (paired)."""
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(resamples, dtype=torch.float64)
    for c in range(num_classes):
        inside = labels == c
        aucs = bootstrap_auc(-losses[:, inside], member[inside], resamples, generator)
        total += aucs[0] - aucs[1]
    return interval(total / num_classes)


def run_name(path: str) -> str:
    """A run's directory name (its parent's for a benchmark's ``.../student``)."""
    p = Path(path)
    return p.parent.name if p.name == "student" else p.name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", nargs=2, action="append", required=True, metavar=("DATA_FREE", "REFERENCE"),
                   help="two student run directories: the data-free student and the one it is compared with")
    p.add_argument("--mia-count", type=int, default=10000, help="members (and non-members) (default: %(default)s)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--results", default="membership_by_class", help="benchmarks/results/NAME.{json,md}")
    args = p.parse_args(argv)
    config = AuditConfig(mia_count=args.mia_count)
    train, test = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    images, labels, member = membership_candidates(train, test, config)  # the audit's own draw
    n_in, n_out = int(member.sum()), int((~member).sum())
    classes = train.spec.num_classes
    rows = []
    for data_free, reference in args.pair:
        losses = torch.stack([per_sample_loss(load_model(Path(r))[0].eval(), images, labels)
                              for r in (data_free, reference)])
        a, b = (student_aucs(loss, labels, member, classes) for loss in losses)
        within = [x - y for x, y in zip(a["within_class"], b["within_class"])]
        rows.append({"data_free": data_free, "reference": reference, "loss": a["loss"] - b["loss"],
                     "calibrated": a["calibrated"] - b["calibrated"], "within_class": within,
                     "within_class_mean": statistics.fmean(within),
                     "within_class_mean_95": within_class_interval(losses, labels, member, classes, config.resamples,
                                                                   config.seed),
                     "data_free_aucs": a, "reference_aucs": b})
    lines = [f"Membership AUC, data-free student minus reference, {n_in} members and {n_out} non-members "
             "(`datafree audit`'s draw). Within-class: the loss AUC among one class's images (what the calibrated "
             "score orders within a class).", "",
             "| data-free student | reference | pooled loss | pooled calibrated | within-class mean | classes up | "
             "per class |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        low, high = r["within_class_mean_95"]
        lines.append(f"| {run_name(r['data_free'])} | {run_name(r['reference'])} | {r['loss']:+.4f} | "
                     f"{r['calibrated']:+.4f} | {r['within_class_mean']:+.4f} [{low:+.4f}, {high:+.4f}] | "
                     f"{sum(d > 0 for d in r['within_class'])}/{classes} | "
                     + " ".join(f"{d:+.3f}" for d in r["within_class"]) + " |")
    lines += ["", f"Intervals: {config.resamples} paired bootstrap draws within each class. Produced by "
              f"`python -m benchmarks.membership_by_class {' '.join(sys.argv[1:])}`."]
    publish(args.results, "\n".join(lines), {"mia_count": n_in, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
