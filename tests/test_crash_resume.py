"""Crash safety: kill each resumable command with SIGKILL at random points, resume it, and compare.

Every command runs in a subprocess (``OMP_NUM_THREADS=1``) on a tiny Fashion-MNIST. The killed run
is resumed with ``--resume`` (killed again, up to twice) until it finishes; its outputs must equal
an uninterrupted run's bit for bit: model weights, transfer-set shards (names, counts, sha256,
tensors), condensed images, expert trajectories. No shard may be lost, duplicated or half-written,
and no temporary file may be left behind. Kill times come from a fixed-seed ``random.Random``:
after the first checkpoint file appears (or, when resuming, after the next one is written), a
random fraction of the uninterrupted run's checkpointed span.

The non-finite-loss tests run in-process: a patched loss turns NaN after the first checkpoint, the
command stops with a one-line error, and ``--resume`` from the last saved state (patch removed)
ends exactly where an uninterrupted run does.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from datafree.checkpoint import load_training_state
from datafree.cli import main
from datafree.data.transfer import SHARD_FILE, TransferSet, read_manifest
from tests.conftest import write_mnist_family

CLI = [sys.executable, "-m", "datafree.cli"]
ENV = {k: v for k, v in os.environ.items() if k != "DATAFREE_DATA"} | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY_NET = 'net_kwargs={"width": 8, "depth": 1}'


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A tiny Fashion-MNIST and a BatchNorm teacher trained on it for one epoch."""
    root = tmp_path_factory.mktemp("crash")
    data = write_mnist_family(root / "fmnist")
    teacher = root / "teacher"
    assert main(["train-teacher", "--arch", "resnet8", "--arch-kwargs", '{"width": 4}', "--epochs", "1",
                 "--data-root", str(data), "--out", str(teacher), "--no-progress", "--batch-size", "64"]) == 0
    return {"root": root, "data": data, "teacher": teacher}


# ---------------------------------------------------------------- running and killing
def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _launch(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *argv], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _uninterrupted(argv: list[str], marker: Path) -> float:
    """Run to the end; return the seconds from the first checkpoint (``marker`` appears) to the end."""
    start, first = time.monotonic(), None
    proc = _launch(argv)
    while proc.poll() is None:
        if first is None and marker.exists():
            first = time.monotonic()
        time.sleep(0.005)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return time.monotonic() - (first or start)


def _killed_and_resumed(argv: list[str], marker: Path, span: float, rng: random.Random, max_kills: int = 2) -> int:
    """Run ``argv``, SIGKILL it after a checkpoint at a random time, resume until it finishes; return the kills."""
    kills, resume = 0, False
    while True:
        before = _mtime(marker)
        proc = _launch([*argv, "--resume"] if resume else argv)
        if kills < max_kills:
            while proc.poll() is None and _mtime(marker) in (None, before):  # a (new) checkpoint is on disk
                time.sleep(0.005)
            if proc.poll() is None:
                time.sleep(rng.uniform(0.05, 0.7) * span)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        if proc.returncode == -signal.SIGKILL:
            kills, resume = kills + 1, True
            continue
        assert proc.returncode == 0, err
        return kills


def _crash_test(argv_for, marker_name: str, seed: int, max_kills: int = 2) -> tuple[Run, Run, int]:
    """Run ``argv_for(tag)`` uninterrupted ('full') and killed-and-resumed ('crash'); return both runs and the kills."""
    full, crash = argv_for("full"), argv_for("crash")
    span = _uninterrupted(full.argv, full.marker(marker_name))
    kills = _killed_and_resumed(crash.argv, crash.marker(marker_name), span, random.Random(seed), max_kills)
    assert kills >= 1, "the run finished before it could be killed: nothing was tested"
    for out in crash.outputs:
        assert not [p.name for p in out.rglob("*.tmp")], f"temporary files left in {out}"
    return full, crash, kills


class Run:
    """The arguments of one run, the directory its checkpoint marker lives in, and every output directory."""

    def __init__(self, argv: list[str], marker_dir: Path, outputs: list[Path]) -> None:
        self.argv, self.marker_dir, self.outputs = argv, marker_dir, outputs

    def marker(self, name: str) -> Path:
        return self.marker_dir / name


