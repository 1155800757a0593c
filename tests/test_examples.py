"""Every script in examples/ runs end to end on tiny written data with small flags, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_mnist_family

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """Tiny Fashion-MNIST files and a LeNet-5-BN teacher trained on them for one epoch."""
    import datafree.api as df

    root = tmp_path_factory.mktemp("examples")
    data = write_mnist_family(root / "fmnist", n_train=320, n_test=160)
    train, test = df.load_dataset("fashion-mnist", "train", data), df.load_dataset("fashion-mnist", "test", data)
    df.train_teacher(root / "teacher", "lenet5_bn", train, test, df.TrainConfig(epochs=1, batch_size=64, progress=False))
    return data, root / "teacher"


def run_example(name: str, *args: str, data: Path) -> str:
    env = {**os.environ, "DATAFREE_DATA": str(data), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_example_is_tested():
    tested = {"synthesize_from_your_checkpoint.py", "distill_privately.py", "benchmark_against_kd.py",
              "condense_and_train.py", "custom_loss_term.py", "quantize_data_free.py", "distill_your_teacher.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_synthesize_from_your_checkpoint(tiny, tmp_path):
    data, _ = tiny
    out = run_example("synthesize_from_your_checkpoint.py", "--checkpoint", str(tmp_path / "net.pt"),
                      "--make-checkpoint", "--count", "16", "--iterations", "2", "--batch-size", "8",
                      "--out", str(tmp_path / "set"), data=data)
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["count"] == 16 and manifest["teacher"]["arch"] == "synthesize_from_your_checkpoint:SmallNet"
    assert manifest["spec_source"] == "flags" and "16 images" in out


def test_distill_privately(tiny, tmp_path):
    data, teacher = tiny
    out = run_example("distill_privately.py", "--teacher", str(teacher), "--count", "32", "--iterations", "2",
                      "--batch-size", "16", "--epochs", "1", "--audit-count", "32", "--data-root", str(data),
                      "--out", str(tmp_path / "p"), data=data)
    assert "synthetic images only" in out and (tmp_path / "p" / "audit" / "audit.json").is_file()
    result = json.loads((tmp_path / "p" / "student" / "result.json").read_text())
    assert "test_accuracy" not in result["metrics"]  # trained and saved without any dataset file


def test_benchmark_against_kd(tiny, tmp_path):
    data, _ = tiny
    out = run_example("benchmark_against_kd.py", "--tiny", "--data-root", str(data), "--device", "cpu",
                      "--out", str(tmp_path / "b"), data=data)
    assert "kd:" in out and "df:deepinversion:" in out
    assert (tmp_path / "b" / "accuracy.png").is_file() and (tmp_path / "b" / "report.md").is_file()


def test_condense_and_train(tiny, tmp_path):
    data, _ = tiny
    out = run_example("condense_and_train.py", "--ipc", "2", "--iterations", "2", "--batch-real", "8", "--epochs", "2",
                      "--data-root", str(data), "--out", str(tmp_path / "c"), data=data)
    assert "20 condensed images" in out


def test_custom_loss_term(tiny, tmp_path):
    data, teacher = tiny
    out = run_example("custom_loss_term.py", "--teacher", str(teacher), "--count", "16", "--iterations", "3",
                      "--batch-size", "16", "--weight", "1.0", "--out", str(tmp_path / "e"), data=data)
    assert "with the diversity term" in out
    manifest = json.loads((tmp_path / "e" / "diverse" / "manifest.json").read_text())
    assert manifest["custom_terms"] == ["diversity"]


def test_quantize_data_free(tiny, tmp_path):
    data, teacher = tiny
    out = run_example("quantize_data_free.py", "--teacher", str(teacher), "--count", "32", "--epochs", "1",
                      "--out", str(tmp_path / "q"), data=data)
    assert "int8" in out


def test_distill_your_teacher(tiny, tmp_path):
    data, teacher = tiny
    out = run_example("distill_your_teacher.py", "--teacher", str(teacher), "--epochs", "1",
                      "--out", str(tmp_path / "s.safetensors"), data=data)
    assert "student test accuracy" in out


def test_api_doc_is_current():
    """docs/api.md is generated from datafree.api's docstrings; a changed call must regenerate it."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "api_doc.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
