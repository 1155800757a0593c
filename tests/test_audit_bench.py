"""benchmarks.audit: each case's runs and options reach `datafree audit`; a case whose runs are missing is skipped."""

import json
from pathlib import Path

import benchmarks.audit as bench


def _fake_audit(calls: list[list[str]]):
    def call(argv: list[str]) -> None:
        calls.append(argv)
        out = argv[argv.index("--out") + 1]
        students = [argv[i + 1] for i, a in enumerate(argv) if a == "--student"]
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "audit.json").write_text(json.dumps({"membership_inference": {"students": [
            {"student": s, "auc_loss": 0.5, "auc_calibrated": 0.5} for s in students]}}))
    return call


def test_a_case_passes_its_students_in_order_and_its_options(tmp_path, monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr(bench, "call", _fake_audit(calls))
    name, transfer, teacher, students, options = next(c for c in bench.CASES if len(c) == 5)
    assert options == bench.MORE_MEMBERS
    (tmp_path / transfer).mkdir(parents=True)
    (tmp_path / transfer / "manifest.json").write_text("{}")
    for s in students:
        (tmp_path / s).mkdir(parents=True)
    result = bench.audit(name, transfer, teacher, students, tmp_path, tmp_path / "out", options)
    argv = calls[0]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--student"] == [str(tmp_path / s) for s in students]
    assert argv[argv.index("--mia-count") + 1] == "10000"
    assert result["argv"] == ["datafree", *argv] and result["name"] == name

    missing = students[-1]
    (tmp_path / missing).rmdir()
    assert bench.audit(name, transfer, teacher, students, tmp_path, tmp_path / "out2", options) is None
    assert len(calls) == 1  # skipped, not run without the missing student
