import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from datafree.data import DataSpec
from datafree.errors import DatafreeError
from datafree.hooks import BatchNormStatistics, embed, penultimate_module
from datafree.losses import (
    activation_norm,
    batch_moments,
    bn_stat_distance,
    class_balance,
    class_mean_alignment,
    disagreement,
    info_nce,
    input_statistics,
    l2_prior,
    total_variation,
)
from datafree.models import build_model
from datafree.synthesis import PRESETS, Generator, LiveStream, PixelGenerator, SynthesisConfig, Synthesizer, preset
from datafree.synthesis.engine import class_similarity, pair_targets
from datafree.synthesis.generators import DCGANConfig
from datafree.synthesis.procedural import dead_leaves

SPEC = DataSpec(1, 12, 12, 4, (0.5,), (0.25,), name="tiny")


def tiny_bn_teacher(seed=0):
    model = build_model("resnet8", SPEC, seed=seed, width=4)
    # give BN layers non-trivial running statistics, as a trained teacher has
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average: running stats of one real distribution
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *SPEC.shape, generator=torch.Generator().manual_seed(seed)) * 0.5 + 0.3)
    return model.eval()


# ------------------------------------------------------------------ loss terms, hand-computed
def test_bn_stat_distance():
    assert bn_stat_distance(torch.tensor([3.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.0, 4.0]),
                            torch.tensor([1.0, 1.0])).item() == pytest.approx(5.0)


@pytest.mark.parametrize("dims,layout", [((0, 2, 3), "contiguous"), ((0, 2, 3), "channels_last"), ((0,), "flat"),
                                         ((1, 3, 4), "groups")])
def test_batch_moments_match_mean_and_var_and_their_gradients(dims, layout):
    g = torch.Generator().manual_seed(0)
    shape = {"flat": (6, 5), "groups": (2, 3, 4, 5, 5)}.get(layout, (4, 3, 5, 5))
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    mean, var = batch_moments(x, dims)
    assert torch.allclose(mean, x.mean(dims)) and torch.allclose(var, x.var(dims, unbiased=False))
    # the closed-form backward against autograd's, and twice differentiable (torch's own checks)
    assert torch.autograd.gradcheck(lambda t: batch_moments(t, dims), (x,))
    assert torch.autograd.gradgradcheck(lambda t: batch_moments(t, dims), (x,))


def test_class_balance_is_negative_entropy_of_mean_prediction():
    logits = torch.tensor([[10.0, -10.0], [10.0, -10.0]])  # all mass on class 0
    assert class_balance(logits).item() == pytest.approx(0.0, abs=1e-6)
    balanced = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert class_balance(balanced).item() == pytest.approx(-math.log(2), rel=1e-5)


def test_activation_norm():
    assert activation_norm(torch.tensor([[1.0, -3.0]])).item() == pytest.approx(-2.0)


def test_disagreement_kinds_hand_computed():
    s = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert disagreement(s, t, "l1").tolist() == pytest.approx([0.5, 1.5])
    ps, pt = F.softmax(s, 1), F.softmax(t, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1)
    assert disagreement(s, t, "kl").tolist() == pytest.approx(kl.tolist(), rel=1e-5)
    # cmi: row 0 argmax s = 0 (tie -> 0), t = 0: agree; row 1: s -> 0, t -> 1: masked
    assert disagreement(s, t, "cmi").tolist() == pytest.approx([kl[0].item(), 0.0], rel=1e-5)
    m = (ps + pt) / 2
    js = 0.5 * ((pt * (pt / m).log()).sum(1) + (ps * (ps / m).log()).sum(1))
    assert disagreement(s, t, "js").tolist() == pytest.approx(js.tolist(), rel=1e-5)
    with pytest.raises(ValueError):
        disagreement(s, t, "nope")


def test_info_nce_hand_computed():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bank = torch.tensor([[-1.0, 0.0]])
    tau = 0.5
    # row 0: logits [2, 0, -2] -> CE = -log(e^2 / (e^2 + 1 + e^-2)); row 1: [0, 2, 0]
    r0 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    r1 = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert info_nce(q, k, bank, tau).item() == pytest.approx((r0 + r1) / 2, rel=1e-5)


def test_info_nce_within_class_takes_negatives_of_the_querys_class_only():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    bank = torch.tensor([[-1.0, 0.0], [0.0, -1.0]])
    labels, bank_labels = torch.tensor([0, 1, 0]), torch.tensor([1, 0])
    tau = 0.5
    # row 0 (class 0) sees keys 0 (its positive) and 2 (class 0) and bank row 1 (class 0): logits [2, 2, 0]
    r0 = -math.log(math.exp(2) / (2 * math.exp(2) + 1))
    # row 1 (class 1): its positive (2) and bank row 0 (class 1): [2, 0]
    r1 = -math.log(math.exp(2) / (math.exp(2) + 1))
    # row 2 (class 0, (1, 1) normalised): cosine 1/sqrt2 with keys 0 and 2, -1/sqrt2 with bank row 1
    s = 1 / math.sqrt(2)
    r2 = -math.log(math.exp(s / tau) / (2 * math.exp(s / tau) + math.exp(-s / tau)))
    got = info_nce(q, k, bank, tau, labels=labels, negative_labels=bank_labels)
    assert got.item() == pytest.approx((r0 + r1 + r2) / 3, rel=1e-5)
    # a query alone in its class has only its positive: nothing to push against, a zero loss, no NaN
    alone = info_nce(q[:2], k[:2], None, tau, labels=torch.tensor([0, 1]))
    assert alone.item() == pytest.approx(0.0, abs=1e-6)


def test_within_class_contrastive_term_reaches_the_generator_and_keeps_the_bank_classes():
    teacher = tiny_bn_teacher()
    config = SynthesisConfig(schedule="pool", contrastive=1.0, contrastive_within_class=True, batch_size=16,
                             lr=0.01, iterations=2, generator_config=DCGANConfig(nz=8, ngf=4, conditional=True))
    synth = Synthesizer(teacher, SPEC, config, seed=0)
    (x, answers, _), _ = synth.synthesize()
    assert torch.equal(synth.bank_labels, answers) and len(synth.bank) == len(answers)  # the teacher's answers
    z, y = synth._noise()
    terms = synth.loss_terms(synth.generator(z, y), y)
    assert set(terms) == {"contrastive"} and terms["contrastive"].item() > 0
    terms["contrastive"].backward()
    grads = [p.grad for p in synth.generator.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum().item() for g in grads) > 0
    # across classes the same batch and bank give another loss: the mask is in the optimised term
    across = dataclasses.replace(config, contrastive_within_class=False)
    plain = Synthesizer(teacher, SPEC, across, seed=0)
    plain.load_state_dict({**synth.state_dict(), "config": across.to_dict()})
    assert plain.loss_terms(plain.generator(z, y), y)["contrastive"].item() != pytest.approx(
        terms["contrastive"].item(), rel=1e-4)
    # the bank's classes survive a save and resume
    resumed = Synthesizer(teacher, SPEC, config, seed=0)
    resumed.load_state_dict(synth.state_dict())
    assert torch.equal(resumed.bank_labels, synth.bank_labels)


