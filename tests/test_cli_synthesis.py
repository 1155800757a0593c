import json

import pytest
import torch

from datafree.cli import main
from datafree.data.transfer import TransferSet


@pytest.fixture
def bn_teacher(fmnist_root, tmp_path):
    out = tmp_path / "teacher"
    assert main(["train-teacher", "--arch", "resnet8", "--arch-kwargs", '{"width": 4}', "--epochs", "1",
                 "--data-root", str(fmnist_root), "--out", str(out), "--no-progress", "--batch-size", "64"]) == 0
    return out


def test_synthesize_inspect_distill(bn_teacher, fmnist_root, tmp_path, capsys):
    tset = tmp_path / "set"
    small = ["--set", "batch_size=8", "--set", "iterations=2"]
    argv = ["synthesize", "--teacher", str(bn_teacher), "--method", "deepinversion", "--count", "20",
            "--out", str(tset), "--no-progress", *small]
    assert main(argv) == 0
    ts = TransferSet(tset)
    assert len(ts) == 20 and len(ts.manifest["shards"]) == 3
    assert ts.manifest["method"] == "deepinversion" and ts.manifest["config"]["iterations"] == 2
    assert (tset / "preview.png").stat().st_size > 0
    # running again is refused; --resume with a larger count extends without duplicates
    assert main(argv) == 2
    assert "already holds a transfer set" in capsys.readouterr().err
    assert main([*argv[:6], "28", *argv[7:], "--resume"]) == 0
    assert len(TransferSet(tset)) == 28

    assert main(["inspect", str(tset)]) == 0
    out = capsys.readouterr().out
    assert "deepinversion" in out and "28 images" in out
    assert (tset / "grids" / "all-classes.png").is_file() and list((tset / "grids").glob("class-*.png"))
    # --count: the first N images' classes, the ones `distill --transfer-count N` reads
    assert main(["inspect", str(tset), "--count", "12"]) == 0
    assert (tset / "grids-first-12" / "all-classes.png").is_file()  # beside the whole set's grids, not over them
    out = capsys.readouterr().out
    first = torch.bincount(TransferSet(tset).get_batch(torch.arange(12))[1], minlength=10).tolist()
    assert "the first 12 of 28 images" in out and "per class: " + ", ".join(
        f"{n}={c}" for n, c in zip(ts.spec.class_names, first)) in out
    assert main(["inspect", str(tset), "--count", "29"]) == 2
    assert "holds 28 images; cannot read the first 29" in capsys.readouterr().err

    student = tmp_path / "student"
    assert main(["distill", "--teacher", str(bn_teacher), "--transfer", str(tset), "--student", "lenet5_half",
                 "--epochs", "1", "--batch-size", "8", "--data-root", str(fmnist_root), "--out", str(student),
                 "--no-progress"]) == 0
    result = json.loads((student / "result.json").read_text())
    assert result["source"] == "transfer" and result["transfer_method"] == "deepinversion"
    # --transfer twice: both sets as one (here the same set twice: twice the images)
    doubled = tmp_path / "doubled"
    assert main(["distill", "--teacher", str(bn_teacher), "--transfer", str(tset), "--transfer", str(tset),
                 "--student", "lenet5_half", "--epochs", "1", "--batch-size", "8", "--data-root", str(fmnist_root),
                 "--out", str(doubled), "--no-progress"]) == 0
    result = json.loads((doubled / "result.json").read_text())
    assert result["transfers"] == [str(tset)] * 2 and result["transfer"] == str(tset)
    # --transfer-count: the first N images of each set; more than a set holds is a one-line error
    first = ["distill", "--teacher", str(bn_teacher), "--transfer", str(tset), "--student", "lenet5_half", "--epochs",
             "1", "--batch-size", "8", "--data-root", str(fmnist_root), "--no-progress", "--transfer-count"]
    assert main([*first, "12", "--out", str(tmp_path / "first")]) == 0
    assert json.loads((tmp_path / "first" / "result.json").read_text())["transfer_count"] == 12
    assert main([*first, "29", "--out", str(tmp_path / "more")]) == 2
    assert "holds 28 images; cannot read the first 29" in capsys.readouterr().err
    assert not (tmp_path / "more").exists()
    # --method as well: the live pool starts from the set and grows by batches made against the student
    grown = tmp_path / "grown"
    assert main(["distill", "--teacher", str(bn_teacher), "--transfer", str(tset), "--method", "adi", *small,
                 "--set", "student_steps=4", "--student", "lenet5_half", "--epochs", "1", "--steps-per-epoch", "8",
                 "--batch-size", "8", "--data-root", str(fmnist_root), "--out", str(grown), "--no-progress"]) == 0
    result = json.loads((grown / "result.json").read_text())
    assert result["source"] == "transfer+live" and result["transfer"] == str(tset) and result["synthetic_images"] == 16
    assert main(["distill", "--transfer", str(tset), "--method", "adi", "--epochs", "1", "--no-test",
                 "--out", str(tmp_path / "s3"), "--no-progress"]) == 2
    assert "needs --teacher" in capsys.readouterr().err
    # without a teacher the stored logits are used; without --no-test a test split is needed
    assert main(["distill", "--transfer", str(tset), "--epochs", "1", "--batch-size", "8", "--no-test",
                 "--out", str(tmp_path / "s2"), "--no-progress"]) == 0


