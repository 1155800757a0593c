"""Capture intermediate outputs of any nn.Module by module path, with forward hooks.

Models need no ``return_features`` argument: name the submodules (``model.get_submodule``
paths such as ``layers.2`` or ``fc``) and read their outputs after a forward pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

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


def penultimate_module(model: nn.Module, *, remedy: str = "") -> str:
    """Name of the module feeding the last Linear layer's input (a default embedding layer).

    Returns the name of the last ``nn.Linear``; hooks on it capture its *input* via
    :class:`InputHooks`. Without one the error names the caller's ``remedy``: only the caller
    knows which of its options reads these features and how to do without them.
    """
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DatafreeError(f"{type(model).__name__} has no nn.Linear layer, so its penultimate features (the input of "
                            f"its classifier) cannot be found{'; ' + remedy if remedy else ''}")
    return linears[-1]


def classifier_module(model: nn.Module, *, remedy: str = "") -> nn.Module:
    """``model``'s classifier: its last ``nn.Linear``, the module :func:`penultimate_module` names."""
    return model.get_submodule(penultimate_module(model, remedy=remedy))


def class_weights(model: nn.Module, *, remedy: str = "") -> torch.Tensor:
    """The weight of ``model``'s last ``nn.Linear`` (one row per class: the classes' prototypes), detached."""
    return classifier_module(model, remedy=remedy).weight.detach()


class InputHooks(FeatureHooks):
    """Like :class:`FeatureHooks` but records each module's (first) input instead of its output."""

    def _recorder(self, name: str):
        def hook(_module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
            self.features[name] = inputs[0]
        return hook



def embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of ``net``'s last Linear layer (its embedding) for ``x``, flattened per sample.

    Gradients flow through it, so condensation can match embeddings of synthetic images.
    """
    with InputHooks(net, [penultimate_module(net)]) as hooks:
        net(x)
        return next(iter(hooks.features.values())).flatten(1)


@torch.no_grad()
def embed_batches(net: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """:func:`embed` of a large set in eval mode, batch by batch, on ``net``'s device."""
    device = next(net.parameters()).device
    net.eval()
    return torch.cat([embed(net, x.to(device)).float() for x in images.split(batch_size)])

class BatchNormStatistics:
    """BN-statistics matching over every BatchNorm layer of a (teacher) model, via forward hooks.

    After a forward pass, :meth:`loss` is ``sum_l w_l * (||mu_l - mu_l^BN|| + ||var_l - var_l^BN||)``
    with ``w_0 = first_layer_weight`` (DeepInversion's first-BN multiplier) and 1 elsewhere.
    With ``momentum > 0`` the batch statistics are blended with those of earlier batches
    (``m * previous.detach() + (1 - m) * current``, as Fast-DFKD does), so a few small batches
    jointly match the running statistics. With ``groups > 1`` the batch is ``groups`` equal consecutive
    slices, each matched on its own and the distances averaged (SRe2L recovers one image per class per
    batch, so every such batch, not only the whole set, has to look like the data).
    """

    def __init__(self, model: nn.Module, first_layer_weight: float = 1.0, momentum: float = 0.0,
                 groups: int = 1) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.first_layer_weight, self.momentum, self.groups = first_layer_weight, momentum, groups
        if groups > 1 and momentum > 0:
            raise DatafreeError("BN statistics are blended across batches (momentum) or matched per group, not both")
        self._terms: list[torch.Tensor] = []
        self.active = False  # record only inside `with stats.recording():`
        self._blended: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]

    def __len__(self) -> int:
        return len(self.layers)

    def _hook(self, index: int):
        from datafree.losses import batch_moments, bn_stat_distance

        def hook(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
            if not self.active:
                return
            x = inputs[0]
            weight = self.first_layer_weight if index == 0 else 1.0
            if self.groups > 1:
                if x.shape[0] % self.groups:
                    raise DatafreeError(f"a batch of {x.shape[0]} does not split into {self.groups} equal groups")
                x = x.unflatten(0, (self.groups, -1))
                dims = [1] + list(range(3, x.dim()))
                mean, var = batch_moments(x, dims)  # (groups, channels)
                self._terms.append(weight * bn_stat_distance(mean, var, module.running_mean,
                                                             module.running_var).mean())
                return
            dims = [0] + list(range(2, x.dim()))
            mean, var = batch_moments(x, dims)
            if self.momentum > 0:
                if index in self._blended:
                    prev_mean, prev_var = self._blended[index]
                    mean = self.momentum * prev_mean + (1 - self.momentum) * mean
                    var = self.momentum * prev_var + (1 - self.momentum) * var
                self._blended[index] = (mean.detach(), var.detach())
            self._terms.append(weight * bn_stat_distance(mean, var, module.running_mean, module.running_var))
        return hook

    def loss(self) -> torch.Tensor:
        """Sum over layers for the latest forward pass (then cleared)."""
        if not self._terms:
            raise DatafreeError("no BatchNorm statistics recorded: run the model forward first (or it has no BN)")
        total = torch.stack(self._terms).sum()
        self._terms.clear()
        return total

    @contextmanager
    def recording(self) -> Iterator[BatchNormStatistics]:
        """Record statistics of the forward passes inside this block only."""
        self._terms.clear()
        self.active = True
        try:
            yield self
        finally:
            self.active = False

    def reset_blending(self) -> None:
        self._blended.clear()

    def blending_state(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """The blended (mean, var) per layer that the next batch is mixed with (CPU copies, for resume)."""
        return {i: (m.cpu(), v.cpu()) for i, (m, v) in self._blended.items()}

    def load_blending_state(self, state: dict[int, tuple[torch.Tensor, torch.Tensor]],
                            device: torch.device | str = "cpu") -> None:
        self._blended = {int(i): (m.to(device), v.to(device)) for i, (m, v) in state.items()}

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