def test_class_mean_alignment_hand_computed():
    rows = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 5.0]])  # centred on (0, 5/3)
    # class 0's mean (2, 1) and class 1's (-2, 1), centred on their own mean (0, 1): (2, 0) and (-2, 0); class 2
    # is absent. Row 0 centred: (1, -5/3), row 1: (-1, -5/3), so each cosine is 1 / sqrt(1 + 25/9)
    features = torch.tensor([[2.0, 0.0], [2.0, 2.0], [-2.0, 1.0]])
    targets = torch.tensor([0, 0, 1])
    cos = 1 / math.sqrt(1 + 25 / 9)
    assert class_mean_alignment(features, targets, rows).item() == pytest.approx(1 - cos, rel=1e-5)
    # means along their rows: 0; against them: 2; a shift of every feature changes nothing
    aligned = 3 * rows  # centred class means = 3 x centred rows
    assert class_mean_alignment(aligned, torch.tensor([0, 1, 2]), rows).item() == pytest.approx(0.0, abs=1e-6)
    assert class_mean_alignment(aligned + 7, torch.tensor([0, 1, 2]), rows).item() == pytest.approx(0.0, abs=1e-6)
    assert class_mean_alignment(-aligned, torch.tensor([0, 1, 2]), rows).item() == pytest.approx(2.0, rel=1e-5)


def test_image_priors():
    x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    assert total_variation(x).item() == pytest.approx(0.0 + 1.0)
    assert l2_prior(x).item() == pytest.approx(0.5)


def test_input_statistics_hand_computed():
    # channel 0: values 0, 2 -> mean 1, std 1 -> 1; channel 1: values 3, -1 -> mean 1, std 2 -> 1 + 1
    x = torch.tensor([[[[0.0]], [[3.0]]], [[[2.0]], [[-1.0]]]])
    assert input_statistics(x).item() == pytest.approx(3.0)
    assert input_statistics(torch.tensor([[[[1.0]]], [[[-1.0]]]])).item() == pytest.approx(0.0)


# ------------------------------------------------------------------ engine
def test_input_statistics_term_pulls_the_pixels_to_the_teachers_input_normalisation():
    # a BN-free teacher and ZSKD's pixels with a negligible class term: only the input-statistics term moves them
    dark = DataSpec(1, 12, 12, 4, (0.2,), (0.15,), name="dark")  # dark, narrow images (a uniform start: 0.5, 0.29)
    teacher = build_model("lenet5_half", dark, seed=0).eval()

    def batch(weight):
        config = preset("zskd", oh=1e-6, input_stats=weight, batch_size=32, iterations=100, lr=0.05)
        return dark.denormalize(Synthesizer(teacher, dark, config, seed=0).synthesize()[0][0])

    off, on = batch(0.0), batch(1.0)
    assert abs(off.mean().item() - 0.5) < 0.05  # uniform start, nothing pulls it
    assert abs(on.mean().item() - 0.2) < abs(off.mean().item() - 0.2) - 0.15
    assert abs(on.std().item() - 0.15) < abs(off.std().item() - 0.15) - 0.05


def test_generator_outputs_normalised_images_of_the_spec():
    g = Generator(SPEC, nz=8, ngf=4, conditional=True)
    x = g(torch.randn(3, 8), torch.tensor([0, 1, 2]))
    assert x.shape == (3, *SPEC.shape)
    pixels = SPEC.denormalize(x)
    assert pixels.min() >= 0 and pixels.max() <= 1
    pixels = PixelGenerator(SPEC, 5)
    assert pixels(None).shape == (5, *SPEC.shape)
    with torch.no_grad():
        pixels.images.mul_(100)
    pixels.clamp_()
    raw = SPEC.denormalize(pixels(None))
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5 and (raw < 1e-3).any() and (raw > 1 - 1e-3).any()


def test_coarse_pixels_are_upsampled_smoothly_and_stay_in_range():
    pixels = PixelGenerator(SPEC, 3, torch.Generator().manual_seed(0), scale=4)
    assert pixels.images.shape[-2:] == (3, 3)  # 12x12 images, optimised at 3x3
    x = pixels(None)
    assert x.shape == (3, *SPEC.shape)
    raw = SPEC.denormalize(x)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    # neighbouring pixels differ far less than in independent noise of the same range
    assert (x[..., 1:] - x[..., :-1]).abs().mean() < 0.25 * (x[..., 1:] - x[..., :-1].roll(1, 0)).abs().mean()
    config = preset("deepinversion", batch_size=4, iterations=2, pixel_scale=4)
    (out, _, _), _ = Synthesizer(tiny_bn_teacher(), SPEC, config, seed=0).synthesize()
    assert out.shape == (4, *SPEC.shape)


def test_pixels_can_start_near_the_teachers_input_mean():
    dark = DataSpec(1, 12, 12, 4, (0.2,), (0.3,), name="dark")  # a dataset of dark images, as Fashion-MNIST
    uniform = dark.denormalize(PixelGenerator(dark, 64, torch.Generator().manual_seed(0))(None))
    mean = dark.denormalize(PixelGenerator(dark, 64, torch.Generator().manual_seed(0), init="mean")(None))
    assert abs(uniform.mean().item() - 0.5) < 0.02  # uniform in [0, 1]
    assert abs(mean.mean().item() - 0.2) < 0.02 and mean.std() < 0.5 * uniform.std()
    assert mean.min() >= -1e-5 and mean.max() <= 1 + 1e-5
    assert preset("deepinversion", pixel_init="mean").generator_config.pixel_init == "mean"
    with pytest.raises(DatafreeError, match="unknown pixel_init 'dark'"):
        preset("deepinversion", pixel_init="dark")


def test_dead_leaves_are_flat_regions_with_edges_and_grey_levels():
    g = torch.Generator().manual_seed(0)
    x = dead_leaves(32, 3, 28, 28, generator=g)
    assert x.shape == (32, 3, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, dead_leaves(32, 3, 28, 28, generator=torch.Generator().manual_seed(0)))  # seeded
    step = (x[..., 1:] - x[..., :-1]).abs()
    assert 0.5 < (step == 0).float().mean() < 0.99  # mostly flat regions, with edges between them
    noise = torch.rand(32, 3, 28, 28, generator=g)
    assert (noise[..., 1:] - noise[..., :-1] == 0).float().mean() < 0.01
    levels = [len(image.unique()) for image in x[:, 0]]
    assert min(levels) >= 2 and sum(levels) / len(levels) > 5  # several leaves show in every image
    assert (x[:, 0] != x[:, 1]).any()  # each channel has its own grey level: colours, not greys, on RGB
    with pytest.raises(ValueError):
        dead_leaves(4, 1, 8, 8, min_radius=0.5, max_radius=0.1)


def test_pixels_can_start_as_dead_leaves():
    start = PixelGenerator(SPEC, 8, torch.Generator().manual_seed(0), init="dead_leaves")(None)
    assert torch.allclose(start, SPEC.normalize(dead_leaves(8, 1, 12, 12, generator=torch.Generator().manual_seed(0))))
    config = preset("deepinversion", batch_size=4, iterations=2, pixel_init="dead_leaves")
    (out, _, _), _ = Synthesizer(tiny_bn_teacher(), SPEC, config, seed=0).synthesize()
    assert out.shape == (4, *SPEC.shape) and torch.isfinite(out).all()


def test_a_pool_of_zero_steps_is_the_start_labelled_by_the_teacher():
    """iterations=0: a procedural set, each batch the generator's start as it is (no gradient, no loss terms)."""
    teacher = tiny_bn_teacher()
    config = preset("zskd", batch_size=16, iterations=0, pixel_init="dead_leaves")
    (x, y, logits), terms = Synthesizer(teacher, SPEC, config, seed=0).synthesize()
    assert terms == {}
    raw = SPEC.denormalize(x)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert ((raw[..., 1:] - raw[..., :-1]).abs() < 1e-6).float().mean() > 0.5  # dead leaves: flat regions, unmoved
    with torch.no_grad():
        assert torch.allclose(logits, teacher(x), atol=1e-5) and torch.equal(y, logits.argmax(1))
    with pytest.raises(DatafreeError, match="needs schedule=pool"):
        preset("fast5", iterations=0)
    with pytest.raises(DatafreeError, match="iterations >= 0"):
        preset("zskd", iterations=-1)


