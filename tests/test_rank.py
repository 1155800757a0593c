"""Keeping the teacher's important channels (datafree.models.rank, ``--keep-channels important``)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from datafree.cli import main
from datafree.data.spec import FASHION_MNIST
from datafree.errors import DatafreeError
from datafree.models import build_model, fold_batchnorm, inherit_weights, rank_channels
from datafree.models.inherit import kept_indices
from datafree.models.rank import chain, channel_scores, keep_first, relu_rms
from datafree.train import TrainConfig


def _teacher(seed: int = 0) -> nn.Module:
    """LeNet-5-BN with random BatchNorm scales, shifts and statistics, as a trained one has."""
    model = build_model("lenet5_bn", FASHION_MNIST, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 2 - 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def test_relu_rms_is_the_root_mean_square_after_a_relu_of_a_normal():
    gamma, beta = torch.tensor([1.0, 0.5, -2.0, 0.1]), torch.tensor([0.0, 1.0, -1.0, -0.5])
    z = torch.randn(400_000, 1, generator=torch.Generator().manual_seed(0))
    sampled = torch.relu(gamma * z + beta).pow(2).mean(0).sqrt()
    torch.testing.assert_close(relu_rms(gamma, beta), sampled, rtol=1e-2, atol=1e-3)
    assert relu_rms(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(0.5 ** 0.5)


def test_keep_first_puts_the_best_channels_in_order_where_spread_selection_looks():
    scores = torch.tensor([0.1, 5.0, 0.2, 4.0, 3.0, 0.3])
    perm = keep_first(scores, 3)
    assert sorted(perm.tolist()) == list(range(6))  # a permutation
    assert perm[kept_indices(6, 3)].tolist() == [1, 3, 4]  # the three best, in the teacher's order
    assert perm[[1, 3, 5]].tolist() == [0, 2, 5]  # the rest, in order, in between


def test_a_dead_or_unread_channel_scores_lowest():
    teacher = _teacher()
    name, layer, norm, nxt, in_block = chain(teacher)[0]
    assert name == "features.0" and norm is teacher.features[1] and nxt is teacher.features[4] and in_block == 1
    with torch.no_grad():
        norm.weight[2], norm.bias[2] = 1e-6, -3.0  # never fires
        nxt.weight[:, 4] = 0  # never read
    scores = channel_scores(layer, norm, nxt)
    assert set(torch.topk(scores, 4).indices.tolist()).isdisjoint({2, 4})


def test_the_ranked_teacher_is_the_same_function_and_the_student_inherits_its_best_channels():
    teacher = _teacher()
    student = build_model("lenet5_half", FASHION_MNIST, seed=1)
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    ranked = rank_channels(teacher, student, x)
    torch.testing.assert_close(ranked(x), teacher(x), rtol=1e-4, atol=1e-5)
    assert ranked is not teacher and not torch.equal(ranked.features[0].weight, teacher.features[0].weight)
    # the student's first filters are the teacher's three best-scoring ones (BatchNorm folded), in the teacher's order
    best = torch.topk(channel_scores(*chain(teacher)[0][1:4]), 3).indices.sort().values
    inherit_weights(student, ranked)
    folded = fold_batchnorm(teacher)
    torch.testing.assert_close(student.features[0].weight, folded.features[0].weight[best])
    torch.testing.assert_close(student.features[0].bias, folded.features[0].bias[best])
    # and the next layer reads exactly those channels
    nxt = torch.topk(channel_scores(*chain(teacher)[1][1:4]), 8).indices.sort().values
    torch.testing.assert_close(student.features[3].weight, folded.features[4].weight[nxt][:, best])


def test_a_linear_head_after_flatten_moves_whole_blocks_of_positions():
    """tests/user_models.py's VGGish (a user's module, matched by name) flattens a 2x2 map into its head."""
    from tests.user_models import VGGish

    teacher = VGGish(width=4)
    for m in teacher.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.uniform_(m.weight, 0.1, 2.0), nn.init.normal_(m.bias)
    teacher.eval()
    x = torch.randn(3, 1, 28, 28)
    ranked = rank_channels(teacher, VGGish(width=2), x)
    torch.testing.assert_close(ranked(x), teacher(x), rtol=1e-4, atol=1e-5)
    assert chain(teacher)[1][4] == 4  # the second conv's channels reach the head as blocks of 4 positions


def test_a_residual_teacher_is_a_one_line_error():
    """WRN-16-1 from WRN-16-2 (weight selection pairs them by name): each block adds its input to its output, so a
    layer's channels are tied to others' and reordering one layer alone would change the function."""
    teacher = build_model("wrn_16_2", FASHION_MNIST, seed=0).eval()
    student = build_model("wrn_16_1", FASHION_MNIST, seed=0)
    with torch.no_grad():
        for m in teacher.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.uniform_(m.weight, 0.1, 2.0), nn.init.normal_(m.bias)
    with pytest.raises(DatafreeError, match=r"^cannot keep the teacher's important channels: .*"
                                            r"leave --keep-channels at spread$"):
        rank_channels(teacher, student, torch.randn(2, 1, 28, 28))


class _Skip(nn.Module):
    """Shaped like a chain (each layer reads the last one's channels), but the second adds the first's output."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, width, 3), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h))) + h
        return self.head(h.mean((2, 3)))


def test_a_skip_connection_that_the_shapes_do_not_show_is_caught_by_the_function():
    teacher = _Skip(8)
    for m in (teacher.bn1, teacher.bn2):
        nn.init.uniform_(m.weight, 0.1, 2.0), nn.init.normal_(m.bias)
    with pytest.raises(DatafreeError, match=r"^cannot keep the teacher's important channels: reordering them changes "
                                            r"its outputs .*; leave --keep-channels at spread$"):
        rank_channels(teacher.eval(), _Skip(4), torch.randn(2, 1, 12, 12))


def test_keep_channels_is_checked():
    with pytest.raises(DatafreeError, match="--keep-channels"):
        TrainConfig(keep_channels="largest")


def test_cli_keep_channels_important_starts_the_student_from_the_best_channels(fmnist_root, tmp_path, capsys):
    from datafree.checkpoint import load_model

    teacher_dir = tmp_path / "teacher"
    assert main(["train-teacher", "--arch", "lenet5_bn", "--epochs", "1", "--batch-size", "64",
                 "--data-root", str(fmnist_root), "--out", str(teacher_dir), "--no-progress"]) == 0
    common = ["distill", "--teacher", str(teacher_dir), "--student", "lenet5_half", "--epochs", "1", "--lr", "1e-9",
              "--batch-size", "64", "--data-root", str(fmnist_root), "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "no-inherit"), "--keep-channels", "important"]) == 2
    err = capsys.readouterr().err
    assert "needs --inherit" in err and "Traceback" not in err and not (tmp_path / "no-inherit").exists()
    out = tmp_path / "important"
    assert main([*common, "--inherit", "--keep-channels", "important", "--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["config"]["keep_channels"] == "important"
    teacher, _ = load_model(teacher_dir)
    trained, _ = load_model(out)
    # lr 1e-9: the saved student is the selection itself, the first layer's three best channels (BatchNorm folded)
    best = torch.topk(channel_scores(*chain(teacher)[0][1:4]), 3).indices.sort().values
    torch.testing.assert_close(trained.features[0].weight, fold_batchnorm(teacher).features[0].weight[best])
