"""Teacher-only condensation, SRe2L / CDA style: recover ``ipc`` images per class, then relabel.

*Recover*: pixels from noise, optimised with Adam (lr 0.25, betas 0.5/0.9) on a cosine schedule
against the teacher's BatchNorm statistics (first BN layer weighted ``bn_first`` times) and the
cross-entropy to each image's class, both computed on ``crops`` random-resized crops (with flips)
of every image at every step: the synthesis engine's loss terms, seen through fresh crops, so no
single view is over-fitted. *Relabel* (FKD-style, :mod:`datafree.condense.relabel`): the teacher's
top-k logits of ``relabel_epochs`` stored crops of every image, written beside the set, so the
student trains on exactly the views the teacher labelled, with or without the live teacher.
No real image is ever read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from datafree.condense.base import Condenser
from datafree.condense.config import CondenseConfig, check
from datafree.condense.relabel import CROP_LABELS, relabel
from datafree.errors import DatafreeError
from datafree.schedules import cosine_decay
from datafree.synthesis import SynthesisConfig, Synthesizer
from datafree.synthesis.augment import apply_crops, crop_params


@dataclass
class TeacherConfig(CondenseConfig):
    """SRe2L/CDA recover + relabel: CE (oh) + bn x BN statistics (first BN layer x bn_first) on ``crops``
    random-resized crops (area in [crop_scale, 1]) of every image at every step, plus DeepInversion's image priors
    (tv, l2; off, as in SRe2L); then FKD crop labels."""

    # SRe2L's weight. 1.0 fits the teacher's BN statistics twice as closely (benchmarks/teacher_condense
    # --diagnose-only) and lifts the ResNet-14 teacher's sets under the kd protocol (45 -> 60), but the main job's
    # 150-step soft-label student on a LeNet-5-BN teacher's set then stays at chance (10.00 against 32.51): not the
    # default until that is understood (docs/condensation.md, "Choosing bn")
    bn: float = 0.01
    bn_first: float = 10.0
    oh: float = 1.0
    tv: float = 0.0
    l2: float = 0.0
    crops: int = 2
    crop_scale: float = 0.25
    # CDA's easy-to-hard curriculum: over this fraction of the iterations the smallest crop area falls from the whole
    # image to crop_scale on a cosine, so the images first form as wholes, then are refined through small crops
    # (0: off, SRe2L's fixed range)
    crop_curriculum: float = 0.0
    # SRe2L's batches: BatchNorm statistics matched by each slot (one image of every class; ipc x crops of them)
    # on its own, not only by the whole set, so no slot can lean on the others to look like the data
    bn_per_slot: bool = False
    relabel_epochs: int = 300  # FKD-style crop labels stored for this many student epochs (0: none)
    top_k: int = 10  # teacher logits kept per crop
    mix_prob: float = 0.5  # CutMix probability of a stored crop

    def __post_init__(self) -> None:
        super().__post_init__()
        check([(self.crops >= 1 and 0 < self.crop_scale <= 1, "crops must be >= 1 and crop_scale in (0, 1]"),
               (0 <= self.crop_curriculum <= 1, "crop_curriculum must be in [0, 1] (a fraction of the iterations)"),
               (self.relabel_epochs >= 0 and self.top_k >= 1 and 0 <= self.mix_prob <= 1,
                "relabel_epochs must be >= 0, top_k >= 1 and mix_prob in [0, 1]")])


class TeacherOnly(Condenser):
    config_class = TeacherConfig
    needs_real = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.teacher is None:
            raise DatafreeError("teacher-only condensation needs --teacher")
        c = self.config
        # the engine's BN + CE terms only; the crops are drawn here, so the engine does not augment
        synth_config = SynthesisConfig(schedule="pool", generator="pixels", bn=c.bn, bn_first=c.bn_first, oh=c.oh,
                                       tv=c.tv, l2=c.l2, batch_size=len(self.labels) * c.crops, augment=False)
        self.synth = Synthesizer(self.teacher, self.spec, synth_config, device=self.device)
        self.synth.rng = self.rng  # one generator for every draw of the run (resumable)
        # the order the images go through the teacher in: as stored (class-major), or with bn_per_slot slot-major,
        # so each consecutive group of the batch holds one image of every class
        self.order: torch.Tensor | slice = slice(None)
        if c.bn_per_slot:
            classes, ipc = self.spec.num_classes, c.ipc
            self.order = (torch.arange(classes)[None, :] * ipc + torch.arange(ipc)[:, None]).flatten().to(self.device)
            self.synth.bn_stats.groups = ipc * c.crops
        self.low = self.spec.normalize(torch.zeros(1, self.spec.channels, 1, 1)).to(self.device)
        self.high = self.spec.normalize(torch.ones(1, self.spec.channels, 1, 1)).to(self.device)
        self.iteration = 0
        with torch.no_grad():
            self.images.copy_(self.images.clamp(self.low, self.high))

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam([self.images], lr=self.config.lr_img, betas=(0.5, 0.9))

    def step(self) -> dict[str, float]:
        c = self.config
        lr = c.lr_img * cosine_decay(self.iteration, c.iterations)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        n = len(self.images)
        params = crop_params(n * c.crops, self.rng, (self.smallest_crop(), 1.0), flip=True)
        views = apply_crops(self.images[self.order].repeat(c.crops, 1, 1, 1), params)
        terms = self.synth.loss_terms(views, self.labels.to(self.device)[self.order].repeat(c.crops))
        self.update_images(sum(terms.values()))
        with torch.no_grad():
            self.images.copy_(torch.maximum(torch.minimum(self.images, self.high), self.low))
        self.iteration += 1
        return {k: v.item() for k, v in terms.items()}

    def smallest_crop(self) -> float:
        """The smallest crop area of this iteration: crop_scale, or on CDA's curriculum from 1 down to it."""
        c = self.config
        span = c.crop_curriculum * c.iterations
        if span <= 0 or self.iteration >= span:
            return c.crop_scale
        return c.crop_scale + (1.0 - c.crop_scale) * cosine_decay(self.iteration, int(span))

    def finish(self, out: Path, seed: int) -> dict[str, Any]:
        """Relabel the final images (FKD-style crop labels, beside the set); returns the storage costs."""
        c = self.config
        images = self.images.detach()
        fields: dict[str, Any] = {"image_bytes": images.numel() * 4}
        if c.relabel_epochs > 0:
            labels = relabel(self.teacher, images, c.relabel_epochs, seed=seed, top_k=c.top_k,  # type: ignore[arg-type]
                             scale=(c.crop_scale, 1.0), mix_prob=c.mix_prob, device=self.device, progress=False)
            labels.save(out / CROP_LABELS)
            fields.update(crop_labels=CROP_LABELS, crop_label_epochs=c.relabel_epochs, crop_label_top_k=c.top_k,
                          crop_label_bytes=labels.storage_bytes())
        return fields

    def close(self) -> None:
        self.synth.close()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "iteration": self.iteration}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.iteration = int(state.get("iteration", 0))