def test_fourier_pixels_start_at_the_input_mean_and_stay_in_range():
    dark = DataSpec(1, 12, 12, 4, (0.2,), (0.3,), name="dark")
    pixels = PixelGenerator(dark, 8, torch.Generator().manual_seed(0), param="fourier")
    raw = dark.denormalize(pixels(None))
    assert raw.shape == (8, *dark.shape)
    assert abs(raw.mean().item() - 0.2) < 0.01 and raw.std() < 0.05  # a flat start at the data's mean intensity
    with torch.no_grad():
        pixels.spectrum.mul_(1e4)  # far outside any useful range: the sigmoid still bounds every pixel
    raw = dark.denormalize(pixels(None))
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5 and (raw < 1e-3).any() and (raw > 1 - 1e-3).any()
    before = pixels.spectrum.clone()
    pixels.clamp_()  # nothing to project
    assert torch.equal(pixels.spectrum, before)
    assert preset("deepinversion", pixel_param="fourier").generator_config.pixel_param == "fourier"
    with pytest.raises(DatafreeError, match="leave pixel_scale and pixel_init"):
        preset("deepinversion", pixel_param="fourier", pixel_scale=2)
    with pytest.raises(DatafreeError, match="unknown pixel_param 'wavelet'"):
        preset("deepinversion", pixel_param="wavelet")


def test_fourier_std_sets_how_far_apart_the_fourier_starts_are():
    """A larger start spreads the images of a batch further from each other (the diversity it is there for), the
    config reaches the generator, and the option is refused where it would be silently ignored."""

    def spread(std):
        config = preset("deepinversion", pixel_param="fourier", fourier_std=std).generator_config
        images = config.build(SPEC, 16, seed=0)(None)
        return torch.cdist(images.flatten(1), images.flatten(1)).mean().item()

    assert preset("deepinversion", pixel_param="fourier").generator_config.fourier_std == 0.01
    assert spread(0.3) > 10 * spread(0.01) > 0
    with pytest.raises(DatafreeError, match="use it with pixel_param=fourier"):
        preset("deepinversion", fourier_std=0.3)
    with pytest.raises(DatafreeError, match="fourier_std must be > 0"):
        preset("deepinversion", pixel_param="fourier", fourier_std=0.0)


def test_fourier_pixels_move_low_frequencies_first():
    """One Adam step on a loss that pulls every pixel towards independent noise: raw pixels take the noise's flat
    spectrum, the Fourier form a change whose energy sits in the low frequencies (the 1/|f| prior), and the gradient
    reaches every coefficient."""
    target = torch.randn(4, *SPEC.shape, generator=torch.Generator().manual_seed(1))

    def step_change(param):
        pixels = PixelGenerator(SPEC, 4, torch.Generator().manual_seed(0), param=param)
        start = pixels(None).detach().clone()  # raw pixels: the parameter itself, changed in place
        opt = torch.optim.Adam(pixels.parameters(), lr=0.01)
        F.mse_loss(pixels(None), target).backward()
        grad = next(pixels.parameters()).grad
        assert grad is not None and (grad != 0).float().mean() > 0.9
        opt.step()
        return pixels(None).detach() - start

    def low_share(change):
        power = torch.fft.rfft2(change).abs() ** 2
        freq = (torch.fft.fftfreq(SPEC.height)[:, None] ** 2 + torch.fft.rfftfreq(SPEC.width)[None, :] ** 2).sqrt()
        return (power[..., freq <= 0.25].sum() / power.sum()).item()

    # a fifth of the coefficients are at |f| <= 0.25: raw pixels put about that share of the change there (0.22)
    fourier, pixels = low_share(step_change("fourier")), low_share(step_change("pixels"))
    assert fourier > 0.6 and pixels < 0.3, (fourier, pixels)
    config = preset("deepinversion", batch_size=4, iterations=2, pixel_param="fourier")
    (out, _, _), _ = Synthesizer(tiny_bn_teacher(), SPEC, config, seed=0).synthesize()
    raw = SPEC.denormalize(out)
    assert out.shape == (4, *SPEC.shape) and raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_tanh_bn_generator_batches_have_normalised_statistics():
    g = Generator(SPEC, nz=8, ngf=4, output="tanh-bn")
    x = g(torch.randn(64, 8, generator=torch.Generator().manual_seed(0)))
    per_channel = x.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(SPEC.channels), atol=1e-4)
    assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(SPEC.channels), atol=1e-2)
    with pytest.raises(ValueError, match="unknown generator output"):
        Generator(SPEC, output="relu")


def test_bn_statistics_loss_decreases_when_optimising_pixels():
    teacher = tiny_bn_teacher()
    stats = BatchNormStatistics(teacher, first_layer_weight=2.0)
    x = torch.randn(16, *SPEC.shape, generator=torch.Generator().manual_seed(1), requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)
    losses = []
    for _ in range(40):
        with stats.recording():
            teacher(x)
            loss = stats.loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    teacher(x)  # outside recording: nothing is kept
    with pytest.raises(DatafreeError):
        stats.loss()


def test_bn_momentum_blends_with_previous_batch():
    teacher = tiny_bn_teacher()
    stats = BatchNormStatistics(teacher, momentum=0.9)
    with stats.recording():
        teacher(torch.zeros(4, *SPEC.shape))
    first = stats._blended[0][0].clone()
    with stats.recording():
        teacher(torch.ones(4, *SPEC.shape))
    stats_plain = BatchNormStatistics(teacher)
    with stats_plain.recording():
        teacher(torch.ones(4, *SPEC.shape))
    second_raw = torch.ones(4, *SPEC.shape)
    mean_raw = teacher.conv1(second_raw).mean((0, 2, 3))
    assert torch.allclose(stats._blended[0][0], 0.9 * first + 0.1 * mean_raw, atol=1e-5)


def param_snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_runs_and_changes_its_generator(name):
    teacher = tiny_bn_teacher()
    student = build_model("lenet5_half", SPEC, seed=1)
    small = {"nz": 8, "ngf": 4} if PRESETS[name]["generator"] in ("dcgan", "noisy") else {}
    config = preset(name, batch_size=8, iterations=2, bank_size=16, **small)
    synth = Synthesizer(teacher, SPEC, config, student=student, seed=0)
    if config.schedule == "pool":  # the pool schedule builds a fresh generator per round
        (x, y, logits), terms = synth.synthesize()
        assert terms and all(math.isfinite(v) for v in terms.values())
    else:
        before = param_snapshot(synth.generator)
        (x, y, logits), terms = synth.synthesize()
        after = param_snapshot(synth.generator)
        assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert x.shape == (8, *SPEC.shape) and y.shape == (8,) and logits.shape == (8, 4)
    with torch.no_grad():  # the labels are the teacher's own answers on the images it returns
        assert torch.allclose(logits, teacher(x), atol=1e-5)
    assert torch.equal(y, logits.argmax(1))


def test_pool_round_changes_the_images_it_optimises():
    teacher = tiny_bn_teacher()
    config = preset("deepinversion", batch_size=8, iterations=1)
    one = Synthesizer(teacher, SPEC, config, seed=0).synthesize()[0][0]
    many = Synthesizer(teacher, SPEC, preset("deepinversion", batch_size=8, iterations=10), seed=0).synthesize()[0][0]
    assert one.shape == many.shape and not torch.allclose(one, many)
    raw = SPEC.denormalize(many)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5  # optimised pixels stay in the valid range


