import math

import pytest
import torch

from datafree.losses import (
    decoupled_kd_parts,
    hint_mse,
    jacobian_match,
    kd_decoupled,
    kd_kl,
    kd_logit_mse,
    kept_channel_hint,
    rkd_angle,
    rkd_distance,
    standardize_logits,
)


def test_kd_kl_matches_hand_computation_with_t_squared():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[2.0, 1.0, 0.0]])
    T = 2.0

    def softmax(v):
        e = [math.exp(x / T) for x in v]
        return [x / sum(e) for x in e]

    ps, pt = softmax([1.0, 0.0, -1.0]), softmax([2.0, 1.0, 0.0])
    kl = sum(a * math.log(a / b) for a, b in zip(pt, ps))
    assert kd_kl(s, t, T).item() == pytest.approx(T * T * kl, rel=1e-5)


def test_kd_kl_is_batch_mean_and_zero_for_equal_logits():
    s = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    assert kd_kl(s, s.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    t = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    per_sample = [kd_kl(s[i:i + 1], t[i:i + 1], 3.0).item() for i in range(4)]
    assert kd_kl(s, t, 3.0).item() == pytest.approx(sum(per_sample) / 4, rel=1e-5)


def test_kd_kl_gives_no_gradient_to_teacher():
    s = torch.randn(2, 3, requires_grad=True)
    t = torch.randn(2, 3, requires_grad=True)
    kd_kl(s, t, 4.0).backward()
    assert s.grad is not None and t.grad is None


def test_rkd_distance_hand_computed():
    # three points on a line at 0, 1, 3: distances 1, 3, 2 -> mean 2 -> normalised 0.5, 1.5, 1.0
    s = torch.tensor([[0.0], [1.0], [3.0]])
    # teacher: equilateral-ish distances all equal to 1 after normalisation
    t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    # pairwise normalised differences (off-diagonal, each twice): -0.5, +0.5, 0.0 ; diagonal 0
    # smooth L1 (beta 1): 0.5*d^2 -> 0.125, 0.125, 0 each twice -> sum 0.5 over 9 entries
    assert rkd_distance(s, t).item() == pytest.approx(0.5 / 9, rel=1e-4)
    assert rkd_distance(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_rkd_angle_invariant_to_scale_and_hand_computed():
    t = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert rkd_angle(3.0 * t, t).item() == pytest.approx(0.0, abs=1e-6)
    # collinear student: all cosines are +-1; compare against an explicit enumeration
    s = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])

    def cosines(e):
        out = []
        for i in range(3):
            for j in range(3):
                for k in range(3):
                    a, b = e[j] - e[i], e[k] - e[i]
                    na, nb = a.norm().clamp_min(1e-12), b.norm().clamp_min(1e-12)
                    out.append(float((a / na) @ (b / nb)))
        return torch.tensor(out)

    expected = torch.nn.functional.smooth_l1_loss(cosines(s), cosines(t))
    assert rkd_angle(s, t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_hint_mse():
    s = torch.ones(2, 3, 4, 4)
    t = torch.zeros(2, 3, 4, 4)
    assert hint_mse(s, t).item() == pytest.approx(1.0)


def test_jacobian_match_compares_directions_not_scales():
    student = torch.tensor([[3.0, 4.0]], requires_grad=True)  # unit vector (0.6, 0.8)
    teacher = torch.tensor([[2.0, 0.0]], requires_grad=True)  # unit vector (1, 0)
    loss = jacobian_match(student, teacher)
    assert loss.item() == pytest.approx(0.4**2 + 0.8**2)
    loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    same = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    assert jacobian_match(same * 5, same).item() == pytest.approx(0.0, abs=1e-7)
    assert jacobian_match(-same, same).item() == pytest.approx(4.0)


def test_standardized_kd_ignores_the_teachers_logit_scale_and_shift():
    assert torch.allclose(standardize_logits(torch.tensor([[1.0, 2.0, 3.0]])), torch.tensor([[-1.0, 0.0, 1.0]]))
    s, t = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[3.0, 1.0, 2.0]])
    assert kd_kl(s, 10 * t + 5, 2.0, standardize=True).item() == pytest.approx(kd_kl(s, t, 2.0, standardize=True).item())
    assert kd_kl(s, 10 * t + 5, 2.0).item() != pytest.approx(kd_kl(s, t, 2.0).item())
    assert kd_kl(3 * t - 1, t, 2.0, standardize=True).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_logit_mse_is_kd_kl_at_a_high_temperature_and_ignores_shifts():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 10, generator=g), 2 * torch.randn(4, 10, generator=g)
    gap = (s - s.mean(1, keepdim=True)) - (t - t.mean(1, keepdim=True))
    assert kd_logit_mse(s, t).item() == pytest.approx((gap ** 2).sum(1).mean().item() / 20)  # / (2K), K = 10
    limit = kd_kl(s.double(), t.double(), 1000.0).item()  # float64: at T = 1000 the softmaxes differ by ~1e-3
    assert limit == pytest.approx(kd_logit_mse(s, t).item(), rel=1e-2)  # the same scale as T^2 KL
    assert kd_logit_mse(s + 3.0, t - 1.0).item() == pytest.approx(kd_logit_mse(s, t).item())  # a row's shift is free
    assert kd_logit_mse(t, t).item() == 0.0
    s.requires_grad_(True), t.requires_grad_(True)
    kd_logit_mse(s, t).backward()
    assert t.grad is None and torch.allclose(s.grad, gap / 20 / 4 * 2)  # d/ds of the batch mean of |gap|^2 / 2K


