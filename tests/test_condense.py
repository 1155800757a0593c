"""Dataset condensation: the class pool, the matching losses, each method, the driver, the protocol."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from datafree.condense import ClassPool, EvalProtocol, condense_set, evaluate_set, method_config
from datafree.condense.baselines import herding_indices
from datafree.condense.methods import METHODS
from datafree.data import DataSpec, NormalizedTensorDataset
from datafree.data.transfer import TransferSet
from datafree.errors import DatafreeError
from datafree.hooks import embed
from datafree.losses import gradient_match_distance, mean_embedding_distance

SPEC = DataSpec(1, 8, 8, 4, (0.5,), (0.5,))
SMALL_NET = {"net": "convnet", "net_kwargs": {"width": 8, "depth": 1}}
LOOPS = {"outer_loop": 2, "inner_loop": 2}  # DC's per-IPC table would run 10 x 50 per iteration


def tiny_pool(n_per_class: int = 16, seed: int = 0) -> ClassPool:
    """Class c is bright in its own pair of rows, plus noise: learnable and class-distinct."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat(n_per_class)
    images = torch.randn(len(labels), 1, 8, 8, generator=g) * 0.3
    for c in range(4):
        images[labels == c, :, 2 * c: 2 * c + 2, :] += 2.0
    return ClassPool(images, labels, SPEC)


def test_class_pool_samples_each_class_without_replacement():
    pool = tiny_pool()
    idx = pool.indices(5, torch.Generator().manual_seed(1))
    assert idx.shape == (4, 5)
    assert (pool.labels[idx] == torch.arange(4).view(4, 1)).all()
    assert all(len(set(row.tolist())) == 5 for row in idx)
    again = pool.indices(5, torch.Generator().manual_seed(1))
    assert torch.equal(idx, again)
    assert pool.sample(3, torch.Generator()).shape == (4, 3, 1, 8, 8)
    # asking for more than a class holds wraps around instead of failing
    assert pool.indices(20, torch.Generator().manual_seed(0)).shape == (4, 20)


def test_class_pool_refuses_a_missing_class():
    with pytest.raises(DatafreeError, match="classes \\[3\\]"):
        ClassPool(torch.zeros(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2]), SPEC)


def test_gradient_match_distance_by_hand():
    # one 2x2 weight: rows [1,0] vs [0,1] (cos 0) and [1,1] vs [2,2] (cos 1); a bias is skipped
    real = [torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([5.0, -5.0])]
    syn = [torch.tensor([[0.0, 1.0], [2.0, 2.0]]), torch.tensor([-5.0, 5.0])]
    assert gradient_match_distance(real, syn).item() == pytest.approx(1.0, abs=1e-5)
    conv = torch.randn(3, 2, 3, 3)
    assert gradient_match_distance([conv], [conv * 4]).item() == pytest.approx(0.0, abs=1e-5)
    assert gradient_match_distance([conv], [-conv]).item() == pytest.approx(6.0, abs=1e-4)


def test_mean_embedding_distance_by_hand():
    real = torch.tensor([[[1.0, 0.0], [3.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]])  # means (2,0), (0,1)
    syn = torch.tensor([[[0.0, 0.0]], [[0.0, 3.0]]])
    assert mean_embedding_distance(real, syn).item() == pytest.approx(4.0 + 4.0)


def test_herding_picks_the_mean_tracking_points():
    feats = torch.tensor([[0.0], [10.0], [4.0], [4.2], [8.0]])  # mean 5.24
    # first 4.2, the closest to the mean; then 8, which brings the running mean to 6.1 (0.86 off), where the
    # next-closest point, 4 (what "the k nearest to the mean" would pick), leaves it at 4.1 (1.14 off)
    assert herding_indices(feats, 2).tolist() == [3, 4]


def test_embed_captures_the_last_linear_input():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.ReLU(), nn.Linear(5, 4))
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(embed(net, x), net[2](net[1](net[0](x))))


def run_losses(method: str, iterations: int, **overrides) -> list[float]:
    config = method_config(method, ipc=2, iterations=iterations, batch_real=8, init="noise", **SMALL_NET, **overrides)
    cond = METHODS[method].condenser(config, SPEC, torch.Generator().manual_seed(0), pool=tiny_pool())
    return [next(iter(cond.step().values())) for _ in range(iterations)]


@pytest.mark.parametrize("method,overrides", [("dm", {"lr_img": 1.0}), ("dc", {"lr_img": 0.1, **LOOPS}),
                                              ("dsa", {"lr_img": 0.1, **LOOPS})])
def test_each_matching_method_lowers_its_objective(method, overrides):
    losses = run_losses(method, 30, **overrides)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (method, first, last)


