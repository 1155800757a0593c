"""Benchmark suites as data: one module per suite (``quick.py``, ``full.py``, ``cifar10.py``, ``cifar100.py``,
``smoke.py``), each defining ``SUITE``; the types and the source grammar are in ``base.py``, the
recipes two suites share in ``fmnist.py`` and ``cifar.py``. A new suite is a new module and one
entry in :data:`SUITES`. Why the recipes are what they are: docs/benchmarks.md, "Recipe notes".
"""

from __future__ import annotations

from datafree.bench.suites import cifar10, cifar100, full, quick, smoke
from datafree.bench.suites.base import (
    COND_IPCS,
    COND_METHODS_ALL,
    DF_PRESETS_ALL,
    PairSpec,
    Recipes,
    Source,
    Suite,
    cond_sources,
    make_pairs,
    merge_args,
    parse_source,
)
from datafree.bench.suites.fmnist import *  # noqa: F403  (the shared Fashion-MNIST recipes, for benchmarks/)
from datafree.bench.suites.fmnist import __all__ as _FMNIST
from datafree.errors import DatafreeError

SUITES: dict[str, Suite] = {s.name: s for s in (quick.SUITE, full.SUITE, cifar10.SUITE, cifar100.SUITE, smoke.SUITE)}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise DatafreeError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)} (see 'datafree bench list')")
    return SUITES[name]


__all__ = ["COND_IPCS", "COND_METHODS_ALL", "DF_PRESETS_ALL", "SUITES", "PairSpec", "Recipes", "Source", "Suite",
           "cond_sources", "get_suite", "make_pairs", "merge_args", "parse_source", *_FMNIST]