def test_generator_gets_gradient_through_the_student():
    teacher = tiny_bn_teacher()
    student = build_model("lenet5_half", SPEC, seed=3)
    config = SynthesisConfig(schedule="online", adv=1.0, adv_kind="l1", generator_config=DCGANConfig(nz=8, ngf=4),
                             batch_size=8)
    synth = Synthesizer(teacher, SPEC, config, student=student, seed=0)
    z, y = synth._noise()
    loss = sum(synth.loss_terms(synth.generator(z, y), y).values())
    loss.backward()
    grads = [p.grad for p in synth.generator.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum().item() for g in grads) > 0
    # the reference defect: with the teacher standing in for the student there is nothing to learn
    synth_bad = Synthesizer(teacher, SPEC, config, student=teacher, seed=0)
    x = synth_bad.generator(z, y)
    loss = sum(synth_bad.loss_terms(x, y).values())
    assert loss.item() == 0.0
    # and the student's own parameters get no gradient from a generator step
    student.zero_grad(set_to_none=True)
    synth.synthesize()
    assert all(p.grad is None for p in student.parameters())


def test_class_mean_term_reaches_the_generator_and_pulls_class_means_to_their_rows():
    teacher = tiny_bn_teacher()
    config = SynthesisConfig(schedule="pool", class_mean=1.0, batch_size=16, lr=0.01,
                             generator_config=DCGANConfig(nz=8, ngf=4, conditional=True))
    synth = Synthesizer(teacher, SPEC, config, seed=0)
    z, y = synth._noise()
    terms = synth.loss_terms(synth.generator(z, y), y)
    assert set(terms) == {"class_mean"} and 0 < terms["class_mean"].item() <= 2
    terms["class_mean"].backward()
    grads = [p.grad for p in synth.generator.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum().item() for g in grads) > 0
    before = terms["class_mean"].item()
    for _ in range(30):  # the term alone, minimised on fixed noise, falls
        synth.optimizer.zero_grad()
        loss = synth.loss_terms(synth.generator(z, y), y)["class_mean"]
        loss.backward()
        synth.optimizer.step()
    assert synth.loss_terms(synth.generator(z, y), y)["class_mean"].item() < 0.7 * before