def test_teacher_only_reads_no_real_data(tmp_path):
    from tests.test_teacher_condense import bn_teacher

    teacher = bn_teacher()
    config = method_config("teacher", ipc=2, iterations=40, lr_img=0.05, relabel_epochs=2)
    manifest = condense_set(tmp_path / "t", config, SPEC, teacher=teacher, soft_labels=True, progress=False,
                            checkpoint_every=20)
    assert manifest["soft_labels"] and manifest["count"] == 8
    ts = TransferSet(tmp_path / "t")
    _, labels, logits = ts.get_batch(torch.arange(8))
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and logits.shape == (8, 4)
    # the recovery objective falls: tests/test_teacher_condense.py


def test_teacher_only_refuses_a_teacher_without_batchnorm(tmp_path):
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    with pytest.raises(DatafreeError, match="no BatchNorm"):
        condense_set(tmp_path / "t", method_config("teacher", ipc=1, iterations=1), SPEC, teacher=teacher,
                     progress=False)
    assert not (tmp_path / "t").exists()  # refused before anything was written


def test_random_and_herding_return_real_images_of_each_class(tmp_path):
    pool = tiny_pool()
    for method in ("random", "herding"):
        config = method_config(method, ipc=3, **SMALL_NET, **({"herding_net": "net"} if method == "herding" else {}))
        condense_set(tmp_path / method, config, SPEC, pool=pool, progress=False)
        x, y = TransferSet(tmp_path / method).get_batch(torch.arange(12))
        assert y.tolist() == [c for c in range(4) for _ in range(3)]
        # every image is one of the real images of its class
        for img, c in zip(x, y):
            assert (pool.of_class(int(c)) == img).flatten(1).all(1).any()


def test_condense_set_resumes_bitwise_and_extends(tmp_path):
    pool = tiny_pool()
    config = method_config("dm", ipc=2, iterations=6, batch_real=8, **SMALL_NET)
    full = condense_set(tmp_path / "full", config, SPEC, pool=pool, seed=3, progress=False, checkpoint_every=2)
    assert full["iterations_done"] == 6 and full["count"] == 8
    part = method_config("dm", ipc=2, iterations=4, batch_real=8, **SMALL_NET)
    condense_set(tmp_path / "part", part, SPEC, pool=pool, seed=3, progress=False, checkpoint_every=2)
    condense_set(tmp_path / "part", config, SPEC, pool=pool, seed=3, progress=False, checkpoint_every=2, resume=True)
    a = TransferSet(tmp_path / "full").get_batch(torch.arange(8))[0]
    b = TransferSet(tmp_path / "part").get_batch(torch.arange(8))[0]
    assert torch.equal(a, b)
    assert len(list((tmp_path / "part").glob("shard-*.safetensors"))) == 1  # replaced, not accumulated


def test_condense_set_refuses_to_clobber_or_mix(tmp_path):
    pool = tiny_pool()
    config = method_config("dm", ipc=1, iterations=1, batch_real=4, **SMALL_NET)
    condense_set(tmp_path / "s", config, SPEC, pool=pool, progress=False)
    with pytest.raises(DatafreeError, match="already holds"):
        condense_set(tmp_path / "s", config, SPEC, pool=pool, progress=False)
    other = method_config("dm", ipc=1, iterations=2, batch_real=4, lr_img=0.5, **SMALL_NET)
    with pytest.raises(DatafreeError, match="lr_img"):
        condense_set(tmp_path / "s", other, SPEC, pool=pool, progress=False, resume=True)
    with pytest.raises(DatafreeError, match="dataset"):
        condense_set(tmp_path / "x", config, SPEC, pool=None, progress=False)


def test_evaluate_set_protocol_is_recorded_and_reproducible():
    pool = tiny_pool()
    train = NormalizedTensorDataset(pool.images[::4], pool.labels[::4], SPEC)
    test = NormalizedTensorDataset(pool.images, pool.labels, SPEC)
    protocol = EvalProtocol(arch="convnet", arch_kwargs={"width": 8, "depth": 1}, models=2, epochs=20, augment="none")
    a = evaluate_set(train, SPEC, test, protocol, progress=False)
    b = evaluate_set(train, SPEC, test, protocol, progress=False)
    assert a["accuracies"] == b["accuracies"] and len(a["accuracies"]) == 2
    assert a["protocol"]["epochs"] == 20 and a["protocol"]["lr"] == 0.01 and a["images"] == 16
    assert a["accuracy_mean"] > 60  # the bands are easy: trained networks beat chance (25%) by far
    assert EvalProtocol().epochs == 1000 and EvalProtocol(augment="none").epochs == 300
    with pytest.raises(DatafreeError, match="kd protocol needs"):
        evaluate_set(train, SPEC, test, EvalProtocol(name="kd", models=1, epochs=1), progress=False)