# ---------------------------------------------------------------- comparisons
def _assert_same_transfer_set(a: Path, b: Path, *, same_shards: bool = True) -> None:
    ma, mb = read_manifest(a), read_manifest(b)
    if same_shards:  # names, counts and sha256 of every shard: nothing lost, duplicated or rewritten
        assert ma["shards"] == mb["shards"]
    assert ma["count"] == mb["count"]
    for directory, manifest in ((a, ma), (b, mb)):  # every listed shard exists, no unlisted leftover
        assert sorted(p.name for p in directory.iterdir() if SHARD_FILE.match(p.name)) == \
            sorted(s["name"] for s in manifest["shards"])
    ta, tb = TransferSet(a), TransferSet(b)  # verify=True: each shard's sha256 is checked on reading
    everything = torch.arange(len(ta))
    for x, y in zip(ta.get_batch(everything), tb.get_batch(everything)):
        assert torch.equal(x, y)


def _assert_same_model(a: Path, b: Path) -> None:
    # tensors, not file bytes: safetensors writes the header's metadata keys in a per-process order
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    drop_time = lambda line: {k: v for k, v in json.loads(line).items() if "time" not in k and k != "samples_per_s"}
    lines = [[drop_time(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b)]
    assert lines[0] == lines[1]  # one line per epoch, none repeated or lost


# ---------------------------------------------------------------- SIGKILL scenarios
@pytest.mark.slow
def test_synthesize_survives_sigkill(world):
    def run(tag: str) -> Run:
        out = world["root"] / f"synth-{tag}"
        return Run(["synthesize", "--teacher", str(world["teacher"]), "--method", "deepinversion", "--count", "100",
                    "--set", "batch_size=8", "--set", "iterations=4", "--preview-every", "4", "--out", str(out),
                    "--no-progress"], out, [out])

    full, crash, _ = _crash_test(run, "synth-state.pt", seed=1)
    _assert_same_transfer_set(full.outputs[0], crash.outputs[0])
    assert len(read_manifest(crash.outputs[0])["shards"]) == 13


@pytest.mark.slow
def test_condense_survives_sigkill(world):
    def run(tag: str) -> Run:
        out = world["root"] / f"dm-{tag}"
        return Run(["condense", "--method", "dm", "--ipc", "2", "--set", TINY_NET, "--set", "batch_real=8",
                    "--set", "iterations=16", "--checkpoint-every", "1", "--data-root", str(world["data"]),
                    "--out", str(out), "--no-progress"], out, [out])

    full, crash, _ = _crash_test(run, "condense-state.pt", seed=2, max_kills=1)
    # a condensed set is one shard, renamed at each checkpoint: compare what it holds
    _assert_same_transfer_set(full.outputs[0], crash.outputs[0], same_shards=False)
    assert read_manifest(crash.outputs[0])["iterations_done"] == 16
    a, b = (load_training_state(r.outputs[0] / "condense-state.pt")["condenser"] for r in (full, crash))
    assert torch.equal(a["images"], b["images"])


@pytest.mark.slow
def test_buffer_survives_sigkill(world):
    def run(tag: str) -> Run:
        out = world["root"] / f"buffer-{tag}"
        return Run(["buffer", "--experts", "5", "--epochs", "3", "--net-kwargs", '{"width": 8, "depth": 1}',
                    "--data-root", str(world["data"]), "--out", str(out), "--no-progress"], out, [out])

    full, crash, _ = _crash_test(run, "buffer.json", seed=3, max_kills=1)
    meta = [json.loads((r.outputs[0] / "buffer.json").read_text()) for r in (full, crash)]
    assert meta[0]["experts"] == meta[1]["experts"] and len(meta[1]["experts"]) == 5  # files and sha256
    for entry in meta[1]["experts"]:
        a, b = (load_file(str(r.outputs[0] / entry["file"]))["trajectory"] for r in (full, crash))
        assert torch.equal(a, b)


@pytest.mark.slow
def test_distill_from_real_data_survives_sigkill(world):
    def run(tag: str) -> Run:
        out = world["root"] / f"kd-{tag}"
        return Run(["distill", "--teacher", str(world["teacher"]), "--student", "lenet5_half", "--epochs", "8",
                    "--batch-size", "16", "--augment", "crop-flip", "--data-root", str(world["data"]),
                    "--out", str(out), "--no-progress"], out, [out])

    full, crash, _ = _crash_test(run, "state.pt", seed=4, max_kills=1)
    _assert_same_model(full.outputs[0], crash.outputs[0])


@pytest.mark.slow
def test_live_distill_with_saved_transfer_survives_sigkill(world):
    def run(tag: str) -> Run:
        out, kept = world["root"] / f"live-{tag}", world["root"] / f"live-kept-{tag}"
        return Run(["distill", "--teacher", str(world["teacher"]), "--method", "dfad", "--student", "lenet5_half",
                    "--epochs", "6", "--steps-per-epoch", "8", "--batch-size", "8", "--set", "batch_size=8",
                    "--set", "nz=16", "--set", "ngf=8", "--set", "student_steps=2", "--save-transfer", str(kept),
                    "--data-root", str(world["data"]), "--out", str(out), "--no-progress"], out, [out, kept])

    full, crash, _ = _crash_test(run, "state.pt", seed=5)
    _assert_same_model(full.outputs[0], crash.outputs[0])
    _assert_same_transfer_set(full.outputs[1], crash.outputs[1])
    assert len(read_manifest(crash.outputs[1])["shards"]) == 6 * 8 // 2
    results = [json.loads((r.outputs[0] / "result.json").read_text()) for r in (full, crash)]
    assert results[0]["synthesis_calls"] == results[1]["synthesis_calls"] == 24


# ---------------------------------------------------------------- kills at exact points
class Killed(BaseException):
    """Stands in for SIGKILL at one exact point: what was on disk then is what a resume finds."""


def _kill_at(monkeypatch, target, name: str, call: int) -> None:
    """Raise :class:`Killed` instead of the ``call``-th call of ``target.name``."""
    original, count = getattr(target, name), [0]

    def patched(*args, **kwargs):
        count[0] += 1
        if count[0] == call:
            raise Killed
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, patched)


