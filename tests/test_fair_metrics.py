"""DD-Ranking's HLR, IOR and DDRS: by hand on a toy case, the random control, the bench's pairing."""

from __future__ import annotations

import math

import pytest
import torch

from datafree.bench.report import summarize
from datafree.bench.suites.base import with_controls
from datafree.condense import EvalProtocol
from datafree.condense.evaluate import evaluate_fair, evaluate_set, random_control
from datafree.condense.metrics import ddrs, fair_metrics, hlr, ior
from datafree.data import NormalizedTensorDataset
from datafree.errors import DatafreeError
from tests.test_condense import SPEC, tiny_pool


def test_metrics_by_hand():
    # real 90, synthetic 70 hard / 80 soft, random subset 60 soft:
    # HLR 20, IOR 20, a = 0.5*0.2 - 0.5*0.2 = 0 -> DDRS = (1 - 1/e) / (e - 1/e)
    assert hlr(90.0, 70.0) == 20.0 and ior(80.0, 60.0) == 20.0
    assert ddrs(20.0, 20.0) == pytest.approx((1 - math.exp(-1)) / (math.e - math.exp(-1)))
    # perfect: no gap to real data, 100 points over random -> a = 0.5 -> (e^0.5 - e^-1) / (e - e^-1)
    assert ddrs(0.0, 100.0) == pytest.approx((math.exp(0.5) - math.exp(-1)) / (math.e - math.exp(-1)))
    # worst: a = -1 -> 0; best: a = 1 with w = 1 -> 1
    assert ddrs(100.0, -100.0) == pytest.approx(0.0, abs=1e-12)
    assert ddrs(0.0, 100.0, weight=1.0) == pytest.approx(1.0)
    m = fair_metrics(syn_any=[80.0, 82.0], random_any=[60.0, 60.0], syn_hard=[70.0, 72.0], real_hard=90.0)
    assert m["ior"] == {"mean": 21.0, "std": pytest.approx(math.sqrt(2))}
    assert m["hlr"]["mean"] == 19.0 and m["random_accuracy"]["mean"] == 60.0
    assert m["ddrs"]["mean"] == pytest.approx((ddrs(20, 20) + ddrs(18, 22)) / 2)
    assert fair_metrics(syn_any=[1.0], random_any=[0.0])["hlr"] is None  # no real-data reference: IOR only
    with pytest.raises(DatafreeError, match="pairs every"):
        fair_metrics(syn_any=[1.0, 2.0], random_any=[0.0])
    with pytest.raises(DatafreeError, match="weight"):
        ddrs(0.0, 0.0, weight=2.0)


def test_random_control_is_seeded_real_images_of_each_class():
    pool = tiny_pool()
    a, b = random_control(pool, 3, seed=5), random_control(pool, 3, seed=5)
    assert torch.equal(a.images, b.images) and a.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert not torch.equal(a.images, random_control(pool, 3, seed=6).images)
    rows = {tuple(x.flatten().tolist()) for x in pool.images}
    assert all(tuple(x.flatten().tolist()) in rows for x in a.images)


def test_evaluate_fair_runs_the_control_under_the_same_protocol():
    pool = tiny_pool()
    train = NormalizedTensorDataset(pool.images[::8], pool.labels[::8], SPEC)  # 2 per class
    test = NormalizedTensorDataset(pool.images, pool.labels, SPEC)
    protocol = EvalProtocol(arch="convnet", arch_kwargs={"width": 8, "depth": 1}, models=2, epochs=3, augment="none")
    result = evaluate_set(train, SPEC, test, protocol, progress=False)
    fair = evaluate_fair(train, SPEC, test, protocol, result, pool=pool, ipc=2, real_hard=95.0, progress=False)
    control = evaluate_set(random_control(pool, 2, 0), SPEC, test, protocol, progress=False)
    assert fair["random_control"]["accuracies"] == control["accuracies"]
    assert fair["random_control"]["protocol"] == result["protocol"]
    assert fair["ior"]["mean"] == pytest.approx(result["accuracy_mean"] - control["accuracy_mean"])
    assert fair["hlr"]["mean"] == pytest.approx(95.0 - result["accuracy_mean"])  # dc: the set is already hard-label
    with pytest.raises(DatafreeError, match="needs --teacher"):
        evaluate_fair(train, SPEC, test, EvalProtocol(name="kd", models=1, epochs=1), result, pool=pool, ipc=2)


