import json
import math

import pytest
import torch

from datafree.checkpoint import load_training_state
from datafree.data import load_dataset
from datafree.errors import DatafreeError
from datafree.models import build_model
from datafree.train import TrainConfig, Trainer, evaluate


def cfg(**kw):
    base = dict(epochs=2, batch_size=32, lr=0.05, progress=False)
    return TrainConfig(**{**base, **kw})


@pytest.fixture
def data(fmnist_root):
    return load_dataset("fashion-mnist", "train", fmnist_root), load_dataset("fashion-mnist", "test", fmnist_root)


def test_teacher_training_learns(data):
    train, test = data
    model = build_model("lenet5", train.spec, seed=0)
    before = evaluate(model, test)["accuracy"]
    result = Trainer(model, cfg(epochs=4, lr=0.05)).fit(train, test)
    assert result["test_accuracy"] > max(before + 30, 60)
    assert result["epoch"] == 4 and result["samples_per_s"] > 0


def test_kd_from_live_teacher_and_from_stored_logits_agree(data):
    train, test = data
    teacher = build_model("lenet5", train.spec, seed=1)
    Trainer(teacher, cfg(epochs=3)).fit(train)
    a = build_model("lenet5_half", train.spec, seed=2)
    res_live = Trainer(a, cfg(alpha=0.5, temperature=4.0), teacher=teacher).fit(train, test)
    assert {"train_ce", "train_kd"} <= set(res_live)

    class WithLogits(torch.utils.data.Dataset):
        spec = train.spec

        def __len__(self):
            return len(train)

        def get_batch(self, idx):
            x, y = train.get_batch(idx)
            with torch.no_grad():
                return x, y, teacher.eval()(x)

    b = build_model("lenet5_half", train.spec, seed=2)
    res_stored = Trainer(b, cfg(alpha=0.5, temperature=4.0)).fit(WithLogits(), test)
    assert res_stored["train_kd"] == pytest.approx(res_live["train_kd"], rel=1e-4)
    assert torch.allclose(a.classifier.weight, b.classifier.weight, atol=1e-5)


def test_kd_without_teacher_signal_errors(data):
    train, _ = data
    with pytest.raises(DatafreeError, match="needs a teacher"):
        Trainer(build_model("lenet5_half", train.spec), cfg(alpha=0.5)).fit(train)


def test_hint_and_relation_terms_train(data):
    train, test = data
    teacher = build_model("resnet8", train.spec, seed=0, width=4)
    student = build_model("lenet5_half", train.spec, seed=0)
    trainer = Trainer(student, cfg(epochs=1, alpha=0.5, hint_weight=1.0, hint_layers=("features.5", "layers.1"),
                                   rkd_distance_weight=1.0, rkd_angle_weight=2.0), teacher=teacher, spec=train.spec)
    regressor = [p.detach().clone() for p in trainer.regressor.parameters()]
    result = trainer.fit(train, test)
    for k in ("train_hint", "train_rkd_distance", "train_rkd_angle", "train_kd", "train_ce"):
        assert math.isfinite(result[k]) and result[k] > 0
    trainer.close()
    assert not student._forward_hooks and not teacher.get_submodule("layers.1")._forward_hooks
    # the terms are in the optimised loss: the hint's regressor learns, and the student differs from the same
    # seed trained without them
    assert any(not torch.equal(a, b) for a, b in zip(regressor, trainer.regressor.parameters()))
    plain = build_model("lenet5_half", train.spec, seed=0)
    Trainer(plain, cfg(epochs=1, alpha=0.5), teacher=teacher, spec=train.spec).fit(train, test)
    assert not torch.allclose(plain.classifier.weight, student.classifier.weight, atol=1e-6)


def test_relation_terms_on_a_teacher_without_a_linear_classifier_name_the_flag(data):
    train, _ = data
    conv_head = torch.nn.Sequential(torch.nn.Conv2d(1, 10, 28), torch.nn.Flatten())  # a 1x1-output conv classifier
    with pytest.raises(DatafreeError, match="Sequential has no nn.Linear layer.*--relation-layers"):
        Trainer(build_model("lenet5_half", train.spec, seed=0), cfg(alpha=0.5, rkd_distance_weight=1.0),
                teacher=conv_head, spec=train.spec)


