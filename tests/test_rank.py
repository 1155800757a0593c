"""Keeping the teacher's important channels (datafree.models.rank, ``--keep-channels important``)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from datafree.cli import main
from datafree.data.spec import FASHION_MNIST
from datafree.errors import DatafreeError
from datafree.models import build_model, fold_batchnorm, inherit_weights, rank_channels
from datafree.models.inherit import kept_indices
from datafree.models.rank import channel_groups, channel_scores, keep_first, permute, relu_rms
from datafree.train import TrainConfig


def _teacher(seed: int = 0, arch: str = "lenet5_bn", **kwargs) -> nn.Module:
    """A network (LeNet-5-BN) with random BatchNorm scales, shifts and statistics, as a trained one has."""
    model = build_model(arch, FASHION_MNIST, seed=seed, **kwargs)
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


X = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))


def _hidden(model: nn.Module) -> list:
    return [g for g in channel_groups(model, X) if not g.fixed]


def test_a_chain_has_one_group_per_hidden_layer():
    teacher = _teacher()
    groups = channel_groups(teacher, X)
    assert [g.fixed for g in groups] == ["the input", None, None, None, None, "the output"]
    first = groups[1]
    assert first.writers == [("features.0", teacher.features[0])] and first.norms == [teacher.features[1]]
    assert [(r, b) for r, b, _ in first.readers] == [(teacher.features[4], 1)]


def test_a_dead_or_unread_channel_scores_lowest():
    teacher = _teacher()
    group = _hidden(teacher)[0]
    norm, (nxt, _, _) = group.norms[0], group.readers[0]
    with torch.no_grad():
        norm.weight[2], norm.bias[2] = 1e-6, -3.0  # never fires
        nxt.weight[:, 4] = 0  # never read
    scores = channel_scores(group)
    assert set(torch.topk(scores, 4).indices.tolist()).isdisjoint({2, 4})


def test_the_ranked_teacher_is_the_same_function_and_the_student_inherits_its_best_channels():
    teacher = _teacher()
    student = build_model("lenet5_half", FASHION_MNIST, seed=1)
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    ranked = rank_channels(teacher, student, x)
    torch.testing.assert_close(ranked(x), teacher(x), rtol=1e-4, atol=1e-5)
    assert ranked is not teacher and not torch.equal(ranked.features[0].weight, teacher.features[0].weight)
    # the student's first filters are the teacher's three best-scoring ones (BatchNorm folded), in the teacher's order
    groups = _hidden(teacher)
    best = torch.topk(channel_scores(groups[0]), 3).indices.sort().values
    inherit_weights(student, ranked)
    folded = fold_batchnorm(teacher)
    torch.testing.assert_close(student.features[0].weight, folded.features[0].weight[best])
    torch.testing.assert_close(student.features[0].bias, folded.features[0].bias[best])
    # and the next layer reads exactly those channels
    nxt = torch.topk(channel_scores(groups[1]), 8).indices.sort().values
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
    # the second conv's channels reach the head as blocks of 4 positions
    assert [b for g in _hidden(teacher) for _, b, _ in g.readers] == [1, 4, 1]


def test_a_residual_stream_is_one_group_and_the_student_inherits_its_best_channels():
    """ResNet-8 (width 8) from ResNet-14, as the ResNet pair: a stage's stem or shortcut and each block's last layer
    add into one stream, so their channels move as one, and every layer reading the stream reads the same ones."""
    teacher = _teacher(arch="resnet14")
    student = build_model("resnet8", FASHION_MNIST, seed=0, width=8)
    stream = _hidden(teacher)[0]
    assert [name for name, _ in stream.writers] == ["conv1", "layers.0.0.conv2", "layers.0.1.conv2"]
    assert stream.norms == [teacher.bn1, teacher.layers[0][0].bn2, teacher.layers[0][1].bn2]
    assert [r for r, _, _ in stream.readers] == [teacher.layers[0][0].conv1, teacher.layers[0][1].conv1,
                                                 teacher.layers[1][0].conv1, teacher.layers[1][0].shortcut[0]]
    ranked = rank_channels(teacher, student, X)
    torch.testing.assert_close(ranked(X), teacher(X), rtol=1e-4, atol=1e-5)
    best = torch.topk(channel_scores(stream), 8).indices.sort().values
    assert not torch.equal(best, kept_indices(16, 8))  # spread selection alone would keep others
    inherit_weights(student, ranked)
    torch.testing.assert_close(student.conv1.weight, teacher.conv1.weight[best])
    inner = torch.topk(channel_scores(_hidden(teacher)[1]), 8).indices.sort().values  # layers.0.0.conv1's own group
    torch.testing.assert_close(student.layers[0][0].conv1.weight, teacher.layers[0][0].conv1.weight[inner][:, best])
    torch.testing.assert_close(student.layers[0][0].conv2.weight, teacher.layers[0][0].conv2.weight[best][:, inner])


def test_the_student_view_scores_a_stream_by_the_blocks_the_student_keeps():
    """ResNet-8 keeps the first block of each ResNet-14 stage: with view="student" the stage-1 stream is scored by the
    three readers ResNet-8 has (not the second block's conv1), and the stage-2 readers get the sum of the stem's and
    the first block's BatchNorms only. A chain student (every layer kept) ranks as the teacher view does."""
    teacher = _teacher(arch="resnet14")
    student = build_model("resnet8", FASHION_MNIST, seed=0, width=8)
    stream = _hidden(teacher)[0]
    blocks = teacher.layers[0]
    kept = {id(m) for m in (teacher.bn1, blocks[0].bn2, blocks[0].conv1, teacher.layers[1][0].conv1,
                            teacher.layers[1][0].shortcut[0])}
    # by hand: the student's three readers, the stage-2 ones behind N(beta_0 + beta_1, gamma_0^2 + gamma_1^2)
    def read(layer: nn.Module) -> torch.Tensor:
        return layer.weight.detach().transpose(0, 1).reshape(16, -1).norm(dim=1)

    g0, g1 = teacher.bn1.weight.detach(), blocks[0].bn2.weight.detach()
    behind_two = relu_rms((g0 ** 2 + g1 ** 2).sqrt(), (teacher.bn1.bias + blocks[0].bn2.bias).detach())
    parts = [relu_rms(g0, teacher.bn1.bias.detach()) * read(blocks[0].conv1),
             behind_two * read(teacher.layers[1][0].conv1), behind_two * read(teacher.layers[1][0].shortcut[0])]
    expected = torch.stack(parts).pow(2).sum(0).sqrt()
    torch.testing.assert_close(channel_scores(stream, lambda m: id(m) in kept), expected)
    assert not torch.allclose(channel_scores(stream), expected)  # the teacher view counts the second block too
    ranked = rank_channels(teacher, student, X, view="student")
    torch.testing.assert_close(ranked(X), teacher(X), rtol=1e-4, atol=1e-5)
    inherit_weights(student, ranked)
    best = torch.topk(expected, 8).indices.sort().values
    torch.testing.assert_close(student.conv1.weight, teacher.conv1.weight[best])
    lenet, half = _teacher(), build_model("lenet5_half", FASHION_MNIST, seed=0)
    for a, b in zip(rank_channels(lenet, half, X, view="student").state_dict().values(),
                    rank_channels(lenet, half, X).state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="view"):
        rank_channels(lenet, half, X, view="students")


@pytest.mark.parametrize(("arch", "kwargs", "student_arch", "student_kwargs"), [
    ("wrn_16_2", {}, "wrn_16_1", {}),  # pre-activation: BatchNorms read the stream
    ("mobilenetv2", {"width": 1.0}, "mobilenetv2", {"width": 0.5}),  # depthwise convolutions, linear bottlenecks
])
def test_other_residual_families_keep_their_function(arch, kwargs, student_arch, student_kwargs):
    teacher = _teacher(arch=arch, **kwargs)
    ranked = rank_channels(teacher, build_model(student_arch, FASHION_MNIST, seed=0, **student_kwargs), X)
    torch.testing.assert_close(ranked(X), teacher(X), rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(ranked.state_dict().values(), teacher.state_dict().values()))


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


def test_a_skip_connection_ties_the_layers_it_adds():
    """A user's module: the addition puts both layers' channels in one group, read by conv2 and by the head."""
    teacher = _Skip(8)
    for m in (teacher.bn1, teacher.bn2):
        nn.init.uniform_(m.weight, 0.1, 2.0), nn.init.normal_(m.bias)
    teacher.eval()
    (group,) = _hidden(teacher)
    assert [name for name, _ in group.writers] == ["conv1", "conv2"]
    assert [r for r, _, _ in group.readers] == [teacher.conv2, teacher.head]
    assert group.readers[1][2] == (teacher.bn2, teacher.bn1)  # the head reads the sum of both BatchNorms' outputs
    ranked = rank_channels(teacher, _Skip(4), X)
    torch.testing.assert_close(ranked(X), teacher(X), rtol=1e-4, atol=1e-5)


class _PlainSkip(nn.Module):
    """_Skip without BatchNorm: the group's signal is read from its writers' weights."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, width, 3), nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h)) + h
        return self.head(h.mean((2, 3)))


def test_the_student_view_counts_only_the_writers_the_student_has_without_batchnorm():
    """A BatchNorm-free group whose second writer the student lacks: its score is the first writer's filter norms
    times the head's read, not the norms of both writers."""
    teacher = _PlainSkip(8).eval()
    (group,) = _hidden(teacher)
    assert [name for name, _ in group.writers] == ["conv1", "conv2"]
    without_conv2 = channel_scores(group, kept=lambda m: m is not teacher.conv2)
    expected = teacher.conv1.weight.reshape(8, -1).norm(dim=1) * teacher.head.weight.norm(dim=0)
    torch.testing.assert_close(without_conv2, expected)
    signal = torch.stack([w.weight.reshape(8, -1).norm(dim=1) for w in (teacher.conv1, teacher.conv2)]).norm(dim=0)
    reads = torch.stack([teacher.conv2.weight.transpose(0, 1).reshape(8, -1).norm(dim=1), teacher.head.weight.norm(dim=0)])
    torch.testing.assert_close(channel_scores(group), (signal * reads).norm(dim=0))  # the teacher view: everything


class _Unequal(_Skip):
    """_Skip's layers by name, without the skip, so its two layers can have different widths."""

    def __init__(self, first: int, second: int) -> None:
        nn.Module.__init__(self)
        self.conv1, self.bn1 = nn.Conv2d(1, first, 3), nn.BatchNorm2d(first)
        self.conv2, self.bn2 = nn.Conv2d(first, second, 3, padding=1), nn.BatchNorm2d(second)
        self.head = nn.Linear(second, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))).mean((2, 3)))


