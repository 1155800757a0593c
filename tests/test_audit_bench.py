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


def _case(name: str, first: float, kd: float, interval: bool) -> dict:
    kd_student = {"student": "kd", "auc_loss": kd, "auc_calibrated": kd}
    if interval:  # the audit stores the later student minus the first, with its interval
        for attack in ("loss", "calibrated"):
            kd_student[f"auc_{attack}_minus_first"] = kd - first
            kd_student[f"auc_{attack}_minus_first_95"] = [kd - first - 0.004, kd - first + 0.002]
    space = {"fraction_below_baseline_q05": 0.001}
    return {"name": name, "nearest_neighbour": {"pixel": space, "teacher_feature": space},
            "membership_inference": {"members": 10000, "students": [
                {"student": "df", "auc_loss": first, "auc_calibrated": first}, kd_student]}}


def test_minus_kd_is_the_data_free_student_minus_kd_with_the_interval_turned_round():
    value, interval = bench.minus_kd(_case("a", 0.516, 0.511, interval=True), "calibrated")
    assert abs(value - 0.005) < 1e-12
    assert abs(interval[0] - 0.003) < 1e-12 and abs(interval[1] - 0.009) < 1e-12
    value, interval = bench.minus_kd(_case("a", 0.508, 0.514, interval=False), "loss")
    assert abs(value + 0.006) < 1e-12 and interval is None


def test_the_readme_table_has_a_row_per_pair_whose_cases_are_all_published(monkeypatch):
    monkeypatch.setattr(bench, "README_ROWS", [("pair A", "recipe A, seeds 0-1", ("a0", "a1")),
                                               ("pair B", "recipe B", ("b0",))])
    text = bench.readme_table([_case("a0", 0.516, 0.511, True), _case("a1", 0.508, 0.514, False)])
    rows = text.splitlines()[2:]
    assert len(rows) == 1 and rows[0].startswith("| pair A | recipe A, seeds 0-1 | 0.1% / 0.1% | 10,000 |")
    assert "+0.005 [+0.003, +0.009]; -0.006 |" in rows[0]