class _Recorder(torch.nn.Module):
    """A teacher that keeps the views it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(SPEC.shape[-1], SPEC.num_classes)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach())
        return self.head(x.mean((1, 2)))


@pytest.mark.parametrize("flip", [True, False])
def test_augment_flip_decides_whether_the_teacher_sees_mirrored_views(flip):
    # a ramp rising left to right: a crop keeps it rising, only a flip makes it fall
    teacher = _Recorder()
    config = preset("deepinversion", bn=0.0, tv=0.0, l2=0.0, batch_size=64, augment_flip=flip)
    synth = Synthesizer(teacher, SPEC, config, seed=0)
    x = torch.linspace(-1, 1, SPEC.shape[-1]).expand(64, *SPEC.shape).contiguous()
    y = torch.zeros(64, dtype=torch.long)
    for _ in range(3):
        synth.loss_terms(x, y)
    slope = torch.cat(teacher.seen).diff(dim=-1).mean((1, 2, 3))
    assert (slope > 0).any()
    assert (slope < 0).any() == flip


@pytest.mark.parametrize("scale", [0.5, 0.25])
def test_augment_scale_is_the_smallest_crop_the_teacher_sees(scale):
    # a crop of side s (area s^2) zooms a ramp so that its slope is s times the image's: the views' slopes span
    # [sqrt(scale), 1] of it
    teacher = _Recorder()
    config = preset("deepinversion", bn=0.0, tv=0.0, l2=0.0, batch_size=256, augment_flip=False, augment_scale=scale)
    synth = Synthesizer(teacher, SPEC, config, seed=0)
    x = torch.linspace(-1, 1, SPEC.shape[-1]).expand(256, *SPEC.shape).contiguous()
    synth.loss_terms(x, torch.zeros(256, dtype=torch.long))
    ratio = teacher.seen[0][..., 1:-1].diff(dim=-1).mean((1, 2, 3)) / x.diff(dim=-1).mean()
    assert ratio.min() >= scale ** 0.5 - 0.02 and ratio.max() <= 1.02
    assert ratio.min() <= scale ** 0.5 + 0.05  # the smallest crops are drawn
    with pytest.raises(DatafreeError, match="augment_scale"):
        preset("deepinversion", augment_scale=0.0)


def test_bn_methods_refuse_a_teacher_without_batchnorm():
    teacher = build_model("lenet5_half", SPEC, seed=0)
    with pytest.raises(DatafreeError, match="no BatchNorm"):
        Synthesizer(teacher, SPEC, preset("deepinversion"), seed=0)
    student = build_model("lenet5_half", SPEC, seed=1)
    for name in ("dafl", "dfad", "zskt"):
        Synthesizer(teacher, SPEC, preset(name, nz=8, ngf=4, batch_size=4), student=student, seed=0).synthesize()


def test_adversarial_method_needs_the_student():
    with pytest.raises(DatafreeError, match="needs the student"):
        Synthesizer(tiny_bn_teacher(), SPEC, preset("dfad"), seed=0)


def test_synthesis_is_seeded():
    teacher = tiny_bn_teacher()
    config = preset("dafl", nz=8, ngf=4, batch_size=4)
    a = Synthesizer(teacher, SPEC, config, seed=5).synthesize()[0][0]
    b = Synthesizer(teacher, SPEC, config, seed=5).synthesize()[0][0]
    c = Synthesizer(teacher, SPEC, config, seed=6).synthesize()[0][0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_live_stream_online_and_pool():
    teacher = tiny_bn_teacher()
    student = build_model("lenet5_half", SPEC, seed=1)
    online = LiveStream(Synthesizer(teacher, SPEC, preset("dfad", nz=8, ngf=4, batch_size=6), student=student), 6)
    batches = [next(online) for _ in range(6)]  # student_steps=5: generator updated at steps 0 and 5
    assert online.synth.calls == 2 and all(b[0].shape == (6, *SPEC.shape) for b in batches)
    assert not torch.equal(batches[1][0], batches[2][0])  # fresh samples between generator steps
    pool = LiveStream(Synthesizer(teacher, SPEC, preset("fast", nz=8, ngf=4, batch_size=4, iterations=1),
                                  student=student), 3, pool_size=6)
    for _ in range(11):
        x, y, logits = next(pool)
        assert x.shape == (3, *SPEC.shape)
    assert pool.synth.calls == 3 and len(pool.pool[0]) == 6


def test_live_pool_seeded_from_stored_images_keeps_them_and_grows():
    teacher = tiny_bn_teacher()
    student = build_model("lenet5_half", SPEC, seed=1)
    stored = torch.rand(5, *SPEC.shape, generator=torch.Generator().manual_seed(0))
    stream = LiveStream(Synthesizer(teacher, SPEC, preset("adi", batch_size=4, iterations=1), student=student),
                        3, pool_size=100)
    stream.seed_pool(stored)
    x, y, logits = stream.pool
    assert torch.equal(x, stored)
    with torch.no_grad():
        expected = teacher(stored)
    assert torch.allclose(logits, expected, atol=1e-5) and torch.equal(y, expected.argmax(1))
    next(stream)  # first call synthesizes a batch against the student and puts it in front of the stored images
    assert len(stream.pool[0]) == 9 and torch.equal(stream.pool[0][4:], stored)
    online = LiveStream(Synthesizer(teacher, SPEC, preset("dfad", nz=8, ngf=4, batch_size=6), student=student), 6)
    with pytest.raises(DatafreeError, match="online method"):
        online.seed_pool(stored)


def test_priority_sampling_draws_in_proportion_to_the_students_disagreement_and_resumes():
    teacher = tiny_bn_teacher()
    student = build_model("lenet5_half", SPEC, seed=1).train()
    stored = torch.rand(5, *SPEC.shape, generator=torch.Generator().manual_seed(0))
    config = preset("adi", batch_size=4, iterations=1, priority=0.5)
    stream = LiveStream(Synthesizer(teacher, SPEC, config, student=student), 3, pool_size=100, seed=2)
    stream.seed_pool(stored)
    next(stream)  # the synthesis call grows the pool to 9 images and measures the student on every one
    x, _, t_logits = stream.pool
    with torch.no_grad():
        by_hand = disagreement(student.eval()(x), t_logits, "js", config.adv_temperature)
    student.train()
    assert torch.allclose(stream.priorities, by_hand, atol=1e-6) and stream.priorities.std() > 0
    assert student.training and all(p.requires_grad for p in student.parameters())  # left as it was
    weights = stream.sampling_weights()
    assert torch.allclose(weights, 0.5 / 9 + 0.5 * by_hand / by_hand.sum(), atol=1e-6)
    # the draws follow the weights: one image holding all the disagreement gets 0.5 + 0.5 / 9 of them
    stream.priorities = torch.tensor([0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    stream.batch_size = 20_000
    share = (stream._draw(9) == 2).float().mean().item()
    assert abs(share - (0.5 + 0.5 / 9)) < 0.015
    stream.priorities, stream.batch_size = by_hand, 3
    # resumed from its state, the stream draws what the uninterrupted one draws
    state = stream.state_dict()
    ahead = [next(stream)[0] for _ in range(4)]
    again = LiveStream(Synthesizer(teacher, SPEC, config, student=student), 3, pool_size=100, seed=7)
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(ahead, (next(again)[0] for _ in range(4))))
    # no disagreement anywhere (a student that answers as the teacher does): uniform draws
    stream.priorities = torch.zeros(9)
    assert stream.sampling_weights() is None
    with pytest.raises(DatafreeError, match="between 0 and 1"):
        preset("adi", priority=1.5)
    with pytest.raises(DatafreeError, match="needs a pool or meta method"):
        preset("dfad", priority=0.5)


def test_detour_asks_for_a_neighbouring_class_in_the_first_half_of_the_steps():
    teacher = tiny_bn_teacher()
    config = preset("deepinversion", batch_size=8, iterations=4, detour=0.5)
    synth = Synthesizer(teacher, SPEC, config, seed=3)
    asked: list[torch.Tensor] = []
    terms = synth.loss_terms

    def recording(x, y, soft=None):
        asked.append((soft if soft is not None else F.one_hot(y, SPEC.num_classes).float()).argmax(1))
        return terms(x, y, soft)

    synth.loss_terms = recording
    x, _, _ = synth.synthesize()[0]
    own = asked[-1]
    assert all(torch.equal(a, own) for a in asked[2:])  # the second half: every image's own class
    first = asked[0]
    assert torch.equal(asked[1], first) and torch.equal(first[:4], own[:4])  # the first half: the share's rows only
    assert (first[4:] != own[4:]).all()  # ask for another class
    assert x.shape == (8, *SPEC.shape)
    with pytest.raises(DatafreeError, match="between 0 and 1"):
        preset("deepinversion", detour=1.5)
    with pytest.raises(DatafreeError, match="needs a pool or meta method"):
        preset("dfad", detour=0.5)


def test_unknown_preset_and_bad_config():
    with pytest.raises(DatafreeError, match="unknown method"):
        preset("gan9000")
    with pytest.raises(DatafreeError, match="pixels generator only works with the pool"):
        SynthesisConfig(schedule="online", generator="pixels")
    with pytest.raises(DatafreeError, match="unknown synthesis options"):
        preset("dafl", colour="red")
    synth = Synthesizer(tiny_bn_teacher(), SPEC, SynthesisConfig(), seed=0)
    with pytest.raises(DatafreeError, match="no loss term"):
        synth.synthesize()


def test_class_similarity_of_the_final_layer():
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SPEC.channels * 12 * 12, 3))
    with torch.no_grad():  # class directions (1, 0), (1, 1), (0, -1): cosines c, 0 and -c with c = 1/sqrt(2)
        teacher[1].weight.zero_()
        teacher[1].weight[0, 0], teacher[1].weight[1, 0], teacher[1].weight[1, 1], teacher[1].weight[2, 1] = 1, 1, 1, -1
    c = 2 ** -0.5
    expected = torch.tensor([[1.0, c, 1e-3],  # (1, c, 0) already spans [0, 1]; 0 is floored
                             [2 * c / (1 + c), 1.0, 1e-3],  # (c, 1, -c) scaled from [-c, 1]
                             [c / (1 + c), 1e-3, 1.0]])  # (0, -c, 1) scaled from [-c, 1]
    assert torch.allclose(class_similarity(teacher), expected, atol=1e-6)


def test_dirichlet_soft_targets_are_seeded_distributions_used_by_the_one_hot_term():
    teacher = tiny_bn_teacher()
    config = preset("zskd", batch_size=6, iterations=1)
    draws = [Synthesizer(teacher, SPEC, config, seed=3)._draw() for _ in range(2)]
    (z, y, soft), (_, _, again) = draws
    assert soft.shape == (6, SPEC.num_classes) and torch.allclose(soft.sum(1), torch.ones(6))
    assert torch.equal(soft, again)
    synth = Synthesizer(teacher, SPEC, config, seed=3)
    x = torch.randn(6, *SPEC.shape, generator=torch.Generator().manual_seed(0))
    logits = teacher(x)
    expected = -(soft * torch.log_softmax(logits / 20.0, dim=1)).sum(1).mean()
    assert synth.loss_terms(x, y, soft)["oh"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_several_dirichlet_betas_alternate_across_the_batch():
    """ZSKD's two scales: a large beta gives targets near the class-similarity row, a small one
    gives targets concentrated on (mostly) one class."""
    teacher = tiny_bn_teacher()
    synth = Synthesizer(teacher, SPEC, preset("zskd", batch_size=40, iterations=1, dirichlet=[1000.0, 0.01]), seed=0)
    _, y, soft = synth._draw()
    mean = synth.class_similarity[y] / synth.class_similarity[y].sum(1, keepdim=True)
    assert torch.allclose(soft[0::2], mean[0::2], atol=0.05)  # beta 1000: the mean of the Dirichlet
    assert soft[1::2].max(1).values.min() > 0.9  # beta 0.01: nearly one-hot
    with pytest.raises(DatafreeError, match="dirichlet"):
        preset("zskd", dirichlet=[1.0, 0.0])
    single = Synthesizer(teacher, SPEC, preset("zskd", batch_size=6, iterations=1, dirichlet=[2.0]), seed=3)._draw()
    same = Synthesizer(teacher, SPEC, preset("zskd", batch_size=6, iterations=1, dirichlet=2.0), seed=3)._draw()
    assert torch.equal(single[2], same[2])  # one beta as a list or a number: the same targets


def test_pair_targets_split_a_share_of_the_batch_between_its_class_and_a_similar_one():
    """Boundary targets: the first round(share * batch) samples put 0.5-0.75 on their class and the rest on one
    other class, drawn by similarity; the others keep their Dirichlet (or one-hot) targets; seeded."""
    teacher = tiny_bn_teacher()
    config = preset("zskd", batch_size=40, iterations=1, dirichlet=0.0, pair_targets=0.5)
    synth = Synthesizer(teacher, SPEC, config, seed=3)
    _, y, soft = synth._draw()
    assert torch.equal(soft, Synthesizer(teacher, SPEC, config, seed=3)._draw()[2])
    assert torch.allclose(soft.sum(1), torch.ones(40))
    pairs, rest = soft[:20], soft[20:]
    assert torch.equal(rest, F.one_hot(y[20:], SPEC.num_classes).float())
    own = pairs[torch.arange(20), y[:20]]
    assert own.min() >= 0.5 and own.max() <= 0.75 and own.std() > 0.01
    assert torch.equal((pairs > 0).sum(1), torch.full((20,), 2))  # exactly one partner, never the class itself
    # the partner follows the similarity row: a class with similarity at the floor is (almost) never drawn
    sim = torch.full((4, 4), 1e-3)
    sim[torch.arange(4), torch.arange(4)] = 1.0
    sim[torch.arange(4), (torch.arange(4) + 1) % 4] = 1.0
    ys = torch.arange(4).repeat(100)
    drawn = pair_targets(ys, sim[ys], torch.Generator().manual_seed(0))
    partner = (drawn * (1 - F.one_hot(ys, 4))).argmax(1)
    assert (partner == (ys + 1) % 4).float().mean() > 0.99
    # with Dirichlet targets too, only the paired share changes: the other samples keep the draws they had without it
    mixed = Synthesizer(teacher, SPEC, preset("zskd", batch_size=40, iterations=1, pair_targets=0.25), seed=3)._draw()
    plain = Synthesizer(teacher, SPEC, preset("zskd", batch_size=40, iterations=1), seed=3)._draw()
    assert torch.equal(mixed[1], plain[1]) and torch.equal(mixed[2][10:], plain[2][10:])
    assert not torch.equal(mixed[2][:10], plain[2][:10])
    for share in (-0.1, 1.5):
        with pytest.raises(DatafreeError, match="pair_targets"):
            preset("zskd", pair_targets=share)
    one_class = DataSpec(1, 12, 12, 1, (0.5,), (0.25,))
    with pytest.raises(DatafreeError, match="this data has one"):
        Synthesizer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 1)), one_class,
                    preset("zskd", batch_size=4, dirichlet=0.0, pair_targets=0.5), seed=0)


def test_pair_power_concentrates_the_partners_on_the_most_similar_classes():
    """Partners are drawn in proportion to similarity ** pair_power: power 1 keeps the row's own law (and its draws),
    power 3 moves the mass towards the nearest class by the cube of the ratio."""
    sim = torch.tensor([[1.0, 0.8, 0.4, 0.2]]).repeat(4000, 1)
    ys = torch.zeros(4000, dtype=torch.long)

    def shares(power: float) -> torch.Tensor:
        drawn = pair_targets(ys, sim, torch.Generator().manual_seed(1), power)
        return torch.bincount((drawn * (1 - F.one_hot(ys, 4))).argmax(1), minlength=4).float() / len(ys)

    # power 1 is the thirtieth round's law, draw for draw (stored sets keep their targets): replay it by hand
    replay = torch.Generator().manual_seed(1)
    others = sim.clone()
    others[:, 0] = 0.0
    partner = torch.multinomial(others, 1, generator=replay).squeeze(1)
    own = 0.5 + 0.25 * torch.rand(len(ys), generator=replay)
    drawn = pair_targets(ys, sim, torch.Generator().manual_seed(1), 1.0)
    assert torch.equal(drawn[:, 0], own) and torch.equal(drawn[torch.arange(len(ys)), partner], 1 - own)
    for power in (1.0, 3.0):
        expected = sim[0, 1:] ** power / (sim[0, 1:] ** power).sum()
        assert shares(power)[0] == 0 and torch.allclose(shares(power)[1:], expected, atol=0.03)
    assert shares(3.0)[1] > shares(1.0)[1] + 0.2  # 0.88 of the pairs on the nearest class against 0.57
    teacher = tiny_bn_teacher()
    options = dict(batch_size=40, iterations=1, dirichlet=0.0, pair_targets=1.0)
    sharp = Synthesizer(teacher, SPEC, preset("zskd", **options, pair_power=4.0), seed=3)._draw()
    plain = Synthesizer(teacher, SPEC, preset("zskd", **options), seed=3)._draw()
    assert torch.equal(sharp[1], plain[1]) and not torch.equal(sharp[2], plain[2])  # the engine passes the power on
    with pytest.raises(DatafreeError, match="pair_power"):
        preset("zskd", pair_power=0.0)


def test_pair_targets_reach_the_pixels_through_the_class_term():
    """The boundary targets are what the one-hot term's gradient pulls the pixels towards."""
    teacher = tiny_bn_teacher()
    synth = Synthesizer(teacher, SPEC, preset("zskd", batch_size=8, iterations=1, dirichlet=0.0, pair_targets=1.0,
                                              pixel_scale=1), seed=0)
    z, y, soft = synth._draw()
    pixels = list(synth.generator.parameters())
    grad_pair = torch.autograd.grad(synth.loss_terms(synth.generator(z, y), y, soft)["oh"], pixels)[0]
    grad_onehot = torch.autograd.grad(synth.loss_terms(synth.generator(z, y), y, None)["oh"], pixels)[0]
    assert grad_pair.abs().sum() > 0 and not torch.allclose(grad_pair, grad_onehot)


