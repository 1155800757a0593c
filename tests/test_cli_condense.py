"""CLI smoke for condensation: condense, inspect, evaluate-set, distill, buffer, export-set, import-set."""

from __future__ import annotations

import json

import pytest
import torch

from datafree.cli import main
from datafree.data.transfer import TransferSet

SMALL = ["--set", 'net_kwargs={"width": 8, "depth": 1}', "--set", "batch_real=4"]
EVAL_SMALL = ["--arch-kwargs", '{"width": 8, "depth": 1}', "--models", "2", "--epochs", "2", "--augment", "none"]


def test_condense_evaluate_inspect_and_distill(fmnist_root, tmp_path, capsys):
    out = tmp_path / "dm"
    argv = ["condense", "--method", "dm", "--ipc", "2", *SMALL, "--set", "iterations=3", "--out", str(out),
            "--data-root", str(fmnist_root), "--no-progress", "--checkpoint-every", "2"]
    assert main(argv) == 0
    ts = TransferSet(out)
    assert len(ts) == 20 and ts.manifest["kind"] == "condensed" and ts.manifest["iterations_done"] == 3
    assert ts.manifest["protocol"]["normalisation"]["mean"] == [0.2861] and not ts.soft_labels
    assert (out / "preview.png").stat().st_size > 0
    assert main(argv) == 2 and "already holds" in capsys.readouterr().err
    # --resume with more iterations extends the same set
    assert main([("iterations=5" if a == "iterations=3" else a) for a in argv] + ["--resume"]) == 0
    assert TransferSet(out).manifest["iterations_done"] == 5

    assert main(["inspect", str(out)]) == 0
    assert "condensed transfer set" in capsys.readouterr().out

    result = tmp_path / "eval.json"
    assert main(["evaluate-set", str(out), *EVAL_SMALL, "--data-root", str(fmnist_root), "--out", str(result),
                 "--no-progress"]) == 0
    record = json.loads(result.read_text())
    assert len(record["accuracies"]) == 2 and record["protocol"]["epochs"] == 2 and record["method"] == "dm"
    assert "test accuracy" in capsys.readouterr().out
    # --fair: the random real subset of the same IPC under the same protocol, HLR against --real-accuracy
    assert main(["evaluate-set", str(out), *EVAL_SMALL, "--data-root", str(fmnist_root), "--out", str(result),
                 "--no-progress", "--fair", "--real-accuracy", "90"]) == 0
    fair = json.loads(result.read_text())["fair"]
    assert fair["random_ipc"] == 2 and fair["random_control"]["protocol"] == record["protocol"]
    assert fair["hlr"]["mean"] == pytest.approx(90 - record["accuracy_mean"])
    assert "IOR" in capsys.readouterr().out

    student = tmp_path / "student"
    assert main(["distill", "--transfer", str(out), "--student", "lenet5_half", "--alpha", "1", "--epochs", "1",
                 "--batch-size", "8", "--data-root", str(fmnist_root), "--out", str(student), "--no-progress"]) == 0
    assert (student / "model.safetensors").is_file()


def test_evaluate_set_resume_extends_to_more_models(fmnist_root, tmp_path, capsys):
    out = tmp_path / "random"
    assert main(["condense", "--method", "random", "--ipc", "1", "--out", str(out), "--data-root", str(fmnist_root),
                 "--no-progress"]) == 0
    base = ["evaluate-set", str(out), *EVAL_SMALL, "--data-root", str(fmnist_root), "--no-progress"]
    models = base.index("--models") + 1
    once, grown = tmp_path / "once.json", tmp_path / "grown.json"
    assert main([*base[:models], "3", *base[models + 1:], "--out", str(once)]) == 0
    assert main([*base[:models], "1", *base[models + 1:], "--out", str(grown)]) == 0
    assert main([*base[:models], "3", *base[models + 1:], "--out", str(grown), "--resume"]) == 0
    a, b = json.loads(once.read_text()), json.loads(grown.read_text())
    assert a["accuracies"] == b["accuracies"] and b["complete"] and len(b["accuracies"]) == 3
    # a record written before the protocol had its bf16 field still resumes (the field's default is what it ran),
    # and a bf16 evaluation cannot extend a float32 one
    del a["protocol"]["bf16"]
    once.write_text(json.dumps(a))
    assert main([*base[:models], "3", *base[models + 1:], "--out", str(once), "--resume"]) == 0
    assert json.loads(once.read_text())["accuracies"] == b["accuracies"]
    capsys.readouterr()
    assert main([*base[:models], "3", *base[models + 1:], "--bf16", "--out", str(once), "--resume"]) == 2
    assert "another set or protocol" in capsys.readouterr().err
    # another protocol cannot extend it, and a corrupted file is one line, not a traceback
    assert main([*base[:models], "3", *base[models + 1:], "--epochs", "3", "--out", str(grown), "--resume"]) == 2
    assert "another set or protocol" in capsys.readouterr().err
    grown.write_text("{not json")
    assert main([*base, "--out", str(grown), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot extend" not in err and "not an evaluation" in err and "Traceback" not in err


def test_kd_protocol_needs_a_teacher(fmnist_root, tmp_path, capsys):
    out = tmp_path / "random"
    assert main(["condense", "--method", "random", "--ipc", "1", "--out", str(out), "--data-root", str(fmnist_root),
                 "--no-progress"]) == 0
    assert main(["evaluate-set", str(out), "--protocol", "kd", *EVAL_SMALL, "--data-root", str(fmnist_root),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "kd protocol needs" in err and "Traceback" not in err


def test_buffer_then_mtt(fmnist_root, tmp_path):
    buffer = tmp_path / "buffer"
    net = ["--net-kwargs", '{"width": 4, "depth": 1}']
    assert main(["buffer", "--out", str(buffer), "--experts", "2", "--epochs", "2", *net, "--data-root",
                 str(fmnist_root), "--no-progress"]) == 0
    assert len(json.loads((buffer / "buffer.json").read_text())["experts"]) == 2
    out = tmp_path / "mtt"
    assert main(["condense", "--method", "mtt", "--ipc", "1", "--set", f"buffer={json.dumps(str(buffer))}",
                 "--set", 'net_kwargs={"width": 4, "depth": 1}', "--set", "iterations=2", "--set", "syn_steps=2",
                 "--set", "expert_epochs=1", "--out", str(out), "--data-root", str(fmnist_root), "--no-progress"]) == 0
    assert TransferSet(out).manifest["syn_lr"] > 0


def test_export_and_import_round_trip(fmnist_root, tmp_path):
    out = tmp_path / "random"
    assert main(["condense", "--method", "random", "--ipc", "1", "--out", str(out), "--data-root", str(fmnist_root),
                 "--no-progress"]) == 0
    res = tmp_path / "res_random.pt"
    assert main(["export-set", str(out), "--layout", "dc", "--out", str(res)]) == 0
    back = tmp_path / "back"
    assert main(["import-set", str(res), "--out", str(back), "--dataset", "fashion-mnist"]) == 0
    a, b = TransferSet(out).get_batch(torch.arange(10)), TransferSet(back).get_batch(torch.arange(10))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert main(["export-set", str(out), "--layout", "dc", "--out", str(res)]) == 2  # no silent overwrite
