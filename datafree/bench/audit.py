"""``datafree bench audit``: the privacy audit (:func:`datafree.api.audit`) of every stored data-free set a suite
made (with the batches a grown source made against its student), with its student and the real-data KD student of
the same pair and seed.

A suite that claims "no training data was needed" should show, next to its accuracies, that its images and its
student do not give the training data away. Each audit lands in ``runs/<pair>/<source>/seed<N>/audit/`` beside the
set and the student it audits; it is reused while the rows it audited are unchanged, and redone otherwise. The
report (:mod:`datafree.bench.report`) tabulates whatever audits it finds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datafree.bench.jobs import load_job_teacher
from datafree.bench.runner import is_foreign, read_rows, teacher_ref
from datafree.bench.suites import get_suite, parse_source
from datafree.errors import DatafreeError

AUDIT_DIR = "audit"  # under a run directory, beside transfer/ and student/
AUDIT_JSON = "audit.json"


def audit_dir(out: Path, row: dict[str, Any]) -> Path:
    """Where the audit of a data-free row's set lives: its run directory's ``audit/``."""
    return out / "runs" / row["pair"] / parse_source(row["source"]).dirname / f"seed{row['seed']}" / AUDIT_DIR


def audited_rows(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each data-free row with a stored set, and the KD row of its pair and seed (None if the suite has none)."""
    by_id = {r["run_id"]: r for r in rows}
    return [(r, by_id.get(f"{r['pair']}/kd/seed{r['seed']}")) for r in rows if r["kind"] == "df" and r.get("set_dir")]


def _inputs(row: dict[str, Any], kd: dict[str, Any] | None) -> dict[str, Any]:
    """What an audit depends on: the set, the teacher and the students, as the rows that made them recorded them."""
    return {"set_dir": row["set_dir"], "grown_dir": row.get("grown_dir"), "teacher_dir": row["teacher_dir"],
            "student_dir": row["student_dir"],
            "finished_at": row.get("finished_at"), "kd_student_dir": kd["student_dir"] if kd else None,
            "kd_finished_at": kd.get("finished_at") if kd else None}


def read_audit(directory: Path) -> dict[str, Any] | None:
    """The audit report in ``directory``, or None when there is none (or it cannot be read)."""
    try:
        return json.loads((directory / AUDIT_JSON).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def audit_suite(out_dir: str | Path, *, data_root: str | Path | None = None, device: str = "cpu",
                log: Callable[[str], None] = print) -> list[Path]:
    """Audit every stored data-free set of the suite in ``out_dir`` (see the module docstring); returns the audit
    directories. Needs the suite's real training and test data (the data owner's side of the check)."""
    from datafree import api
    from datafree.audit import AuditConfig
    from datafree.bench.report import set_path
    from datafree.checkpoint import load_model
    from datafree.data import load_dataset
    from datafree.data.transfer import TransferSet, read_as_one

    out = Path(out_dir)
    rows = read_rows(out)
    if not rows:
        raise DatafreeError(f"no finished runs in {out}; run 'datafree bench run SUITE --out {out}' first")
    cases = audited_rows(rows)
    if not cases:
        log(f"bench audit: no stored data-free set in {out} (live methods keep none); nothing to audit")
        return []
    data: dict[str, tuple[Any, Any]] = {}
    done = []
    for row, kd in cases:
        directory = audit_dir(out, row)
        inputs = _inputs(row, kd)
        earlier = read_audit(directory)
        if earlier is not None and earlier.get("protocol", {}).get("bench_inputs") == inputs:
            log(f"  reuse  {directory}")
            done.append(directory)
            continue
        if row["dataset"] not in data:
            data[row["dataset"]] = (load_dataset(row["dataset"], "train", data_root),
                                    load_dataset(row["dataset"], "test", data_root))
        train, test = data[row["dataset"]]
        pair = next(p for p in get_suite(row["suite"]).pairs if p.key == row["pair"])
        teacher_path = set_path(row["teacher_dir"], out, "")  # a run directory, or a foreign checkpoint file
        teacher, info = load_job_teacher(teacher_ref(teacher_path, pair, is_foreign(teacher_path)), row["dataset"])
        paths = [(label, set_path(path, out, "model.safetensors")) for label, path in
                 (("data-free student", row["student_dir"]), ("real-data KD student", kd and kd["student_dir"])) if path]
        students = [(label, *load_model(path)) for label, path in paths if (path / "model.safetensors").is_file()]
        # a grown source's batches made against the student are audited with its stored set: the student saw both
        sets = [TransferSet(set_path(d, out)) for d in (row["set_dir"], row.get("grown_dir")) if d]
        log(f"  audit  {row['run_id']} -> {directory}")
        api.audit(directory, read_as_one(sets), train, test, teacher=teacher,
                  teacher_info=info, students=students, config=AuditConfig(device=device), overwrite=True,
                  protocol={"dataset": row["dataset"], "teacher": str(teacher_path), "run_id": row["run_id"],
                            "bench_inputs": inputs})
        done.append(directory)
    return done