def one_class_teacher():
    """Sees class 0 in everything: the signature of a collapsed generator."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 4))
    with torch.no_grad():
        net[1].weight.fill_(1e-3)  # small, not zero: the images get a gradient, and class 0 always wins
        net[1].bias.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))
    return net


def flat_at_the_mean_teacher():
    """No BatchNorm, and every ReLU off on a flat image at the input mean (normalised 0): no gradient to the input
    there, as the BN-free LeNet-5 on Fourier pixels' default start."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(400, 4))
    with torch.no_grad():
        net[0].weight.fill_(0.2)
        net[0].bias.fill_(-1.0)
    return net


def test_a_start_with_no_gradient_stops_at_the_first_step(tmp_path):
    from datafree import api
    from datafree.checkpoint import ModelInfo

    flat = preset("zskd", batch_size=8, iterations=3, dirichlet=0.0, pixel_param="fourier")
    synth = Synthesizer(flat_at_the_mean_teacher(), SPEC, flat, seed=0)
    with pytest.raises(DatafreeError, match=r"no gradient reaches the synthetic images .*--set fourier_std=0.3"):
        synth.synthesize()
    # raw pixels from uniform noise reach the live part of the same teacher: no error, and the images move (the same
    # seed draws the same start, so one step and three give different images only if the steps change them)
    def pixels_after(steps):
        config = preset("zskd", batch_size=8, iterations=steps, dirichlet=0.0)
        return Synthesizer(flat_at_the_mean_teacher(), SPEC, config, seed=0).synthesize()[0][0]

    assert not torch.allclose(pixels_after(1), pixels_after(3))
    # through the library: a one-line error, and no output directory left behind
    info = ModelInfo("flat", SPEC)
    with pytest.raises(DatafreeError, match="no gradient reaches"):
        api.synthesize(tmp_path / "set", flat_at_the_mean_teacher(), info, "zskd", 8, config=flat, seed=0,
                       progress=False)
    assert not (tmp_path / "set").exists()