def test_live_method_distill_with_saved_transfer(bn_teacher, fmnist_root, tmp_path):
    out, keep = tmp_path / "student", tmp_path / "kept"
    assert main(["distill", "--teacher", str(bn_teacher), "--method", "dfad", "--student", "lenet5_half",
                 "--epochs", "2", "--steps-per-epoch", "5", "--batch-size", "8", "--set", "batch_size=8",
                 "--set", "nz=16", "--save-transfer", str(keep), "--data-root", str(fmnist_root),
                 "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["source"] == "live" and result["synthesis_calls"] == 2  # 10 steps, 5 student steps per call
    assert result["synthesis_config"]["adv_kind"] == "l1" and result["config"]["temperature"] == 1.0
    assert len(TransferSet(keep)) == 16


def test_bn_method_on_teacher_without_bn_is_one_line(fmnist_root, tmp_path, capsys):
    teacher = tmp_path / "lenet"
    assert main(["train-teacher", "--arch", "lenet5", "--epochs", "1", "--data-root", str(fmnist_root),
                 "--out", str(teacher), "--no-progress"]) == 0
    code = main(["synthesize", "--teacher", str(teacher), "--method", "deepinversion", "--count", "8",
                 "--out", str(tmp_path / "s"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no BatchNorm" in err[0]
    assert not (tmp_path / "s").exists()  # refused before anything was written
    code = main(["synthesize", "--teacher", str(teacher), "--method", "dfad", "--count", "8",
                 "--out", str(tmp_path / "s"), "--no-progress"])
    assert code == 2 and "distill --method dfad" in capsys.readouterr().err


def test_meta_generator_without_adversary_synthesizes_a_stored_set(bn_teacher, tmp_path, capsys):
    """Fast-DFKD's meta-generator needs the student only for its adversarial term: without it the
    images can be stored (the benchmark's fast5-stored); with it, synthesize points to distill."""
    small = ["--set", "batch_size=8", "--set", "iterations=2", "--set", "nz=16", "--set", "ngf=4"]
    tset = tmp_path / "set"
    assert main(["synthesize", "--teacher", str(bn_teacher), "--method", "fast5", "--set", "adv=0", *small,
                 "--count", "24", "--out", str(tset), "--no-progress"]) == 0
    ts = TransferSet(tset)
    assert len(ts) == 24 and ts.manifest["config"]["schedule"] == "meta" and ts.manifest["config"]["adv"] == 0
    images = ts.get_batch(torch.arange(24))[0]
    assert not torch.equal(images[:8], images[8:16])  # each batch is new, from the meta-updated generator
    assert main(["synthesize", "--teacher", str(bn_teacher), "--method", "fast5", *small, "--count", "8",
                 "--out", str(tmp_path / "adv"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "datafree distill --method fast5" in err[0] and not (tmp_path / "adv").exists()


def test_a_part_of_a_set_is_refused_where_it_cannot_go(bn_teacher, tmp_path, capsys):
    """--part K/N: a malformed part, or a part into a set made whole, is one line and changes nothing."""
    tset = tmp_path / "set"
    argv = ["synthesize", "--teacher", str(bn_teacher), "--method", "deepinversion", "--count", "8",
            "--out", str(tset), "--no-progress", "--set", "batch_size=4", "--set", "iterations=1"]
    for bad in ("2/2", "1", "a/b", "-1/2"):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--part", bad])
        assert e.value.code == 2 and "--part" in capsys.readouterr().err
    assert not tset.exists()
    assert main(argv) == 0  # a set made by one process
    before = sorted(p.name for p in tset.iterdir())
    assert main([*argv, "--part", "1/2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "made by 1 process(es), not in 2 parts" in err[0]
    assert sorted(p.name for p in tset.iterdir()) == before
    # a part made again from scratch: the merged manifest that listed its old shards is dropped first
    parts = tmp_path / "parts"
    in_parts = [*argv[:8], str(parts), *argv[9:]]
    for k in (0, 1):
        assert main([*in_parts, "--part", f"{k}/2"]) == 0
    old = [s["sha256"] for s in TransferSet(parts).manifest["shards"]]
    import shutil

    shutil.rmtree(parts / "rank-1")
    capsys.readouterr()
    assert main([*in_parts, "--part", "1/2", "--seed", "1"]) == 2  # a part of another seed is never merged in
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rank-0 was made with another --seed than 1" in err[0]
    assert not (parts / "manifest.json").exists()
    shutil.rmtree(parts / "rank-1")
    assert main([*in_parts, "--part", "1/2"]) == 0  # made again as it was: the same set
    assert [s["sha256"] for s in TransferSet(parts).manifest["shards"]] == old  # TransferSet checks every shard
    # extending a complete set: the merged manifest goes until every part holds its larger share
    assert main([*in_parts[:6], "16", *in_parts[7:], "--part", "0/2", "--resume"]) == 0
    assert not (parts / "manifest.json").exists()
    assert main([*in_parts[:6], "16", *in_parts[7:], "--part", "1/2", "--resume"]) == 0
    assert len(TransferSet(parts)) == 16
    # parts of another recipe are refused, never merged into one set
    mixed = [*argv[:8], str(tmp_path / "mixed"), *argv[9:]]
    assert main([*mixed, "--part", "0/2"]) == 0
    capsys.readouterr()
    assert main([*mixed[:-1], "iterations=2", "--part", "1/2"]) == 2  # another recipe for part 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differ in config" in err[0] and not (tmp_path / "mixed" / "manifest.json").exists()


def _two_part_set(teacher, tset):
    """A complete set of 8 images made as parts 0/2 and 1/2 (batches of 4, one pixel step)."""
    argv = ["synthesize", "--teacher", str(teacher), "--method", "deepinversion", "--count", "8",
            "--out", str(tset), "--no-progress", "--set", "batch_size=4", "--set", "iterations=1"]
    for k in (0, 1):
        assert main([*argv, "--part", f"{k}/2"]) == 0
    return tset


def test_parts_finishing_together_merge_every_parts_final_fields(bn_teacher, tmp_path, monkeypatch):
    """The race of two parts finishing at once: part 0's merge read part 1's manifest before part 1 wrote its
    final fields, part 1 then merged, and part 0's merge wrote last. Merges take turns on the set, so the last
    one to write has read every part's final manifest."""
    import threading

    from datafree.io import write_json
    from datafree.synthesis import run

    tset = _two_part_set(bn_teacher, tmp_path / "set")
    final = json.loads((tset / "rank-1" / "manifest.json").read_text())
    write_json(tset / "rank-1" / "manifest.json", {**final, "peak_memory_mb": 0.0})  # before its last update
    read, go = threading.Event(), threading.Event()
    real_read = run.read_manifest

    def slow_read(path):
        manifest = real_read(path)
        if str(path).endswith("rank-1") and not read.is_set():
            read.set()  # the early merge has part 1's manifest as it was, and is held here
            go.wait(10)
        return manifest

    monkeypatch.setattr(run, "read_manifest", slow_read)
    early = threading.Thread(target=run.merge_if_complete, args=(tset, 2, 8, 4, 0))
    early.start()
    assert read.wait(10)
    write_json(tset / "rank-1" / "manifest.json", {**final, "peak_memory_mb": 1e9})  # part 1's last update
    late = threading.Thread(target=run.merge_if_complete, args=(tset, 2, 8, 4, 0))
    late.start()
    late.join(1)  # without the turns it finishes here, before the early merge writes
    go.set()
    early.join(10)
    late.join(10)
    assert json.loads((tset / "manifest.json").read_text())["peak_memory_mb"] == 1e9


def test_a_part_made_before_a_config_field_was_added_still_merges(bn_teacher, tmp_path):
    """A part made by an older version has no record of a field added since (with its old behaviour as default):
    it is the same recipe, so it merges; a part whose recipe really differs is still refused."""
    from datafree.errors import DatafreeError
    from datafree.io import write_json
    from datafree.synthesis import run

    tset = _two_part_set(bn_teacher, tmp_path / "set")
    part0 = json.loads((tset / "rank-0" / "manifest.json").read_text())
    old = {k: v for k, v in part0["config"].items() if k != "augment_flip"}
    write_json(tset / "rank-0" / "manifest.json", {**part0, "config": old})
    (tset / "manifest.json").unlink()
    assert run.merge_if_complete(tset, 2, 8, 4, 0)["count"] == 8
    write_json(tset / "rank-0" / "manifest.json", {**part0, "config": {**old, "augment_flip": False}})
    with pytest.raises(DatafreeError, match="differ in config"):
        run.merge_if_complete(tset, 2, 8, 4, 0)


def test_the_first_n_images_of_a_set_are_the_set_of_count_n(bn_teacher, tmp_path):
    """Why --transfer-count can stand for a smaller set: synthesis writes batch by batch from the seed, and
    nothing in a batch depends on how many images were asked for (a meta-generator, Fast-DFKD's schedule)."""
    small = ["--method", "fast", "--set", "adv=0", "--set", "batch_size=8", "--set", "iterations=1", "--set", "ngf=8",
             "--seed", "3", "--no-progress", "--teacher", str(bn_teacher)]
    assert main(["synthesize", *small, "--count", "24", "--out", str(tmp_path / "big")]) == 0
    assert main(["synthesize", *small, "--count", "16", "--out", str(tmp_path / "small")]) == 0
    prefix, whole = TransferSet(tmp_path / "big", count=16), TransferSet(tmp_path / "small")
    index = torch.arange(16)
    assert len(prefix) == 16 and all(torch.equal(a, b) for a, b in zip(prefix.get_batch(index), whole.get_batch(index)))
    assert not torch.equal(TransferSet(tmp_path / "big").get_batch(torch.arange(16, 24))[0],
                           whole.get_batch(torch.arange(8))[0])  # the comparison can fail: batches differ