def test_evaluate_set_extends_an_earlier_evaluation_to_the_same_numbers():
    pool = tiny_pool()
    train = NormalizedTensorDataset(pool.images[::4], pool.labels[::4], SPEC)
    test = NormalizedTensorDataset(pool.images, pool.labels, SPEC)
    protocol = EvalProtocol(arch="convnet", arch_kwargs={"width": 8, "depth": 1}, models=3, epochs=5, augment="none")
    partial: list[dict] = []
    whole = evaluate_set(train, SPEC, test, protocol, progress=False, on_model=partial.append)
    assert [p["models_done"] for p in partial] == [1, 2] and not partial[0]["complete"] and whole["complete"]
    first = evaluate_set(train, SPEC, test, replace(protocol, models=1), progress=False)
    done = list(zip(first["accuracies"], first["train_times_s"]))
    extended = evaluate_set(train, SPEC, test, protocol, progress=False, done=done)
    assert extended["accuracies"] == whole["accuracies"] and extended["models_done"] == 3
    with pytest.raises(DatafreeError, match="more than the 1"):
        evaluate_set(train, SPEC, test, replace(protocol, models=1), progress=False, done=done * 2)


def test_resume_from_a_foreign_state_file_is_one_error(tmp_path):
    from datafree.checkpoint import save_training_state

    pool = tiny_pool()
    config = method_config("dm", ipc=1, iterations=2, batch_real=4, **SMALL_NET)
    condense_set(tmp_path / "s", config, SPEC, pool=pool, progress=False)
    save_training_state(tmp_path / "s" / "condense-state.pt", {"epoch": 3})
    with pytest.raises(DatafreeError, match="not a condensation state"):
        condense_set(tmp_path / "s", config, SPEC, pool=pool, progress=False, resume=True)


def test_each_method_has_its_own_settings_and_the_flat_record_is_kept(fmnist_root, tmp_path, capsys):
    """A method's settings live in its config class (DCConfig in dc.py, ...); records keep the flat form,
    and --set of a setting the method does not have is a one-line error naming the ones it has."""
    from datafree.cli import main
    from datafree.condense import CondenseConfig
    from datafree.condense.dc import DCConfig
    from datafree.condense.dm import DMConfig

    dc = method_config("dc", ipc=1, outer_loop=3)
    assert type(dc) is DCConfig and dc.loops == (3, 1)
    flat = dc.to_dict()
    assert flat["syn_steps"] == 20 and flat["herding_net"] == "teacher" and CondenseConfig.from_dict(flat) == dc
    dm = method_config("dm")
    assert type(dm) is DMConfig and CondenseConfig.from_dict(dm.to_dict()) == dm and not hasattr(dm, "outer_loop")
    with pytest.raises(DatafreeError, match=r"^outer_loop: not a setting of dm \(its settings: ipc, .*real_bf16\)$"):
        method_config("dm", outer_loop=3)
    with pytest.raises(DatafreeError, match="outer_loop: not a setting of dm"):
        CondenseConfig.from_dict({**dm.to_dict(), "outer_loop": 3})  # a record's other keys only at their defaults
    with pytest.raises(DatafreeError, match="takes a DMConfig"):
        DCConfig(method="dm")
    code = main(["condense", "--method", "dm", "--ipc", "1", "--set", "bn=1", "--data-root", str(fmnist_root),
                 "--device", "cpu", "--out", str(tmp_path / "set"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "bn: not a setting of dm" in err


@pytest.mark.parametrize("setting, message", [("bf16=maybe", "bf16: expected true/false, got 'maybe'"),
                                              ("iterations=abc", "iterations: expected int, got 'abc'"),
                                              ("lr_img=x", "lr_img: expected float, got 'x'"),
                                              ("dsa=1", "dsa: expected true/false, got 1")])
def test_a_setting_of_the_wrong_kind_is_one_line_and_writes_nothing(setting, message, fmnist_root, tmp_path, capsys):
    from datafree.cli import main

    code = main(["condense", "--method", "dsa", "--ipc", "1", "--set", setting, "--data-root", str(fmnist_root),
                 "--device", "cpu", "--out", str(tmp_path / "set"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"condensation option {message}" in err
    assert not (tmp_path / "set").exists()
    assert method_config("dsa", lr_img=1).lr_img == 1  # an int is a float, as in JSON
    with pytest.raises(DatafreeError, match="synthesis option augment: expected true/false, got 'no'"):
        from datafree.synthesis import preset

        preset("deepinversion", augment="no")