def test_collapse_stops_the_run_after_patience_batches():
    config = preset("zskd", batch_size=8, iterations=1, collapse_patience=3, dirichlet=0.0)
    synth = Synthesizer(one_class_teacher(), SPEC, config, seed=0)
    synth.synthesize()
    synth.synthesize()
    state = synth.state_dict()
    with pytest.raises(DatafreeError, match="collapsed: 100% of the images in one teacher class in 3 batches"):
        synth.synthesize()
    resumed = Synthesizer(one_class_teacher(), SPEC, config, seed=0)
    resumed.load_state_dict(state)  # the count survives a resume
    with pytest.raises(DatafreeError, match="collapsed"):
        resumed.synthesize()
    never = Synthesizer(one_class_teacher(), SPEC, preset("zskd", batch_size=8, iterations=1, collapse_patience=0,
                                                          dirichlet=0.0), seed=0)
    for _ in range(4):
        never.synthesize()
    assert never.collapsed == 0


def test_generator_fields_live_with_their_generator_and_the_flat_form_is_kept():
    """nz/ngf/conditional/output belong to the DCGAN config, pixel_scale to the pixels'; manifests,
    saved states and --set keep the flat keys (the other generator's at their defaults)."""
    from datafree.synthesis.generators import DCGANConfig, PixelConfig

    fast = preset("fast5", ngf=16)
    assert fast.generator_config == DCGANConfig(conditional=True, ngf=16)
    flat = fast.to_dict()
    assert flat["ngf"] == 16 and flat["pixel_scale"] == 1 and SynthesisConfig.from_dict(flat) == fast
    zskd = preset("zskd", pixel_scale=2)
    assert zskd.generator_config == PixelConfig(pixel_scale=2) and zskd.to_dict()["nz"] == 256
    assert SynthesisConfig.from_dict(zskd.to_dict()) == zskd
    with pytest.raises(DatafreeError, match="ngf is not a setting of the pixels generator .*pixel_scale"):
        preset("zskd", ngf=16)
    with pytest.raises(DatafreeError, match="pixel_scale is not a setting of the dcgan generator"):
        preset("dfad", pixel_scale=2)
    with pytest.raises(DatafreeError, match="takes a PixelConfig"):
        SynthesisConfig(generator="pixels", generator_config=DCGANConfig())


def test_cosine_lr_schedule_decays_within_each_pool_round(monkeypatch):
    from datafree.schedules import cosine_decay

    seen: list[float] = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    config = preset("deepinversion", batch_size=4, iterations=4, lr=0.2, lr_schedule="cosine")
    synth = Synthesizer(tiny_bn_teacher(), SPEC, config, seed=0)
    synth.synthesize()
    synth.synthesize()  # a new round starts again at the full lr
    assert seen == pytest.approx([0.2 * cosine_decay(s, 4) for s in range(4)] * 2)
    assert seen[0] == pytest.approx(0.2) and seen[3] < 0.2 * 0.2
    seen.clear()
    Synthesizer(tiny_bn_teacher(), SPEC, preset("deepinversion", batch_size=4, iterations=3, lr=0.2), seed=0).synthesize()
    assert seen == [0.2] * 3  # the default keeps the lr constant


def test_cosine_lr_schedule_needs_a_pool_schedule():
    with pytest.raises(DatafreeError, match="schedule=pool"):
        preset("fast5", lr_schedule="cosine")
    with pytest.raises(DatafreeError, match="lr_schedule"):
        preset("deepinversion", lr_schedule="linear")


# ------------------------------------------------------------------ NAYER's noisy-layer generator
def test_noisy_layer_input_is_the_class_embedding_through_one_noisy_layer_per_copy_of_the_class_set():
    from datafree.synthesis import NoisyLayerGenerator

    embedding = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    g = NoisyLayerGenerator(SPEC, embedding, batch_size=6, nz=5, ngf=4)
    assert g.noise_weight.shape == (2, 3, 5)  # ceil(6 / 4 classes) layers
    g.decoder = torch.nn.Identity()  # look at the decoder's input
    y = torch.tensor([0, 1, 0, 2, 1, 3])
    v = g(None, y)
    e = F.batch_norm(embedding[y], None, None, training=True)  # the embedding BN, batch statistics
    k = torch.tensor([0, 0, 1, 0, 1, 0])  # earlier samples of the same class
    expected = torch.stack([e[i] @ g.noise_weight[k[i]] + g.noise_bias[k[i]] for i in range(6)])
    assert torch.allclose(v, expected, atol=1e-5)
    assert len(torch.unique(v, dim=0)) == 6  # no two samples share an input
    with pytest.raises(ValueError, match="3 samples of one class but 2 noisy layers"):
        g(None, torch.tensor([0, 0, 0, 1]))


def test_nayer_carries_its_generator_over_batches_and_redraws_the_noisy_layers():
    config = preset("nayer", adv=0.0, nz=8, ngf=4, batch_size=8, iterations=2, life=0)
    synth = Synthesizer(tiny_bn_teacher(), SPEC, config, seed=0)
    noise, body = synth.generator.noise_weight.clone(), param_snapshot(synth.generator.decoder)
    (x, y, _), terms = synth.synthesize()
    assert set(terms) == {"bn", "oh"} and x.shape == (8, *SPEC.shape)
    moved = param_snapshot(synth.generator.decoder)
    assert all(not torch.equal(a, b) for a, b in zip(body, moved) if a.ndim > 1)  # the body learnt
    assert not torch.equal(noise, synth.generator.noise_weight)  # fresh noisy layers (then adapted)
    synth.synthesize()
    # meta_lr 1: the body continues from where the last batch left it, it is not re-initialised
    again = Synthesizer(tiny_bn_teacher(), SPEC, config, seed=0)
    assert not all(torch.equal(a, b) for a, b in zip(param_snapshot(again.generator.decoder),
                                                      param_snapshot(synth.generator.decoder)))


def test_nayer_gradient_reaches_the_noisy_layers_the_embedding_norm_and_the_body():
    config = preset("nayer", adv=0.0, nz=8, ngf=4, batch_size=8)
    synth = Synthesizer(tiny_bn_teacher(), SPEC, config, seed=0)
    z, y = synth._noise()
    sum(synth.loss_terms(synth.generator(z, y), y).values()).backward()
    g = synth.generator
    for p in (g.noise_weight, g.embed_norm.weight, g.decoder.project.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert "embedding" not in dict(g.named_parameters())  # the class embedding is fixed


def test_nayer_life_reinitialises_the_generator_every_life_batches():
    def bodies(life, calls):
        synth = Synthesizer(tiny_bn_teacher(), SPEC, preset("nayer", adv=0.0, nz=8, ngf=4, batch_size=4,
                                                            iterations=1, life=life), seed=0)
        out = []
        for _ in range(calls):
            synth.synthesize()
            out.append(param_snapshot(synth.generator.decoder))
        return out

    kept, renewed = bodies(0, 3), bodies(2, 3)
    assert all(torch.equal(a, b) for a, b in zip(kept[1], renewed[1]))  # same until the life ends
    assert not all(torch.equal(a, b) for a, b in zip(kept[2], renewed[2]))  # call 3: a fresh generator


def test_nayer_label_embedding_is_the_teachers_class_weights_or_seeded_random_rows():
    from datafree.hooks import class_weights

    teacher = tiny_bn_teacher()
    synth = Synthesizer(teacher, SPEC, preset("nayer", adv=0.0, nz=8, ngf=4, batch_size=4), seed=0)
    assert torch.equal(synth.generator.embedding, class_weights(synth.teacher).float())
    random_rows = [Synthesizer(teacher, SPEC, preset("nayer", adv=0.0, nz=8, ngf=4, batch_size=4,
                                                     label_embedding="random"), seed=s).generator.embedding
                   for s in (0, 0, 1)]
    assert random_rows[0].shape == (4, 8) and torch.equal(random_rows[0], random_rows[1])
    assert not torch.equal(random_rows[0], random_rows[2])
    wide = build_model("lenet5_half", DataSpec(1, 12, 12, 6, (0.5,), (0.25,)), seed=0)  # 6 outputs, 4 classes
    with pytest.raises(DatafreeError, match="6 outputs, not one per class .*label_embedding=random"):
        preset("nayer", bn=0.0, adv=0.0).generator_config.build(SPEC, 8, 0, wide)
    no_linear = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 12), torch.nn.Flatten())
    with pytest.raises(DatafreeError, match="has no nn.Linear.*label_embedding=random"):
        preset("nayer", bn=0.0, adv=0.0).generator_config.build(SPEC, 8, 0, no_linear)


