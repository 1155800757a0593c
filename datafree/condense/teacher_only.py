"""Teacher-only condensation: recover ``ipc`` images per class from the teacher alone.

The images are optimised pixels, pulled towards the teacher's BatchNorm statistics and its
class decision (the synthesis engine's DeepInversion loss terms, reused as they are), then
relabelled with the teacher's soft labels, as SRe2L does. No real image is ever read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from datafree.condense.base import Condenser
from datafree.condense.config import CondenseConfig
from datafree.errors import DatafreeError
from datafree.synthesis import Synthesizer, preset
from datafree.synthesis.presets import PRESETS

# the recovery's loss weights are DeepInversion's (one copy, in the synthesis presets)
_DEEPINVERSION = PRESETS["deepinversion"]


@dataclass
class TeacherConfig(CondenseConfig):
    """BN statistics + CE through the synthesis engine's loss terms, at DeepInversion's weights."""

    bn: float = _DEEPINVERSION["bn"]
    bn_first: float = _DEEPINVERSION["bn_first"]
    oh: float = _DEEPINVERSION["oh"]
    tv: float = _DEEPINVERSION["tv"]
    l2: float = _DEEPINVERSION["l2"]


class TeacherOnly(Condenser):
    config_class = TeacherConfig
    needs_real = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.teacher is None:
            raise DatafreeError("teacher-only condensation needs --teacher")
        c = self.config
        synth_config = preset("deepinversion", bn=c.bn, bn_first=c.bn_first, oh=c.oh, tv=c.tv, l2=c.l2,
                              batch_size=len(self.labels), augment=c.dsa)
        self.synth = Synthesizer(self.teacher, self.spec, synth_config, device=self.device)
        self.synth.rng = self.rng  # one generator for every draw of the run (resumable)
        self.low = self.spec.normalize(torch.zeros(1, self.spec.channels, 1, 1)).to(self.device)
        self.high = self.spec.normalize(torch.ones(1, self.spec.channels, 1, 1)).to(self.device)
        with torch.no_grad():
            self.images.copy_(self.images.clamp(self.low, self.high))

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam([self.images], lr=self.config.lr_img, betas=(0.5, 0.99))

    def step(self) -> dict[str, float]:
        terms = self.synth.loss_terms(self.images, self.labels.to(self.device))
        self.update_images(sum(terms.values()))
        with torch.no_grad():
            self.images.copy_(torch.maximum(torch.minimum(self.images, self.high), self.low))
        return {k: v.item() for k, v in terms.items()}

    def close(self) -> None:
        self.synth.close()
