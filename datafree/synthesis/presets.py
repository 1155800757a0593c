"""Published data-free methods as presets of the one engine.

Each preset follows its paper's recipe (loss terms, schedule, generator), scaled to a
CPU-sized benchmark (batch size, iterations); every field can be overridden. References:
DeepInversion/ADI (Yin et al. 2020), ZSKD (Nayak et al. 2019), DAFL (Chen et al. 2019), DFAD (Fang et al. 2019),
ZSKT (Micaelli & Storkey 2019), CMI (Fang et al. 2021), Fast-DFKD (Fang et al. 2022), NAYER (Tran et al. 2024).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from datafree.errors import DatafreeError
from datafree.synthesis.engine import SynthesisConfig


@dataclass(frozen=True)
class SynthesisMethod:
    """One data-free method, registered once: everything else (CLI choices, suites, messages, docs) reads it."""

    name: str
    preset: dict[str, Any]  # SynthesisConfig fields: the paper's recipe at CPU scale
    kd_temperature: float = 4.0  # the temperature the paper distils with
    bench: dict[str, Any] = field(default_factory=dict)  # overrides the Fashion-MNIST CPU suites run it with
    summary: str = ""

    @property
    def config(self) -> SynthesisConfig:
        return SynthesisConfig.from_dict(self.preset)

    @property
    def needs_batchnorm(self) -> bool:
        """Matches the teacher's BatchNorm statistics (a teacher without BatchNorm cannot run it)."""
        return self.config.needs_batchnorm

    @property
    def runs_live(self) -> bool:
        """Needs the student being trained (an adversarial term or an online generator): no stored set."""
        config = self.config
        return config.needs_student or config.schedule == "online"


METHODS: dict[str, SynthesisMethod] = {}


def register(method: SynthesisMethod) -> SynthesisMethod:
    """Add a method (a new one: its module calls this once; see docs/methods.md)."""
    if method.name in METHODS:
        raise DatafreeError(f"synthesis method {method.name!r} is already registered")
    SynthesisConfig.from_dict(method.preset)  # a wrong field fails at registration, not at first use
    METHODS[method.name] = method
    return method


