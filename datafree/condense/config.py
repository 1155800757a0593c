"""CondenseConfig: everything that defines a condensation run.

Each method's defaults (registered in :mod:`datafree.condense.methods`) follow the papers'
Fashion-MNIST / MNIST recipes (DC, DSA: Zhao et al.; DM: Zhao & Bilen; MTT: Cazenavette et al.;
teacher-only: DeepInversion/SRe2L-style recovery). Iteration counts are the published ones; on a
CPU pass fewer with ``--set iterations=N`` and report the accuracy-against-time curve.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from datafree.config import config_from_dict
from datafree.errors import DatafreeError
from datafree.synthesis.presets import PRESETS

# the teacher-only method's loss weights are DeepInversion's (one copy, in the synthesis presets)
_DEEPINVERSION = PRESETS["deepinversion"]


@dataclass
class CondenseConfig:
    method: str = "dm"
    ipc: int = 10  # synthetic images per class
    iterations: int = 1000  # outer iterations (image updates)
    lr_img: float = 1.0
    momentum_img: float = 0.5  # SGD momentum of the image optimiser (DC/DSA/DM/MTT reference)
    batch_real: int = 256  # real images per class per iteration
    init: str = "real"  # real | noise
    dsa: bool = False  # differentiable siamese augmentation on real and synthetic batches
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    net: str = "convnet"  # the randomly initialised network the matching runs through
    net_kwargs: dict[str, Any] = field(default_factory=dict)
    # DC / DSA: outer loops over fresh networks' training, inner loops of network updates
    outer_loop: int = 0  # 0 = the reference's per-IPC default
    inner_loop: int = 0
    lr_net: float = 0.01
    batch_train: int = 256
    # MTT
    syn_steps: int = 20  # unrolled student steps on the synthetic set
    expert_epochs: int = 2  # how far along the expert trajectory the target lies
    max_start_epoch: int = 20
    lr_lr: float = 1e-5  # learning rate of the learnable synthetic learning rate
    lr_teacher: float = 0.01  # initial synthetic learning rate
    batch_syn: int = 0  # 0 = the whole synthetic set per unrolled step
    buffer: str = ""  # the expert-trajectory directory (train_experts / 'datafree buffer'); required by mtt
    # teacher-only: BN statistics + CE through the synthesis engine's loss terms, DeepInversion's weights
    bn: float = _DEEPINVERSION["bn"]
    bn_first: float = _DEEPINVERSION["bn_first"]
    oh: float = _DEEPINVERSION["oh"]
    tv: float = _DEEPINVERSION["tv"]
    l2: float = _DEEPINVERSION["l2"]
    herding_net: str = "teacher"  # herding embeds with the teacher if given, else a fresh --net

    def __post_init__(self) -> None:
        from datafree.condense.methods import METHODS

        checks = [
            (self.method in METHODS, f"unknown condensation method {self.method!r}; choose one of {', '.join(METHODS)}"),
            (self.ipc >= 1, "ipc must be >= 1"),
            (self.iterations >= 0, "iterations must be >= 0"),
            (self.lr_img > 0, "lr_img must be > 0"),
            (self.batch_real >= 1, "batch_real must be >= 1"),
            (self.init in ("real", "noise"), f"unknown init {self.init!r} (real, noise)"),
            (self.syn_steps >= 1 and self.expert_epochs >= 1, "syn_steps and expert_epochs must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise DatafreeError(msg)

    @property
    def loops(self) -> tuple[int, int]:
        """(outer, inner) loops of DC/DSA: the reference's table per IPC unless set."""
        table = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
        outer, inner = table.get(self.ipc, (10, 50))
        return self.outer_loop or outer, self.inner_loop or inner

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CondenseConfig:
        return config_from_dict(cls, d, "condensation")
