"""DD-Ranking's fair metrics of a condensed set (Li et al., 2025, "DD-Ranking: Rethinking the
Evaluation of Dataset Distillation").

Soft labels and heavy augmentation lift every set, random real images included, so accuracy
alone says little about what the images contribute. DD-Ranking reports two differences:

* **HLR** (hard-label recovery) = Acc(real, hard) - Acc(synthetic, hard): the accuracy still
  missing against training on the real data; lower is better.
* **IOR** (improvement over random) = Acc(synthetic, any) - Acc(random real subset, any): the gain
  over a random real subset of the same size under the *identical* evaluation (same labels,
  augmentation, epochs, seeds); higher is better.

and combines them into **DDRS** = (e^a - e^-1) / (e - e^-1) with a = w IOR - (1 - w) HLR on
accuracies as fractions (w = 0.5 on their leaderboard), so DDRS lies in [0, 1]. Accuracies here
are percentages, as everywhere in datafree; HLR and IOR are returned in points.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from datafree.errors import DatafreeError

DDRS_WEIGHT = 0.5


def hlr(real_hard: float, syn_hard: float) -> float:
    """Hard-label recovery in points: accuracy lost against the real data, both with hard labels."""
    return real_hard - syn_hard


def ior(syn_any: float, random_any: float) -> float:
    """Improvement over random in points, both sets under the same evaluation."""
    return syn_any - random_any


def ddrs(hlr_points: float, ior_points: float, weight: float = DDRS_WEIGHT) -> float:
    """The DD-Ranking score in [0, 1] from HLR and IOR in points."""
    if not 0.0 <= weight <= 1.0:
        raise DatafreeError(f"the DDRS weight must lie in [0, 1], not {weight}")
    alpha = (weight * ior_points - (1.0 - weight) * hlr_points) / 100.0
    return (math.exp(alpha) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def fair_metrics(*, syn_any: Sequence[float], random_any: Sequence[float], syn_hard: Sequence[float] | None = None,
                 real_hard: float | None = None, weight: float = DDRS_WEIGHT) -> dict[str, Any]:
    """HLR, IOR and DDRS (mean and std over paired seeds) from per-seed accuracies in percent.

    ``syn_any[i]`` and ``random_any[i]`` come from the same seed and protocol; ``syn_hard`` is the
    synthetic set under hard labels (``syn_any`` itself when the protocol is hard-label) and
    ``real_hard`` the real-data hard-label accuracy. Without them only IOR is defined.
    """
    if len(syn_any) != len(random_any) or not syn_any:
        raise DatafreeError(f"IOR pairs every synthetic-set model with a random-subset model: got {len(syn_any)} "
                            f"and {len(random_any)}")
    iors = [ior(s, r) for s, r in zip(syn_any, random_any, strict=True)]
    out: dict[str, Any] = {"ior": _mean_std(iors), "random_accuracy": _mean_std(list(random_any)),
                           "ddrs_weight": weight, "hlr": None, "ddrs": None, "real_hard_accuracy": real_hard}
    if syn_hard is not None and real_hard is not None:
        if len(syn_hard) != len(syn_any):
            raise DatafreeError(f"HLR pairs every model: got {len(syn_hard)} hard-label and {len(syn_any)} models")
        hlrs = [hlr(real_hard, h) for h in syn_hard]
        out["hlr"] = _mean_std(hlrs)
        out["ddrs"] = _mean_std([ddrs(h, i, weight) for h, i in zip(hlrs, iors, strict=True)])
    return out


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