def _stale_temp(directory: Path, name: str) -> Path:
    """What ``atomic_path`` leaves behind when its process is killed mid-write."""
    path = directory / f".{name}.k1ll3d00.tmp"
    path.write_bytes(b"half a file")
    return path


def test_kills_between_two_writes_resume_exactly(world, tmp_path, monkeypatch):
    import datafree.synthesis.run as synthesis_run
    import datafree.train as train
    from datafree.data.transfer import TransferSetWriter

    data, teacher = str(world["data"]), str(world["teacher"])

    # synthesize: a shard is listed, but the state covering it is not saved yet (call 1: the initial state)
    syn = lambda tag: ["synthesize", "--teacher", teacher, "--method", "deepinversion", "--count", "32", "--set",
                       "batch_size=8", "--set", "iterations=2", "--out", str(tmp_path / f"syn-{tag}"), "--no-progress"]
    assert main(syn("full")) == 0
    with monkeypatch.context() as m:
        _kill_at(m, synthesis_run, "save_training_state", 3)
        with pytest.raises(Killed):
            main(syn("cut"))
    assert len(read_manifest(tmp_path / "syn-cut")["shards"]) == 2  # one more than synth-state.pt covers
    stale = _stale_temp(tmp_path / "syn-cut", "shard-00002.safetensors")
    assert main([*syn("cut"), "--resume"]) == 0
    _assert_same_transfer_set(tmp_path / "syn-full", tmp_path / "syn-cut")
    assert not stale.exists()

    # condense: the last checkpoint's state is saved, the set not yet rewritten (replace calls: iterations 0..3)
    cond = lambda tag: ["condense", "--method", "dm", "--ipc", "1", "--set", TINY_NET, "--set", "batch_real=4",
                        "--set", "iterations=3", "--checkpoint-every", "1", "--data-root", data,
                        "--out", str(tmp_path / f"dm-{tag}"), "--no-progress"]
    assert main(cond("full")) == 0
    with monkeypatch.context() as m:
        _kill_at(m, TransferSetWriter, "replace", 4)
        with pytest.raises(Killed):
            main(cond("cut"))
    assert read_manifest(tmp_path / "dm-cut")["iterations_done"] == 2
    assert main([*cond("cut"), "--resume"]) == 0
    assert read_manifest(tmp_path / "dm-cut")["iterations_done"] == 3
    _assert_same_transfer_set(tmp_path / "dm-full", tmp_path / "dm-cut", same_shards=False)

    # trainer: the last epoch's state.pt is saved, metrics.jsonl and the model are not
    kd = lambda tag: ["distill", "--teacher", teacher, "--epochs", "2", "--batch-size", "64", "--data-root", data,
                      "--out", str(tmp_path / f"kd-{tag}"), "--no-progress"]
    assert main(kd("full")) == 0
    with monkeypatch.context() as m:
        _kill_at(m, train, "atomic_write", 2)  # metrics.jsonl of epoch 2
        with pytest.raises(Killed):
            main(kd("cut"))
    assert len((tmp_path / "kd-cut" / "metrics.jsonl").read_text().splitlines()) == 1
    stale = _stale_temp(tmp_path / "kd-cut", "model.safetensors")
    assert main([*kd("cut"), "--resume"]) == 0
    _assert_same_model(tmp_path / "kd-full", tmp_path / "kd-cut")
    assert not stale.exists()


