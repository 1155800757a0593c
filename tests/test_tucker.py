"""Tucker-2 compression: exact at full rank, a checkpoint like any other, and the CLI around it."""

from __future__ import annotations

import json

import pytest
import torch

from datafree.checkpoint import ModelInfo, load_model, save_model
from datafree.cli import main
from datafree.data.spec import FASHION_MNIST
from datafree.errors import DatafreeError
from datafree.models import build_model, count_parameters
from datafree.models.tucker import apply_tucker, compress, tucker2, tucker_ranks


def test_full_rank_factorisation_is_exact_and_lower_rank_is_the_hosvd() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 10, 3, stride=2, padding=1, bias=True)
    x = torch.randn(4, 6, 9, 9)
    torch.testing.assert_close(tucker2(conv, 6, 10)(x), conv(x), atol=1e-5, rtol=1e-4)
    low = tucker2(conv, 3, 4)
    assert [m.weight.shape for m in low] == [(3, 6, 1, 1), (4, 3, 3, 3), (10, 4, 1, 1)]
    u_out = low[2].weight[:, :, 0, 0]
    torch.testing.assert_close(u_out.T @ u_out, torch.eye(4), atol=1e-5, rtol=0)  # orthonormal factors
    # the best rank-4 output subspace: the residual is orthogonal to it
    w = conv.weight.flatten(1)
    residual = w - u_out @ (u_out.T @ w)
    torch.testing.assert_close(u_out.T @ residual, torch.zeros(4, w.shape[1]), atol=1e-5, rtol=0)


def test_ranks_skip_a_one_channel_stem_and_check_their_range() -> None:
    model = build_model("resnet8", FASHION_MNIST, seed=0, width=4)
    ranks = tucker_ranks(model, 0.5)
    assert "conv1" not in ranks and ranks["layers.0.0.conv1"] == [2, 2] and ranks["layers.2.0.conv2"] == [8, 8]
    assert all(name.endswith(("conv1", "conv2")) for name in ranks)  # 1x1 shortcuts are left alone
    for bad in (0.0, 1.5):
        with pytest.raises(DatafreeError, match="rank ratio"):
            tucker_ranks(model, bad)
    with pytest.raises(DatafreeError, match="do not fit"):
        apply_tucker(model, {"layers.0.0.conv1": [9, 2]})
    with pytest.raises(DatafreeError, match="no convolution"):
        compress(build_model("mlp", FASHION_MNIST), "mlp", {}, 0.5)


def test_compressed_model_saves_and_loads_as_the_tucker_architecture(tmp_path) -> None:
    teacher = build_model("resnet8", FASHION_MNIST, seed=0, width=4).eval()
    model, kwargs = compress(teacher, "resnet8", {"width": 4}, 0.5)
    assert count_parameters(model) < count_parameters(teacher)
    path = save_model(tmp_path / "model.safetensors", model, ModelInfo("tucker", FASHION_MNIST, kwargs))
    loaded, info = load_model(path)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x))
    assert info.arch == "tucker" and info.arch_kwargs["ranks"] == kwargs["ranks"]
    full, _ = compress(teacher, "resnet8", {"width": 4}, 1.0)  # full rank: the teacher's function
    torch.testing.assert_close(full.eval()(x), teacher(x), atol=1e-4, rtol=1e-4)


def test_cli_compress_then_distill_from_it(fmnist_root, tmp_path, capsys) -> None:
    teacher, small = tmp_path / "teacher", tmp_path / "small"
    assert main(["train-teacher", "--arch", "resnet8", "--arch-kwargs", '{"width": 4}', "--epochs", "1",
                 "--data-root", str(fmnist_root), "--out", str(teacher), "--no-progress", "--batch-size", "64"]) == 0
    assert main(["compress", "--teacher", str(teacher), "--rank-ratio", "0.5", "--out", str(small)]) == 0
    assert "convolutions at rank ratio 0.5" in capsys.readouterr().out
    assert main(["compress", "--teacher", str(teacher), "--rank-ratio", "0.5", "--out", str(small)]) == 2
    assert "already holds a model" in capsys.readouterr().err
    student = tmp_path / "student"
    assert main(["distill", "--teacher", str(teacher), "--student-init", str(small), "--epochs", "1",
                 "--batch-size", "64", "--data-root", str(fmnist_root), "--out", str(student), "--no-progress"]) == 0
    result = json.loads((student / "result.json").read_text())
    assert result["student_init"]["path"] == str(small)
    tuned, info = load_model(student)
    assert info.arch == "tucker"
    initial, _ = load_model(small)
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), initial.state_dict().values()))
