import json
import subprocess
import sys

import pytest

from datafree.cli import main

COMMANDS = ["train-teacher", "distill", "evaluate"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: datafree" in out and (command is None or "--dataset" in out)


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "datafree.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("datafree ")


def test_end_to_end_teacher_distill_evaluate(fmnist_root, tmp_path, capsys):
    common = ["--dataset", "fashion-mnist", "--data-root", str(fmnist_root), "--no-progress", "--batch-size", "32"]
    teacher = tmp_path / "teacher"
    assert main(["train-teacher", "--arch", "lenet5", "--epochs", "3", "--out", str(teacher), *common]) == 0
    assert (teacher / "model.safetensors").is_file() and (teacher / "model.json").is_file()
    result = json.loads((teacher / "result.json").read_text())
    assert result["config"]["epochs"] == 3 and result["metrics"]["epoch"] == 3
    assert len((teacher / "metrics.jsonl").read_text().splitlines()) == 3

    student = tmp_path / "student"
    argv = ["distill", "--teacher", str(teacher), "--student", "lenet5_half", "--epochs", "2",
            "--alpha", "0.5", "--out", str(student), *common]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["evaluate", str(student), "--json", *common[:4]]) == 0
    record = json.loads(capsys.readouterr().out)
    stored = json.loads((student / "result.json").read_text())
    assert record["accuracy"] == pytest.approx(stored["metrics"]["test_accuracy"])
    assert stored["teacher"]["sha256"] == json.loads((teacher / "model.json").read_text())["sha256"]

    # a second run into the same directory is refused; --resume of a finished run is a no-op
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "datafree.cli", *args], capture_output=True, text=True)


def test_user_errors_are_one_line_without_traceback(fmnist_root, tmp_path):
    cases = [
        (["evaluate", str(tmp_path / "missing.safetensors"), "--data-root", str(fmnist_root)], "not found"),
        (["train-teacher", "--arch", "nope", "--data-root", str(fmnist_root), "--out", str(tmp_path / "r")],
         "unknown model"),
        (["train-teacher", "--lr", "-1", "--data-root", str(fmnist_root), "--out", str(tmp_path / "r")],
         "learning rate"),
        (["train-teacher", "--data-root", str(tmp_path / "nothing"), "--dataset", "mnist", "--out", str(tmp_path / "r")],
         "not found"),
    ]
    for argv, expected in cases:
        proc = run_cli(*argv)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("datafree: error:") and expected in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "state.pt").exists()


def test_foreign_output_directory_is_refused(fmnist_root, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    code = main(["train-teacher", "--epochs", "1", "--data-root", str(fmnist_root), "--out", str(out), "--no-progress"])
    assert code == 2 and "not a datafree run" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious"


def test_distill_from_foreign_pt_teacher(fmnist_root, tmp_path, capsys):
    import torch

    from datafree.data import FASHION_MNIST
    from datafree.models import build_model

    teacher = build_model("lenet5", FASHION_MNIST, seed=0)
    torch.save({"epoch": 9, "state_dict": {f"module.{k}": v for k, v in teacher.state_dict().items()}},
               tmp_path / "their_teacher.pth")
    common = ["--data-root", str(fmnist_root), "--no-progress", "--epochs", "1", "--batch-size", "64"]
    out = tmp_path / "student"
    assert main(["distill", "--teacher", str(tmp_path / "their_teacher.pth"), "--out", str(out), *common]) == 2
    assert "pass --teacher-arch" in capsys.readouterr().err
    assert main(["distill", "--teacher", str(tmp_path / "their_teacher.pth"), "--teacher-arch", "lenet5",
                 "--out", str(out), *common]) == 0
    assert main(["distill", "--teacher", str(tmp_path / "their_teacher.pth"), "--teacher-arch", "resnet8",
                 "--out", str(tmp_path / "s2"), *common]) == 2
    assert "does not fit resnet8" in capsys.readouterr().err