@pytest.mark.parametrize("method, extra", [
    ("fast", ["--set", "iterations=2"]),  # meta schedule: pool of batches, meta generator, blended BN statistics
    ("cmi", ["--set", "iterations=2", "--set", "bank_size=20"]),  # pool schedule with a contrastive memory bank
], ids=["fast", "cmi"])
def test_pool_and_meta_live_methods_resume_exactly(world, tmp_path, monkeypatch, method, extra):
    import datafree.train as train

    argv = lambda tag: ["distill", "--teacher", str(world["teacher"]), "--method", method, "--epochs", "3",
                        "--steps-per-epoch", "4", "--batch-size", "8", *extra, "--set", "ngf=8", "--set", "nz=16",
                        "--set", "batch_size=8", "--set", "student_steps=2", "--save-transfer",
                        str(tmp_path / f"kept-{tag}"), "--data-root", str(world["data"]),
                        "--out", str(tmp_path / f"live-{tag}"), "--no-progress"]
    assert main(argv("full")) == 0
    with monkeypatch.context() as m:
        _kill_at(m, train, "atomic_write", 2)  # right after epoch 2's state.pt
        with pytest.raises(Killed):
            main(argv("cut"))
    assert main([*argv("cut"), "--resume"]) == 0
    _assert_same_model(tmp_path / "live-full", tmp_path / "live-cut")
    _assert_same_transfer_set(tmp_path / "kept-full", tmp_path / "kept-cut")


# ---------------------------------------------------------------- non-finite losses
def _nan_after(monkeypatch, module, name: str, calls: int) -> None:
    """Make ``module.name`` return NaN from its ``calls + 1``-th call on."""
    original, count = getattr(module, name), [0]

    def patched(*args, **kwargs):
        count[0] += 1
        value = original(*args, **kwargs)
        return value * float("nan") if count[0] > calls else value

    monkeypatch.setattr(module, name, patched)