def test_jacobian_term_is_zero_for_a_copy_and_trains_the_student(data):
    train, _ = data
    teacher = build_model("lenet5_half", train.spec, seed=0)
    x, y = torch.stack([train[i][0] for i in range(8)]), torch.tensor([train[i][1] for i in range(8)])
    copy = build_model("lenet5_half", train.spec, seed=0)
    terms, _ = Trainer(copy, cfg(alpha=0.0, jacobian_weight=2.0), teacher=teacher).loss_terms(x, y)
    assert terms["jacobian"].item() == pytest.approx(0.0, abs=1e-6)
    student = build_model("lenet5_half", train.spec, seed=1)
    terms, _ = Trainer(student, cfg(alpha=0.0, jacobian_weight=2.0), teacher=teacher).loss_terms(x, y)
    assert 0 < terms["jacobian"].item() <= 2.0 * 4
    grads = torch.autograd.grad(terms["jacobian"], list(student.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)  # double backward reaches the weights
    assert all(p.grad is None for p in teacher.parameters())
    with pytest.raises(DatafreeError, match="need a teacher"):
        Trainer(build_model("lenet5_half", train.spec), cfg(alpha=0.0, jacobian_weight=1.0))


# with a weight average (ema) and a student with BatchNorm buffers, the average resumes too
@pytest.mark.parametrize("arch, ema", [("lenet5_half", 0.0), ("lenet5_bn", 0.9)])
def test_resume_is_bitwise_identical(data, tmp_path, monkeypatch, arch, ema):
    train, test = data
    config = cfg(epochs=3, augment="crop-flip", ema=ema)
    full = build_model(arch, train.spec, seed=0)
    Trainer(full, config, out_dir=tmp_path / "full").fit(train, test)

    class Crash(Exception):
        pass

    original_save = Trainer._save

    def save_then_crash(self, epoch, scheduler):
        original_save(self, epoch, scheduler)
        if epoch == 0:
            raise Crash

    monkeypatch.setattr(Trainer, "_save", save_then_crash)
    part = build_model(arch, train.spec, seed=0)
    with pytest.raises(Crash):
        Trainer(part, config, out_dir=tmp_path / "part").fit(train, test)
    monkeypatch.setattr(Trainer, "_save", original_save)
    assert load_training_state(tmp_path / "part" / "state.pt")["epoch"] == 0
    torch.manual_seed(999)  # whatever the global RNG holds, resume restores it
    resumed = build_model(arch, train.spec, seed=123)
    Trainer(resumed, config, out_dir=tmp_path / "part").fit(train, test, resume=True)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    full_lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    part_lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert len(part_lines) == 3
    drop_time = lambda line: {k: v for k, v in json.loads(line).items() if "time" not in k and k != "samples_per_s"}
    assert [drop_time(a) for a in full_lines] == [drop_time(b) for b in part_lines]


def test_non_finite_loss_stops_cleanly(data, tmp_path):
    train, _ = data
    model = build_model("lenet5_half", train.spec, seed=0)
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))
    with pytest.raises(DatafreeError, match="non-finite loss"):
        Trainer(model, cfg(), out_dir=tmp_path).fit(train)
    assert not (tmp_path / "state.pt").exists()


def test_step_schedule_and_adam(data):
    train, _ = data
    trainer = Trainer(build_model("lenet5_half", train.spec), cfg(epochs=2, schedule="step", optimizer="adam", lr=1e-3))
    result = trainer.fit(train)
    assert result["lr"] == pytest.approx(1e-5)


def test_iterator_source(data):
    train, _ = data

    def stream():
        g = torch.Generator().manual_seed(0)
        while True:
            idx = torch.randint(0, len(train), (16,), generator=g)
            yield train.get_batch(idx)

    result = Trainer(build_model("lenet5_half", train.spec), cfg(steps_per_epoch=5)).fit(stream())
    assert result["epoch"] == 2
    with pytest.raises(DatafreeError, match="steps_per_epoch"):
        Trainer(build_model("lenet5_half", train.spec), cfg()).fit(stream())


def test_balanced_classes_draw_the_rare_labels_more_often_and_refuse_a_stream(data, monkeypatch):
    """--balance-classes reaches the batches the student trains on: on a set that is mostly one label, the
    batches it sees are about balanced (unweighted they are not); a live stream has no labels to balance."""
    import datafree.train as train_module

    train, _ = data
    keep = torch.cat([torch.nonzero(train.labels == 0).flatten(), torch.nonzero(train.labels == 1).flatten()[:8]])
    subset = type(train)(train.images[keep], train.labels[keep], train.spec)
    seen = []
    real = train_module.iterate_batches

    def spy(*args, **kwargs):
        for batch in real(*args, **kwargs):
            seen.append(batch[1])
            yield batch

    monkeypatch.setattr(train_module, "iterate_batches", spy)
    for balance in (False, True):
        seen.clear()
        Trainer(build_model("lenet5_half", train.spec), cfg(epochs=4, batch_size=8, balance_classes=balance)).fit(subset)
        share = (torch.cat(seen) == 1).float().mean().item()  # 8 of the images; half of the draws when balanced
        assert (share > 0.35) if balance else (share < 0.3)
    with pytest.raises(DatafreeError, match="live stream"):
        Trainer(build_model("lenet5_half", train.spec), cfg(balance_classes=True, steps_per_epoch=2)).fit(
            iter([train.get_batch(torch.arange(8))] * 4))


