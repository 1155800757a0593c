"""Tucker-2 compression of a trained network's convolutions (Kim et al. 2016), as KegNet uses.

Each k x k convolution W (out x in x k x k) becomes 1x1 (in -> r_in), k x k (r_in -> r_out) and
1x1 (r_out -> out) convolutions, initialised by HOSVD: the leading singular vectors of W's
output- and input-mode unfoldings and the core they leave. A compressed teacher keeps most of its
accuracy before it sees any data, so KegNet-style results ("ResNet-14 -> Tucker-compressed
ResNet-14") measure fine-tuning a near-copy of the teacher, not training a small student.

The compressed model is an architecture of its own (``tucker``: base architecture + ranks), so it
saves and loads like any other checkpoint.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError


def _compressible(conv: nn.Module) -> bool:
    """k x k convolutions with more than one input channel per group (a 1-channel stem saves nothing)."""
    return (isinstance(conv, nn.Conv2d) and conv.groups == 1 and max(conv.kernel_size) > 1
            and conv.in_channels > 1)


def tucker_ranks(model: nn.Module, rank_ratio: float) -> dict[str, list[int]]:
    """``{conv name: [r_in, r_out]}`` keeping ``rank_ratio`` of every compressible convolution's channels."""
    if not 0 < rank_ratio <= 1:
        raise DatafreeError(f"rank ratio must be in (0, 1], got {rank_ratio}")
    return {name: [math.ceil(rank_ratio * m.in_channels), math.ceil(rank_ratio * m.out_channels)]
            for name, m in model.named_modules() if _compressible(m)}


def tucker2(conv: nn.Conv2d, r_in: int, r_out: int, init: bool = True) -> nn.Sequential:
    """``conv`` as three convolutions of ranks ``r_in``, ``r_out``; HOSVD of its weights when ``init``."""
    first = nn.Conv2d(conv.in_channels, r_in, 1, bias=False)
    core = nn.Conv2d(r_in, r_out, conv.kernel_size, conv.stride, conv.padding, conv.dilation, bias=False)
    last = nn.Conv2d(r_out, conv.out_channels, 1, bias=conv.bias is not None)
    if init:
        with torch.no_grad():
            w = conv.weight.detach()
            u_out = torch.linalg.svd(w.flatten(1), full_matrices=False)[0][:, :r_out]  # out x r_out
            u_in = torch.linalg.svd(w.transpose(0, 1).flatten(1), full_matrices=False)[0][:, :r_in]  # in x r_in
            first.weight.copy_(u_in.T[:, :, None, None])
            core.weight.copy_(torch.einsum("oikl,or,is->rskl", w, u_out, u_in))
            last.weight.copy_(u_out[:, :, None, None])
            if conv.bias is not None:
                last.bias.copy_(conv.bias)
    return nn.Sequential(first, core, last)


def apply_tucker(model: nn.Module, ranks: dict[str, list[int]], init: bool = True) -> nn.Module:
    """Replace the named convolutions of ``model`` in place by their Tucker-2 factorisations."""
    modules = dict(model.named_modules())
    for name, (r_in, r_out) in ranks.items():
        conv = modules.get(name)
        if not _compressible(conv):
            raise DatafreeError(f"tucker: {name!r} is not a compressible convolution of this model")
        if r_in > conv.in_channels or r_out > conv.out_channels or min(r_in, r_out) < 1:
            raise DatafreeError(f"tucker: ranks {r_in}, {r_out} do not fit {name!r} "
                                f"({conv.in_channels} -> {conv.out_channels} channels)")
        parent_name, _, attr = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, attr, tucker2(conv, r_in, r_out, init))
    return model


def tucker(spec: DataSpec, base: str, ranks: dict[str, list[int]], base_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The ``tucker`` architecture: ``base`` with the ``ranks`` convolutions factorised (weights are loaded after)."""
    from datafree.models.registry import build_model  # the registry imports this module

    return apply_tucker(build_model(base, spec, **(base_kwargs or {})), ranks, init=False)


def compress(model: nn.Module, arch: str, arch_kwargs: dict[str, Any], rank_ratio: float,
             fmt: str = "datafree") -> tuple[nn.Module, dict[str, Any]]:
    """A Tucker-2 compressed copy of a trained ``model`` and the ``tucker`` kwargs that rebuild it.

    The result is saved as ``base`` (``arch``) with factorised convolutions, so ``arch`` must be an
    architecture the registry builds: a whole-model file (``fmt`` TorchScript or torch.export) has none.
    """
    if fmt in ("torchscript", "torch.export"):
        raise DatafreeError(f"compress saves the result as the teacher's architecture rebuilt by name, and a {fmt} "
                            "teacher has none: pass its state_dict with --teacher-arch")
    ranks = tucker_ranks(model, rank_ratio)
    if not ranks:
        raise DatafreeError(f"{arch} has no convolution that Tucker-2 can compress")
    return apply_tucker(copy.deepcopy(model), ranks), {"base": arch, "base_kwargs": arch_kwargs, "ranks": ranks}
