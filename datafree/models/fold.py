"""Fold inference BatchNorm into the conv or linear layer that feeds it.

One implementation for the two places that need it: weight selection (a teacher with BatchNorm, a student
without: the selected filters must keep the teacher's scale) and quantization-aware fine-tuning (the weights
that are fake-quantized must be the ones the ONNX export folds and quantizes). What feeds a BatchNorm is read
from the traced graph (``torch.fx``), not from the order in which modules were registered: a pre-activation
block registers its BatchNorm after a convolution that does not feed it, and folding into that one would give
wrong weights silently.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from datafree.errors import DatafreeError

FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BatchNorm = nn.modules.batchnorm._BatchNorm


def fold_into(layer: nn.Module, bn: _BatchNorm) -> None:
    """``layer`` (in place) followed by ``bn`` in eval mode, as one layer: weight and bias scaled and shifted."""
    with torch.no_grad():
        scale = bn.running_var.add(bn.eps).rsqrt()
        if bn.affine:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0.0)
        layer.weight.mul_(scale.reshape(-1, *[1] * (layer.weight.dim() - 1)).to(layer.weight.dtype))
        bias = layer.bias if layer.bias is not None else torch.zeros_like(shift)
        layer.bias = nn.Parameter((bias * scale + shift).to(layer.weight.dtype))


def trace(model: nn.Module, what: str, remedy: str | None = None) -> fx.GraphModule:
    """``model`` traced by ``torch.fx``; a model it cannot trace (data-dependent control flow) is a one-line error:
    "cannot ``what``: ...[; ``remedy``]"."""
    try:
        return fx.symbolic_trace(model)
    except Exception as e:  # symbolic tracing fails on data-dependent control flow
        raise DatafreeError(f"cannot {what}: torch.fx cannot trace the model ({str(e).splitlines()[0][:120]})"
                            + (f"; {remedy}" if remedy else "")) from None


def batchnorm_sources(model: nn.Module, what: str = "fold BatchNorm") -> dict[str, str | None]:
    """For every BatchNorm with running statistics in ``model``'s traced graph, by module name: the conv or linear
    layer of its width that directly feeds it and nothing else (its only use), or None where there is none (it
    follows an addition or an activation, or its layer is called more than once). A model ``torch.fx`` cannot trace
    (data-dependent control flow) is a one-line error: "cannot ``what``: ..."."""
    graph = trace(model, what).graph
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    sources: dict[str, str | None] = {}
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, _BatchNorm) or not bn.track_running_stats or bn.running_var is None:
            continue
        source = node.args[0]
        layer = modules.get(source.target) if isinstance(source, fx.Node) and source.op == "call_module" else None
        feeds = (isinstance(layer, FOLDABLE) and len(source.users) == 1 and calls[source.target] == 1
                 and calls[node.target] == 1 and layer.weight.shape[0] == bn.num_features)
        sources[node.target] = source.target if feeds else None
    return sources


def fold_batchnorm(model: nn.Module, *, strict: bool = True) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm that directly follows a conv or linear layer (its
    only use, in the traced graph) folded into that layer and replaced by ``nn.Identity``; module names are kept.

    A BatchNorm that follows anything else (an addition, an activation: pre-activation blocks), or whose layer
    is called more than once, cannot be folded: a one-line :class:`DatafreeError` when ``strict``, else it is
    left in place. A model ``torch.fx`` cannot trace (data-dependent control flow) is a one-line error.
    """
    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    for name, layer in batchnorm_sources(model).items():
        if layer is not None:
            fold_into(modules[layer], modules[name])
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
        elif strict:
            raise DatafreeError(f"cannot fold BatchNorm {name!r}: it does not directly follow a conv or linear "
                                "layer of its width (a pre-activation block, or a shared layer)")
    return model