@pytest.mark.parametrize("terms, advice", [
    ({"class_mean": 1.0}, "the class_mean term reads them: leave it off (--set class_mean=0)"),
    ({"act": 0.1, "contrastive": 0.5}, "the act, contrastive terms read them: leave them off (--set act=0 --set contrastive=0)"),
    ({"dirichlet": 1.0}, "use one-hot targets (--set dirichlet=0 --set pair_targets=0)"),
    ({"pair_targets": 0.5}, "use one-hot targets (--set dirichlet=0 --set pair_targets=0)")])
def test_terms_that_read_the_classifier_say_how_to_do_without_one(terms, advice):
    """A teacher without nn.Linear (a convolutional classifier): the error names the options that need one."""
    no_linear = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 12), torch.nn.BatchNorm2d(4), torch.nn.Flatten())
    with pytest.raises(DatafreeError, match="Sequential has no nn.Linear layer") as raised:
        Synthesizer(no_linear, SPEC, preset("fast5", adv=0.0, nz=8, ngf=4, batch_size=4, **terms), seed=0)
    assert str(raised.value).endswith(advice)
    Synthesizer(no_linear, SPEC, preset("fast5", adv=0.0, nz=8, ngf=4, batch_size=4), seed=0)  # without them: runs


def test_nayer_settings_are_checked_and_round_trip_through_the_flat_form():
    nayer = preset("nayer", ngf=16, label_embedding="random")
    assert SynthesisConfig.from_dict(nayer.to_dict()) == nayer
    assert "label_embedding" not in preset("fast5").to_dict()  # older records keep their keys
    with pytest.raises(DatafreeError, match="label_embedding is not a setting of the dcgan generator"):
        preset("fast5", label_embedding="random")
    with pytest.raises(DatafreeError, match="only works with the meta schedule"):
        preset("nayer", schedule="pool")
    with pytest.raises(DatafreeError, match="unknown label_embedding"):
        preset("nayer", label_embedding="text")
    with pytest.raises(DatafreeError, match="life must be >= 0"):
        preset("nayer", life=-1)


def test_nayer_resumes_bit_exactly_across_a_generator_renewal():
    config = preset("nayer", adv=0.0, nz=8, ngf=4, batch_size=4, iterations=1, life=2)
    whole = Synthesizer(tiny_bn_teacher(), SPEC, config, seed=3)
    expected = [whole.synthesize()[0][0] for _ in range(4)]
    first = Synthesizer(tiny_bn_teacher(), SPEC, config, seed=3)
    first.synthesize()
    first.synthesize()
    resumed = Synthesizer(tiny_bn_teacher(), SPEC, config, seed=99)
    resumed.load_state_dict(first.state_dict())
    assert torch.equal(resumed.synthesize()[0][0], expected[2]) and torch.equal(resumed.synthesize()[0][0], expected[3])


def test_teacher_dropout_drops_the_classifiers_input_in_the_synthesis_pass_only():
    teacher = tiny_bn_teacher()
    head = dict(teacher.named_modules())[penultimate_module(teacher)]  # its classifier
    config = preset("deepinversion", batch_size=8, augment=False, teacher_dropout=0.5)
    synth = Synthesizer(teacher, SPEC, config, seed=0)
    seen: list[torch.Tensor] = []
    recorder = head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))
    x = torch.randn(8, *SPEC.shape, generator=torch.Generator().manual_seed(1)).requires_grad_()
    y = torch.arange(8) % SPEC.num_classes
    state = synth.rng.get_state()
    terms = synth.loss_terms(x, y)
    clean = embed(teacher, x).detach()
    keep = torch.rand(clean.shape, generator=torch.Generator().set_state(state)) < 0.5  # the engine's own draw
    assert 0.3 < keep.float().mean() < 0.7
    assert torch.allclose(seen[0], clean * keep / 0.5)  # dropped, survivors scaled by 1 / (1 - rate)
    expected = config.oh * F.cross_entropy(head(clean * keep / 0.5) / config.oh_temperature, y)
    assert torch.allclose(terms["oh"], expected, atol=1e-6)
    sum(terms.values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the gradient reaches the images through the survivors
    recorder.remove()
    assert not head._forward_pre_hooks  # nothing left on the teacher: its labels for the student are whole
    assert torch.allclose(synth.label(x.detach())[2], teacher(x.detach()))
    plain = Synthesizer(teacher, SPEC, preset("deepinversion", batch_size=8, augment=False), seed=0).loss_terms(x, y)
    assert torch.allclose(terms["bn"], plain["bn"])  # BatchNorm statistics from the whole teacher
    assert not torch.allclose(terms["oh"], plain["oh"])
    for bad in (1.0, -0.1):
        with pytest.raises(DatafreeError, match="teacher_dropout"):
            preset("deepinversion", teacher_dropout=bad)


def test_a_tv_list_cycles_the_prior_by_batch_and_its_term_reaches_the_generator():
    """tv=[0, w]: odd batches without the prior, even ones with it (one set holding two priors); the weight in force
    follows the call count, which a resumed run restores."""
    teacher = tiny_bn_teacher()
    config = SynthesisConfig(schedule="meta", bn=1.0, tv=[0.0, 5.0], batch_size=8, lr=0.01, iterations=1,
                             generator_config=DCGANConfig(nz=8, ngf=4, conditional=True))
    assert config.tv == (0.0, 5.0) and SynthesisConfig.from_dict(config.to_dict()).tv == (0.0, 5.0)
    assert [config.tv_weight(k) for k in (1, 2, 3, 4)] == [0.0, 5.0, 0.0, 5.0]
    synth = Synthesizer(teacher, SPEC, config, seed=0)
    z, y = synth._noise()
    synth.synthesize()  # call 1: no prior
    assert "tv" not in synth.loss_terms(synth.generator(z, y), y)
    synth.synthesize()  # call 2: the prior, at its weight
    x = synth.generator(z, y)
    terms = synth.loss_terms(x, y)
    assert terms["tv"].item() == pytest.approx(5.0 * total_variation(x).item(), rel=1e-5) and terms["tv"].item() > 0
    terms["tv"].backward()
    assert sum(p.grad.abs().sum().item() for p in synth.generator.parameters() if p.grad is not None) > 0
    resumed = Synthesizer(teacher, SPEC, config, seed=0)
    resumed.load_state_dict(synth.state_dict())
    assert resumed.calls == 2 and "tv" in resumed.loss_terms(x.detach(), y)
    with pytest.raises(DatafreeError, match="tv must be >= 0"):
        SynthesisConfig(tv=[1.0, -1.0])
