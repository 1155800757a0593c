"""The one trainer: teachers (cross-entropy) and students (knowledge distillation).

Loss per batch, as a dict of named terms so each is logged::

    alpha * CE(student, y) + (1 - alpha) * T^2 * KL(teacher_T || student_T)
    + hint_weight * MSE(regressor(student feature), teacher feature)       (FitNets)
    + rkd_distance_weight * RKD-D + rkd_angle_weight * RKD-A                (relations)
    + kept_hint_weight * MSE(each layer's input, the teacher's at the kept channels)  (weight selection's pairs)

Sources: any Dataset yielding ``(x, y)`` or ``(x, y, teacher_logits)``, or an iterable of such
batches (a live generator stream) with ``steps_per_epoch``. When a teacher is given it is run
live (eval mode, no grad) so augmentation stays consistent; stored ``teacher_logits`` are used
only without a teacher. Reported accuracy is the last epoch's on the test split.

Under ``torchrun`` (see :mod:`datafree.distributed`) the student is wrapped in
DistributedDataParallel; ``batch_size`` stays the per-process batch (global batch = W x batch),
every rank draws the same epoch order and takes its own strided slice of it, evaluation is
sharded and summed, and only rank 0 writes files.
"""

from __future__ import annotations

import itertools
import json
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import Dataset
from tqdm import tqdm

from datafree import distributed
from datafree.checkpoint import load_state_into, load_training_state, save_training_state
from datafree.data.augment import DSA, MIX_MODES, BatchMix, GaussianNoise, RandomCropFlip
from datafree.data.loader import Batch, class_balance_weights, epoch_generator, iterate_batches, num_batches
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.hooks import FeatureHooks, InputHooks, penultimate_module, resolve_module
from datafree.io import atomic_write
from datafree.losses import (
    hint_mse,
    jacobian_match,
    kd_decoupled,
    kd_kl,
    kd_logit_mse,
    kept_channel_hint,
    rkd_angle,
    rkd_distance,
)
from datafree.models.inherit import kept_inputs
from datafree.models.layout import use_channels_last
from datafree.schedules import cosine_decay

STATE_FILE = "state.pt"
AUGMENTS = ("none", "crop", "crop-flip", "dsa")  # batch augmentations (TrainConfig.augment)
KD_LOSSES = ("kl", "mse", "dkd")  # soft-target terms (TrainConfig.kd_loss)
# which teacher channels weight selection keeps (TrainConfig.keep_channels)
KEEP_CHANNELS = ("spread", "important", "important-student")
METRICS_FILE = "metrics.jsonl"