def test_teacher_flip_labels_each_view_with_the_mean_over_it_and_its_mirror(data):
    """--teacher-flip: the KD term's target is the mean of the teacher's logits on the view and on its mirror image;
    without it the view's alone. The teacher reads the right half only, so its answer changes under a flip."""
    from datafree.losses import kd_kl

    train, _ = data
    x, y = train.get_batch(torch.arange(16))

    class RightHalf(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = build_model("lenet5", train.spec, seed=3)

        def forward(self, x):
            return self.net(torch.cat([torch.zeros_like(x[..., :14]), x[..., 14:]], -1))

    teacher = RightHalf().eval()
    with torch.no_grad():
        view, mirror = teacher(x), teacher(x.flip(-1))
    assert not torch.allclose(view, mirror, atol=1e-3)
    for flip, target in ((False, view), (True, (view + mirror) / 2)):
        student = build_model("lenet5_half", train.spec, seed=4)
        trainer = Trainer(student, cfg(alpha=0.0, teacher_flip=flip), teacher=teacher)
        terms, logits = trainer.loss_terms(x, y)
        assert terms["kd"].item() == pytest.approx(kd_kl(logits, target, 4.0).item(), rel=1e-5)
    with pytest.raises(DatafreeError, match="teacher-flip"):
        Trainer(build_model("lenet5_half", train.spec), cfg(alpha=0.0, teacher_flip=True))
    with pytest.raises(DatafreeError, match="teacher-flip"):  # without a soft-target term it would do nothing
        cfg(alpha=1.0, teacher_flip=True)


def test_config_validation():
    with pytest.raises(DatafreeError, match="alpha"):
        TrainConfig(alpha=1.5)
    with pytest.raises(DatafreeError, match="hint layers"):
        TrainConfig(hint_weight=1.0)
    assert TrainConfig.from_dict(TrainConfig(hint_layers=("a", "b")).to_dict()).hint_layers == ("a", "b")


def test_gradient_clipping_bounds_each_update(data):
    train, _ = data
    x, y = train.get_batch(torch.arange(8))
    steps = {}
    for clip in (None, 1e-3):
        model = build_model("lenet5_half", train.spec, seed=0)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        config = cfg(epochs=1, lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant", steps_per_epoch=1,
                     clip_grad_norm=clip)
        Trainer(model, config).fit(iter([(x, y)]))
        steps[clip] = (torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm().item()
    assert steps[1e-3] == pytest.approx(1e-3, rel=1e-3)  # lr 1 x gradient clipped to norm 1e-3
    assert steps[None] > 10 * steps[1e-3]
    with pytest.raises(DatafreeError, match="clipping"):
        cfg(clip_grad_norm=0.0)


def test_hint_regressor_starts_from_the_run_seed(data):
    train, _ = data
    teacher = build_model("resnet8", train.spec, seed=0, width=4)
    weights = []
    for _ in range(2):
        torch.manual_seed(len(weights))  # a different global state each time must not matter
        trainer = Trainer(build_model("lenet5_half", train.spec, seed=0),
                          cfg(epochs=1, alpha=0.5, hint_weight=1.0, hint_layers=("features.5", "layers.1")),
                          teacher=teacher, spec=train.spec)
        weights.append(trainer.regressor.weight.detach().clone())
        trainer.close()
    assert torch.equal(weights[0], weights[1])


def test_eval_every_tests_every_nth_and_always_the_last_epoch(data):
    train, test = data
    trainer = Trainer(build_model("lenet5_half", train.spec, seed=0), cfg(epochs=5, eval_every=2))
    result = trainer.fit(train, test)
    assert [h["epoch"] for h in trainer.history if "test_accuracy" in h] == [2, 4, 5]
    assert result["epoch"] == 5 and "test_accuracy" in result
    with pytest.raises(DatafreeError, match="eval_every"):
        cfg(eval_every=0)


def test_batch_mix_blends_or_pastes_batch_partners_reproducibly():
    from datafree.data.augment import BatchMix

    # image i is constant i: every mixed pixel must lie between its own value and its partner's
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 6, 6).contiguous()
    for mode in ("mixup", "cutmix"):
        a = BatchMix(mode)(x, torch.Generator().manual_seed(3))
        b = BatchMix(mode)(x, torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and not torch.equal(a, x)
        perm = torch.randperm(8, generator=torch.Generator().manual_seed(3))
        own, other = x, x[perm]
        assert ((a >= torch.minimum(own, other) - 1e-6) & (a <= torch.maximum(own, other) + 1e-6)).all()
        if mode == "cutmix":  # each pixel is its own or its partner's, never a blend
            assert ((a == own) | (a == other)).all()
    with pytest.raises(DatafreeError, match="unknown mixing"):
        BatchMix("blend")


def test_a_mix_share_leaves_the_other_images_whole():
    from datafree.data.augment import BatchMix

    x = torch.arange(64.0).view(64, 1, 1, 1).expand(64, 1, 4, 4).contiguous()
    for mode in ("mixup", "cutmix"):
        every = BatchMix(mode)(x, torch.Generator().manual_seed(5))
        half = BatchMix(mode, share=0.5)(x, torch.Generator().manual_seed(5))
        whole = (half == x).flatten(1).all(1)
        assert 16 <= int(whole.sum()) <= 48  # about half stay as they were ...
        # ... and the rest are exactly what mixing every image gives them: the share draws after the mix
        assert torch.equal(half[~whole], every[~whole])
        assert torch.equal(BatchMix(mode, share=1.0)(x, torch.Generator().manual_seed(5)), every)
    with pytest.raises(DatafreeError, match="share"):
        BatchMix("mixup", share=0.0)
    with pytest.raises(DatafreeError, match="mix-share"):
        cfg(alpha=0.0, mix="mixup", mix_share=1.5)
    with pytest.raises(DatafreeError, match="needs --mix"):  # a share without mixing would be silently ignored
        cfg(alpha=0.0, mix_share=0.5)


def test_mixing_distills_from_the_live_teacher_only(data):
    train, test = data
    teacher = build_model("lenet5", train.spec, seed=1)
    Trainer(teacher, cfg(epochs=2)).fit(train)
    with pytest.raises(DatafreeError, match="--alpha 0"):
        cfg(alpha=0.5, mix="mixup")
    with pytest.raises(DatafreeError, match="unknown mixing"):
        cfg(alpha=0.0, mix="blend")
    with pytest.raises(DatafreeError, match="needs a teacher"):
        Trainer(build_model("lenet5_half", train.spec), cfg(alpha=0.0, mix="mixup"))
    plain = build_model("lenet5_half", train.spec, seed=2)
    Trainer(plain, cfg(alpha=0.0, epochs=1), teacher=teacher).fit(train)
    for mode in ("mixup", "cutmix"):
        student = build_model("lenet5_half", train.spec, seed=2)
        res = Trainer(student, cfg(alpha=0.0, epochs=1, mix=mode), teacher=teacher).fit(train, test)
        assert math.isfinite(res["train_kd"]) and res["train_kd"] > 0
        assert not torch.equal(student.classifier.weight, plain.classifier.weight)  # the mixed batches were used


def test_gaussian_noise_is_reproducible_and_of_its_std():
    from datafree.data.augment import GaussianNoise

    x = torch.zeros(64, 1, 16, 16)
    a = GaussianNoise(0.25)(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, GaussianNoise(0.25)(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, GaussianNoise(0.25)(x, torch.Generator().manual_seed(4)))
    assert a.std().item() == pytest.approx(0.25, rel=0.03) and abs(a.mean().item()) < 0.01
    with pytest.raises(DatafreeError, match="standard deviation"):
        GaussianNoise(0.0)
    with pytest.raises(DatafreeError, match="noise-std"):
        cfg(noise_std=-0.1)


def test_noisy_views_are_what_the_live_teacher_labels_and_the_student_learns_from(data):
    """--noise-std: after the augmentation, each view gets noise of that std; the teacher labels the noisy view
    (the same tensor the student reads) and the student's steps follow from it."""
    train, _ = data
    teacher = build_model("lenet5", train.spec, seed=1).eval()
    seen: dict[float, dict[str, list[torch.Tensor]]] = {}
    students = {}
    for std in (0.0, 0.5):
        seen[std] = {"teacher": [], "student": []}
        student = build_model("lenet5_half", train.spec, seed=2)
        hooks = [m.register_forward_pre_hook(lambda _, inp, k=k, std=std: seen[std][k].append(inp[0].detach().clone()))
                 for k, m in (("teacher", teacher), ("student", student))]
        Trainer(student, cfg(alpha=0.0, epochs=1, augment="crop-flip", noise_std=std), teacher=teacher).fit(train)
        for h in hooks:
            h.remove()
        students[std] = student
    for std in (0.0, 0.5):  # the teacher read every batch the student read, as it was
        assert len(seen[std]["teacher"]) == len(seen[std]["student"]) > 0
        assert all(torch.equal(t, s) for t, s in zip(seen[std]["teacher"], seen[std]["student"]))
    # the first batch: the same crop-flip draws, then noise of std 0.5 on top (drawn after them, from the same
    # generator, so later batches' crops differ)
    diff = seen[0.5]["student"][0] - seen[0.0]["student"][0]
    assert diff.std().item() == pytest.approx(0.5, rel=0.05) and abs(diff.mean().item()) < 0.02
    assert not torch.equal(students[0.5].classifier.weight, students[0.0].classifier.weight)
    with pytest.raises(DatafreeError, match="noise-std needs a teacher"):
        Trainer(build_model("lenet5_half", train.spec), cfg(alpha=0.0, noise_std=0.1))
    Trainer(build_model("lenet5_half", train.spec), cfg(alpha=1.0, noise_std=0.1))  # hard labels: no teacher needed


def test_bf16_trains_in_bfloat16_and_tests_in_float32(data):
    """--bf16: the training steps run under bfloat16 autocast on the CPU, the test pass stays float32, the
    model still learns; evaluate-set's protocol passes the flag on (and records it)."""
    from datafree.condense.evaluate import EvalProtocol

    train, test = data
    model = build_model("lenet5", train.spec, seed=0)
    seen = {True: set(), False: set()}
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(lambda m, i, o: seen[m.training].add(o.dtype))
    before = evaluate(model, test)["accuracy"]
    seen[False].clear()
    result = Trainer(model, cfg(epochs=4, lr=0.05, bf16=True)).fit(train, test)
    assert seen == {True: {torch.bfloat16}, False: {torch.float32}}
    assert result["test_accuracy"] > max(before + 30, 60)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: the weights stay float32
    protocol = EvalProtocol(bf16=True)
    assert protocol.train_config(0, "cpu").bf16 and protocol.to_dict()["bf16"]


def test_frozen_modules_keep_their_start_and_the_rest_trains(data):
    train, _ = data
    x, y = train.get_batch(torch.arange(16))
    model = build_model("lenet5_half", train.spec, seed=0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    config = cfg(epochs=1, steps_per_epoch=2, freeze=("features.0", "classifier"))
    Trainer(model, config).fit(iter([(x, y), (x, y)]))
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, start[k])}
    # frozen parameters are left out of the optimizer, so not even weight decay moves them
    assert not moved & {"features.0.weight", "features.0.bias", "classifier.weight", "classifier.bias"}
    assert {"features.3.weight", "fc.1.weight"} <= moved
    assert TrainConfig.from_dict(config.to_dict()).freeze == ("features.0", "classifier")  # a recorded run reloads
    with pytest.raises(DatafreeError, match="no module 'nope'"):
        Trainer(build_model("lenet5_half", train.spec), cfg(freeze=("nope",)))
    with pytest.raises(DatafreeError, match="nothing to train"):
        Trainer(build_model("lenet5_half", train.spec), cfg(freeze=("",)))  # the whole model


def test_weight_average_is_the_exponential_average_of_the_steps_and_is_what_is_tested(data):
    train, test = data
    model = build_model("lenet5_bn", train.spec, seed=0)
    trainer = Trainer(model, cfg(epochs=2, ema=0.8, schedule="constant"))
    steps: list[dict[str, torch.Tensor]] = []  # the student's weights and buffers after each step
    trainer.optimizer.register_step_post_hook(lambda *_: steps.append(
        {k: v.detach().clone() for k, v in model.state_dict().items()}))
    trainer.fit(train, test)
    assert len(steps) > 2
    expected = {k: v.double() for k, v in steps[0].items()}  # the first step's weights start the average
    for step in steps[1:]:
        expected = {k: 0.8 * expected[k] + 0.2 * step[k].double() for k in expected}
    for k, v in model.state_dict().items():  # the run ends with the average, not the last weights
        if v.is_floating_point():
            assert torch.allclose(v.double(), expected[k], atol=1e-5), k
    assert not torch.allclose(model.features[0].weight, steps[-1]["features.0.weight"], atol=1e-4)
    # the last epoch's reported accuracy is the average's, the model the run saves
    assert trainer.history[-1]["test_accuracy"] == pytest.approx(evaluate(model, test)["accuracy"])
    assert TrainConfig.from_dict(cfg(ema=0.8).to_dict()).ema == 0.8
    with pytest.raises(DatafreeError, match="ema"):
        TrainConfig(ema=1.0)
