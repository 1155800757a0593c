"""DSA (differentiable siamese augmentation): draws, siamese sharing, each transform, trainer wiring."""

import math

import pytest
import torch

from datafree.data.augment import DSA, DSA_GROUPS, DSAParams
from datafree.data.datasets import TensorImageDataset
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.models import build_model
from datafree.train import TrainConfig, Trainer


def gen(seed):
    return torch.Generator().manual_seed(seed)


def batch(b=6, c=3, h=8, w=8, seed=0):
    return torch.randn(b, c, h, w, generator=gen(seed))


def params_for(group, seed=0, **kw):
    return DSA(group, **kw).sample(gen(seed))


def test_same_seed_same_output_and_seeds_differ():
    dsa, x = DSA(), batch()
    outs = [dsa(x, gen(s)) for s in range(12)]
    assert all(torch.equal(dsa(x, gen(s)), outs[s]) for s in range(12))
    a, b = dsa.sample(gen(3)), dsa.sample(gen(3))
    assert a.strategy == b.strategy
    assert all(torch.equal(v, getattr(b, k)) for k, v in vars(a).items() if isinstance(v, torch.Tensor))
    assert len({o.sum().item() for o in outs}) > 3  # different seeds give different augmentations


@pytest.mark.parametrize("group", DSA_GROUPS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_one_draw_gives_the_same_transform_to_batches_of_any_size(group, shape):
    dsa = DSA(group)
    x = torch.randn(8, *shape, generator=gen(1))
    for seed in range(4):
        p = dsa.sample(gen(seed))
        assert torch.allclose(dsa.apply(x, p)[:3], dsa.apply(x[:3], p), atol=1e-6)
        # siamese: identical images stay identical (one draw shared by the whole batch)
        same = dsa.apply(x[:1].expand(5, *shape).contiguous(), p)
        assert torch.allclose(same, same[:1].expand_as(same), atol=1e-6)


@pytest.mark.parametrize("group", ["color", "crop", "cutout", "scale", "rotate"])
def test_per_image_draws_differ_between_images(group):
    dsa = DSA(group, per_image=True)
    x = batch(1, 3, 16, 16).expand(16, 3, 16, 16).contiguous()
    p = dsa.sample(gen(0), batch_size=16)
    assert p.strategy == group
    out = dsa.apply(x, p)
    assert not torch.allclose(out, out[:1].expand_as(out))
    assert torch.equal(dsa(x, gen(0)), out)  # forward draws per image when per_image=True
    with pytest.raises(DatafreeError, match="draws for a batch"):
        dsa.apply(x[:3], p)


def test_sampling_never_touches_the_global_rng():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    dsa, x = DSA(), batch()
    for s in range(30):
        dsa.sample(gen(s))
        dsa.sample(gen(s), batch_size=4)
        dsa(x, gen(s))
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(DatafreeError, match="Generator"):
        dsa.sample(None)


def test_draws_cover_every_group_within_the_reference_ranges():
    dsa = DSA()
    draws = [dsa.sample(gen(s)) for s in range(300)]
    assert {p.strategy for p in draws} == set(DSA_GROUPS)
    for p in draws:
        set_fields = {k for k in ("flip", "brightness", "saturation", "contrast", "crop", "cutout", "scale", "rotate")
                      if getattr(p, k) is not None}
        expected = {"brightness", "saturation", "contrast"} if p.strategy == "color" else {p.strategy}
        assert set_fields == expected
        if p.strategy == "color":
            assert -0.5 <= p.brightness.item() < 0.5
            assert 0.0 <= p.saturation.item() < 2.0
            assert 0.5 <= p.contrast.item() < 1.5
        elif p.strategy == "scale":
            assert p.scale.shape == (1, 2) and ((p.scale >= 1 / 1.2 - 1e-6) & (p.scale <= 1.2 + 1e-6)).all()
        elif p.strategy == "rotate":
            assert abs(p.rotate.item()) <= math.radians(15) + 1e-6
        elif p.strategy in ("crop", "cutout"):
            u = getattr(p, p.strategy)
            assert u.shape == (1, 2) and ((u >= 0) & (u < 1)).all()
    flips = [p.flip.item() for p in draws if p.strategy == "flip"]
    assert 0 < sum(flips) < len(flips)
    with pytest.raises(DatafreeError, match="unknown DSA strategy"):
        DSA("color_blur")


# ---------------------------------------------------------------- each transform by hand
def test_flip_reverses_width():
    dsa, x = DSA(), batch()
    assert torch.equal(dsa.apply(x, DSAParams("flip", flip=torch.tensor([True]))), x.flip(3))
    assert torch.equal(dsa.apply(x, DSAParams("flip", flip=torch.tensor([False]))), x)


def test_crop_shifts_with_zero_fill():
    dsa, x = DSA(), batch(2, 3, 8, 8)  # shift range int(8 * 0.125 + 0.5) = 1 pixel
    out = dsa.apply(x, DSAParams("crop", crop=torch.tensor([[0.0, 0.0]])))  # (dy, dx) = (-1, -1)
    assert torch.equal(out[:, :, 1:, 1:], x[:, :, :-1, :-1])
    assert (out[:, :, 0, :] == 0).all() and (out[:, :, :, 0] == 0).all()
    out = dsa.apply(x, DSAParams("crop", crop=torch.tensor([[0.999, 0.5]])))  # (dy, dx) = (+1, 0)
    assert torch.equal(out[:, :, :-1, :], x[:, :, 1:, :]) and (out[:, :, -1, :] == 0).all()
    big = batch(2, 1, 28, 28)  # 28 px: up to int(3.5 + 0.5) = 4 pixels
    out = dsa.apply(big, DSAParams("crop", crop=torch.tensor([[0.999, 0.0]])))  # (+4, -4)
    assert torch.equal(out[:, :, :-4, 4:], big[:, :, 4:, :-4])
    assert (out[:, :, -4:, :] == 0).all() and (out[:, :, :, :4] == 0).all()


def test_cutout_zeros_a_square_of_half_the_size():
    dsa = DSA()
    x = batch(2, 3, 8, 8).abs() + 1  # no zeros of its own
    out = dsa.apply(x, DSAParams("cutout", cutout=torch.tensor([[0.5, 0.5]])))  # centre 4: rows/cols 2..5
    zero = torch.zeros(8, 8, dtype=torch.bool)
    zero[2:6, 2:6] = True
    assert torch.equal(out == 0, zero.expand_as(out))
    assert torch.equal(out[:, :, ~zero], x[:, :, ~zero])
    # near the border the square is clipped to the image, as the reference's index clamping does
    edge = dsa.apply(x, DSAParams("cutout", cutout=torch.tensor([[0.0, 0.99]])))  # centres (0, 8)
    assert torch.equal((edge[0, 0] == 0).nonzero().amin(0), torch.tensor([0, 6]))
    assert (edge[0, 0] == 0).sum() == 2 * 2
    big = batch(1, 1, 28, 28).abs() + 1
    for seed in range(5):  # 28 px: a 14 x 14 square wherever its centre leaves it whole
        u = torch.rand(1, 2, generator=gen(seed)) * 0.4 + 0.3
        assert (dsa.apply(big, DSAParams("cutout", cutout=u)) == 0).sum() == 14 * 14


def test_color_formulas():
    dsa, x = DSA(), batch()
    assert torch.allclose(dsa.apply(x, DSAParams("color", brightness=torch.tensor([0.3]))), x + 0.3)
    gray = dsa.apply(x, DSAParams("color", saturation=torch.tensor([0.0])))
    assert torch.allclose(gray, x.mean(1, keepdim=True).expand_as(x))
    flat = dsa.apply(x, DSAParams("color", contrast=torch.tensor([0.0])))
    assert torch.allclose(flat, x.mean((1, 2, 3), keepdim=True).expand_as(x), atol=1e-6)
    full = DSAParams("color", brightness=torch.tensor([0.1]), saturation=torch.tensor([1.5]), contrast=torch.tensor([0.7]))
    y = x + 0.1
    y = (y - y.mean(1, keepdim=True)) * 1.5 + y.mean(1, keepdim=True)
    y = (y - y.mean((1, 2, 3), keepdim=True)) * 0.7 + y.mean((1, 2, 3), keepdim=True)
    assert torch.allclose(dsa.apply(x, full), y, atol=1e-6)


@pytest.mark.parametrize("align_corners", [True, False])
def test_unit_scale_and_zero_rotation_are_the_identity(align_corners):
    dsa, x = DSA(align_corners=align_corners), batch(3, 3, 28, 28)
    assert torch.allclose(dsa.apply(x, DSAParams("scale", scale=torch.ones(1, 2))), x, atol=1e-5)
    assert torch.allclose(dsa.apply(x, DSAParams("rotate", rotate=torch.zeros(1))), x, atol=1e-5)


def test_rotation_and_scale_move_pixels():
    dsa, x = DSA(), batch(2, 3, 9, 9)
    quarter = dsa.apply(x, DSAParams("rotate", rotate=torch.tensor([math.pi / 2])))
    assert torch.allclose(quarter, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    shrunk = dsa.apply(x, DSAParams("scale", scale=torch.tensor([[2.0, 1.0]])))  # width halved, centred
    assert torch.allclose(shrunk[:, :, :, 4], x[:, :, :, 4], atol=1e-5)
    assert torch.allclose(shrunk[:, :, :, 2], x[:, :, :, 0], atol=1e-5)
    assert (shrunk[:, :, :, 0] == 0).all()


@pytest.mark.parametrize("group", DSA_GROUPS)
def test_gradient_flows_to_the_input(group):
    dsa = DSA(group, prob_flip=1.0)
    x = batch(4, 3, 16, 16).requires_grad_(True)
    weights = torch.randn(4, 3, 16, 16, generator=gen(9))
    (dsa(x, gen(0)) * weights).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    if group == "flip":
        assert torch.equal(x.grad, weights.flip(3))


# ---------------------------------------------------------------- trainer
def tiny_dataset(n=48):
    spec = DataSpec(channels=1, height=28, width=28, num_classes=4, mean=(0.5,), std=(0.5,), name="tiny")
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen(0))
    return TensorImageDataset(images, torch.arange(n) % 4, spec)


def test_trainer_with_dsa_runs_and_draws_from_its_augmentation_stream(monkeypatch):
    data = tiny_dataset()
    calls = []
    original = DSA.apply
    monkeypatch.setattr(DSA, "apply", lambda self, x, p: calls.append((p, len(x))) or original(self, x, p))
    config = TrainConfig(epochs=1, batch_size=16, lr=0.01, augment="dsa", progress=False)
    trainer = Trainer(build_model("lenet5", data.spec, seed=0), config)
    assert isinstance(trainer.augment, DSA)
    result = trainer.fit(data, data)
    assert result["epoch"] == 1 and math.isfinite(result["train_loss"])
    assert len(calls) == 3 and all(n == 16 for _, n in calls)
    assert all(next(v for v in vars(p).values() if isinstance(v, torch.Tensor)).shape[0] == 16 for p, _ in calls)
    with pytest.raises(DatafreeError, match="dsa"):
        TrainConfig(augment="kornia")


def test_nesterov_option():
    data = tiny_dataset(8)
    model = build_model("lenet5", data.spec, seed=0)
    group = lambda **kw: Trainer(model, TrainConfig(progress=False, **kw)).optimizer.param_groups[0]
    assert group()["nesterov"] is True
    assert group(nesterov=False)["nesterov"] is False
    assert group(momentum=0.0)["nesterov"] is False
    assert group(nesterov=False)["momentum"] == 0.9
    assert TrainConfig.from_dict(TrainConfig(nesterov=False).to_dict()).nesterov is False
