"""The condensation benchmark's per-IPC recipes: which network a set is condensed through, and where
it is evaluated along the way (the README's condensation table depends on both)."""

from __future__ import annotations

import json

from benchmarks.condense import BY_IPC, recipe
from datafree.data.transfer import FORMAT


def test_ipc1_keeps_the_accuracy_against_time_curve() -> None:
    overrides, curve = recipe("dm", 1)
    assert curve == sorted(curve) and len(curve) > 1 and curve[0] == 0
    assert "net_kwargs" not in overrides  # DM at IPC 1 condenses through ConvNet-128


def test_larger_ipc_evaluates_the_final_set_only() -> None:
    for method in ("dm", "teacher", "dc", "dsa", "mtt"):
        assert len(recipe(method, 10)[1]) == 1


def test_narrow_condenser_where_convnet128_does_not_fit() -> None:
    for method, ipc in (("dc", 10), ("dsa", 10), ("mtt", 1), ("mtt", 10)):
        overrides, curve = recipe(method, ipc)
        assert overrides["net_kwargs"] == {"width": 32}
        assert curve == [BY_IPC[method][ipc]["iterations"]]
        assert "iterations" not in overrides  # the iteration count is the curve's, not an override
    assert "net_kwargs" not in recipe("dc", 1)[0]


def test_zskd_recipes_report_groups_students_by_recipe_and_budget(tmp_path) -> None:
    from benchmarks.zskd_recipes import STUDENT, finished

    assert "--epochs" not in STUDENT and "--eval-every" not in STUDENT  # set per set size by the script
    for name, steps, seed, acc in (("coarse2-300", 8000, 0, 70.0), ("coarse2-300", 8000, 1, 72.0),
                                   ("coarse2-300", 32000, 0, 80.0), ("coarse4-50", 8000, 0, 60.0)):
        run = tmp_path / "zskd-recipes" / f"{name}-n6400"
        (run / "transfer").mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT, "synthesis_time_s": 5.0, "config": {}, "count": 6400}
        (run / "transfer" / "manifest.json").write_text(json.dumps(manifest))
        student = run / f"student-{steps}steps-seed{seed}"
        student.mkdir()
        (student / "result.json").write_text(json.dumps({"metrics": {"test_accuracy": acc, "wall_time_s": 1.0},
                                                         "argv": ["datafree", "distill"]}))
    rows = {(r["recipe"], r["student_steps"]): r["accuracies"] for r in finished(tmp_path)}
    assert rows == {("coarse2-300", 8000): [70.0, 72.0], ("coarse2-300", 32000): [80.0], ("coarse4-50", 8000): [60.0]}