def test_a_student_that_cuts_tied_channels_to_different_widths_is_a_one_line_error():
    with pytest.raises(DatafreeError, match=r"^cannot keep the teacher's important channels: the student cuts "
                                            r"channels that move together \(the outputs of 'conv1', 'conv2'\) to "
                                            r"different widths \[4, 6\]; leave --keep-channels at spread$"):
        rank_channels(_Skip(8).eval(), _Unequal(4, 6), X)


class _Concat(nn.Module):
    """Two branches concatenated along channels: the trace does not follow ``torch.cat``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, width, 3), nn.Conv2d(1, width, 3)
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.a(x), self.b(x)], 1).mean((2, 3)))


def test_channels_tied_by_an_operation_the_trace_does_not_follow_are_a_one_line_error():
    with pytest.raises(DatafreeError, match=r"^cannot keep the teacher's important channels: the channels of 'a' "
                                            r"are tied by an operation it does not follow \(cat\); "
                                            r"leave --keep-channels at spread$"):
        rank_channels(_Concat(8).eval(), _Concat(4), X)


def test_keep_channels_is_checked():
    with pytest.raises(DatafreeError, match="--keep-channels"):
        TrainConfig(keep_channels="largest")
    assert TrainConfig(keep_channels="important-student").keep_channels == "important-student"


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
    best = torch.topk(channel_scores(_hidden(teacher)[0]), 3).indices.sort().values
    torch.testing.assert_close(trained.features[0].weight, fold_batchnorm(teacher).features[0].weight[best])


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_random_orders_of_every_group_keep_a_torchvision_networks_function(name):
    """Users' networks as torchvision writes them: in-place residual additions (``out += identity``) and
    squeeze-and-excitation gates (a product of two tensors) tie channels too; every group the trace can move is
    moved at random and the outputs stay the same."""
    import torchvision

    model = getattr(torchvision.models, name)(num_classes=10).eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.uniform_(m.weight, 0.1, 2.0), nn.init.normal_(m.bias)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    reordered = copy.deepcopy(model)
    groups = channel_groups(reordered, x)
    assert [g.fixed for g in groups if g.fixed] == ["the input", "the output"]
    g = torch.Generator().manual_seed(1)
    for group in groups[1:-1]:
        permute(group, torch.randperm(group.size, generator=g))
    with torch.no_grad():
        torch.testing.assert_close(reordered(x), model(x), rtol=1e-4, atol=1e-4 * float(model(x).abs().max()))


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, width, 3), nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if h.mean() > 0:
            h = -h
        return self.head(h.mean((2, 3)))


def test_a_model_the_trace_cannot_follow_is_a_one_line_error():
    with pytest.raises(DatafreeError, match=r"^cannot keep the teacher's important channels: torch.fx cannot trace "
                                            r"the model \([^\n]*\); leave --keep-channels at spread$"):
        rank_channels(_Branchy(8).eval(), _Branchy(4), X)