class _View(Mapping[str, Any]):
    """A read-only view of one attribute of every registered method (kept for the older names)."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __getitem__(self, name: str) -> Any:
        return getattr(METHODS[name], self.attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(METHODS)

    def __len__(self) -> int:
        return len(METHODS)


M = SynthesisMethod  # one registration line per method

# pixels optimised against BN statistics + CE to sampled classes + image priors
DEEPINVERSION = dict(schedule="pool", generator="pixels", lr=0.1, iterations=200, batch_size=128, bn=1.0, bn_first=10.0,
                     oh=1.0, tv=1e-4 * 784, l2=1e-5, augment=True)
register(M("deepinversion", DEEPINVERSION, kd_temperature=20.0, summary="DeepInversion (Yin et al. 2020)"))
# ZSKD (Nayak et al. 2019): pixels pushed towards soft targets drawn from a Dirichlet around each
# class's similarity to the others (from the teacher's last layer), at temperature 20; needs no BN.
# Bench: chosen with benchmarks/zskd_recipes (one synthesis seed, 3 student seeds, 6400 images): 2x-coarse
# pixels, 300 iterations at lr 0.05 and the paper's two Dirichlet scales gave 75.3 at 8000 student steps, where
# 4x-coarse pixels and 50 iterations at lr 0.01 (the earlier recipe) gave 58.4 (docs/datafree_recipes.md)
register(M("zskd", dict(schedule="pool", generator="pixels", lr=0.01, iterations=200, batch_size=128, oh=1.0,
                        oh_temperature=20.0, dirichlet=1.0),
           kd_temperature=20.0, bench={"pixel_scale": 2, "iterations": 300, "lr": 0.05, "dirichlet": [1.0, 0.1]},
           summary="Zero-shot KD (Nayak et al. 2019)"))
# DeepInversion + adaptive competition: maximise teacher-student Jensen-Shannon divergence
register(M("adi", {**DEEPINVERSION, "adv": 1.0, "adv_kind": "js", "adv_temperature": 3.0, "student_steps": 20},
           kd_temperature=20.0, summary="Adaptive DeepInversion (Yin et al. 2020)"))
# generator trained jointly with the student: one-hot + activation + class balance
register(M("dafl", dict(schedule="online", generator="dcgan", output="tanh-bn", lr=0.2 * 1e-2, iterations=1,
                        batch_size=256, oh=1.0, act=0.1, ie=5.0, student_steps=1),
           kd_temperature=4.0, summary="DAFL (Chen et al. 2019)"))
# min-max on the L1 distance of logits; 5 student steps per generator step
register(M("dfad", dict(schedule="online", generator="dcgan", output="tanh-bn", lr=1e-3, iterations=1, batch_size=256,
                        adv=1.0, adv_kind="l1", student_steps=5),
           kd_temperature=1.0, summary="DFAD (Fang et al. 2019)"))
# maximise KL(teacher || student); 1 generator step : 10 student steps
register(M("zskt", dict(schedule="online", generator="dcgan", output="tanh-bn", lr=1e-3, iterations=1, batch_size=256,
                        adv=1.0, adv_kind="kl", student_steps=10),
           kd_temperature=1.0, summary="ZSKT (Micaelli & Storkey 2019)"))
# fresh generator per round; BN + one-hot + agreement-masked adversarial + contrastive
register(M("cmi", dict(schedule="pool", generator="dcgan", lr=1e-3, iterations=200, batch_size=128, conditional=True,
                       bn=1.0, oh=0.5, adv=0.5, adv_kind="cmi", contrastive=0.8, augment=True, student_steps=20),
           kd_temperature=20.0, summary="CMI (Fang et al. 2021)"))
# Fast-DFKD: meta-learned generator initialisation, a few steps per batch, BN blending
FAST = dict(schedule="meta", generator="dcgan", lr=5e-3, iterations=5, batch_size=256, conditional=True, bn=10.0,
            bn_momentum=0.9, oh=0.5, adv=1.0, adv_kind="cmi", augment=True, meta_lr=0.5, student_steps=5)
register(M("fast", FAST, kd_temperature=20.0, summary="Fast-DFKD (Fang et al. 2022)"))
# Fast-DFKD with 2, 5 (its default) and 10 generator steps per batch
register(M("fast2", {**FAST, "iterations": 2}, kd_temperature=20.0, summary="Fast-DFKD, 2 steps per batch"))
register(M("fast5", dict(FAST), kd_temperature=20.0, summary="Fast-DFKD, 5 steps per batch"))
register(M("fast10", {**FAST, "iterations": 10}, kd_temperature=20.0, summary="Fast-DFKD, 10 steps per batch"))
# NAYER (Tran et al. 2024): one generator carried from batch to batch (meta at meta_lr 1), fed the teacher's class
# embeddings through noisy layers redrawn every batch, re-initialised every 20 batches (its CIFAR-10 g_life 10 x
# g_loops 2); Fast-DFKD's loss at NAYER's CIFAR-10 weights and its 30 steps per batch
register(M("nayer", dict(schedule="meta", generator="noisy", life=20, meta_lr=1.0, lr=4e-3, iterations=30, batch_size=256,
                         bn=10.0, bn_momentum=0.9, oh=0.5, adv=1.33, adv_kind="cmi", augment=True, student_steps=5),
           kd_temperature=20.0, summary="NAYER (Tran et al. 2024)"))

# the older names, derived: preset fields and the KD temperature of each method
PRESETS: Mapping[str, dict[str, Any]] = _View("preset")
KD_TEMPERATURE: Mapping[str, float] = _View("kd_temperature")


def preset(name: str, **overrides: Any) -> SynthesisConfig:
    """The config of a named method, with ``overrides`` applied."""
    if name not in METHODS:
        raise DatafreeError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return SynthesisConfig.from_dict({**METHODS[name].preset, **overrides})
