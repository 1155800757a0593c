"""Memory layout: run *frozen* convolutional networks in channels_last where that is faster.

Measured on the CPU (``benchmarks/layout_speed.py``, one thread, batch 128, 28x28): channels_last
makes the gradient to the input 1.2-1.9x faster (what synthesis sends through the teacher, and
through the student for adversarial terms) and the teacher's labelling pass 1.1-1.9x faster.
Networks with GroupNorm or InstanceNorm (the condensation ConvNet) are 1.3-1.5x *slower* in it,
so they keep the default layout. Values are the same up to float rounding.

Only networks whose weights get no gradient: a student's training step would be up to 1.9x faster
too, but the oneDNN kernel for the weight gradient of a strided 1x1 convolution (a ResNet's
shortcut) in channels_last corrupts the heap in torch 2.14.1 on the CPU (fewer than 16 input
channels, 56x56 inputs or larger; docs/datafree_recipes.md, "Twenty-third round"). Forward passes
and gradients to the input are not affected.

Only the model's weights change layout; inputs stay as the loader yields them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

SLOW_NORMS = (nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
"""Layers whose CPU kernels are slower in channels_last (measured: the ConvNet's GroupNorm(c, c))."""


def prefers_channels_last(model: nn.Module) -> bool:
    """Whether ``model`` has 2-d convolutions and none of the normalisations that are slower in channels_last."""
    modules = list(model.modules())
    return any(isinstance(m, nn.Conv2d) for m in modules) and not any(isinstance(m, SLOW_NORMS) for m in modules)


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-d weights are stored channels_last (and not merely also contiguous)."""
    # a weight with one input channel or a 1x1 kernel is laid out identically either way: it cannot tell
    weights = [p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]
    return bool(weights) and all(w.is_contiguous(memory_format=torch.channels_last)
                                 and not w.is_contiguous() for w in weights)


def to_channels_last(model: nn.Module, shape: Sequence[int], device: str | torch.device | None = None) -> nn.Module:
    """``model`` (moved to ``device``) in channels_last where it prefers it and runs that way, else as it was.

    In place, like ``.to()``. A model that flattens with ``x.view(n, -1)`` after a convolution fails
    on channels_last activations ("view size is not compatible"), so one forward pass of two zero
    images of ``shape`` (C, H, W), in eval mode and without gradient, decides.
    """
    if device is not None:
        model.to(device)
    if not prefers_channels_last(model) or is_channels_last(model):
        return model
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.to(memory_format=torch.channels_last).eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *shape, device=device))
    except RuntimeError:
        model.to(memory_format=torch.contiguous_format)
    finally:
        model.train(was_training)
    return model


def runs_channels_last(model: nn.Module, shape: Sequence[int]) -> bool:
    """Whether :func:`to_channels_last` would convert ``model``; the model is left in the layout it was in."""
    was = is_channels_last(model)
    ok = is_channels_last(to_channels_last(model, shape))
    if ok and not was:
        model.to(memory_format=torch.contiguous_format)
    return ok


def use_channels_last(models: Sequence[nn.Module | None], shape: Sequence[int] | None) -> Callable[[], None]:
    """Convert frozen ``models`` with :func:`to_channels_last`; return a function that gives the converted ones
    back in the default layout (idempotent), as they arrived. ``shape`` None: nothing changes."""
    converted = [m for m in models if m is not None and shape is not None and not is_channels_last(m)
                 and is_channels_last(to_channels_last(m, shape))]

    def restore() -> None:
        for m in converted:
            m.to(memory_format=torch.contiguous_format)
        converted.clear()

    return restore


__all__ = ["SLOW_NORMS", "is_channels_last", "prefers_channels_last", "runs_channels_last", "to_channels_last",
           "use_channels_last"]
