"""The condensation methods, each registered once: its condenser, its defaults and its bench budget.

CLI choices, error messages, the suites' method lists and the docs' list read :data:`METHODS`.
Adding a method is one module with a :class:`~datafree.condense.base.Condenser` subclass and one
``register(...)`` line below (docs/methods.md shows one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from datafree.condense.base import Condenser
from datafree.condense.baselines import Herding, RandomSubset
from datafree.condense.config import CondenseConfig, not_a_setting
from datafree.condense.dc import DC
from datafree.condense.dm import DM
from datafree.condense.mtt import MTT
from datafree.condense.teacher_only import TeacherOnly
from datafree.errors import DatafreeError


@dataclass(frozen=True)
class CondenseMethod:
    name: str
    condenser: type[Condenser]
    defaults: dict[str, Any]  # settings of its config class: the paper's recipe (published iteration counts)
    bench: dict[str, Any] = field(default_factory=dict)  # overrides the Fashion-MNIST CPU suites run it with
    needs_batchnorm: bool = False  # matches the teacher's BatchNorm statistics (while its bn weight is > 0)
    summary: str = ""

    @property
    def config_class(self) -> type[CondenseConfig]:
        """Its settings: the condenser's config dataclass (CondenseConfig or a subclass in the method's module)."""
        return self.condenser.config_class

    @property
    def reads_data(self) -> bool:
        """Whether it condenses the training split (the teacher-only method reads no data at all)."""
        return self.condenser.needs_real


METHODS: dict[str, CondenseMethod] = {}


def register(method: CondenseMethod) -> CondenseMethod:
    if method.name in METHODS:
        raise DatafreeError(f"condensation method {method.name!r} is already registered")
    METHODS[method.name] = method
    try:  # a wrong default fails at registration, not at first use
        method_config(method.name)
    except DatafreeError:
        del METHODS[method.name]
        raise
    return method


class _Defaults(Mapping[str, dict[str, Any]]):
    """Each method's defaults by name (the older ``DEFAULTS`` table, derived)."""

    def __getitem__(self, name: str) -> dict[str, Any]:
        return METHODS[name].defaults

    def __iter__(self) -> Iterator[str]:
        return iter(METHODS)

    def __len__(self) -> int:
        return len(METHODS)


DEFAULTS: Mapping[str, dict[str, Any]] = _Defaults()


def method_config(method: str, **overrides: Any) -> CondenseConfig:
    """The config of ``method`` with its defaults, then ``overrides`` (``--set``): a setting the method does
    not have is a one-line error naming the ones it has."""
    if method not in METHODS:
        raise DatafreeError(f"unknown condensation method {method!r}; choose one of {', '.join(METHODS)}")
    kind = METHODS[method].config_class
    wrong = sorted(set(overrides) - set(kind.settings()))
    if wrong:
        raise DatafreeError(not_a_setting(method, wrong, kind))
    return CondenseConfig.from_dict({"method": method, **METHODS[method].defaults, **overrides})


M = CondenseMethod  # one registration line per method
register(M("random", RandomSubset, dict(iterations=0), summary="random real images per class"))
register(M("herding", Herding, dict(iterations=0), summary="greedy mean matching in an embedding"))
register(M("dc", DC, dict(iterations=1000, lr_img=0.1, dsa=False), dict(batch_real=64, iterations=100),
           summary="gradient matching (Zhao et al. 2021)"))
register(M("dsa", DC, dict(iterations=1000, lr_img=0.1, dsa=True), dict(batch_real=64, iterations=100),
           summary="gradient matching with differentiable siamese augmentation (Zhao & Bilen 2021)"))
register(M("dm", DM, dict(iterations=20000, lr_img=1.0, dsa=True), dict(batch_real=64, iterations=500),
           summary="distribution matching (Zhao & Bilen 2023)"))
register(M("mtt", MTT, dict(iterations=5000, lr_img=100.0, dsa=True, syn_steps=20, expert_epochs=2, max_start_epoch=20,
                            lr_lr=1e-5, lr_teacher=0.01), dict(iterations=100),
           summary="trajectory matching (Cazenavette et al. 2022); needs 'datafree buffer'"))
# SRe2L/CDA: pixels from noise, Adam at lr_img on a cosine schedule, then FKD crop labels; no real data at all
register(M("teacher", TeacherOnly, dict(iterations=1000, lr_img=0.25, init="noise"), dict(iterations=500),
           needs_batchnorm=True, summary="recovered from the teacher's BatchNorm statistics, relabelled per crop "
                                         "(SRe2L/CDA; no real data)"))