def _stops_then_resumes(monkeypatch, capsys, argv_for, module, name: str, calls: int, state: Path) -> None:
    """NaN after ``calls`` calls: one-line error, a loadable saved state, and an exact resume."""
    assert main(argv_for("full")) == 0
    capsys.readouterr()
    with monkeypatch.context() as m:
        _nan_after(m, module, name, calls)
        assert main(argv_for("nan")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite" in err[0] and err[0].startswith("datafree: error:"), err
    load_training_state(state)  # the last good state is intact
    assert main([*argv_for("nan"), "--resume"]) == 0


def test_non_finite_losses_stop_cleanly_and_resume_exactly(world, tmp_path, monkeypatch, capsys):
    import datafree.condense.dm as dm
    import datafree.synthesis.engine as engine
    import datafree.train as train

    data, teacher = str(world["data"]), str(world["teacher"])

    # trainer: distillation from real data (4 steps per epoch; NaN in epoch 2)
    kd = lambda tag: ["distill", "--teacher", teacher, "--epochs", "3", "--batch-size", "64", "--data-root", data,
                      "--out", str(tmp_path / f"kd-{tag}"), "--no-progress"]
    _stops_then_resumes(monkeypatch, capsys, kd, train, "kd_kl", 5, tmp_path / "kd-nan" / "state.pt")
    _assert_same_model(tmp_path / "kd-full", tmp_path / "kd-nan")

    # synthesizer: a pool method, NaN in the third batch's image priors
    syn = lambda tag: ["synthesize", "--teacher", teacher, "--method", "deepinversion", "--count", "32", "--set",
                       "batch_size=8", "--set", "iterations=2", "--out", str(tmp_path / f"syn-{tag}"), "--no-progress"]
    _stops_then_resumes(monkeypatch, capsys, syn, engine, "total_variation", 4, tmp_path / "syn-nan" / "synth-state.pt")
    _assert_same_transfer_set(tmp_path / "syn-full", tmp_path / "syn-nan")

    # condenser: DM, NaN at iteration 3 of 5 (checkpoint every 2)
    cond = lambda tag: ["condense", "--method", "dm", "--ipc", "1", "--set", TINY_NET, "--set", "batch_real=4",
                        "--set", "iterations=5", "--checkpoint-every", "2", "--data-root", data,
                        "--out", str(tmp_path / f"dm-{tag}"), "--no-progress"]
    _stops_then_resumes(monkeypatch, capsys, cond, dm, "mean_embedding_distance", 2,
                        tmp_path / "dm-nan" / "condense-state.pt")
    _assert_same_transfer_set(tmp_path / "dm-full", tmp_path / "dm-nan", same_shards=False)

    # live adversarial synthesis: the generator's loss turns NaN in epoch 2, after shards were appended
    live = lambda tag: ["distill", "--teacher", teacher, "--method", "dfad", "--epochs", "3", "--steps-per-epoch", "4",
                        "--batch-size", "8", "--set", "batch_size=8", "--set", "nz=16", "--set", "ngf=8",
                        "--set", "student_steps=1", "--save-transfer", str(tmp_path / f"kept-{tag}"),
                        "--data-root", data, "--out", str(tmp_path / f"live-{tag}"), "--no-progress"]
    _stops_then_resumes(monkeypatch, capsys, live, engine, "disagreement", 6, tmp_path / "live-nan" / "state.pt")
    _assert_same_model(tmp_path / "live-full", tmp_path / "live-nan")
    _assert_same_transfer_set(tmp_path / "kept-full", tmp_path / "kept-nan")


def test_live_resume_refuses_a_changed_source(world, tmp_path, capsys):
    data, teacher = str(world["data"]), str(world["teacher"])
    argv = ["distill", "--teacher", teacher, "--method", "dfad", "--epochs", "1", "--steps-per-epoch", "2",
            "--batch-size", "8", "--set", "batch_size=8", "--set", "nz=16", "--set", "ngf=8",
            "--data-root", data, "--out", str(tmp_path / "live"), "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv, "--resume", "--save-transfer", str(tmp_path / "kept")]) == 2
    assert "without --save-transfer" in capsys.readouterr().err
    assert main([("nz=8" if a == "nz=16" else a) for a in argv] + ["--resume"]) == 2
    assert "other settings (nz)" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_suite_survives_sigkill(fmnist_root, tmp_path):
    """``datafree bench run smoke`` killed (up to three times) and simply run again ends as an uninterrupted run."""
    from datafree.bench import read_rows
    from datafree.bench.runner import RESULTS as RESULTS_FILE

    argv = lambda out: ["bench", "run", "smoke", "--out", str(out), "--data-root", str(fmnist_root)]
    full, crash = tmp_path / "full", tmp_path / "crash"
    # the span from the first run directory (the teacher's) appearing to the end of an uninterrupted suite
    span = _uninterrupted(argv(full), full / "teachers")
    rng, kills, max_kills = random.Random(7), 0, 3
    while True:
        before = _mtime(crash / RESULTS_FILE)
        proc = _launch(argv(crash))  # no flag: an interrupted suite continues where it stopped
        if kills < max_kills:
            # the first time: once the first run directory exists; then: once another row is written
            started = (lambda: (crash / "teachers").exists()) if kills == 0 else \
                (lambda: _mtime(crash / RESULTS_FILE) not in (None, before))
            while proc.poll() is None and not started():
                time.sleep(0.005)
            if proc.poll() is None:
                time.sleep(rng.uniform(0.0, 0.7 if kills == 0 else 0.4) * span)  # later: less is left
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            continue
        assert proc.returncode == 0, err
        break
    assert kills >= 1, "the suite finished before it could be killed: nothing was tested"
    assert not [str(p) for p in crash.rglob("*.tmp")], "temporary files left behind"

    # every line whole (a torn line would swallow the row appended after it), each run id exactly once
    lines = (crash / RESULTS_FILE).read_text().splitlines()
    ids = [json.loads(line)["run_id"] for line in lines]
    assert len(ids) == len(set(ids)), ids
    rows = [{r["run_id"]: r for r in read_rows(out)} for out in (full, crash)]
    assert rows[0].keys() == rows[1].keys() == set(ids) and len(ids) == 8  # with the random controls
    for run_id, row in rows[0].items():
        assert rows[1][run_id]["accuracy"] == row["accuracy"], run_id
        model = Path(row["student_dir"]).relative_to(full)
        _assert_same_model(full / model, crash / model)  # weights, and one metrics line per epoch
