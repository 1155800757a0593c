"""Reorder a teacher's channels so that weight selection keeps the ones that matter (``--keep-channels important``).

A trained network's channel order is arbitrary: permuting a hidden layer's channels, together with its BatchNorm
and the next layer's inputs, leaves the function unchanged. Spread selection (:func:`datafree.models.inherit_weights`)
keeps evenly spaced channels, so which of the teacher's features a student inherits is a draw from that arbitrary
order, and the draw matters: on one teacher file, the same recipe gave students 2.7 points apart from two orders of
the same teacher (docs/datafree_recipes.md, "Forty-third round"). :func:`rank_channels` permutes a copy of the
teacher, function unchanged, so that the channels a data-free score ranks highest sit where spread selection looks.

The score of a hidden channel is the signal it carries times how strongly the next layer reads it. Behind a
BatchNorm the channel's pre-activation on the training data is ``N(beta, gamma^2)`` by construction, so its root mean
square after a ReLU is known without data; without a BatchNorm the norm of its incoming weights stands in. The read
is the norm of the next layer's weights on the channel.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.models.fold import batchnorm_sources
from datafree.models.inherit import (
    WEIGHTED,
    _input_size,
    _layers,
    flattened_positions,
    kept_indices,
    paired_layers,
    position_blocks,
)

REASON = "keep the teacher's important channels"
REMEDY = "leave --keep-channels at spread"
NOT_A_CHAIN = "its layers do not feed one another in sequence: residual additions or grouped convolutions"


def relu_rms(gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``sqrt(E[relu(gamma * z + beta)^2])`` for ``z ~ N(0, 1)``, per channel (closed form)."""
    a = gamma.abs().clamp_min(1e-12)
    m = beta / a
    cdf = 0.5 * (1 + torch.erf(m / math.sqrt(2)))
    pdf = torch.exp(-m * m / 2) / math.sqrt(2 * math.pi)
    return (a * a * ((1 + m * m) * cdf + m * pdf)).clamp_min(0).sqrt()


def _size(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _reads(layer: nn.Module, nxt: nn.Module, in_block: int) -> bool:
    """Whether ``nxt`` can read ``layer``'s channels, each as a block of ``in_block`` inputs, with ungrouped weights."""
    grouped = any(getattr(m, "groups", 1) != 1 for m in (layer, nxt))
    return not grouped and _input_size(nxt) == _size(layer) * in_block


def chain(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module | None, nn.Module, int]]:
    """``(name, layer, the BatchNorm it feeds or None, the next conv/linear layer, positions per channel that layer
    reads)`` for every conv/linear layer but the last, in module order. Only a network whose layers feed one another
    in that order (LeNet, VGG) is really a chain; :func:`rank_channels` checks that by the function."""
    modules = dict(model.named_modules())
    norms = {layer: modules[bn] for bn, layer in batchnorm_sources(model, REASON).items() if layer is not None}
    layers = _layers(model, WEIGHTED)
    return [(name, layer, norms.get(name), nxt, flattened_positions(layer, nxt))
            for (name, layer), (_, nxt) in zip(layers, layers[1:])]


@torch.no_grad()
def channel_scores(layer: nn.Module, norm: nn.Module | None, reader: nn.Module) -> torch.Tensor:
    """The data-free importance of each output channel of ``layer`` (see the module docstring)."""
    size = _size(layer)
    if norm is not None and norm.affine:
        signal = relu_rms(norm.weight.float(), norm.bias.float())
    else:
        signal = layer.weight.float().reshape(size, -1).norm(dim=1)
    weight = reader.weight.float()  # (out, size * in_block) or (out, size, kh, kw): one block per channel
    read = weight.reshape(weight.shape[0], size, -1).transpose(0, 1).reshape(size, -1).norm(dim=1)
    return signal * read


def keep_first(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """A permutation (new channel i is old channel ``perm[i]``) that puts the ``keep`` best-scoring channels, in
    their own order, at the positions spread selection keeps, and the others, in order, in between."""
    scores = scores.detach().cpu()
    size = len(scores)
    best = torch.topk(scores, keep).indices.sort().values
    positions = kept_indices(size, keep)
    taken = torch.zeros(size, dtype=torch.bool)
    taken[positions] = True
    rest = torch.ones(size, dtype=torch.bool)
    rest[best] = False
    perm = torch.empty(size, dtype=torch.long)
    perm[positions] = best
    perm[~taken] = torch.arange(size)[rest]
    return perm


@torch.no_grad()
def permute(layer: nn.Module, norm: nn.Module | None, nxt: nn.Module, in_block: int, perm: torch.Tensor) -> None:
    """Reorder ``layer``'s output channels (in place; new channel i is old channel ``perm[i]``), its BatchNorm's, and
    the next layer's inputs to match: in a chain, the network's function is unchanged."""
    perm = perm.to(layer.weight.device)
    layer.weight.copy_(layer.weight[perm])
    if layer.bias is not None:
        layer.bias.copy_(layer.bias[perm])
    for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var) if norm is not None else ():
        if tensor is not None:
            tensor.copy_(tensor[perm])
    nxt.weight.copy_(nxt.weight[:, position_blocks(perm, in_block)])


@torch.no_grad()
def rank_channels(teacher: nn.Module, student: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``teacher`` that computes the same function, each hidden layer's channels reordered so that spread
    selection for ``student`` keeps the best-scoring ones. ``example`` (a batch of inputs, any values) checks that
    the function is unchanged: a one-line :class:`DatafreeError` when the layers do not feed one another in module
    order (residual additions, grouped convolutions), where reordering one layer alone would change it."""
    _, pairs = paired_layers(student, teacher, REASON, REMEDY)
    s_modules = dict(student.named_modules())
    student_size = {t: _size(s_modules[s]) for s, t in pairs}
    ranked = copy.deepcopy(teacher)
    for name, layer, norm, nxt, in_block in chain(ranked):
        size, keep = _size(layer), student_size.get(name)
        if keep is None or keep >= size:
            continue
        if not _reads(layer, nxt, in_block):
            raise DatafreeError(f"cannot {REASON}: the layer after {name!r} does not read its channels one by one "
                                f"({NOT_A_CHAIN}); {REMEDY}")
        permute(layer, norm, nxt, in_block, keep_first(channel_scores(layer, norm, nxt), keep))
    was_training = teacher.training
    before, after = teacher.eval()(example), ranked.eval()(example)
    teacher.train(was_training)
    ranked.train(was_training)
    if not torch.allclose(before, after, rtol=1e-4, atol=1e-4 * float(before.abs().max()) + 1e-6):
        raise DatafreeError(f"cannot {REASON}: reordering them changes its outputs ({NOT_A_CHAIN}); {REMEDY}")
    return ranked
