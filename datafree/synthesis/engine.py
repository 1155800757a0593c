"""The synthesis engine: one generator framework, three schedules, composable loss terms.

A :class:`Synthesizer` turns a teacher (and, for adversarial terms, the student being trained)
into batches ``(x, teacher_argmax, teacher_logits)``. The schedule decides how the generator
gets there:

- ``online`` (DAFL, DFAD, ZSKT): one generator, trained jointly with the student; each call
  takes ``iterations`` generator steps on fresh noise and returns a fresh sample.
- ``pool`` (DeepInversion, ADI, CMI): each call starts from a freshly initialised generator (or
  fresh pixels) and optimises it for ``iterations`` steps; batches accumulate into a transfer set.
- ``meta`` (Fast-DFKD): each call starts from a meta-learned initialisation, takes only a few
  steps, and moves the initialisation towards the result (Reptile, first order). At ``meta_lr=1``
  the generator simply carries on from batch to batch (NAYER, with its noisy layers redrawn per call).

The generator loss is a weighted sum of named terms (see :meth:`Synthesizer.loss_terms`); every
weight is a field of :class:`SynthesisConfig`, so presets are just configs.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from datafree.config import config_from_dict
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.hooks import BatchNormStatistics, InputHooks, class_weights, classifier_module, penultimate_module
from datafree.losses import (
    activation_norm,
    class_balance,
    class_mean_alignment,
    disagreement,
    info_nce,
    input_statistics,
    l2_prior,
    total_variation,
)
from datafree.models.layout import is_channels_last, runs_channels_last, to_channels_last
from datafree.schedules import cosine_decay
from datafree.seeding import draw_seed
from datafree.synthesis.augment import random_resized_crop_flip
from datafree.synthesis.generators import (
    GENERATORS,
    GeneratorConfig,
    PixelGenerator,
    flat_fields,
    generator_config,
    generator_keys,
)

if TYPE_CHECKING:
    from datafree.data.transfer import TransferSetWriter

# a loss term of your own: (images, teacher logits on the augmented view, target classes) -> a scalar to minimise
LossTerm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
SCHEDULES = ("online", "pool", "meta")


@dataclass
class SynthesisConfig:
    """Everything that defines a synthesis method. Presets are instances of this.

    The generator's own fields (``nz``, ``ngf``, ``conditional``, ``output`` of the DCGAN;
    ``pixel_scale`` of the pixels) live in ``generator_config``, the config class the generator
    registry (:data:`datafree.synthesis.generators.GENERATORS`) pairs with ``generator`` (its
    defaults when None). :meth:`to_dict`/:meth:`from_dict` keep the flat form every manifest, saved
    state and ``--set`` option uses.
    """

    schedule: str = "pool"
    generator: str = "dcgan"
    generator_config: GeneratorConfig | None = None
    batch_size: int = 256
    # generator steps per call (pool: per round; meta: per batch; online: per call). A pool of 0: each batch is the
    # generator's start as it is, labelled by the teacher (pixel_init=dead_leaves gives a procedural set)
    iterations: int = 200
    lr: float = 1e-3  # generator (or pixel) learning rate, Adam
    # constant | cosine: within each pool round, lr decays to 0 over its iterations (DeepInversion's and
    # SRe2L's recovery), so the last steps refine the images instead of jittering at full lr
    lr_schedule: str = "constant"
    betas: tuple[float, float] = (0.5, 0.999)
    meta_lr: float = 0.1  # Reptile step towards the adapted generator (meta schedule)
    # loss weights
    bn: float = 0.0
    bn_first: float = 1.0  # extra weight of the first BN layer
    bn_momentum: float = 0.0  # blend batch statistics across calls (Fast-DFKD: 0.9)
    oh: float = 0.0  # CE to the sampled classes (conditional / pixels) or the teacher's argmax
    oh_temperature: float = 1.0  # softmax temperature of that CE (ZSKD: 20, so images are not over-optimised)
    # > 0: soft targets ~ Dir(beta * class similarity) instead of one-hot (ZSKD's beta). Several betas:
    # sample i of a batch uses beta i mod n (ZSKD: (1.0, 0.1), half sharp targets, half near one class)
    dirichlet: float | tuple[float, ...] = 0.0
    # share of each batch whose target is split between its class (weight ~ U(0.5, 0.75)) and one partner class drawn
    # in proportion to the class similarity: images on the teacher's boundaries between confusable classes, where
    # a student learns how the teacher separates them (Heo et al. 2019's boundary-supporting samples, data-free)
    pair_targets: float = 0.0
    # the partner law's sharpness: partner drawn in proportion to similarity ** pair_power (1: the row itself; larger
    # concentrates the pairs on each class's most confusable neighbours rather than spreading them over all classes)
    pair_power: float = 1.0
    # share of each batch whose class term first asks, for the first half of the steps, for a neighbouring class
    # (drawn in proportion to the class similarity), then for its own: an image that forms as a neighbour's garment
    # and is carried across the teacher's boundary, not grown from noise to its class's extreme. Aimed at a class that
    # real images reach from its neighbours (Fashion-MNIST's Shirt, between T-shirt, Pullover and Coat), whose
    # synthetic images a student learns and whose real ones it still misses
    detour: float = 0.0
    ie: float = 0.0  # class balance (DAFL information entropy)
    act: float = 0.0  # activation norm of the teacher's penultimate features (DAFL)
    adv: float = 0.0  # adversarial teacher-student disagreement
    adv_kind: str = "kl"  # l1 (DFAD) | kl (ZSKT) | js (ADI) | cmi (agreement-masked KL)
    adv_temperature: float = 1.0
    contrastive: float = 0.0  # InfoNCE between two augmented views, negatives from a memory bank (CMI)
    contrastive_temperature: float = 0.1
    # the contrastive term's negatives only from the query's own class (the teacher's answer for bank images):
    # within-class diversity, where CMI's negatives are every earlier image
    contrastive_within_class: bool = False
    # each class's mean teacher feature towards that class's classifier row, centred (neural collapse): where
    # the class's real images sit on average, which pooled BN statistics do not say
    class_mean: float = 0.0
    bank_size: int = 4096
    input_stats: float = 0.0  # match the batch's per-channel mean/std to the teacher's input normalisation
    # the total-variation prior's weight; a list is cycled by synthesis call (batch k uses tv[k mod n]): one set,
    # made by one generator at one set's cost, holding batches of several priors (the recipe's and a smoother one)
    tv: float | tuple[float, ...] = 0.0
    l2: float = 0.0
    augment: bool = False  # differentiable random resized crop + flip before the teacher sees x
    # the flip of that augmentation: off for a teacher trained without flips, which reads a flipped image as
    # another class (asked to agree on both, the images become mirror-ambiguous)
    augment_flip: bool = True
    # the smallest area fraction of those crops (0.5: a zoom of up to 1.4x). Smaller crops ask every part of an image
    # to read as its class at every scale (SRe2L's recovery crops down to 8% of the image; the teacher-only condenser 25%)
    augment_scale: float = 0.5
    student_steps: int = 1  # student steps per synthesis call when distilling from a live stream
    # share of each pool batch drawn in proportion to how far the student is from the teacher on each pool image (the
    # adversarial term's measure, adv_kind at adv_temperature), refreshed at every synthesis call; the rest uniform.
    # SSD-KD's priority sampling: a student trained on a small synthetic pool revisits what it has not learned yet.
    # Costs one student forward pass over the pool per synthesis call (cheap at the LeNet pairs' 200-400 steps a call;
    # with a large pool and a call every few steps, as Fast-DFKD's, it is not)
    priority: float = 0.0
    # dropout (this rate, inverted: survivors scaled by 1 / (1 - rate)) on the input of the teacher's classifier (its
    # last nn.Linear) in the synthesis loss's teacher pass, a fresh mask per step from the engine's generator: an
    # image must read as its class from any part of the teacher's evidence, not from the few features it can push
    # furthest, which a student with other features does not share (model augmentation: Zhang et al. 2023 perturb
    # the networks a distilled set is matched on so that it serves others). It comes after every BatchNorm layer, so
    # BN statistics are matched on the whole teacher; the terms that read the teacher's penultimate features (act,
    # class_mean, the contrastive term's first view) see them dropped. The student's labels are never dropped
    teacher_dropout: float = 0.0
    # stop after this many consecutive collapsed batches (near-identical images, or the teacher seeing
    # one class in >= 95% of them); 0 = never stop
    collapse_patience: int = 50

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise DatafreeError(f"unknown schedule {self.schedule!r} ({', '.join(SCHEDULES)})")
        kind = GENERATORS.get(self.generator)
        if kind is None:
            raise DatafreeError(f"unknown generator {self.generator!r} ({', '.join(GENERATORS)})")
        if self.generator_config is None:
            self.generator_config = kind()
        if not isinstance(self.generator_config, kind):
            raise DatafreeError(f"the {self.generator} generator takes a {kind.__name__}, "
                                f"not a {type(self.generator_config).__name__}")
        if kind.schedules is not None and self.schedule not in kind.schedules:
            raise DatafreeError(f"the {self.generator} generator only works with the {', '.join(kind.schedules)} schedule")
        if self.lr_schedule not in ("constant", "cosine"):
            raise DatafreeError(f"unknown lr_schedule {self.lr_schedule!r} (constant, cosine)")
        if self.lr_schedule == "cosine" and self.schedule != "pool":
            raise DatafreeError("lr_schedule=cosine decays within a pool round: it needs schedule=pool")
        if self.adv_kind not in ("l1", "kl", "js", "cmi"):
            raise DatafreeError(f"unknown adversarial term {self.adv_kind!r} (l1, kl, js, cmi)")
        if isinstance(self.dirichlet, list):
            self.dirichlet = tuple(self.dirichlet)
        if isinstance(self.tv, list):
            self.tv = tuple(self.tv)
        tvs = self.tv if isinstance(self.tv, tuple) else (self.tv,)
        if not tvs or min(tvs) < 0:
            raise DatafreeError("tv must be >= 0 (or a list of weights >= 0, cycled by batch)")
        betas = self._betas()
        if not betas or min(betas) < 0 or (len(betas) > 1 and min(betas) == 0) or self.oh_temperature <= 0:
            raise DatafreeError("dirichlet must be >= 0 (or a list of betas > 0) and oh_temperature > 0")
        if not 0.0 <= self.detour <= 1.0:
            raise DatafreeError("detour is a share of each batch: between 0 and 1")
        if self.detour and self.schedule == "online":
            raise DatafreeError("detour changes a batch's targets halfway through its steps: it needs a pool or meta "
                                "method, not an online one")
        if not 0.0 <= self.pair_targets <= 1.0:
            raise DatafreeError("pair_targets is a share of each batch: between 0 and 1")
        if not self.pair_power > 0:
            raise DatafreeError("pair_power must be > 0 (1: partners in proportion to the class similarity)")
        if not 0.0 < self.augment_scale <= 1.0:
            raise DatafreeError("augment_scale is the smallest crop's area fraction: in (0, 1]")
        if not 0.0 <= self.priority <= 1.0:
            raise DatafreeError("priority is a share of each pool batch: between 0 and 1")
        if self.priority and self.schedule == "online":
            raise DatafreeError("priority sampling draws from a pool: it needs a pool or meta method, not an online one")
        if not 0.0 <= self.teacher_dropout < 1.0:
            raise DatafreeError("teacher_dropout is a dropout rate: at least 0 and below 1")
        if self.collapse_patience < 0:
            raise DatafreeError("collapse_patience must be >= 0 (0 = never stop)")
        if self.batch_size < 1 or self.iterations < 0:
            raise DatafreeError("batch size must be >= 1 and iterations >= 0")
        if self.iterations == 0 and self.schedule != "pool":
            raise DatafreeError("iterations=0 (each batch is the generator's start, unoptimised) needs schedule=pool")

    @property
    def dirichlet_betas(self) -> tuple[float, ...]:
        """The Dirichlet scales in use; empty when targets are one-hot."""
        return tuple(float(b) for b in self._betas() if b > 0)

    def tv_weight(self, call: int) -> float:
        """The total-variation weight of synthesis call ``call`` (1 for a run's first batch)."""
        return float(self.tv[(call - 1) % len(self.tv)]) if isinstance(self.tv, tuple) else float(self.tv)

    def _betas(self) -> tuple[float, ...]:
        # ``dirichlet`` keeps its stored form (a number stays a number), so old manifests still match
        return self.dirichlet if isinstance(self.dirichlet, tuple) else (self.dirichlet,)

    @property
    def needs_batchnorm(self) -> bool:
        return self.bn > 0

    @property
    def needs_student(self) -> bool:
        return self.adv > 0

    def to_dict(self) -> dict[str, Any]:
        """The flat form: the generator's fields beside the others, as every record has them."""
        d = asdict(self)
        del d["generator_config"]
        head = {"schedule": d.pop("schedule"), "generator": d.pop("generator")}
        return {**head, **flat_fields(self.generator_config), **d}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthesisConfig:
        """From the flat form; a field of another generator than ``generator`` is a one-line error."""
        keys = generator_keys()
        name = d.get("generator", cls.generator)
        own = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in keys}
        rest = {k: v for k, v in d.items() if k not in keys and k != "generator_config"}
        return config_from_dict(cls, {**rest, "generator_config": generator_config(name, own)}, "synthesis")


