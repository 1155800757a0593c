"""Capture intermediate outputs of any nn.Module by module path, with forward hooks.

Models need no ``return_features`` argument: name the submodules (``model.get_submodule``
paths such as ``layers.2`` or ``fc``) and read their outputs after a forward pass.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from datafree.errors import DatafreeError


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)`` with an error that lists the valid names."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        shown = ", ".join(names[:30]) + (" ..." if len(names) > 30 else "")
        raise DatafreeError(f"{type(model).__name__} has no module {name!r}; modules: {shown}") from None


class FeatureHooks:
    """Record the outputs of named submodules on every forward pass.

    >>> hooks = FeatureHooks(model, ["layers.2"]); model(x); hooks.features["layers.2"]
    Call :meth:`remove` (or use as a context manager) to detach.
    """

    def __init__(self, model: nn.Module, names: Iterable[str]) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._handles = [
            resolve_module(model, name).register_forward_hook(self._recorder(name)) for name in names
        ]

    def _recorder(self, name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            self.features[name] = output
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> FeatureHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def penultimate_module(model: nn.Module) -> str:
    """Name of the module feeding the last Linear layer's input (a default embedding layer).

    Returns the name of the last ``nn.Linear``; hooks on it capture its *input* via
    :class:`InputHooks`.
    """
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DatafreeError(f"{type(model).__name__} has no nn.Linear; name a feature layer explicitly")
    return linears[-1]


class InputHooks(FeatureHooks):
    """Like :class:`FeatureHooks` but records each module's (first) input instead of its output."""

    def _recorder(self, name: str):
        def hook(_module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
            self.features[name] = inputs[0]
        return hook
