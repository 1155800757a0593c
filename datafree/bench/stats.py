"""Statistics across seeds (scipy.stats): confidence intervals, and paired tests of one source against another.

Seeds pair runs: the KD student and a data-free student of seed s share the teacher, the
student's initial weights and its batch order, so the per-seed difference removes that shared
noise. A paired t-test on those differences says whether source A beats source B on this pair,
at the few seeds a benchmark affords (n = 3 gives a wide interval: read it, not just p).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

LEVEL = 0.95


def confidence_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float] | None:
    """Student-t interval of the mean of ``values`` (None below two values, or with no spread to estimate)."""
    from scipy import stats

    if len(values) < 2:
        return None
    mean, sem = statistics.fmean(values), stats.sem(values)
    if sem == 0 or math.isnan(sem):
        return (mean, mean)
    low, high = stats.t.interval(level, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


@dataclass
class Comparison:
    """Source ``a`` against source ``b`` on one pair, paired by seed."""

    a: str
    b: str
    n: int  # seeds both have
    mean_difference: float  # mean of accuracy(a) - accuracy(b), points
    interval: tuple[float, float] | None  # its confidence interval
    p_value: float | None  # two-sided paired t-test; None below two seeds or with identical differences

    @property
    def verdict(self) -> str:
        if self.p_value is None or self.interval is None:
            return "too few seeds to tell"
        if self.interval[0] > 0:
            return f"{self.a} better"
        if self.interval[1] < 0:
            return f"{self.b} better"
        return "no significant difference"


def paired_comparison(a: str, by_seed_a: dict[int, float], b: str, by_seed_b: dict[int, float],
                      level: float = LEVEL) -> Comparison:
    """Compare two sources' accuracies on the seeds both have (paired t-test, interval of the mean difference)."""
    from scipy import stats

    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    diffs = [by_seed_a[s] - by_seed_b[s] for s in seeds]
    mean = statistics.fmean(diffs) if diffs else math.nan
    p = None
    if len(diffs) >= 2 and len(set(diffs)) > 1:
        p = float(stats.ttest_rel([by_seed_a[s] for s in seeds], [by_seed_b[s] for s in seeds]).pvalue)
    return Comparison(a, b, len(diffs), mean, confidence_interval(diffs, level), p)