def test_decoupled_kd_splits_hintons_kl_exactly_and_weights_the_other_classes():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(5, 10, generator=g), 3 * torch.randn(5, 10, generator=g)
    tckd, nckd = decoupled_kd_parts(s, t, 4.0)
    p_top = torch.softmax(t / 4.0, 1).max(1).values
    whole = torch.stack([kd_kl(s[i:i + 1], t[i:i + 1], 4.0) for i in range(5)]) / 16  # per sample, without T^2
    assert torch.allclose(tckd + (1 - p_top) * nckd, whole, atol=1e-6)  # Zhao et al.'s identity
    assert (tckd >= -1e-7).all() and (nckd >= -1e-7).all()
    assert kd_decoupled(s, t, 4.0, beta=0.0).item() == pytest.approx(tckd.mean().item() * 16)
    assert kd_decoupled(s, t, 4.0, beta=8.0).item() == pytest.approx((tckd + 8 * nckd).mean().item() * 16)
    same = t.clone()
    assert kd_decoupled(same, t, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    # only the other classes' ranking differs: TCKD sees nothing, NCKD all of it
    k = t.argmax(1)
    shuffled = t.clone()
    others = [c for c in range(10) if c != int(k[0])]
    shuffled[0, others] = t[0, others].flip(0)
    tckd0, nckd0 = decoupled_kd_parts(shuffled[:1], t[:1], 4.0)
    assert tckd0.item() == pytest.approx(0.0, abs=1e-6) and nckd0.item() > 0.01
    assert kd_decoupled(s, 10 * t + 5, 4.0, standardize=True).item() == pytest.approx(
        kd_decoupled(s, t, 4.0, standardize=True).item(), rel=1e-5)  # z-scored: the teacher's scale drops out
    s.requires_grad_(True)
    kd_decoupled(s, t, 4.0).backward()
    assert s.grad.abs().sum() > 0 and torch.isfinite(s.grad).all()


def test_trainer_kd_loss_picks_the_soft_target_term():
    from datafree.errors import DatafreeError
    from datafree.train import TrainConfig, Trainer

    net = torch.nn.Linear(6, 10)
    x, y = torch.randn(8, 6, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 10
    t_logits = 3 * torch.randn(8, 10, generator=torch.Generator().manual_seed(2))
    for name, expected in (("kl", lambda s: kd_kl(s, t_logits, 4.0)), ("mse", lambda s: kd_logit_mse(s, t_logits)),
                           ("dkd", lambda s: kd_decoupled(s, t_logits, 4.0, 8.0))):
        trainer = Trainer(net, TrainConfig(alpha=0.0, temperature=4.0, kd_loss=name, progress=False))
        terms, logits = trainer.loss_terms(x, y, t_logits)
        assert terms["kd"].item() == pytest.approx(expected(net(x)).item())
        net.zero_grad()
        terms["kd"].backward()
        assert net.weight.grad.abs().sum() > 0  # the term's gradient reaches the student
    with pytest.raises(DatafreeError, match="unknown KD loss"):
        TrainConfig(kd_loss="l2")


def test_kept_channel_hint_compares_the_kept_channels_layer_by_layer():
    from datafree.errors import DatafreeError

    g = torch.Generator().manual_seed(0)
    s1, t1 = torch.randn(2, 2, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    s2, t2 = torch.randn(2, 3, generator=g), torch.randn(2, 6, generator=g)
    kept = [torch.tensor([0, 2]), torch.tensor([1, 3, 5])]
    expected = (((s1 - t1[:, [0, 2]]) ** 2).mean() + ((s2 - t2[:, [1, 3, 5]]) ** 2).mean()) / 2
    assert kept_channel_hint([s1, s2], [t1, t2], kept).item() == pytest.approx(expected.item(), rel=1e-6)
    assert kept_channel_hint([t1[:, [0, 2]]], [t1], kept[:1]).item() == 0.0
    s1.requires_grad_(True)
    t1.requires_grad_(True)
    kept_channel_hint([s1], [t1], kept[:1]).backward()
    assert s1.grad.abs().sum() > 0 and t1.grad is None  # the teacher's side is a target
    with pytest.raises(DatafreeError, match="thinner student"):
        kept_channel_hint([s1], [t2], [torch.tensor([0, 1])])
