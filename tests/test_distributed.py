"""torchrun: two CPU processes (gloo) against one process, on a tiny Fashion-MNIST.

- train-teacher: DDP over 2 ranks x batch B equals one process with batch 2B (both ranks take a
  strided slice of the same epoch order, so global batch i is the same 2B images; DDP averages
  the two halves' gradients = the gradient of the 2B mean). Measured after 2 epochs (16 SGD
  steps at lr 0.1, lenet5_half): max |weight difference| 3e-8 while the weights moved by 0.06,
  train loss equal to 2e-7 — float reduction order only. Asserted: < 1e-5.
- synthesize: each rank writes its own part (rank 0 keeps --seed, rank 1 a derived seed) into
  OUT/rank-K/; rank 0 lists every shard once in the top-level manifest; --resume extends each part.
- condense dm: classes split across ranks, summed image gradients: the same images as one
  process (measured: bitwise equal on this CPU; asserted within 1e-6).
- distill --method (live): each rank synthesizes its own batches, the DDP student stays identical
  on both ranks (the trainer checks this after every epoch and would stop otherwise).

"Only rank 0 writes" is observed, not assumed: a ``sitecustomize`` audit hook logs every file
that rank 1 opens for writing, renames, creates or deletes under the watched directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from datafree import distributed
from datafree.checkpoint import load_training_state
from datafree.cli import main
from datafree.data import FASHION_MNIST
from datafree.data.loader import epoch_generator, iterate_batches
from datafree.data.transfer import TransferSet, write_merged_manifest
from datafree.io import sha256_file
from datafree.models import build_model

AUDIT_HOOK = '''
import os
if os.environ.get("RANK", "0") != "0" and os.environ.get("DATAFREE_TEST_WATCH"):
    import atexit, sys
    watch = os.path.realpath(os.environ["DATAFREE_TEST_WATCH"])
    log = os.path.realpath(os.environ["DATAFREE_TEST_WATCH_LOG"])
    seen = []

    def _path(p):
        return os.path.realpath(os.fsdecode(p)) if isinstance(p, (str, bytes, os.PathLike)) else ""

    def hook(event, args):
        if event == "open":
            mode, flags = args[1], args[2] or 0
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
                flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            paths = [args[0]] if writes else []
        elif event == "os.rename":
            paths = [args[1]]
        elif event in ("os.remove", "os.mkdir"):
            paths = [args[0]]
        else:
            return
        for p in map(_path, paths):
            if p.startswith(watch) and not p.startswith(log):
                seen.append(os.path.relpath(p, watch))

    sys.addaudithook(hook)

    @atexit.register
    def _dump():
        with open(os.environ["DATAFREE_TEST_WATCH_LOG"] + "." + os.environ["RANK"], "w") as f:
            f.write("\\n".join(seen))
'''


def torchrun(tmp_path: Path, argv: list[str], watch: Path) -> list[str]:
    """Run ``datafree ARGV`` on 2 CPU processes; return the paths rank 1 wrote under ``watch``."""
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    log = tmp_path / "rank-writes"
    env = {k: v for k, v in os.environ.items() if k not in ("DATAFREE_DATA", "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DATAFREE_DIST_BACKEND": "gloo",
            "PYTHONPATH": os.pathsep.join([str(hook_dir), str(Path(__file__).parents[1])]),
            "DATAFREE_TEST_WATCH": str(watch), "DATAFREE_TEST_WATCH_LOG": str(log)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "datafree.cli", *argv, "--device", "cpu", "--no-progress"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert r.stdout.count("-> ") == 1  # the summary line comes from rank 0 only
    written = Path(f"{log}.1")
    assert written.is_file(), "the audit hook did not run on rank 1"
    return [p for p in written.read_text().splitlines() if p]


def outside(written: list[str], own: str) -> list[str]:
    """The paths in ``written`` that are neither in the directory ``own`` nor one of its parents."""
    own_parts = Path(own).parts
    return [p for p in written if Path(p).parts[:len(own_parts)] != own_parts and own_parts[:len(Path(p).parts)]
            != Path(p).parts and p != "."]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


# ---------------------------------------------------------------- in-process (fast)
def test_helpers_are_single_process_no_ops(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert not distributed.launched() and not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.run_on_main(lambda: 7) == 7 and distributed.gather_object("x") == ["x"]
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.device_for("cuda:1") == "cuda:1" and distributed.rank_seed(5) == 5
    assert distributed.rank_seed(5, 1) != 5 and distributed.rank_seed(5, 1) != distributed.rank_seed(5, 2)
    with distributed.process_group("cpu"):  # not launched: nothing to join
        assert not distributed.active()


def test_launch_environment(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.launched() and distributed.device_for("cuda") == "cuda:1"
    assert distributed.device_for("cpu") == "cpu"
    with pytest.raises(Exception, match="--device cuda"):
        distributed.device_for("cuda:0")
    assert distributed.backend_for("cpu") == "gloo" and distributed.backend_for("cuda:1") == "nccl"
    monkeypatch.setenv(distributed.BACKEND_ENV, "gloo")
    assert distributed.backend_for("cuda:1") == "gloo"
    # a command that has no multi-process mode says so, before joining any group
    assert main(["inspect", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "runs in one process" in err and "synthesize" in err


def test_a_torchrun_rank_ends_by_end_rank_only_as_a_process(monkeypatch):
    import datafree.cli as cli

    ended: list[int] = []
    monkeypatch.setattr(cli, "_run", lambda argv: 3)
    monkeypatch.setattr(cli, "_end_rank", ended.append)
    monkeypatch.setattr(distributed, "launched", lambda: True)
    assert main(["inspect", "x"]) == 3 and ended == []  # called from Python: returns, the caller goes on
    assert main() == 3 and ended == [3]  # the command's process under torchrun
    monkeypatch.setattr(distributed, "launched", lambda: False)
    assert main() == 3 and ended == [3]  # a plain process exits as usual


def test_end_rank_runs_atexit_flushes_and_keeps_the_exit_code():
    code = ("import atexit; from datafree.cli import _end_rank; atexit.register(lambda: print('atexit ran'));"
            "print('work done', end=' '); _end_rank(3)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and r.stdout.split() == ["work", "done", "atexit", "ran"]


def test_rank_slices_together_are_the_doubled_batch(fmnist_root):
    from datafree.data import load_dataset

    ds = load_dataset("fashion-mnist", "train", fmnist_root)
    one = [b[1] for b in iterate_batches(ds, 32, shuffle=True, generator=epoch_generator(0, 3), drop_last=True)]
    ranks = [[b[1] for b in iterate_batches(ds, 16, shuffle=True, generator=epoch_generator(0, 3), drop_last=True,
                                            rank=r, world_size=2)] for r in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 8
    for i, batch in enumerate(one):
        assert sorted(batch.tolist()) == sorted(torch.cat([ranks[0][i], ranks[1][i]]).tolist())
    # unshuffled: rank r takes every other image from r; together the whole (even-sized) set
    got = [torch.cat([b[0] for b in iterate_batches(ds, 16, rank=r, world_size=2)]) for r in range(2)]
    assert torch.equal(torch.stack(got, 1).flatten(0, 1), ds.get_batch(torch.arange(len(ds)))[0])


def test_merged_manifest_lists_every_part(tmp_path):
    parts = [{"format": "x", "method": "m", "seed": s, "count": n, "synthesis_time_s": t,
              "shards": [{"name": f"shard-{i:05d}.safetensors", "count": 1, "sha256": f"{s}{i}"} for i in range(n)]}
             for s, n, t in ((0, 2, 3.0), (9, 1, 5.0))]
    m = write_merged_manifest(tmp_path, parts, seed=0)
    assert [s["name"] for s in m["shards"]] == ["rank-0/shard-00000.safetensors", "rank-0/shard-00001.safetensors",
                                                "rank-1/shard-00000.safetensors"]
    assert m["count"] == 3 and m["world_size"] == 2 and m["seed"] == 0 and m["synthesis_time_s"] == 5.0
    assert [r["seed"] for r in m["ranks"]] == [0, 9]
    assert json.loads((tmp_path / "manifest.json").read_text()) == m


# ---------------------------------------------------------------- torchrun subprocesses
@pytest.mark.slow
def test_ddp_training_equals_one_process_with_double_batch(fmnist_root, tmp_path):
    common = ["train-teacher", "--arch", "lenet5_half", "--epochs", "2", "--lr", "0.1", "--data-root", str(fmnist_root)]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*common, "--batch-size", "32", "--out", str(one), "--no-progress", "--device", "cpu"]) == 0
    rank1 = torchrun(tmp_path, [*common, "--batch-size", "16", "--out", str(two)], two)
    assert rank1 == []  # rank 1 wrote nothing into the run directory
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    a, b = weights(one), weights(two)
    init = build_model("lenet5_half", FASHION_MNIST, seed=0).state_dict()
    assert set(a) == set(b) == set(init)
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff < 1e-5 < 1e-2 < moved, (diff, moved)  # measured: diff 3e-8, the weights moved by 0.06
    rows = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (one, two)]
    assert [r["epoch"] for r in rows[1]] == [1, 2]  # one line per epoch: no rank appended its own
    for r1, r2 in zip(*rows):
        assert r1["test_accuracy"] == r2["test_accuracy"]  # sharded evaluation, summed: the whole test split
        assert abs(r1["train_loss"] - r2["train_loss"]) < 1e-5 and r1["train_accuracy"] == r2["train_accuracy"]
    result = json.loads((two / "result.json").read_text())
    assert result["distributed"]["world_size"] == 2 and result["distributed"]["global_batch_size"] == 32
    assert result["config"]["batch_size"] == 16


@pytest.fixture
def bn_teacher(fmnist_root, tmp_path):
    out = tmp_path / "teacher"
    assert main(["train-teacher", "--arch", "resnet8", "--arch-kwargs", '{"width": 4}', "--epochs", "1",
                 "--data-root", str(fmnist_root), "--out", str(out), "--no-progress", "--batch-size", "64",
                 "--device", "cpu"]) == 0
    return out


@pytest.mark.slow
def test_synthesize_splits_work_and_merges_one_manifest(bn_teacher, tmp_path):
    out = tmp_path / "set"
    argv = ["synthesize", "--teacher", str(bn_teacher), "--method", "deepinversion", "--count", "20",
            "--set", "batch_size=8", "--set", "iterations=2", "--out", str(out)]
    rank1 = torchrun(tmp_path, argv, out)
    assert rank1 and outside(rank1, "rank-1") == []  # rank 1 wrote only its own part
    ts = TransferSet(out)  # verifies every listed shard's sha256 when read
    x, y, logits = ts.get_batch(torch.arange(len(ts)))
    assert len(ts) == 20 and ts.manifest["world_size"] == 2 and ts.manifest["seed"] == 0
    names = [s["name"] for s in ts.manifest["shards"]]
    on_disk = sorted(str(p.relative_to(out)) for p in out.glob("rank-*/shard-*.safetensors"))
    assert len(set(names)) == len(names) and sorted(names) == on_disk  # each shard listed once, none left out
    assert all(sha256_file(out / s["name"]) == s["sha256"] for s in ts.manifest["shards"])
    # batches of 8 dealt out in turn: rank 0 makes batches 0 and 2 (8 + 4), rank 1 batch 1
    assert [r["count"] for r in ts.manifest["ranks"]] == [12, 8]
    seeds = [r["seed"] for r in ts.manifest["ranks"]]
    assert seeds[0] == 0 and seeds[1] != 0
    part = [TransferSet(out / f"rank-{r}") for r in range(2)]
    first = [p.get_batch(torch.arange(8))[0] for p in part]
    assert not torch.allclose(first[0], first[1])  # disjoint seeds: different images
    # the same set as independent jobs, one part each, in either order: the part that completes it merges
    parts = tmp_path / "parts"
    assert main([*argv[:-1], str(parts), "--part", "1/2", "--no-progress", "--device", "cpu"]) == 0
    assert not (parts / "manifest.json").exists()  # rank 0's part is missing: not a set yet
    assert main([*argv[:-1], str(parts), "--part", "0/2", "--no-progress", "--device", "cpu"]) == 0
    merged = TransferSet(parts).manifest
    assert [s["sha256"] for s in merged["shards"]] == [s["sha256"] for s in ts.manifest["shards"]]  # bit-identical
    assert [r["count"] for r in merged["ranks"]] == [12, 8] and merged["world_size"] == 2
    assert all(r["synthesis_time_s"] > 0 for r in merged["ranks"])  # each part's own time, for a sum
    # rank 0 keeps --seed: its first batch is what one process draws first
    single = tmp_path / "single"
    assert main([*argv[:6], "8", *argv[7:-1], str(single), "--no-progress", "--device", "cpu"]) == 0
    assert torch.equal(TransferSet(single).get_batch(torch.arange(8))[0], first[0])
    # --resume extends every rank's part; nothing is duplicated
    torchrun(tmp_path, [*argv[:6], "28", *argv[7:], "--resume"], out)
    ts = TransferSet(out)
    assert len(ts) == 28 and [r["count"] for r in ts.manifest["ranks"]] == [16, 12]
    assert torch.equal(ts.get_batch(torch.arange(12))[0], x[:12])  # rank 0's earlier shards are kept as they were
    assert len({s["sha256"] for s in ts.manifest["shards"]}) == len(ts.manifest["shards"])


@pytest.mark.slow
def test_condense_dm_two_processes_equals_one(fmnist_root, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    argv = ["condense", "--method", "dm", "--ipc", "2", "--set", 'net_kwargs={"width": 8, "depth": 1}',
            "--set", "batch_real=4", "--set", "iterations=4", "--checkpoint-every", "2",
            "--data-root", str(fmnist_root)]
    assert main([*argv, "--out", str(one), "--no-progress", "--device", "cpu"]) == 0
    assert torchrun(tmp_path, [*argv, "--out", str(two)], two) == []
    a, b = TransferSet(one), TransferSet(two)
    (xa, ya), (xb, yb) = a.get_batch(torch.arange(len(a))), b.get_batch(torch.arange(len(b)))
    assert len(b) == 10 * 2 and torch.equal(ya, yb) and b.manifest["iterations_done"] == 4
    diff = (xa - xb).abs().max().item()
    assert diff <= 1e-6, diff  # measured 0.0: each rank embeds only its classes' images
    assert abs(a.manifest["last_losses"]["dm"] - b.manifest["last_losses"]["dm"]) < 1e-3


@pytest.mark.slow
def test_live_distill_two_processes(bn_teacher, fmnist_root, tmp_path):
    out, keep = tmp_path / "student", tmp_path / "kept"
    argv = ["distill", "--teacher", str(bn_teacher), "--method", "dfad", "--student", "lenet5_half",
            "--epochs", "2", "--steps-per-epoch", "5", "--batch-size", "8", "--set", "batch_size=8",
            "--set", "nz=16", "--save-transfer", str(keep), "--data-root", str(fmnist_root), "--out", str(out),
            "--freeze", "features.0", "--ema", "0.5"]  # a frozen module and a weight average under DDP
    rank1 = torchrun(tmp_path, argv, tmp_path)
    assert rank1 and outside(rank1, "kept/rank-1") == []  # its own part of the kept set, nothing in the run
    result = json.loads((out / "result.json").read_text())
    assert result["synthesis_calls"] == 2 and result["synthetic_images"] == 2 * 8 * 2
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    state = load_training_state(out / "state.pt")
    assert state["world_size"] == 2 and len(state["source"]) == 2  # each rank's stream, to resume it
    assert state["averaged"]["n_averaged"] == 2 * 5  # one update a step
    g = [s["synthesizer"]["generator"] for s in state["source"]]
    assert any(not torch.equal(g[0][k], g[1][k]) for k in g[0])  # each rank trains a generator of its own
    ts = TransferSet(keep)
    assert len(ts) == 32 and [r["count"] for r in ts.manifest["ranks"]] == [16, 16]
    start = build_model("lenet5_half", FASHION_MNIST, seed=0).state_dict()
    assert torch.equal(weights(out)["features.0.weight"], start["features.0.weight"])