def class_similarity(teacher: nn.Module) -> torch.Tensor:
    """ZSKD's class-similarity matrix: cosine similarity of the final layer's class weight vectors,
    min-max scaled to [0, 1] per row (floored at 1e-3 so every Dirichlet concentration is positive)."""
    remedy = ("Dirichlet and pair soft targets read the classes' similarity from its rows: use one-hot targets "
              "(--set dirichlet=0 --set pair_targets=0)")
    w = F.normalize(class_weights(teacher, remedy=remedy).float().cpu(), dim=1)
    sim = w @ w.t()
    low, high = sim.min(1, keepdim=True).values, sim.max(1, keepdim=True).values
    return ((sim - low) / (high - low).clamp_min(1e-12)).clamp_min(1e-3)


def neighbours(y: torch.Tensor, similarity: torch.Tensor, rng: torch.Generator, power: float = 1.0) -> torch.Tensor:
    """For each class of ``y``, another class drawn in proportion to its ``similarity`` row (the rows of ``y``'s
    classes) raised to ``power``: a confusable neighbour is the likely one."""
    others = similarity.pow(power)  # a new tensor; power 1 is exact, so the flat law's draws are unchanged
    others[torch.arange(len(y)), y] = 0.0
    return torch.multinomial(others, 1, generator=rng).squeeze(1)


