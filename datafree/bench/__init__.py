"""Benchmark suites against real-data KD: ``datafree bench run|audit|report|list``.

A :class:`Suite` is data (pairs, sources, seeds, recipes); :func:`plan` turns it into library calls (and the
equivalent commands), :func:`run_suite` runs them resumably (one row per finished run in
``results.jsonl``), :func:`audit_suite` privacy-audits the stored data-free sets, and :func:`report` writes
``report.md``, ``report.csv`` and three plots.
"""

from datafree.bench.audit import audit_suite
from datafree.bench.report import report, summarize
from datafree.bench.runner import Run, Step, SuiteSummary, check_plan, plan, read_rows, run_suite, skipped_sources
from datafree.bench.suites import SUITES, PairSpec, Recipes, Source, Suite, get_suite, parse_source

__all__ = ["SUITES", "PairSpec", "Recipes", "Run", "Source", "Step", "Suite", "SuiteSummary", "audit_suite", "check_plan",
           "get_suite", "parse_source", "plan", "read_rows", "report", "run_suite", "skipped_sources", "summarize"]
