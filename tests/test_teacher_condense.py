"""Teacher-only condensation (SRe2L/CDA): recover through crops, FKD crop labels, training on them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from datafree.condense import METHODS, EvalProtocol, condense_set, evaluate_set, method_config
from datafree.condense.relabel import CROP_LABELS, CropLabels, relabel
from datafree.data import NormalizedTensorDataset
from datafree.data.transfer import TransferSet
from datafree.errors import DatafreeError
from tests.test_condense import SPEC, tiny_pool


def bn_teacher() -> nn.Module:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    with torch.no_grad():  # BN statistics the noise init does not have
        teacher[1].running_mean.fill_(0.5)
        teacher[1].running_var.fill_(0.2)
    return teacher.eval()


def test_crop_labels_round_trip_and_replay_the_labelled_views(tmp_path):
    teacher, images = bn_teacher(), torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = relabel(teacher, images, 3, seed=7, top_k=2, mix_prob=0.5, progress=False)
    labels.save(tmp_path / "c.safetensors")
    back = CropLabels.load(tmp_path / "c.safetensors")
    for name in ("crops", "partner", "boxes", "values", "indices"):
        assert torch.equal(getattr(labels, name), getattr(back, name)), name
    assert back.num_classes == 4 and back.epochs == 3
    # per crop: 4 + 4 float16 crop/box numbers, an int16 partner, k float16 logits and k uint8 classes
    assert back.storage_bytes() == 3 * 6 * (8 * 2 + 2 + 2 * 2 + 2)
    index = torch.arange(6)
    with torch.no_grad():
        live = teacher(back.views(images, 1, index))
    full = back.logits(1, index)
    top = live.topk(2, dim=1)
    assert torch.equal(full.topk(2, dim=1).indices, top.indices)
    assert torch.allclose(full.gather(1, top.indices), top.values, atol=1e-2)  # float16 storage
    assert (full < full.gather(1, top.indices).min(1, keepdim=True).values).sum() == 6 * 2  # the rest far below
    with pytest.raises(DatafreeError, match="not a crop-label file"):
        (tmp_path / "bad").write_text("x")
        CropLabels.load(tmp_path / "bad")


def test_relabel_is_deterministic_in_its_seed():
    teacher, images = bn_teacher(), torch.randn(5, 1, 8, 8)
    a = relabel(teacher, images, 2, seed=3, progress=False)
    b = relabel(teacher, images, 2, seed=3, progress=False)
    c = relabel(teacher, images, 2, seed=4, progress=False)
    assert all(torch.equal(getattr(a, n), getattr(b, n)) for n in ("crops", "partner", "boxes", "values", "indices"))
    assert not torch.equal(a.crops, c.crops)


def test_recovery_gradient_reaches_every_pixel_and_lowers_the_loss():
    teacher = bn_teacher()
    config = method_config("teacher", ipc=2, iterations=40, bn=1.0, relabel_epochs=0)  # lr 0.25, cosine
    cond = METHODS["teacher"].condenser(config, SPEC, torch.Generator().manual_seed(0), teacher=teacher)
    before = cond.images.detach().clone()
    losses = [cond.step() for _ in range(40)]
    cond.close()
    assert cond.images.grad is not None and (cond.images.grad != 0).float().mean() > 0.9
    assert not torch.equal(before, cond.images.detach())
    total = [t["bn"] + t["oh"] for t in losses]  # on fresh random crops: compare 5-step means
    first, last = sum(total[:5]) / 5, sum(total[-5:]) / 5
    assert last < 0.9 * first, (first, last)


def test_recovery_image_priors_are_terms_of_the_loss():
    """--set tv=... / l2=... reach the recovery (they were once accepted and silently dropped)."""
    def first_step(**priors):
        config = method_config("teacher", ipc=2, iterations=4, bn=1.0, relabel_epochs=0, **priors)
        cond = METHODS["teacher"].condenser(config, SPEC, torch.Generator().manual_seed(0), teacher=bn_teacher())
        terms = cond.step()
        cond.close()
        return terms, cond.images.detach()

    plain, x0 = first_step()
    smooth, x1 = first_step(tv=1.0, l2=0.1)
    assert set(smooth) - set(plain) == {"tv", "l2"} and smooth["tv"] > 0 and smooth["l2"] > 0
    assert not torch.equal(x0, x1)  # the same draws, so the priors' gradient moved the pixels


def test_crop_curriculum_goes_from_whole_images_to_crop_scale():
    config = method_config("teacher", ipc=1, iterations=10, crop_scale=0.25, crop_curriculum=0.5, relabel_epochs=0)
    cond = METHODS["teacher"].condenser(config, SPEC, torch.Generator().manual_seed(0), teacher=bn_teacher())
    smallest = []
    for _ in range(10):
        smallest.append(cond.smallest_crop())
        cond.step()
    cond.close()
    assert smallest[0] == 1.0 and all(a >= b for a, b in zip(smallest, smallest[1:]))
    assert 0.25 < smallest[4] < 1.0 and smallest[5:] == [0.25] * 5  # half the iterations, then SRe2L's range
    off = METHODS["teacher"].condenser(method_config("teacher", ipc=1, iterations=10, relabel_epochs=0), SPEC,
                                       torch.Generator().manual_seed(0), teacher=bn_teacher())
    assert off.smallest_crop() == off.config.crop_scale
    off.close()
    with pytest.raises(DatafreeError, match="crop_curriculum"):
        method_config("teacher", ipc=1, crop_curriculum=1.5)


def test_grouped_bn_statistics_average_each_group_on_its_own():
    from datafree.hooks import BatchNormStatistics

    teacher, x = bn_teacher(), torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    whole = BatchNormStatistics(teacher, first_layer_weight=3.0)
    halves = []
    for part in (x[:3], x[3:]):
        with whole.recording():
            teacher(part)
        halves.append(whole.loss())
    grouped = BatchNormStatistics(teacher, first_layer_weight=3.0, groups=2)
    with grouped.recording():
        teacher(x)
    assert torch.allclose(grouped.loss(), (halves[0] + halves[1]) / 2)
    with whole.recording():
        teacher(x)
    assert not torch.allclose(whole.loss(), (halves[0] + halves[1]) / 2)  # the whole batch's is another number
    grouped.groups = 4
    with pytest.raises(DatafreeError, match="equal groups"), grouped.recording():
        teacher(x)
    whole.remove()
    grouped.remove()


def test_bn_per_slot_matches_one_image_of_every_class_at_a_time():
    config = method_config("teacher", ipc=3, iterations=4, bn=1.0, crops=2, bn_per_slot=True, relabel_epochs=0)
    cond = METHODS["teacher"].condenser(config, SPEC, torch.Generator().manual_seed(0), teacher=bn_teacher())
    classes = SPEC.num_classes
    slots = cond.labels[cond.order.cpu()].view(3, classes)
    assert torch.equal(slots, torch.arange(classes).expand(3, classes))  # each slot: every class once
    assert cond.synth.bn_stats.groups == 3 * 2
    cond.step()
    cond.close()
    assert (cond.images.grad != 0).float().mean() > 0.9  # every image still gets its gradient


def test_teacher_condense_writes_crop_labels_and_trains_on_them(tmp_path):
    teacher = bn_teacher()
    config = method_config("teacher", ipc=2, iterations=4, relabel_epochs=3, top_k=3)
    manifest = condense_set(tmp_path / "t", config, SPEC, teacher=teacher, soft_labels=True, progress=False,
                            checkpoint_every=2)
    assert manifest["crop_label_epochs"] == 3 and manifest["image_bytes"] == 8 * 64 * 4
    labels = CropLabels.load(tmp_path / "t" / CROP_LABELS)
    assert manifest["crop_label_bytes"] == labels.storage_bytes() and labels.values.shape == (3, 8, 3)
    pool = tiny_pool()
    test = NormalizedTensorDataset(pool.images, pool.labels, SPEC)
    protocol = EvalProtocol(name="kd", arch="convnet", arch_kwargs={"width": 8, "depth": 1}, models=1, epochs=3,
                            augment="none", temperature=20.0, crop_labels=True)
    train = TransferSet(tmp_path / "t")
    served = []  # the stored views are what the students train on: one pass over the stored epochs per model
    batches = CropLabels.batches

    def counted(self, *args, **kwargs):
        served.append(1)
        return batches(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(CropLabels, "batches", counted)
        stored = evaluate_set(train, SPEC, test, protocol, progress=False, crop_labels=labels)
        live = evaluate_set(train, SPEC, test, protocol, progress=False, crop_labels=labels, teacher=teacher)
    assert stored["complete"] and live["complete"] and stored["protocol"]["crop_labels"]
    assert len(served) == 2, "each evaluation's one model must train on the stored crop views"
    with pytest.raises(DatafreeError, match="fewer than the 5"):
        evaluate_set(train, SPEC, test, EvalProtocol(name="kd", epochs=5, augment="none", crop_labels=True),
                     progress=False, crop_labels=labels)
    with pytest.raises(DatafreeError, match="--augment none"):
        EvalProtocol(name="kd", crop_labels=True)