def test_bench_adds_controls_and_pairs_them_by_seed():
    assert with_controls(["scratch", "cond:dm:10:soft", "cond:random:10:soft"]) == [
        "scratch", "cond:dm:10:soft", "cond:random:10:soft", "cond:dm:10:hard"]
    assert with_controls(["cond:random:1:hard"]) == ["cond:random:1:hard"]

    def row(source: str, seed: int, acc: float) -> dict:
        parts = source.split(":")
        kind = parts[0]
        extra = {"method": parts[1], "ipc": int(parts[2]), "labels": parts[3]} if kind == "cond" else {}
        return {"pair": "p", "source": source, "kind": kind, "seed": seed, "accuracy": acc, **extra}

    rows = [row("scratch", 0, 90.0), row("scratch", 1, 92.0), row("cond:dm:10:soft", 0, 80.0),
            row("cond:dm:10:soft", 1, 84.0), row("cond:dm:10:hard", 0, 70.0), row("cond:dm:10:hard", 1, 70.0),
            row("cond:random:10:soft", 0, 60.0), row("cond:random:10:soft", 1, 62.0)]
    groups = {g["source"]: g for g in summarize(rows)}
    soft = groups["cond:dm:10:soft"]
    assert soft["random_accuracy"] == 61.0 and soft["ior"] == 21.0
    assert soft["hlr"] == 21.0 and soft["ddrs"] == pytest.approx((ddrs(20, 20) + ddrs(22, 22)) / 2)
    assert groups["cond:dm:10:hard"]["ior"] is None  # its random control (hard) did not run
    assert groups["scratch"]["ior"] is None


