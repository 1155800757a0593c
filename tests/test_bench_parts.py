"""A stored set made in parts by several bench workers (datafree.bench.parts, Recipes.df_parts)."""

import json
import threading
from dataclasses import replace
from types import SimpleNamespace

import pytest

from datafree.bench import get_suite, plan, read_rows, run_suite
from datafree.bench.parts import PartBoard, clear_for_parts
from datafree.errors import DatafreeError


def _steps(directory, n):
    return [SimpleNamespace(job=SimpleNamespace(params={"set": str(directory)}), part=(k, n), k=k) for k in range(n)]


def test_the_owner_makes_every_part_nobody_claimed(tmp_path):
    board, made = PartBoard(), []
    actions = board.make_set(_steps(tmp_path / "set", 3), lambda s: made.append(s.k) or "run", ".bench.json")
    assert made == [0, 1, 2] and actions == ["run"] * 3
    assert board.help(_steps(tmp_path / "set", 3), lambda s: pytest.fail("claimed a part of a closed set")) == 0


def test_a_helper_makes_a_part_while_the_owner_makes_another_and_the_owner_waits_for_it(tmp_path):
    board = PartBoard(lock=threading.Lock())
    steps = _steps(tmp_path / "set", 2)
    helper_started, order = threading.Event(), []

    def owner_step(step):  # part 0 holds the owner until the helper has claimed part 1
        assert helper_started.wait(10)
        order.append(("owner", step.k))
        return "run"

    def helper_step(step):
        helper_started.set()
        order.append(("helper", step.k))
        return "resume"

    helper = threading.Thread(target=lambda: order.append(("made", board.help(steps, helper_step))))
    helper.start()
    actions = board.make_set(steps, owner_step, ".bench.json")
    helper.join(10)
    assert actions == ["run", "resume"]  # each part's own action, in part order
    assert ("owner", 0) in order and ("helper", 1) in order and ("made", 1) in order


def test_a_part_that_fails_elsewhere_fails_the_owner_with_its_message(tmp_path):
    board = PartBoard()
    key = str(tmp_path / "set")
    board.state[(key, 1)] = ("failed", "disk full")  # as a helper's failure leaves it

    with pytest.raises(DatafreeError, match="part 1/2 of .* failed: disk full"):
        board.make_set(_steps(tmp_path / "set", 2), lambda s: "run", ".bench.json")
    assert board.state[key] == "closed"  # waiting helpers leave
    gone = PartBoard()
    gone.state[(key, 1)] = ("running", 2**22 + 12345)  # a claim by a process that no longer exists
    with pytest.raises(DatafreeError, match="stopped"):
        gone.make_set(_steps(tmp_path / "set", 2), lambda s: "run", ".bench.json")


def test_a_set_the_parts_cannot_extend_is_cleared_and_theirs_is_kept(tmp_path):
    whole, other, mine = tmp_path / "whole", tmp_path / "other", tmp_path / "mine"
    for d, top in ((whole, {"count": 4}), (other, {"world_size": 3}), (mine, {"world_size": 2})):
        (d / "rank-0").mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps(top))
    (whole / ".bench.json").write_text("{}")  # made by one synthesize step
    for d in (whole, other, mine):
        clear_for_parts(d, 2, ".bench.json")
    assert not whole.exists() and not other.exists() and (mine / "rank-0").is_dir()


def _parts_suite():
    smoke = get_suite("smoke")
    return replace(smoke, sources=["kd", "df:zskd"], recipes=replace(smoke.recipes, df_parts=2))


def test_two_workers_make_a_set_in_parts_that_one_process_makes_alike(tmp_path):
    """--jobs 2: the set's two parts are made side by side, merged, and equal the parts made in one process."""
    from tests.conftest import write_mnist_family

    root = write_mnist_family(tmp_path / "fmnist")
    suite = _parts_suite()
    run = next(r for r in plan(suite, tmp_path / "two") if r.source == "df:zskd")
    assert [a[a.index("--part") + 1] for a in run.argv[:2]] == ["0/2", "1/2"] and run.argv[2][1] == "distill"
    two = run_suite(suite, tmp_path / "two", data_root=root, device="cpu", jobs=2, log=lambda *_: None)
    one = run_suite(suite, tmp_path / "one", data_root=root, device="cpu", jobs=1, log=lambda *_: None)
    assert not two.failed and not one.failed
    sets = [json.loads((tmp_path / o / "runs/tiny/df-zskd/seed0/transfer/manifest.json").read_text())
            for o in ("two", "one")]
    assert sets[0]["world_size"] == 2 and sets[0]["count"] == 32 and [r["count"] for r in sets[0]["ranks"]] == [16, 16]
    assert [s["sha256"] for s in sets[0]["shards"]] == [s["sha256"] for s in sets[1]["shards"]]
    row = next(r for r in read_rows(tmp_path / "two") if r["source"] == "df:zskd")
    assert row["synthetic_images"] == 32 and row["set_dir"].endswith("transfer")
    parts = [r["synthesis_time_s"] for r in sets[0]["ranks"]]
    assert row["synthesis_time_s"] == pytest.approx(sum(parts))  # process-seconds: both parts, not the slower one
    again = run_suite(suite, tmp_path / "two", data_root=root, device="cpu", jobs=2, log=lambda *_: None)
    assert not again.ran and len(again.reused) == 3


def test_a_suite_stopped_before_the_merge_writes_it_from_the_finished_parts(tmp_path):
    from tests.conftest import write_mnist_family

    root = write_mnist_family(tmp_path / "fmnist")
    suite = _parts_suite()
    run_suite(suite, tmp_path / "out", data_root=root, device="cpu", log=lambda *_: None)
    tset = tmp_path / "out/runs/tiny/df-zskd/seed0/transfer"
    before = json.loads((tset / "manifest.json").read_text())
    (tset / "manifest.json").unlink()
    (tmp_path / "out/results.jsonl").unlink()  # the row, so the run is looked at again: every step is reused
    summary = run_suite(suite, tmp_path / "out", data_root=root, device="cpu", log=lambda *_: None)
    assert not summary.failed
    assert json.loads((tset / "manifest.json").read_text())["shards"] == before["shards"]
