"""Condensation configs: the fields every method has, each method's own, and the flat record.

:class:`CondenseConfig` holds what every method reads (the images, their optimiser, the matching
network, the real batch, the siamese augmentation). A method with settings of its own declares a
subclass in its module (``DCConfig`` in :mod:`datafree.condense.dc`, ``MTTConfig``,
``TeacherConfig``, ``HerdingConfig``) as its condenser's ``config_class``; the registry
(:mod:`datafree.condense.methods`) reads it from there. Each method's defaults follow the papers'
Fashion-MNIST / MNIST recipes (DC, DSA: Zhao et al.; DM: Zhao & Bilen; MTT: Cazenavette et al.;
teacher-only: DeepInversion/SRe2L-style recovery). Iteration counts are the published ones; on a CPU pass
fewer with ``--set iterations=N`` and report the accuracy-against-time curve.

Every manifest, saved state and benchmark fingerprint stores a config in its flat form, every
method's keys side by side, and ``--resume`` compares it key by key; :meth:`CondenseConfig.to_dict`
and :meth:`CondenseConfig.from_dict` keep that form (the other methods' keys at their defaults).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from datafree.config import config_from_dict
from datafree.errors import DatafreeError

# the flat keys every record has, in the order they have always been written (a method added later
# writes only its own keys besides these, so older records still compare equal)
FLAT_ORDER = ("method", "ipc", "iterations", "lr_img", "momentum_img", "batch_real", "init", "dsa", "dsa_strategy",
              "net", "net_kwargs", "outer_loop", "inner_loop", "lr_net", "batch_train", "syn_steps", "expert_epochs",
              "max_start_epoch", "lr_lr", "lr_teacher", "batch_syn", "buffer", "bn", "bn_first", "oh", "tv", "l2",
              "herding_net")


@dataclass
class CondenseConfig:
    """The settings every condensation method has (a method's own are in its subclass)."""

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

    def __post_init__(self) -> None:
        from datafree.condense.methods import METHODS

        if self.method not in METHODS:
            raise DatafreeError(f"unknown condensation method {self.method!r}; choose one of {', '.join(METHODS)}")
        kind = METHODS[self.method].config_class
        if type(self) is not kind:
            raise DatafreeError(f"{self.method} takes a {kind.__name__}, not a {type(self).__name__} "
                                "(datafree.condense.method_config builds it)")
        checks = [
            (self.ipc >= 1, "ipc must be >= 1"),
            (self.iterations >= 0, "iterations must be >= 0"),
            (self.lr_img > 0, "lr_img must be > 0"),
            (self.batch_real >= 1, "batch_real must be >= 1"),
            (self.init in ("real", "noise"), f"unknown init {self.init!r} (real, noise)"),
        ]
        check(checks)

    @classmethod
    def settings(cls) -> list[str]:
        """The names ``--set`` takes for this method (every field but ``method``)."""
        return [f.name for f in fields(cls) if f.name != "method"]

    def to_dict(self) -> dict[str, Any]:
        """The flat form: every method's keys (the others' at their defaults), as every record has them."""
        defaults = flat_defaults()
        return {**{k: defaults[k] for k in FLAT_ORDER}, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CondenseConfig:
        """The config of ``d["method"]`` from the flat form; another method's key is accepted only at its default."""
        from datafree.condense.methods import METHODS

        method = d.get("method", cls.method)
        if method not in METHODS:
            raise DatafreeError(f"unknown condensation method {method!r}; choose one of {', '.join(METHODS)}")
        kind = METHODS[method].config_class
        own = {f.name for f in fields(kind)}
        defaults = flat_defaults()
        unknown = sorted(k for k in d if k not in own and k not in defaults)
        if unknown:
            raise DatafreeError(f"unknown condensation options: {', '.join(unknown)}")
        foreign = sorted(k for k, v in d.items() if k not in own and _plain(v) != _plain(defaults[k]))
        if foreign:
            raise DatafreeError(not_a_setting(method, foreign, kind))
        return config_from_dict(kind, {k: v for k, v in d.items() if k in own}, "condensation")


def check(checks: list[tuple[bool, str]]) -> None:
    """Raise the message of the first failed ``(ok, message)`` as a one-line error."""
    for ok, msg in checks:
        if not ok:
            raise DatafreeError(msg)


def not_a_setting(method: str, keys: list[str], kind: type[CondenseConfig]) -> str:
    return f"{', '.join(keys)}: not a setting of {method} (its settings: {', '.join(kind.settings())})"


def flat_defaults() -> dict[str, Any]:
    """Every registered method's fields at their defaults: the keys a record holds for other methods."""
    from datafree.condense.methods import METHODS

    out: dict[str, Any] = {}
    for method in METHODS.values():
        for f in fields(method.config_class):
            out.setdefault(f.name, f.default_factory() if callable(f.default_factory) else f.default)
    return out


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