def test_condense_report_fair_columns_match_fair_metrics():
    """benchmarks.condense's fair tables: each final set against the random row of its IPC and protocol,
    HLR from the set's hard-label (dc) accuracy, paired model by model, or by means where a published
    row kept only its mean; an intermediate set and a protocol without a random control get no IOR."""
    from benchmarks.baselines import summarize as summary
    from benchmarks.condense import fair_report, fair_rows

    def row(method: str, protocol: str, accs: list[float], iterations: int = 0, keep: bool = True) -> dict:
        return {"method": method, "ipc": 10, "protocol": protocol, "iterations": iterations,
                "accuracy": summary(accs), **({"accuracies": accs} if keep else {})}

    rows = [row("random", "dc", [60.0, 62.0]), row("random", "kd", [70.0, 70.0]),
            row("dm", "dc", [61.0, 61.0]),  # the initial set of dm's curve: not in the fair table
            row("dm", "dc", [70.0, 72.0], 100), row("dm", "kd", [80.0, 84.0], 100), row("dm", "dc-dsa", [75.0], 100),
            row("herding", "dc", [66.0, 66.0, 66.0], keep=False)]  # a published row: its mean only
    fair = {(f["method"], f["protocol"]): f for f in fair_rows(rows, 90.0)}
    assert set(fair) == {("random", "dc"), ("random", "kd"), ("herding", "dc"), ("dm", "dc"), ("dm", "kd"),
                         ("dm", "dc-dsa")}

    def by_hand(hlr_points: float, ior_points: float) -> float:
        a = (0.5 * ior_points - 0.5 * hlr_points) / 100
        return (math.exp(a) - math.exp(-1)) / (math.e - math.exp(-1))

    # dm, soft labels: IOR 80-70, 84-70; HLR from its hard-label accuracies 90-70, 90-72
    kd = fair[("dm", "kd")]["fair"]
    assert kd == fair_metrics(syn_any=[80.0, 84.0], random_any=[70.0, 70.0], syn_hard=[70.0, 72.0], real_hard=90.0) | {
        "paired": True, "models": 2, "first_n": False}
    assert kd["ior"]["mean"] == 12.0 and kd["hlr"]["mean"] == 19.0
    assert kd["ddrs"]["mean"] == pytest.approx((by_hand(20, 10) + by_hand(18, 14)) / 2)
    dc = fair[("dm", "dc")]["fair"]
    assert dc["ior"] == {"mean": 10.0, "std": 0.0} and dc["hlr"]["mean"] == 19.0
    herding = fair[("herding", "dc")]["fair"]  # means: IOR 66-61, HLR 90-66, no spread
    assert not herding["paired"] and herding["ior"]["mean"] == 5.0 and herding["hlr"]["mean"] == 24.0
    assert herding["ddrs"]["mean"] == pytest.approx(by_hand(24, 5))
    assert fair[("dm", "dc-dsa")]["fair"]["ior"] is None  # no random row under dc-dsa: HLR only
    assert fair[("dm", "dc-dsa")]["fair"]["hlr"]["mean"] == 19.0
    assert fair_rows(rows, None)[0]["fair"]["hlr"] is None  # no real-data reference: IOR only
    # a 3-model evaluation beside 2-model ones (model i: seed i in each) pairs the first 2 of every row
    three = [*rows, row("random", "dc-dsa", [50.0, 52.0, 99.0]), row("dm", "dc-dsa", [75.0, 78.0, 0.0], 100)]
    three = [r for r in three if (r["method"], r["protocol"], len(r.get("accuracies", []))) != ("dm", "dc-dsa", 1)]
    dsa_fair = {(f["method"], f["protocol"]): f for f in fair_rows(three, 90.0)}[("dm", "dc-dsa")]["fair"]
    assert dsa_fair == fair_metrics(syn_any=[75.0, 78.0], random_any=[50.0, 52.0], syn_hard=[70.0, 72.0],
                                    real_hard=90.0) | {"paired": True, "models": 2, "first_n": True}
    assert "| dm | dc-dsa | 51.00 ± 44.19 | 67.00 ± 27.73 | +25.50 ± 0.71 (n=2) |" in fair_report(three, {"accuracy": 90.0})

    table = fair_report(rows, {"accuracy": 90.0})
    ddrs_kd = kd["ddrs"]
    assert (f"| dm | kd | 82.00 ± 2.83 | 70.00 ± 0.00 | +12.00 ± 2.83 | 19.00 ± 1.41 "
            f"| {ddrs_kd['mean']:.3f} ± {ddrs_kd['std']:.3f} |") in table
    assert f"| herding | dc | 66.00 ± 0.00 | 61.00 ± 1.41 | +5.00 | 24.00 | {by_hand(24, 5):.3f} |" in table
    assert "| dm | dc-dsa | 75.00 | no control run | - | 19.00 | - |" in table


def test_eval_bf16_report_pairs_models_and_times():
    """benchmarks.eval_bf16's table: per-model differences (bf16 - fp32), their mean ± std, speed-up per round."""
    from benchmarks.baselines import summarize as summary
    from benchmarks.eval_bf16 import report

    result = {"set": "S", "models": 2, "epochs": 1000, "argv": ["python", "-m", "benchmarks.eval_bf16"],
              "accuracy": {"fp32": [70.0, 72.0], "bf16": [71.0, 71.0], "difference": summary([1.0, -1.0])},
              "timing": {"epochs": 100, "threads": 2, "fp32_s": [40.0], "bf16_s": [25.0]}}
    text = report(result)
    assert "| 0 | 70.00 | 71.00 | +1.00 |" in text and "| 1 | 72.00 | 71.00 | -1.00 |" in text
    assert "| mean ± std | 71.00 | 71.00 | +0.00 ± 1.41 |" in text
    assert "| 0 | 40.0 | 25.0 | 1.60x |" in text