class Stateful(Protocol):
    """A training source with state of its own (a live synthetic stream), saved inside ``state.pt``."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainConfig:
    """Everything that determines a training run (recorded next to its results)."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True  # only with momentum > 0; the condensation evaluation protocol uses plain momentum
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step | constant (per step, over all epochs)
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of training, for 'step'
    gamma: float = 0.1
    clip_grad_norm: float | None = None  # clip the global gradient norm (stabilises high-T KD on huge logits)
    alpha: float = 1.0  # weight of CE on hard labels; 1.0 = no distillation
    temperature: float = 4.0
    standardize_logits: bool = False  # z-score both sides' logits before the KD softmax
    # the soft-target term: kl (Hinton's T^2 * KL at ``temperature``) or mse (centred logits' squared error / 2K, its
    # limit as T grows, datafree.losses.kd_logit_mse; the temperature does not enter) or dkd (decoupled KD around the
    # teacher's top class, the other classes weighted by dkd_beta: datafree.losses.kd_decoupled)
    kd_loss: str = "kl"
    dkd_beta: float = 8.0
    hint_weight: float = 0.0
    jacobian_weight: float = 0.0  # match input gradients of the teacher's top class (needs a teacher)
    hint_layers: tuple[str, str] | None = None  # (student module, teacher module)
    rkd_distance_weight: float = 0.0
    rkd_angle_weight: float = 0.0
    relation_layers: tuple[str, str] | None = None  # default: inputs of the last Linear layers
    # every layer the student shares with the teacher (weight selection's pairing) reads what the teacher's reads at
    # the channels selection kept: MSE, mean over layers (datafree.losses.kept_channel_hint); meant for --inherit
    kept_hint_weight: float = 0.0
    augment: str = "none"  # none | crop | crop-flip | dsa
    mix: str = "none"  # none | mixup | cutmix, after augment; the live teacher labels the mixed images
    mix_share: float = 1.0  # the share of each batch's images that are mixed (the rest stay whole)
    # after augment and mix, Gaussian noise of this standard deviation (in the input's normalised units) on every pixel;
    # a live teacher labels the noisy view (datafree.data.augment.GaussianNoise: the teacher's local slope in random
    # directions, Jacobian matching's aim without its second backward pass). 0: off
    noise_std: float = 0.0
    # draw each epoch's batches so that every label comes up equally often (with replacement; datafree.data.loader.
    # class_balance_weights): a synthetic set's labels are the teacher's reading of its images, which is not balanced
    balance_classes: bool = False
    # the teacher labels each view with the mean of its logits on the view and on its mirror image. A teacher trained
    # with flips reads a real image alike both ways round, a synthetic one often not (its answer survives a flip on
    # about 80% of the ResNet pair's stored images, 97% of real ones), so the targets of a view and its mirror, which
    # crop-flip shows the student, disagree; averaged, they agree as on real images. Only for such teachers. Off in
    # every recipe: on the ResNet pair it lost 0.30 over 3 seeds (docs/datafree_recipes.md, "Forty-eighth round")
    teacher_flip: bool = False
    # student modules (model.get_submodule paths) whose parameters keep their starting values, e.g. filters inherited
    # from the teacher; their BatchNorm statistics, if any, still follow the data, as with requires_grad_(False)
    freeze: tuple[str, ...] = ()
    # decay per step of an exponential moving average of the student's weights and buffers (0: off); the average is
    # what is tested and what the run ends with. Late, noisy steps (a synthetic stream, a set that keeps growing)
    # count for less; 0.999 averages over about the last 1000 steps, so it needs runs well beyond that
    ema: float = 0.0
    # with a teacher-width start (datafree.models.FadingWidth, which api.distill builds for inherit): the fraction of
    # the steps over which the channels the student lacks fade to zero (0: off, the student is trained as it is)
    fade: float = 0.0
    # which of the teacher's channels weight selection keeps (api.distill with inherit): spread (evenly spaced, in the
    # teacher's own arbitrary order) or important (datafree.models.rank: the ones a data-free score ranks highest)
    keep_channels: str = "spread"
    steps_per_epoch: int | None = None  # required for iterator sources
    eval_batch_size: int = 1000
    eval_every: int = 1  # test every N epochs; the last epoch is always tested (its accuracy is the result)
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # mixed precision on CUDA only
    # bfloat16 autocast for the training steps, on any device (on CUDA in place of amp's float16, no loss scaling).
    # Opt-in: on a CPU only faster where it has native bfloat16 (avx512_bf16, AMX); tests stay float32
    bf16: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.eval_every >= 1, "eval_every must be >= 1"),
            (self.batch_size >= 1, "batch size must be >= 1"),
            (self.lr > 0, "learning rate must be > 0"),
            (0.0 <= self.alpha <= 1.0, "alpha must be in [0, 1]"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.kd_loss in KD_LOSSES, f"unknown KD loss {self.kd_loss!r} ({', '.join(KD_LOSSES)})"),
            (self.dkd_beta >= 0, "dkd_beta must be >= 0"),
            (self.clip_grad_norm is None or self.clip_grad_norm > 0, "gradient clipping norm must be > 0"),
            (self.optimizer in ("sgd", "adam"), f"unknown optimizer {self.optimizer!r} (sgd, adam)"),
            (self.schedule in ("cosine", "step", "constant"), f"unknown schedule {self.schedule!r} (cosine, step, constant)"),
            (self.augment in AUGMENTS, f"unknown augment {self.augment!r} ({', '.join(AUGMENTS)})"),
            (self.mix in MIX_MODES, f"unknown mixing {self.mix!r} ({', '.join(MIX_MODES)})"),
            (0.0 < self.mix_share <= 1.0, "the share of mixed images (--mix-share) must be in (0, 1]"),
            (self.mix_share == 1.0 or self.mix != "none", "--mix-share needs --mix mixup or --mix cutmix"),
            (self.noise_std >= 0, "the noise's standard deviation (--noise-std) must be >= 0; 0 is off"),
            (self.mix == "none" or self.alpha == 0,
             "mixing needs pure distillation (--alpha 0): a mixed image has no hard label, the teacher labels it"),
            (not self.teacher_flip or self.alpha < 1,
             "--teacher-flip changes the teacher's soft targets: it needs distillation (--alpha below 1)"),
            (self.hint_weight == 0 or self.hint_layers is not None, "a hint weight needs hint layers (student:teacher)"),
            (self.jacobian_weight >= 0, "the Jacobian weight must be >= 0"),
            (self.kept_hint_weight >= 0, "the kept-channel hint's weight must be >= 0"),
            (0.0 <= self.ema < 1.0, "the weight average's decay (--ema) must be in [0, 1), e.g. 0.999; 0 is off"),
            (0.0 <= self.fade <= 1.0, "the fade (--fade) is a fraction of training in [0, 1]; 0 is off"),
            (self.keep_channels in KEEP_CHANNELS,
             f"unknown channel choice {self.keep_channels!r} for --keep-channels ({', '.join(KEEP_CHANNELS)})"),
            (self.fade == 0 or self.kept_hint_weight == 0,
             "--fade and --kept-hint do not combine: while it fades, the student is the teacher's width"),
            (self.fade == 0 or self.ema == 0,
             "--fade and --ema do not combine: the average would mix networks of different widths"),
        ]
        for ok, msg in checks:
            if not ok:
                raise DatafreeError(msg)

    @property
    def needs_teacher_signal(self) -> bool:
        return self.alpha < 1.0

    @property
    def needs_teacher(self) -> bool:
        return (self.hint_weight > 0 or self.jacobian_weight > 0 or self.rkd_distance_weight > 0
                or self.rkd_angle_weight > 0 or self.kept_hint_weight > 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def _lr_lambda(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    if config.schedule == "cosine":
        return lambda step: cosine_decay(step, total_steps)
    if config.schedule == "step":
        marks = [m * total_steps for m in config.milestones]
        return lambda step: config.gamma ** sum(step >= m for m in marks)
    return lambda step: 1.0


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on CUDA, else the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Strided(Dataset):
    """Every ``step``-th item of ``dataset`` from ``start`` (one rank's share of an evaluation)."""

    def __init__(self, dataset: Dataset, start: int, step: int) -> None:
        self.dataset, self.index = dataset, torch.arange(start, len(dataset), step)  # type: ignore[arg-type]
        if hasattr(dataset, "get_batch"):
            self.get_batch = lambda index: dataset.get_batch(self.index[index])  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.dataset[int(self.index[i])]


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 1000, device: str | torch.device = "cpu",
             amp: bool = True, *, rank: int = 0, world_size: int = 1) -> dict[str, float]:
    """Top-1 accuracy (%) and mean CE of ``model`` on ``dataset``; restores the training mode.

    With ``world_size > 1`` (a process group) each rank evaluates every W-th image and the sums
    are all-reduced: every rank returns the metrics of the whole dataset.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct, loss_sum, n = torch.zeros((), device=device), torch.zeros((), device=device), 0
    shard = _Strided(dataset, rank, world_size) if world_size > 1 else dataset
    with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
        for batch in iterate_batches(shard, batch_size):
            x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
    model.train(was_training)
    if world_size > 1:
        totals = distributed.all_reduce_sum(torch.stack([correct.double(), loss_sum.double(),
                                                         torch.tensor(float(n), dtype=torch.float64, device=device)]))
        correct, loss_sum, n = totals[0], totals[1], int(totals[2].item())
    if n == 0:
        raise DatafreeError("evaluation set is empty")
    return {"accuracy": 100.0 * correct.item() / n, "loss": loss_sum.item() / n}


class Trainer:
    """Trains ``model`` (the student) on a source, optionally distilling from ``teacher``.

    Writes ``metrics.jsonl`` (one JSON line per epoch) and ``state.pt`` (everything needed to
    resume bit-exactly) into ``out_dir`` after every epoch, atomically. ``source_state`` (e.g. a
    :class:`~datafree.synthesis.LiveStream`: generator, optimiser, pool, random state) is saved in
    the same file under ``"source"``: one atomic write, so the student and the stream that feeds it
    are never saved at two different points (a second file would leave a window between the writes).
    """

    def __init__(self, model: nn.Module, config: TrainConfig, *, teacher: nn.Module | None = None,
                 spec: DataSpec | None = None, out_dir: str | Path | None = None,
                 log: Callable[[str], None] = tqdm.write, source_state: Stateful | None = None) -> None:
        self.config = config
        self.source_state = source_state
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise DatafreeError("--device cuda requested but CUDA is not available")
        if config.needs_teacher and teacher is None:
            raise DatafreeError("hint, Jacobian and relation losses need a teacher")
        if config.fade > 0 and not hasattr(model, "set_progress"):
            raise DatafreeError("a fade (--fade) trains a teacher-width start: pass a datafree.models.FadingWidth "
                                "(datafree.api.distill builds it with inherit=True)")
        if config.mix != "none" and teacher is None:
            raise DatafreeError(f"--mix {config.mix} needs a teacher to label the mixed images")
        if config.noise_std > 0 and teacher is None and config.alpha < 1:
            raise DatafreeError("--noise-std needs a teacher to label the noisy views (a stored set's logits are of "
                                "its clean images), or --alpha 1 (hard labels only)")
        if config.teacher_flip and teacher is None:
            raise DatafreeError("--teacher-flip averages a live teacher's logits over a view and its mirror: "
                                "pass a teacher (a stored set's logits are fixed)")
        self.model = model.to(self.device)
        for name in config.freeze:  # before any DistributedDataParallel wrap, which registers what it reduces
            resolve_module(self.model, name).requires_grad_(False)
        # the weight average: a copy made before any feature hook is installed on the student
        self.averaged = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
                         if config.ema > 0 else None)
        self.teacher = teacher.to(self.device).eval().requires_grad_(False) if teacher is not None else None
        # the frozen teacher's labelling pass in channels_last where it is faster (datafree.models.layout; never the
        # student, whose weight gradients hit a oneDNN bug there); close() gives it back in its layout
        self._restore_layout = use_channels_last([self.teacher], spec.shape if spec is not None else None)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.log = log
        self.amp = config.amp and self.device.type == "cuda" and not config.bf16
        self.augment: nn.Module | None = None
        if config.augment == "dsa":
            # group drawn once per batch, parameters per image: the reference's non-siamese
            # DiffAugment call (seed=-1), which is how it trains its evaluation models
            self.augment = DSA(per_image=True)
        elif config.augment != "none":
            self.augment = RandomCropFlip(padding=2, flip=config.augment == "crop-flip")
        self.mix = BatchMix(config.mix, config.mix_share) if config.mix != "none" else None
        self.noise = GaussianNoise(config.noise_std) if config.noise_std > 0 else None
        self._student_hooks, self._teacher_hooks = self._make_hooks()
        self.regressor = self._make_regressor(spec)
        # the modules a training step calls: DistributedDataParallel wrappers under torchrun
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.net, self._regressor_net = self.model, self.regressor
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)  # copies rank 0's weights to all
            if any(p.requires_grad for p in self.regressor.parameters()):
                self._regressor_net = DistributedDataParallel(self.regressor, device_ids=ids)
        params = self._params = [p for p in self.model.parameters() if p.requires_grad] + list(self.regressor.parameters())
        if not params:
            raise DatafreeError("every parameter of the student is frozen (--freeze): there is nothing to train")
        if config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                nesterov=config.nesterov and config.momentum > 0)
        else:
            self.optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ set-up
    @property
    def tested_model(self) -> nn.Module:
        """The model the test split measures: the weight average with ``ema``, else the student itself."""
        return self.averaged.module if self.averaged is not None else self.model

    def _autocast(self) -> torch.autocast:
        """The training step's precision: bfloat16 with ``bf16``, else float16 under CUDA ``amp``, else none."""
        if self.config.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=self.amp)

    def _make_hooks(self) -> tuple[dict[str, FeatureHooks], dict[str, FeatureHooks]]:
        """Feature hooks for hint and relation terms, keyed by term."""
        c, student, teacher = self.config, {}, {}
        self._kept: list[tuple[str, str, torch.Tensor]] = []  # the kept-channel hint's layer pairs
        if c.hint_weight > 0 and self.teacher is not None:
            s_name, t_name = c.hint_layers  # type: ignore[misc]
            student["hint"], teacher["hint"] = FeatureHooks(self.model, [s_name]), FeatureHooks(self.teacher, [t_name])
        if (c.rkd_distance_weight > 0 or c.rkd_angle_weight > 0) and self.teacher is not None:
            if c.relation_layers is None:
                remedy = "RKD reads them by default: name the layers with --relation-layers STUDENT_MODULE:TEACHER_MODULE"
                s_name = penultimate_module(self.model, remedy=remedy)
                t_name = penultimate_module(self.teacher, remedy=remedy)
                student["rkd"], teacher["rkd"] = InputHooks(self.model, [s_name]), InputHooks(self.teacher, [t_name])
            else:
                s_name, t_name = c.relation_layers
                student["rkd"], teacher["rkd"] = FeatureHooks(self.model, [s_name]), FeatureHooks(self.teacher, [t_name])
        if c.kept_hint_weight > 0 and self.teacher is not None:
            # the kept indices live on the training device once, not copied there every step
            self._kept = [(s, t, k.to(self.device)) for s, t, k in kept_inputs(self.model, self.teacher)]
            student["kept_hint"] = InputHooks(self.model, [s for s, _, _ in self._kept])
            teacher["kept_hint"] = InputHooks(self.teacher, [t for _, t, _ in self._kept])
        return student, teacher

    def _make_regressor(self, spec: DataSpec | None) -> nn.Module:
        """FitNets regressor mapping the student's hint feature to the teacher's channels."""
        if "hint" not in self._student_hooks:
            return nn.Identity()
        if spec is None:
            raise DatafreeError("hint losses need the DataSpec to size the regressor")
        probe = torch.zeros(2, *spec.shape, device=self.device)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            self.model(probe)
            self.teacher(probe)  # type: ignore[misc]
        self.model.train(was_training)
        s = next(iter(self._student_hooks["hint"].features.values()))
        t = next(iter(self._teacher_hooks["hint"].features.values()))
        if s.dim() != t.dim():
            raise DatafreeError(f"hint layers have different ranks: student {tuple(s.shape)}, teacher {tuple(t.shape)}")
        with torch.random.fork_rng(devices=[]):  # initial weights from the run seed, not the global state
            torch.manual_seed(self.config.seed * 1_000_003 + 7)
            reg = nn.Conv2d(s.shape[1], t.shape[1], 1) if s.dim() == 4 else nn.Linear(s.shape[1], t.shape[1])
        return reg.to(self.device)

    # ------------------------------------------------------------------ one step
    def _teacher_logits(self, x: torch.Tensor, stored: torch.Tensor | None) -> torch.Tensor | None:
        if self.teacher is not None and (self.config.needs_teacher_signal or self.config.needs_teacher):
            with torch.set_grad_enabled(self.config.jacobian_weight > 0):  # the Jacobian term differentiates it
                if not self.config.teacher_flip:
                    return self.teacher(x)
                mirrored = self.teacher(x.flip(-1))  # first, so the feature hooks keep the view itself
                return (self.teacher(x) + mirrored) / 2
        return stored

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, stored_logits: torch.Tensor | None = None
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Named, weighted loss terms for one batch, and the student's logits."""
        c = self.config
        if c.jacobian_weight > 0:
            x = x.detach().requires_grad_(True)
        logits = self.net(x)
        t_logits = self._teacher_logits(x, stored_logits)
        terms: dict[str, torch.Tensor] = {}
        if c.alpha > 0:
            terms["ce"] = c.alpha * F.cross_entropy(logits, y)
        if c.alpha < 1:
            if t_logits is None:
                raise DatafreeError("alpha < 1 needs a teacher or a source with teacher logits")
            terms["kd"] = (1 - c.alpha) * self._soft_target_term(logits, t_logits)
        if "hint" in self._student_hooks:
            s = self._regressor_net(next(iter(self._student_hooks["hint"].features.values())))
            t = next(iter(self._teacher_hooks["hint"].features.values()))
            if s.shape[2:] != t.shape[2:]:
                s = F.adaptive_avg_pool2d(s, t.shape[2:])
            terms["hint"] = c.hint_weight * hint_mse(s, t)
        if "kept_hint" in self._student_hooks:
            s_in, t_in = self._student_hooks["kept_hint"].features, self._teacher_hooks["kept_hint"].features
            terms["kept_hint"] = c.kept_hint_weight * kept_channel_hint(
                [s_in[s] for s, _, _ in self._kept], [t_in[t] for _, t, _ in self._kept], [k for _, _, k in self._kept])
        if c.jacobian_weight > 0:
            terms["jacobian"] = c.jacobian_weight * self._jacobian_term(x, logits, t_logits)  # type: ignore[arg-type]
        if "rkd" in self._student_hooks:
            s = next(iter(self._student_hooks["rkd"].features.values()))
            t = next(iter(self._teacher_hooks["rkd"].features.values()))
            if c.rkd_distance_weight > 0:
                terms["rkd_distance"] = c.rkd_distance_weight * rkd_distance(s, t)
            if c.rkd_angle_weight > 0:
                terms["rkd_angle"] = c.rkd_angle_weight * rkd_angle(s, t)
        return terms, logits

    def _soft_target_term(self, logits: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
        """The KD term that ``kd_loss`` names, before the ``1 - alpha`` weight."""
        c = self.config
        if c.kd_loss == "mse":
            return kd_logit_mse(logits, t_logits, c.standardize_logits)
        if c.kd_loss == "dkd":
            return kd_decoupled(logits, t_logits, c.temperature, c.dkd_beta, c.standardize_logits)
        return kd_kl(logits, t_logits, c.temperature, c.standardize_logits)

    def _jacobian_term(self, x: torch.Tensor, logits: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
        """Jacobian matching on the teacher's predicted class: the student's input gradient keeps
        its graph (double backward), the teacher's (from the forward pass the KD term uses) is a
        constant target."""
        k = t_logits.argmax(1, keepdim=True)
        (t_grad,) = torch.autograd.grad(t_logits.float().gather(1, k).sum(), x, retain_graph=True)
        (s_grad,) = torch.autograd.grad(logits.float().gather(1, k).sum(), x, create_graph=True)
        return jacobian_match(s_grad, t_grad)

    # ------------------------------------------------------------------ state
    def state_dict(self, epoch: int, scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
        state = {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "regressor": self.regressor.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "config": self.config.to_dict(),
            "history": self.history,
        }
        if self.source_state is not None:
            state["source"] = self.source_state.state_dict()
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _load_state(self, state: dict[str, Any], scheduler: torch.optim.lr_scheduler.LRScheduler) -> int:
        where = self.out_dir / STATE_FILE if self.out_dir is not None else STATE_FILE
        try:
            load_state_into(self.model, state["model"])  # a one-line report of mismatched keys
            return self._restore(state, scheduler)
        except DatafreeError as e:
            raise DatafreeError(f"cannot resume from {where}: {e}") from None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            what = f"no {e} entry" if isinstance(e, KeyError) else str(e).strip().splitlines()[0][:200]
            raise DatafreeError(f"cannot resume from {where}: it does not fit this run ({what}); "
                                "resume with the run's own options, or start again with --overwrite") from None

    def _restore(self, state: dict[str, Any], scheduler: torch.optim.lr_scheduler.LRScheduler) -> int:
        self.regressor.load_state_dict(state["regressor"])
        if self.averaged is not None:
            self.averaged.load_state_dict(state["averaged"])
        self.optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.history = list(state["history"])
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.world_size:
            raise DatafreeError(f"it was written by {saved_world} process(es), this run has {self.world_size}; "
                                f"resume with the same number of processes (torchrun --nproc_per_node)")
        if self.source_state is not None:  # after the model: a live stream uses the student
            self.source_state.load_state_dict(state["source"][self.rank] if self.world_size > 1 else state["source"])
        return int(state["epoch"]) + 1

    def _save(self, epoch: int, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        if self.out_dir is None:
            return
        sources = None
        if self.world_size > 1 and self.source_state is not None:  # every rank's stream, in rank order
            sources = distributed.gather_object(self.source_state.state_dict())
        if not distributed.is_main():
            return
        state = self.state_dict(epoch, scheduler)
        if self.world_size > 1:
            state["world_size"] = self.world_size
            if sources is not None:
                state["source"] = sources
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_training_state(self.out_dir / STATE_FILE, state)
        self._write_metrics()

    def _write_metrics(self) -> None:
        """``metrics.jsonl`` from the history (written after ``state.pt``; a resume rewrites a lagging one)."""
        assert self.out_dir is not None
        text = "".join(json.dumps(h, sort_keys=True) + "\n" for h in self.history)
        atomic_write(self.out_dir / METRICS_FILE, lambda p: p.write_text(text))

    # ------------------------------------------------------------------ loop
    def fit(self, train: Dataset | Iterable[Batch], test: Dataset | None = None, *, resume: bool = False
            ) -> dict[str, Any]:
        """Train for ``config.epochs``; return the last epoch's metrics plus timing."""
        c = self.config
        world, rank, main = self.world_size, self.rank, distributed.is_main()
        drop_last = False
        if isinstance(train, Dataset):
            if len(train) == 0:  # type: ignore[arg-type]
                raise DatafreeError("training set is empty")
            if len(train) < world:  # type: ignore[arg-type]
                raise DatafreeError(f"training set of {len(train)} images is smaller than the {world} processes")  # type: ignore[arg-type]
            drop_last = len(train) // world >= c.batch_size  # type: ignore[arg-type]
            steps = num_batches(train, c.batch_size, drop_last=drop_last, world_size=world)  # type: ignore[arg-type]
        elif c.steps_per_epoch is None:
            raise DatafreeError("an iterator source needs steps_per_epoch")
        else:
            steps = c.steps_per_epoch
        steps = c.steps_per_epoch or steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(c, c.epochs * steps))
        start = 0
        if resume:
            if self.out_dir is None:
                raise DatafreeError("--resume needs an output directory")
            start = self._load_state(load_training_state(self.out_dir / STATE_FILE), scheduler)
            if main:
                self._write_metrics()  # killed between state.pt and metrics.jsonl: the metrics lag one epoch
                self.log(f"resumed after epoch {start} of {c.epochs}")
        stream = None if isinstance(train, Dataset) else iter(train)
        if c.balance_classes and stream is not None:
            raise DatafreeError("class-balanced draws (--balance-classes) need a stored set or dataset, not a live stream")
        weights = class_balance_weights(train) if c.balance_classes else None  # type: ignore[arg-type]
        total_steps = c.epochs * steps
        if c.fade > 0:
            self.model.set_progress(start * steps / total_steps)  # type: ignore[operator]
        self.model.train()
        for epoch in range(start, c.epochs):
            # Dropout and other module-level randomness use the global generator: seed it per
            # epoch from the run seed so resumed and uninterrupted runs agree.
            # Several processes: one batch order for all (each takes its own slice of it), but
            # augmentation and dropout draws of each rank's own.
            torch.manual_seed(c.seed * 1_000_003 + epoch + rank * 2**40)
            order_gen, aug_gen = epoch_generator(c.seed, epoch, 0), epoch_generator(c.seed, epoch, 1)
            if rank > 0:
                aug_gen = torch.Generator().manual_seed(distributed.rank_seed(int(aug_gen.initial_seed()), rank))
            if stream is None:
                batches = iterate_batches(train, c.batch_size, shuffle=True, generator=order_gen,  # type: ignore[arg-type]
                                          drop_last=drop_last, rank=rank, world_size=world, weights=weights)
            else:
                batches = stream
            t0 = time.perf_counter()
            sums: dict[str, torch.Tensor] = {}
            correct, seen = torch.zeros((), device=self.device), 0
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{c.epochs}", disable=not (c.progress and main),
                       leave=False, dynamic_ncols=True)
            for step, batch in enumerate(itertools.islice(batches, steps)):  # never draws a batch it won't use
                x = batch[0].to(self.device, non_blocking=True)
                y = batch[1].to(self.device, non_blocking=True)
                stored = batch[2].to(self.device, non_blocking=True) if len(batch) > 2 else None
                if self.augment is not None:
                    x = self.augment(x, aug_gen)
                if self.mix is not None:
                    x = self.mix(x, aug_gen)
                if self.noise is not None:
                    x = self.noise(x, aug_gen)
                with self._autocast():
                    terms, logits = self.loss_terms(x, y, stored)
                    loss = sum(terms.values())
                finite = bool(torch.isfinite(loss))
                if world > 1 and distributed.any_rank(not finite):  # every rank stops, at the same step
                    bar.close()
                    if finite:
                        raise DatafreeError(f"non-finite loss in another process at epoch {epoch + 1} step {step + 1}; "
                                            "lower the learning rate or check the inputs; the last saved state is intact")
                if not finite:
                    bar.close()
                    bad = [k for k, v in terms.items() if not torch.isfinite(v)]
                    hint = ("the teacher's outputs (or the set's stored logits) are not finite: check the teacher"
                            if bad == ["kd"] else "lower the learning rate or check the inputs")
                    raise DatafreeError(
                        f"non-finite loss at epoch {epoch + 1} step {step + 1} "
                        f"({', '.join(f'{k}={v.item():.4g}' for k, v in terms.items())}); "
                        f"{hint}; the last saved state is intact"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if c.clip_grad_norm is not None:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self._params, c.clip_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                scheduler.step()
                if c.fade > 0:
                    self.model.set_progress((epoch * steps + step + 1) / total_steps)  # type: ignore[operator]
                if self.averaged is not None:
                    self.averaged.update_parameters(self.model)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                seen += len(y)
                bar.update(1)
            bar.close()
            if world > 1:  # metrics of the whole global batch, identical on every rank
                names = sorted(sums)
                totals = distributed.all_reduce_sum(torch.stack(
                    [correct.double(), torch.tensor(float(seen), dtype=torch.float64, device=self.device),
                     *(sums[k].double() for k in names)]))
                correct, seen = totals[0], int(totals[1].item())
                sums = {k: totals[2 + i] for i, k in enumerate(names)}
                self._sync_replicas()
            if seen == 0:
                raise DatafreeError("the training source yielded no batches")
            train_time = time.perf_counter() - t0
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": self.optimizer.param_groups[0]["lr"],
                "train_accuracy": 100.0 * correct.item() / seen,
                "train_loss": sum(v.item() for v in sums.values()) / seen,
                **{f"train_{k}": v.item() / seen for k, v in sums.items()},
                "train_time_s": train_time,
                "samples_per_s": seen / train_time,
            }
            if test is not None and ((epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs):
                metrics = evaluate(self.tested_model, test, c.eval_batch_size, self.device, self.amp, rank=rank,
                                   world_size=world)
                record.update(test_accuracy=metrics["accuracy"], test_loss=metrics["loss"])
            record["epoch_time_s"] = time.perf_counter() - t0  # training + evaluation
            self.history.append(record)
            self._save(epoch, scheduler)
            if c.progress and main:
                shown = f", test acc {record['test_accuracy']:.2f}%" if "test_accuracy" in record else ""
                self.log(f"epoch {epoch + 1}/{c.epochs}: loss {record['train_loss']:.4f}, "
                         f"train acc {record['train_accuracy']:.2f}%{shown} ({train_time:.1f}s)")
        if self.averaged is not None:  # the run ends with the model it tested
            self.model.load_state_dict(self.averaged.module.state_dict())
        last = dict(self.history[-1]) if self.history else {}
        last["train_time_total_s"] = sum(h["train_time_s"] for h in self.history)
        last["wall_time_s"] = sum(h["epoch_time_s"] for h in self.history)  # all epochs, across resumes
        last["peak_memory_mb"] = peak_memory_mb(self.device)
        return last

    def _sync_replicas(self) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics) and check the parameters agree.

        DDP keeps the parameters bitwise identical (same start, same all-reduced gradients); the
        buffers drift by each rank's last batch. Syncing them before evaluating makes every rank
        hold the very model rank 0 saves; a parameter mismatch would be a bug, so it stops the run.
        """
        averaged = list(self.averaged.buffers()) if self.averaged is not None else []  # its BatchNorm statistics
        distributed.broadcast_tensors(list(self.model.buffers()) + list(self.regressor.buffers()) + averaged)
        params = [p.detach() for p in [*self.model.parameters(), *self.regressor.parameters()]]
        fingerprint = [float(torch.stack([p.double().sum() for p in params]).sum()),
                       float(torch.stack([p.double().abs().sum() for p in params]).sum())]
        if len({tuple(f) for f in distributed.all_gather_object(fingerprint)}) > 1:
            raise DatafreeError("the processes' copies of the model differ after an epoch (a bug: please report it)")

    def close(self) -> None:
        """Remove the feature hooks this trainer installed on the models and give the teacher back its layout."""
        for hooks in (*self._student_hooks.values(), *self._teacher_hooks.values()):
            hooks.remove()
        self._restore_layout()


__all__ = ["Stateful", "TrainConfig", "Trainer", "evaluate", "peak_memory_mb"]