def pair_targets(y: torch.Tensor, similarity: torch.Tensor, rng: torch.Generator, power: float = 1.0) -> torch.Tensor:
    """Two-class soft targets: weight ~ U(0.5, 0.75) on each sample's class ``y``, the rest on a partner class
    drawn in proportion to its ``similarity`` row raised to ``power`` (the class itself excluded), so a confusable
    neighbour is the likely one."""
    rows = torch.arange(len(y))
    partner = neighbours(y, similarity, rng, power)
    own = 0.5 + 0.25 * torch.rand(len(y), generator=rng)
    soft = torch.zeros_like(similarity)
    soft[rows, y] = own
    soft[rows, partner] = 1.0 - own
    return soft


class Synthesizer:
    """Produces synthetic batches from a teacher according to a :class:`SynthesisConfig`.

    ``student`` is required (and used, never copied) when the config has an adversarial term:
    the generator then receives gradient through the student being trained. ``terms`` adds loss
    terms of your own (weighted inside the function) to the config's, by name.
    """

    def __init__(self, teacher: nn.Module, spec: DataSpec, config: SynthesisConfig, *,
                 student: nn.Module | None = None, seed: int = 0, device: str | torch.device = "cpu",
                 terms: Mapping[str, LossTerm] | None = None) -> None:
        self.config, self.spec, self.device = config, spec, torch.device(device)
        self.extra_terms = dict(terms or {})
        # channels_last (datafree.models.layout): gradients to the input through the frozen teacher run
        # 1.2-1.9x faster on the CPU; same values up to float rounding. In place, like eval(): the caller's
        # teacher is the same module. The student of an adversarial method runs channels_last only while frozen.
        self.teacher = to_channels_last(teacher.eval().requires_grad_(False), spec.shape, self.device)
        self.student = student
        # probed once here; only an adversarial term runs the student inside synthesis
        self._student_channels_last = (student is not None and config.needs_student
                                       and runs_channels_last(student, spec.shape))
        if config.needs_student and student is None:
            raise DatafreeError("this method has an adversarial term and needs the student being trained")
        self.bn_stats = BatchNormStatistics(self.teacher, config.bn_first, config.bn_momentum)
        if config.needs_batchnorm and len(self.bn_stats) == 0:
            from datafree.synthesis.presets import METHODS

            self.bn_stats.remove()
            free = ", ".join(name for name, method in METHODS.items() if not method.needs_batchnorm)
            raise DatafreeError(
                f"the teacher ({type(teacher).__name__}) has no BatchNorm layers, which this method matches; "
                f"use a method without BN statistics ({free}) or drop the term with --set bn=0"
            )
        readers = [name for name in ("act", "contrastive", "class_mean") if getattr(config, name) > 0]
        terms = f"the {readers[0]} term reads" if len(readers) == 1 else f"the {', '.join(readers)} terms read"
        remedy = f"{terms} them: leave {'it' if len(readers) == 1 else 'them'} off (" + \
            " ".join(f"--set {n}=0" for n in readers) + ")"
        self.features = InputHooks(self.teacher, [penultimate_module(self.teacher, remedy=remedy)]) if readers else None
        self.classifier = (classifier_module(
            self.teacher, remedy="teacher_dropout drops its input: leave it off (--set teacher_dropout=0)")
            if config.teacher_dropout > 0 else None)
        self.prototypes = (class_weights(self.teacher, remedy=remedy).to(self.device) if config.class_mean > 0
                           else None)
        if config.pair_targets > 0 and spec.num_classes < 2:
            raise DatafreeError("pair_targets splits targets between two classes; this data has one (--set pair_targets=0)")
        if config.detour > 0 and (spec.num_classes < 2 or not config.generator_config.targets_sampled):  # type: ignore[union-attr]
            raise DatafreeError("detour asks for a neighbouring class first: it needs two classes or more and a "
                                "generator that takes target classes (--set detour=0)")
        self.rng = torch.Generator().manual_seed(seed)  # every draw of the engine comes from here
        self.class_similarity = (class_similarity(self.teacher)
                                 if config.dirichlet_betas or config.pair_targets > 0 or config.detour > 0 else None)
        self.calls = 0
        self.collapsed = 0  # consecutive collapsed batches (see _watch_collapse)
        self.bank = torch.zeros(0, device=self.device)
        self.bank_labels = torch.zeros(0, dtype=torch.long, device=self.device)  # the teacher's answers for the bank
        self.generator = self._new_generator()
        self.optimizer = self._new_optimizer(self.generator)

    # ------------------------------------------------------------------ construction
    def _new_generator(self) -> nn.Module:
        c = self.config
        seed = draw_seed(self.rng)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            g = c.generator_config.build(self.spec, c.batch_size, seed, self.teacher)  # type: ignore[union-attr]
        return g.to(self.device)

    def _new_optimizer(self, generator: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(generator.parameters(), lr=self.config.lr, betas=self.config.betas)

    # ------------------------------------------------------------------ sampling
    def _noise(self) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        z = torch.randn(c.batch_size, max(c.generator_config.noise_dim, 1), generator=self.rng)  # type: ignore[union-attr]
        y = torch.randperm(c.batch_size, generator=self.rng) % self.spec.num_classes
        return z.to(self.device), y.to(self.device)

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Noise, target classes and (with ``dirichlet``) soft targets for one batch."""
        z, y = self._noise()
        if self.class_similarity is None:
            return z, y, None
        similarity = self.class_similarity[y.cpu()]
        if self.config.dirichlet_betas:
            seed = draw_seed(self.rng)
            with torch.random.fork_rng(devices=[]):  # Dirichlet sampling takes no generator argument
                torch.manual_seed(seed)
                betas = torch.tensor(self.config.dirichlet_betas)
                scale = betas[torch.arange(len(y)) % len(betas)].unsqueeze(1)
                soft = torch.distributions.Dirichlet(scale * similarity).sample()
        else:
            soft = F.one_hot(y.cpu(), self.spec.num_classes).float()
        pairs = round(self.config.pair_targets * len(y))
        if pairs:
            soft[:pairs] = pair_targets(y[:pairs].cpu(), similarity[:pairs], self.rng, self.config.pair_power)
        return z, y, soft.to(self.device)

    def _detour(self, y: torch.Tensor, soft: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The first half's targets with ``detour``: its share of the batch (the last rows, apart from the pairs at
        the front) asks for a neighbouring class; ``None`` without it."""
        n = round(self.config.detour * len(y))
        if not n:
            return None
        assert self.class_similarity is not None
        rows = slice(len(y) - n, len(y))
        partner = neighbours(y[rows].cpu(), self.class_similarity[y[rows].cpu()], self.rng).to(y.device)
        first_y = y.clone()
        first_y[rows] = partner
        first_soft = None
        if soft is not None:
            first_soft = soft.clone()
            first_soft[rows] = F.one_hot(partner, soft.shape[1]).to(soft.dtype)
        return first_y, first_soft

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        return random_resized_crop_flip(x, self.rng, (self.config.augment_scale, 1.0), flip=self.config.augment_flip)

    @contextlib.contextmanager
    def _dropout(self) -> Iterator[None]:
        """``teacher_dropout`` on the classifier's input while the context is open (nothing without it)."""
        if self.classifier is None:
            yield
            return
        keep = 1.0 - self.config.teacher_dropout

        def drop(_module: nn.Module, inputs: tuple) -> tuple:
            x = inputs[0]
            mask = (torch.rand(x.shape, generator=self.rng) < keep).to(x.device, x.dtype)
            return (x * mask / keep, *inputs[1:])

        handle = self.classifier.register_forward_pre_hook(drop)
        try:
            yield
        finally:
            handle.remove()

    def _teacher_embedding(self) -> torch.Tensor:
        return next(iter(self.features.features.values())).flatten(1)  # type: ignore[union-attr]

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Named, weighted generator-loss terms for a batch ``x`` with target classes ``y``.

        ``soft`` (one distribution per sample) replaces ``y`` as the one-hot term's target.
        """
        c = self.config
        view = self._augment(x) if c.augment else x
        with self.bn_stats.recording(), self._dropout():
            t_logits = self.teacher(view)
            bn = self.bn_stats.loss() if c.bn > 0 else None
        terms: dict[str, torch.Tensor] = {}
        if bn is not None:
            terms["bn"] = c.bn * bn
        targets = y if c.generator_config.targets_sampled else t_logits.argmax(1)  # type: ignore[union-attr]
        if c.oh > 0:
            terms["oh"] = c.oh * F.cross_entropy(t_logits / c.oh_temperature, targets if soft is None else soft)
        if c.class_mean > 0:  # before the contrastive term's second teacher pass overwrites the embedding
            terms["class_mean"] = c.class_mean * class_mean_alignment(self._teacher_embedding(), targets,
                                                                      self.prototypes)  # type: ignore[arg-type]
        if c.ie > 0:
            terms["ie"] = c.ie * class_balance(t_logits)
        if c.act > 0:
            terms["act"] = c.act * activation_norm(self._teacher_embedding())
        if c.adv > 0:
            s_logits = self.student(view)  # type: ignore[misc]
            terms["adv"] = -c.adv * disagreement(s_logits, t_logits, c.adv_kind, c.adv_temperature).mean()
        if c.contrastive > 0:
            q = self._teacher_embedding()
            self.teacher(self._augment(x))
            k = self._teacher_embedding()
            within = dict(labels=targets, negative_labels=self.bank_labels) if c.contrastive_within_class else {}
            terms["contrastive"] = c.contrastive * info_nce(q, k, self.bank if len(self.bank) else None,
                                                            c.contrastive_temperature, **within)
        if c.input_stats > 0:
            terms["input_stats"] = c.input_stats * input_statistics(x)
        tv = c.tv_weight(max(self.calls, 1))
        if tv > 0:
            terms["tv"] = tv * total_variation(x)
        if c.l2 > 0:
            terms["l2"] = c.l2 * l2_prior(x)
        for name, term in self.extra_terms.items():
            if name in terms:
                raise DatafreeError(f"custom loss term {name!r} has the name of a built-in term; rename it")
            terms[name] = term(x, t_logits, y)
        if not terms:
            raise DatafreeError("the synthesis config has no loss term with a positive weight")
        return terms

    def _optimise(self, generator: nn.Module, optimizer: torch.optim.Optimizer, steps: int,
                  fixed: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None,
                  first: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> dict[str, float]:
        """``steps`` generator updates; fresh noise per step unless ``fixed`` is given; ``first`` (targets, soft
        targets) replaces ``fixed``'s targets in the first half of the steps (``detour``)."""
        student_state = self._freeze_student()
        terms: dict[str, torch.Tensor] = {}
        try:
            for step in range(steps):
                if self.config.lr_schedule == "cosine":
                    for group in optimizer.param_groups:
                        group["lr"] = self.config.lr * cosine_decay(step, steps)
                z, y, soft = fixed if fixed is not None else self._draw()
                x = generator(z, y)
                if first is not None and step < steps // 2:
                    y, soft = first
                terms = self.loss_terms(x, y, soft)
                loss = sum(terms.values())
                if not torch.isfinite(loss):
                    raise DatafreeError(
                        "non-finite generator loss (" + ", ".join(f"{k}={v.item():.3g}" for k, v in terms.items())
                        + "); lower the synthesis learning rate or the term weights"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if step == 0 and self.calls == 1 and self.student is None:  # a run's very first step
                    self._check_gradient(generator)
                optimizer.step()
                if isinstance(generator, PixelGenerator):
                    generator.clamp_()
        finally:
            self._restore_student(student_state)
        return {k: v.item() for k, v in terms.items()}

    def _freeze_student(self) -> tuple[bool, list[bool], bool] | None:
        """Student in eval mode without parameter gradients (gradient still flows to x), in channels_last
        where it runs faster that way (LeNet-5-half: 1.9x to its input); only while frozen, see datafree.models.layout."""
        if self.student is None:
            return None
        convert = self._student_channels_last and not is_channels_last(self.student)
        state = (self.student.training, [p.requires_grad for p in self.student.parameters()], convert)
        self.student.eval().requires_grad_(False)
        if convert:
            self.student.to(memory_format=torch.channels_last)
        return state

    def _restore_student(self, state: tuple[bool, list[bool], bool] | None) -> None:
        if self.student is None or state is None:
            return
        training, flags, converted = state
        if converted:
            self.student.to(memory_format=torch.contiguous_format)
        self.student.train(training)
        for p, flag in zip(self.student.parameters(), flags):
            p.requires_grad_(flag)

    @torch.no_grad()
    def label(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, teacher_argmax, teacher_logits)``: a batch as the stream yields it."""
        x = x.detach()
        logits = self.teacher(x).float()
        return x, logits.argmax(1), logits

    @torch.no_grad()
    def student_disagreement(self, x: torch.Tensor, t_logits: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Per image, how far the student (in eval mode) is from the teacher's stored logits: the adversarial
        term's measure (``adv_kind`` at ``adv_temperature``), on the CPU, for priority sampling."""
        if self.student is None:
            raise DatafreeError("priority sampling needs the student being trained")
        state = self._freeze_student()
        try:
            parts = [disagreement(self.student(x[i:i + chunk]).float(), t_logits[i:i + chunk], self.config.adv_kind,
                                  self.config.adv_temperature) for i in range(0, len(x), chunk)]
        finally:
            self._restore_student(state)
        return torch.cat(parts).clamp_min(0.0).cpu()

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A fresh batch from the current generator (online schedule), labelled by the teacher.

        The generator stays in training mode, as it was optimised: its BatchNorm layers use
        batch statistics, never running averages that lag behind the weights.
        """
        with torch.no_grad():
            return self.label(self.generator(*self._noise()))

    def synthesize(self) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, float]]:
        """One call of the schedule: returns ``(x, teacher_argmax, teacher_logits)`` and the loss terms."""
        c = self.config
        self.calls += 1
        if c.schedule == "online":
            terms = self._optimise(self.generator, self.optimizer, c.iterations, None)
            batch = self.sample()
            self._watch_collapse(batch[0], batch[1])
            return batch, terms
        fixed = self._draw()
        first = self._detour(fixed[1], fixed[2])
        if c.schedule == "pool":
            generator = self._new_generator()
            terms = self._optimise(generator, self._new_optimizer(generator), c.iterations, fixed, first)
        else:  # meta: adapt a copy of the meta initialisation, then move it towards the result
            kind = c.generator_config
            if kind.renew_every and self.calls > 1 and (self.calls - 1) % kind.renew_every == 0:
                self.generator = self._new_generator()
            kind.begin_batch(self.generator, self.rng)
            generator = copy.deepcopy(self.generator)
            terms = self._optimise(generator, self._new_optimizer(generator), c.iterations, fixed, first)
            with torch.no_grad():
                for meta_p, fast_p in zip(self.generator.parameters(), generator.parameters()):
                    meta_p.add_(fast_p - meta_p, alpha=c.meta_lr)
        with torch.no_grad():
            batch = self.label(generator(*fixed[:2]))
        if c.contrastive > 0:
            self._update_bank(batch[0], batch[1])
        self._watch_collapse(batch[0], batch[1])
        return batch, terms

    def _check_gradient(self, generator: nn.Module) -> None:
        """Stop at the first step when no gradient reaches the generator: its images would never move, and the set
        would silently be its starting noise. A teacher without BatchNorm can be flat at the start: on a flat image
        at its input mean, every ReLU of a LeNet-5 is off (Fourier pixels' default start). Only without a student:
        against one, a zero first gradient can be right (an adversarial-only loss, with a student that answers as
        the teacher does, as describe-teacher's probe and an inherited student of the teacher's own architecture)."""
        grads = [p.grad for p in generator.parameters() if p.grad is not None]
        if grads and any(bool(g.ne(0).any()) for g in grads):
            return
        fourier = isinstance(generator, PixelGenerator) and generator.param == "fourier"
        hint = ("start the Fourier pixels further from a flat image (--set fourier_std=0.3)" if fourier
                else "start from other images or another --seed")
        raise DatafreeError("no gradient reaches the synthetic images at their start (the teacher's output does not "
                            f"change with its input there, e.g. every ReLU is off): {hint}")

    def _watch_collapse(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Stop a run whose generator has collapsed, instead of training a student on one image or one class.

        Collapsed: the batch's images are (nearly) all the same, or the teacher assigns one class to
        at least 95% of them, for ``collapse_patience`` synthesized batches in a row.
        """
        patience = self.config.collapse_patience
        if patience <= 0 or len(x) < 2:
            return
        same = x.flatten(1).float().std(0).mean().item() < 1e-3
        share = torch.bincount(labels.cpu(), minlength=self.spec.num_classes).max().item() / len(labels)
        self.collapsed = self.collapsed + 1 if (same or share >= 0.95) else 0
        if self.collapsed >= patience:
            what = "near-identical images" if same else f"{100 * share:.0f}% of the images in one teacher class"
            raise DatafreeError(
                f"the generator collapsed: {what} in {self.collapsed} batches in a row (call {self.calls}); "
                "try another --seed or a lower generator learning rate (--set lr=...), "
                "or --set collapse_patience=0 to keep going; the last saved state is intact")

    @torch.no_grad()
    def _update_bank(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        self.teacher(x)
        emb = self._teacher_embedding().detach()
        self.bank = torch.cat([emb, self.bank])[: self.config.bank_size]
        self.bank_labels = torch.cat([labels.to(self.device), self.bank_labels])[: self.config.bank_size]

    def close(self) -> None:
        self.bn_stats.remove()
        if self.features is not None:
            self.features.remove()

    # ------------------------------------------------------------------ state (for resume)
    def state_dict(self) -> dict[str, Any]:
        """Everything later calls depend on (the student, when there is one, is its trainer's to save)."""
        return {"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.get_state(), "calls": self.calls, "collapsed": self.collapsed, "bank": self.bank.cpu(),
                "bank_labels": self.bank_labels.cpu(),
                "bn_blended": self.bn_stats.blending_state(), "config": self.config.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("config")
        if isinstance(saved, dict):
            wanted = self.config.to_dict()
            diff = sorted(k for k in wanted if k in saved and _plain(saved[k]) != _plain(wanted[k]))
            if diff:
                raise DatafreeError(f"the saved synthesis state was made with other settings ({', '.join(diff)}); "
                                    "resume with the same --method and --set options")
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        self.calls = int(state["calls"])
        self.collapsed = int(state.get("collapsed", 0))  # absent in older states
        self.bank = state["bank"].to(self.device)
        if "bank_labels" not in state and self.config.contrastive_within_class and len(self.bank):
            raise DatafreeError("the saved synthesis state predates contrastive_within_class (its memory bank has no "
                                "classes); resume without --set contrastive_within_class=true")
        self.bank_labels = state.get("bank_labels", torch.zeros(len(self.bank), dtype=torch.long)).to(self.device)
        self.bn_stats.load_blending_state(state.get("bn_blended", {}), self.device)  # absent in older states


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class LiveStream:
    """An endless stream of training batches for the trainer, fed by a :class:`Synthesizer`.

    Every ``config.student_steps`` batches the synthesizer is called once. Online schedules yield
    each fresh sample directly; pool and meta schedules add it to an in-memory pool (capped at
    ``pool_size`` images, oldest dropped) and yield random batches from the pool, as CMI and
    Fast-DFKD train the student on their memory of synthetic data. With ``config.priority`` that share of each
    batch is drawn in proportion to the student's disagreement with the teacher on each pool image, measured at
    every synthesis call (:meth:`Synthesizer.student_disagreement`).

    With ``transfer`` set, every fresh batch is also appended to that transfer set. The stream's
    :meth:`state_dict` (synthesizer, pool, random state, step counter, and how many shards the
    transfer set held) goes into the trainer's state file, so a resumed run continues bit-exactly.
    """

    def __init__(self, synthesizer: Synthesizer, batch_size: int, pool_size: int = 50_000, seed: int = 0) -> None:
        self.synth, self.batch_size, self.pool_size = synthesizer, batch_size, pool_size
        self.rng = torch.Generator().manual_seed(seed)
        self.pool: list[torch.Tensor] = []
        self.priorities: torch.Tensor | None = None  # per pool image, with config.priority > 0
        self.steps = 0
        self.last_terms: dict[str, float] = {}
        self.on_synthesize: Callable[[tuple[torch.Tensor, ...]], None] | None = None  # called with every fresh batch
        self.transfer: TransferSetWriter | None = None  # every fresh batch is appended here

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self

    def seed_pool(self, images: torch.Tensor) -> None:
        """Start the pool from stored images (e.g. a transfer set), labelled afresh by the teacher.

        ADI's scheme: a non-adversarial set is the base and the adversarial batches synthesized
        against the student grow it, so the student never trains on a pool of a few batches.
        """
        if self.synth.config.schedule == "online":
            raise DatafreeError("an online method trains on fresh samples only; a stored set needs a pool "
                                "or meta method")
        chunks = [self.synth.label(images[i:i + 1024].to(self.synth.device)) for i in range(0, len(images), 1024)]
        self.pool = [torch.cat(parts) for parts in zip(*chunks)]

    def close(self) -> None:
        self.synth.close()

    def __next__(self) -> tuple[torch.Tensor, ...]:
        c = self.synth.config
        fresh = None
        if self.steps % c.student_steps == 0:
            fresh, self.last_terms = self.synth.synthesize()
            if self.transfer is not None:
                self.transfer.append(*fresh)
            if self.on_synthesize is not None:
                self.on_synthesize(fresh)
            if c.schedule != "online":
                self.pool = [torch.cat([new, old])[: self.pool_size] for new, old in zip(fresh, self.pool)] or list(fresh)
                if c.priority:
                    self.priorities = self.synth.student_disagreement(self.pool[0], self.pool[2])
        self.steps += 1
        if c.schedule == "online":  # a fresh sample for every student step
            return fresh if fresh is not None else self.synth.sample()
        idx = self._draw(len(self.pool[0]))
        return tuple(t[idx.to(t.device)] for t in self.pool)

    def sampling_weights(self) -> torch.Tensor | None:
        """Each pool image's chance of a draw under priority sampling (the priorities are refreshed with the pool, so
        they cover it); ``None``: uniform."""
        share, priorities = self.synth.config.priority, self.priorities
        if not share or priorities is None or not priorities.sum() > 0:
            return None
        return (1.0 - share) / len(priorities) + share * priorities / priorities.sum()

    def _draw(self, n: int) -> torch.Tensor:
        weights = self.sampling_weights()
        if weights is None:
            return torch.randint(0, n, (self.batch_size,), generator=self.rng)
        return torch.multinomial(weights, self.batch_size, replacement=True, generator=self.rng)

    # ------------------------------------------------------------------ state (for resume)
    def state_dict(self) -> dict[str, Any]:
        return {"synthesizer": self.synth.state_dict(), "rng": self.rng.get_state(), "steps": self.steps,
                "pool": [t.detach().cpu() for t in self.pool], "last_terms": dict(self.last_terms),
                "priorities": self.priorities,
                "transfer_shards": None if self.transfer is None else len(self.transfer.manifest["shards"])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the stream; a transfer set loses the shards appended after the state was saved."""
        shards = state["transfer_shards"]
        if shards is None and self.transfer is not None:
            raise DatafreeError("the interrupted run kept no transfer set: resume it without --save-transfer")
        if shards is not None and self.transfer is None:
            raise DatafreeError("the interrupted run kept its synthetic batches: resume it with the same --save-transfer")
        self.synth.load_state_dict(state["synthesizer"])
        self.rng.set_state(state["rng"])
        self.steps = int(state["steps"])
        self.pool = [t.to(self.synth.device) for t in state["pool"]]
        self.priorities = state.get("priorities")  # absent in older states
        self.last_terms = dict(state["last_terms"])
        if self.transfer is not None:
            self.transfer.truncate(int(shards))
