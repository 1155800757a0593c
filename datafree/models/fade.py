"""Weight selection in steps: start at the teacher's width and fade out the channels the student lacks.

Weight selection (:mod:`datafree.models.inherit`) cuts the teacher to the student's width in one go, and the student
it gives answers at chance: each layer lost half of what it read. On synthetic images a network of the teacher's own
width keeps the teacher's accuracy (the main job's LeNet-5: 91.71% against the teacher's 91.80 after the whole
data-free recipe), so the loss comes from the cut, and what the student relearns after it is learnt from synthetic
images only. :class:`FadingWidth` trains at the teacher's width instead (its BatchNorm folded) and multiplies the
output of every channel that weight selection would drop by a factor that falls linearly from 1 to 0 over the first
``fade`` of training. The kept channels learn to do without the others while the teacher's whole network still
answers; once the factor is 0 the network computes exactly what its selection computes, and :meth:`FadingWidth.student`
is that selection: the student, with no loss at the cut.

The trainer tells the model how far training is (:meth:`FadingWidth.set_progress`, called after every step).
Measured on the main job's pair (docs/datafree_recipes.md, "Thirty-eighth round"): +0.60 on one teacher file, a tie
on another, so no recipe turns it on.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.models.fold import fold_batchnorm
from datafree.models.inherit import NORMS, WEIGHTED, evenly_spaced, inherit_weights


class _Fade:
    """The forward hook that scales one layer's dropped output channels (an object, not a closure, so that a deep
    copy of the model, e.g. a weight average, scales with its own copy's progress)."""

    def __init__(self, owner: FadingWidth, dropped: str) -> None:
        self.owner, self.dropped = owner, dropped

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        dropped = getattr(self.owner, self.dropped)
        factor = torch.where(dropped, self.owner.factor(), 1.0).to(out.dtype)
        return out * factor.view(1, -1, *[1] * (out.dim() - 2))


class FadingWidth(nn.Module):
    """``teacher`` at its own width (BatchNorm folded), fading to ``student``'s width over the first ``fade`` of
    training; :meth:`student` gives the student once the fade is over.

    Needs a student without BatchNorm that is a thinner version of the teacher, layer for layer (LeNet-5-half from
    LeNet-5 with or without BatchNorm): the channels it keeps are weight selection's evenly spaced ones.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, fade: float) -> None:
        super().__init__()
        if not 0.0 < fade <= 1.0:
            raise DatafreeError(f"the fade (--fade) is a fraction of training in (0, 1], not {fade}")
        if any(isinstance(m, NORMS) for m in student.modules()):
            raise DatafreeError("--fade needs a student without BatchNorm (the teacher-width network it trains has "
                                "its BatchNorm folded); leave --fade off for this student")
        self.fade = fade
        self.wide = fold_batchnorm(teacher) if any(isinstance(m, NORMS) for m in teacher.modules()) \
            else copy.deepcopy(teacher)
        self.wide.requires_grad_(True).train()
        wide_layers = [m for m in self.wide.modules() if isinstance(m, WEIGHTED)]
        student_layers = [m for m in student.modules() if isinstance(m, WEIGHTED)]
        if [type(m) for m in wide_layers] != [type(m) for m in student_layers]:
            raise DatafreeError("--fade needs a student that is a thinner version of the teacher, layer for layer "
                                "(the same sequence of convolutions and linear layers); leave --fade off")
        self.register_buffer("progress", torch.zeros((), dtype=torch.float64))  # saved: a resumed run goes on
        for i, (w, s) in enumerate(zip(wide_layers, student_layers)):
            n_wide, n_student = w.weight.shape[0], s.weight.shape[0]
            if n_student > n_wide:
                raise DatafreeError(f"--fade: a student layer has {n_student} output channels, more than its "
                                    f"teacher layer's {n_wide}")
            if n_student == n_wide:
                continue
            dropped = torch.ones(n_wide, dtype=torch.bool)
            dropped[evenly_spaced(n_wide, n_student)] = False
            self.register_buffer(f"dropped{i}", dropped, persistent=False)
            w.register_forward_hook(_Fade(self, f"dropped{i}"))
        self._student = [student]  # in a list: not a submodule (not trained, not in the state dict)

    def factor(self) -> torch.Tensor:
        """The factor on the dropped channels now, on the model's device (no host sync in the forward pass): 1 at
        the start, 0 from ``fade`` of training on."""
        return (1.0 - self.progress / self.fade).clamp(min=0.0)

    def scale(self) -> float:
        """:meth:`factor` as a number."""
        return float(self.factor())

    def set_progress(self, fraction: float) -> None:
        """How much of training is done (0 to 1); the trainer calls it after every step."""
        self.progress.fill_(fraction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wide(x)

    def student(self) -> nn.Module:
        """The student with the kept channels' weights (exactly this network's function once the fade is over)."""
        if self.scale() > 0:
            raise DatafreeError(f"the fade is not over ({self.scale():.3f} of the dropped channels remain): the "
                                "student would not compute what was trained")
        student = self._student[0]
        inherit_weights(student, self.wide)
        return student
