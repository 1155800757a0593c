"""channels_last where it is faster: which models take it, that values do not change, and that training
runs give a user's model back in the layout it came in."""

import torch
from torch import nn

from datafree.data import FASHION_MNIST
from datafree.models import build_model
from datafree.models.layout import is_channels_last, prefers_channels_last, to_channels_last, use_channels_last
from datafree.synthesis import preset
from datafree.synthesis.engine import Synthesizer
from datafree.train import TrainConfig, Trainer
from tests.user_models import VGGish

SHAPE = FASHION_MNIST.shape


def test_resnet_and_lenet_take_channels_last_and_compute_the_same():
    for arch, kwargs in (("resnet8", {"width": 8}), ("lenet5_bn", {})):
        model = build_model(arch, FASHION_MNIST, seed=0, **kwargs).eval()
        x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(0))
        before = model(x)
        assert not is_channels_last(model)
        to_channels_last(model, SHAPE)
        assert is_channels_last(model) and not model.training  # the eval-mode probe leaves the mode as it was
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-5)


def test_groupnorm_models_and_models_that_cannot_run_it_keep_the_default_layout():
    convnet = build_model("convnet", FASHION_MNIST, seed=0, width=8)  # instance norm: measured slower
    assert not prefers_channels_last(convnet)
    assert not is_channels_last(to_channels_last(convnet, SHAPE))
    vggish = VGGish(width=4).train()  # x.view(n, -1) after a convolution fails on channels_last activations
    running = [b.clone() for b in vggish.buffers()]
    assert prefers_channels_last(vggish)
    assert not is_channels_last(to_channels_last(vggish, SHAPE))
    assert vggish.training
    for b, r in zip(vggish.buffers(), running):  # the probe ran in eval mode: BN statistics untouched
        assert torch.equal(b, r)
    assert not prefers_channels_last(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))


def test_restore_gives_back_only_what_it_converted():
    already = to_channels_last(build_model("lenet5_bn", FASHION_MNIST, seed=0), SHAPE)
    fresh = build_model("lenet5_half", FASHION_MNIST, seed=0)
    restore = use_channels_last([fresh, already, None], SHAPE)
    assert is_channels_last(fresh) and is_channels_last(already)
    restore()
    restore()  # idempotent
    assert not is_channels_last(fresh) and all(p.is_contiguous() for p in fresh.parameters())
    assert is_channels_last(already)  # it arrived channels_last, it stays so
    untouched = build_model("lenet5_half", FASHION_MNIST, seed=0)
    use_channels_last([untouched], None)()
    assert not is_channels_last(untouched)


def test_a_trainer_labels_with_a_channels_last_teacher_trains_the_student_as_it_came_and_gives_both_back():
    spec = FASHION_MNIST
    student = build_model("resnet8", spec, seed=0, width=4)
    teacher = build_model("lenet5_bn", spec, seed=1)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, *SHAPE, generator=gen), torch.randint(0, 10, (8,), generator=gen)) for _ in range(2)]
    seen = []  # (student, teacher) layouts at each training step
    student.register_forward_pre_hook(
        lambda m, _: seen.append((is_channels_last(m), is_channels_last(teacher))) if m.training else None)
    trainer = Trainer(student, TrainConfig(epochs=1, steps_per_epoch=2, alpha=0.5, progress=False),
                      teacher=teacher, spec=spec)
    trainer.fit(iter(batches))
    trainer.close()
    # the student's weight gradients stay in the default layout (oneDNN's strided 1x1 weight gradient is unsafe)
    assert seen == [(False, True)] * 2
    assert not is_channels_last(student) and not is_channels_last(teacher)
    assert all(t.is_contiguous() for t in teacher.state_dict().values())
    without_spec = build_model("lenet5_bn", spec, seed=0)
    Trainer(build_model("lenet5_half", spec), TrainConfig(epochs=1, progress=False), teacher=without_spec)
    assert not is_channels_last(without_spec)  # no shape to probe with: the default layout


def test_the_synthesizer_runs_the_teacher_and_the_frozen_student_channels_last():
    teacher = build_model("lenet5_bn", FASHION_MNIST, seed=0)
    student = build_model("lenet5_half", FASHION_MNIST, seed=1).train()
    seen = []
    student.register_forward_pre_hook(lambda m, _: seen.append((is_channels_last(m), m.training)))
    synth = Synthesizer(teacher, FASHION_MNIST, preset("adi", batch_size=4, iterations=2), student=student, seed=0)
    seen.clear()  # the set-up's probe
    synth.synthesize()
    synth.close()
    assert is_channels_last(teacher)
    assert seen and all(s == (True, False) for s in seen)  # frozen (eval, no weight gradients) and channels_last
    assert not is_channels_last(student) and student.training and all(p.requires_grad for p in student.parameters())
    assert all(p.is_contiguous() for p in student.parameters())


def test_a_model_that_flattens_with_view_takes_the_students_augmented_views():
    # a one-channel crop built as (B, H, W, 1) and permuted has a channel stride of 1, which .contiguous() keeps and a
    # convolution reads as channels_last: a user's VGGish (x.view(n, -1)) then failed in `distill --augment crop-flip`
    from datafree.data.augment import DSA, RandomCropFlip

    vggish = VGGish(width=4).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, *SHAPE, generator=g)
    for views in (RandomCropFlip()(x, g), DSA()(x, g)):
        assert views.stride() == torch.empty(views.shape).stride()
        assert vggish(views).shape == (4, 10)
