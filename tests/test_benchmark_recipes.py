"""The condensation benchmark's per-IPC recipes: which network a set is condensed through, and where
it is evaluated along the way (the README's condensation table depends on both)."""

from __future__ import annotations

from benchmarks.condense import BY_IPC, recipe


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
