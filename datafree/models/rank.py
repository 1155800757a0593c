"""Reorder a teacher's channels so that weight selection keeps the ones that matter (``--keep-channels important``).

A trained network's channel order is arbitrary: permuting a hidden layer's channels, together with its BatchNorm
and the next layer's inputs, leaves the function unchanged. Spread selection (:func:`datafree.models.inherit_weights`)
keeps evenly spaced channels, so which of the teacher's features a student inherits is a draw from that arbitrary
order, and the draw matters: on one teacher file, the same recipe gave students 2.7 points apart from two orders of
the same teacher (docs/datafree_recipes.md, "Forty-third round"). :func:`rank_channels` permutes a copy of the
teacher, function unchanged, so that the channels a data-free score ranks highest sit where spread selection looks.

Which channels must move together is read from the traced graph (:func:`channel_groups`): a layer's output channels,
the BatchNorms and depthwise convolutions that act on them one by one, and every layer that reads them. A residual
addition ties the channels of everything it adds, so a ResNet's stream (its stem, each block's last layer and
shortcut, and every layer reading the stream) is one group, ranked as one.

The score of a channel is the signal each reader gets from it times how strongly that reader reads it. Behind a
BatchNorm the channel is ``N(beta, gamma^2)`` on the training data by construction (a sum of BatchNorm outputs, as
a post-activation residual stream, ``N(sum beta, sum gamma^2)`` if they are independent), so its root mean square
after a ReLU is known without data; without a BatchNorm the norm of its incoming weights stands in. The read is the
norm of the reader's weights on the channel; several readers add their squares.

A student that keeps fewer blocks than its teacher (ResNet-8 from ResNet-14) has only some of a stream's readers, and
its stream sums only some of the blocks' BatchNorms. ``view="student"`` (``--keep-channels important-student``) scores
each group by what the student keeps: the readers it has and, behind a sum, the BatchNorms of the layers it has. For a
student that keeps every layer (a thinner network of the same depth) the two views are the same.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as F

from datafree.errors import DatafreeError
from datafree.models.fold import _BatchNorm, trace
from datafree.models.inherit import kept_indices, paired_layers, position_blocks

REASON = "keep the teacher's important channels"
REMEDY = "leave --keep-channels at spread"

# operations that act on each channel alone (or pool positions): their output's channels are their input's
_PER_CHANNEL_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Hardsigmoid,
                        nn.Tanh, nn.Hardswish, nn.Hardtanh, nn.Mish, nn.Dropout, nn.Dropout2d, nn.Identity,
                        nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_PER_CHANNEL_FUNCTIONS = {F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardswish, F.hardtanh, F.mish,
                          F.hardsigmoid, F.dropout, F.dropout2d, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                          F.adaptive_max_pool2d, torch.relu, torch.sigmoid, torch.tanh}
_PER_CHANNEL_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}
_ADD = {operator.add, operator.iadd, torch.add}
_SCALE = {operator.mul, operator.imul, operator.truediv, torch.mul}


@dataclass(eq=False)
class ChannelGroup:
    """Channels that can only move together, and everything that acts on them (see the module docstring)."""

    size: int
    writers: list[tuple[str, nn.Module]] = field(default_factory=list)  # conv/linear layers whose outputs these are
    norms: list[_BatchNorm] = field(default_factory=list)  # BatchNorms on them
    depthwise: list[nn.Conv2d] = field(default_factory=list)  # convolutions that map each channel to itself
    # (layer, positions per channel it reads, the BatchNorms whose sum it reads or None where one part has none)
    readers: list[tuple[nn.Module, int, tuple[_BatchNorm, ...] | None]] = field(default_factory=list)
    fixed: str | None = None  # why these channels cannot move, if they cannot


def _size(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


class _Walk:
    """One pass over the traced graph: each tensor's channel group (union-find) and the BatchNorms its value sums."""

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        traced = trace(model, REASON, REMEDY)
        ShapeProp(traced).propagate(example)
        self.modules = dict(model.named_modules())
        self.parent: dict[int, int] = {}
        self.groups: dict[int, ChannelGroup] = {}
        self.group: dict[fx.Node, int] = {}  # the group of each node whose value is a (batch, channels, ...) tensor
        self.sums: dict[fx.Node, tuple[_BatchNorm, ...] | None] = {}
        self.block: dict[fx.Node, int] = {}  # positions per channel after a flatten
        self.touched: dict[int, list[tuple[int, ...]]] = {}  # module id -> the groups of each call (a shared layer fixes them)
        for node in traced.graph.nodes:
            self.visit(node)

    # union-find over groups, in order of creation (the root is the oldest)
    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def new(self, size: int, fixed: str | None = None) -> int:
        g = len(self.parent)
        self.parent[g] = g
        self.groups[g] = ChannelGroup(size, fixed=fixed)
        return g

    def union(self, a: int, b: int) -> int:
        a, b = sorted((self.find(a), self.find(b)))
        if a != b:
            self.parent[b] = a
            ga, gb = self.groups[a], self.groups.pop(b)
            ga.writers += gb.writers
            ga.norms += gb.norms
            ga.depthwise += gb.depthwise
            ga.readers += gb.readers
            ga.fixed = ga.fixed or gb.fixed
        return a

    def acts_on(self, module: nn.Module, *groups: int) -> None:
        self.touched.setdefault(id(module), []).append(groups)

    def fix(self, node: fx.Node, why: str) -> None:
        for arg in node.all_input_nodes:
            if arg in self.group:
                self.groups[self.find(self.group[arg])].fixed = why

    def stop(self, node: fx.Node, shape: tuple[int, ...], why: str) -> None:
        """``node`` is not followed: its inputs' channels cannot move, nor can its output's."""
        self.fix(node, why)
        self.group[node], self.sums[node] = self.new(shape[1] if len(shape) > 1 else 1, why), None

    def same(self, node: fx.Node, source: fx.Node, block: int | None = None) -> None:
        self.group[node], self.sums[node] = self.group[source], self.sums[source]
        self.block[node] = self.block.get(source, 1) if block is None else block

    def visit(self, node: fx.Node) -> None:
        meta = node.meta.get("tensor_meta")
        shape = tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None
        if node.op == "placeholder":
            if shape is not None and len(shape) >= 2:
                self.group[node], self.sums[node] = self.new(shape[1], "the input"), None
            return
        if node.op == "output":
            self.fix(node, "the output")
            return
        tensors = [a for a in node.all_input_nodes if a in self.group]
        if shape is None or not tensors:  # sizes, attributes: no channels
            return
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) and node.args[0] in self.group \
            else tensors[0]
        scalars = all(isinstance(a, (int, float)) for a in node.args if not isinstance(a, fx.Node) or a not in self.group)
        target = self.modules.get(node.target) if node.op == "call_module" else None
        if node.op == "call_module":
            self.module(node, target, first, shape)
        elif node.op == "call_function" and node.target in _ADD | _SCALE and len(tensors) == 2 and all(
                tuple(t.meta["tensor_meta"].shape)[1:2] == shape[1:2] for t in tensors):
            # an addition (residual) or product (squeeze-and-excitation gate) pairs the channels of both inputs
            a, b = tensors
            self.group[node] = self.union(self.group[a], self.group[b])
            sa, sb = self.sums[a], self.sums[b]
            self.sums[node] = sa + sb if node.target in _ADD and sa is not None and sb is not None else None
            self.block[node] = 1
        elif node.op == "call_function" and (node.target in _PER_CHANNEL_FUNCTIONS or (
                node.target in _ADD | _SCALE and len(tensors) == 1 and scalars)):
            self.same(node, first)
        elif node.op == "call_function" and node.target is torch.flatten or node.op == "call_method" and (
                node.target in ("flatten", "view", "reshape")):
            self.reshape(node, first, shape)
        elif node.op == "call_method" and node.target in _PER_CHANNEL_METHODS:
            self.same(node, first)
        elif node.op == "call_method" and node.target == "mean" and _spatial(node, first):
            self.same(node, first)
        else:
            self.stop(node, shape, f"an operation it does not follow ({getattr(node.target, '__name__', node.target)})")

    def module(self, node: fx.Node, target: nn.Module, first: fx.Node, shape: tuple[int, ...]) -> None:
        g = self.find(self.group[first])
        rank = len(first.meta["tensor_meta"].shape)
        if isinstance(target, nn.Conv2d) and target.groups == 1 or isinstance(target, nn.Linear) and rank == 2:
            block = self.block.get(first, 1)
            self.groups[g].readers.append((target, block, self.sums[first]))
            out = self.new(_size(target))
            self.groups[out].writers.append((node.target, target))
            self.acts_on(target, g, out)
            self.group[node], self.sums[node], self.block[node] = out, None, 1
        elif isinstance(target, nn.Conv2d) and target.groups == target.in_channels == target.out_channels:
            self.groups[g].depthwise.append(target)
            self.acts_on(target, g)
            self.group[node], self.sums[node], self.block[node] = g, None, 1
        elif isinstance(target, _BatchNorm) and self.block.get(first, 1) == 1:
            self.groups[g].norms.append(target)
            self.acts_on(target, g)
            self.group[node], self.sums[node], self.block[node] = g, (target,), 1
        elif isinstance(target, _PER_CHANNEL_MODULES):
            self.same(node, first)
        elif isinstance(target, nn.Flatten):
            self.reshape(node, first, shape)
        else:
            self.stop(node, shape, f"a layer it does not follow ({type(target).__name__})")

    def reshape(self, node: fx.Node, first: fx.Node, shape: tuple[int, ...]) -> None:
        """A (batch, channels, positions...) map flattened to (batch, channels * positions) keeps its channels, each
        as a block of positions; any other reshape is not followed."""
        before = tuple(first.meta["tensor_meta"].shape)
        if len(shape) == 2 and len(before) >= 2 and shape[0] == before[0] and shape[1] == math.prod(before[1:]):
            self.same(node, first, self.block.get(first, 1) * math.prod(before[2:]))
        elif shape == before:
            self.same(node, first)
        else:
            self.stop(node, shape, f"a reshape it does not follow ({before} -> {shape})")

    def result(self) -> list[ChannelGroup]:
        for calls in self.touched.values():  # a layer called twice would be permuted twice
            if len(calls) > 1:
                for r in {self.find(g) for groups in calls for g in groups}:
                    self.groups[r].fixed = self.groups[r].fixed or "a layer used more than once"
        return [self.groups[g] for g in sorted(self.groups)]


def _spatial(node: fx.Node, first: fx.Node) -> bool:
    """``x.mean((2, 3))`` and the like: an average over positions only."""
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    rank = len(first.meta["tensor_meta"].shape)
    return bool(dims) and all(d % rank >= 2 for d in dims)


@torch.no_grad()
def channel_groups(model: nn.Module, example: torch.Tensor) -> list[ChannelGroup]:
    """The channel groups of ``model`` (traced on ``example``, in eval mode), in the order the graph makes them."""
    was_training = model.training
    model.eval()
    try:
        return _Walk(model, example).result()
    finally:
        model.train(was_training)


def relu_rms(gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``sqrt(E[relu(gamma * z + beta)^2])`` for ``z ~ N(0, 1)``, per channel (closed form)."""
    a = gamma.abs().clamp_min(1e-12)
    m = beta / a
    cdf = 0.5 * (1 + torch.erf(m / math.sqrt(2)))
    pdf = torch.exp(-m * m / 2) / math.sqrt(2 * math.pi)
    return (a * a * ((1 + m * m) * cdf + m * pdf)).clamp_min(0).sqrt()


@torch.no_grad()
def channel_scores(group: ChannelGroup, kept: Callable[[nn.Module], bool] | None = None) -> torch.Tensor:
    """The data-free importance of each channel of ``group`` (see the module docstring). With ``kept`` (whether the
    student has a layer or BatchNorm), only the readers the student has count, and a signal only counts the BatchNorms
    (without them, the writers) it has; where it has none of them, all count (its channels still feed it somewhere)."""
    readers, writers = group.readers, group.writers
    if kept is not None:
        readers = [(reader, block, sums if sums is None else tuple(bn for bn in sums if kept(bn)) or sums)
                   for reader, block, sums in readers if kept(reader)] or readers
        writers = [(name, layer) for name, layer in writers if kept(layer)] or writers

    def signal(sums: tuple[_BatchNorm, ...] | None) -> torch.Tensor:
        if sums and all(bn.affine for bn in sums):
            if len(sums) == 1:
                return relu_rms(sums[0].weight.float(), sums[0].bias.float())
            beta = torch.stack([bn.bias.float() for bn in sums]).sum(0)
            return relu_rms(torch.stack([bn.weight.float() for bn in sums]).pow(2).sum(0).sqrt(), beta)
        norms = [layer.weight.float().reshape(group.size, -1).norm(dim=1) for _, layer in writers]
        return norms[0] if len(norms) == 1 else torch.stack(norms).pow(2).sum(0).sqrt()

    parts = []
    for reader, _, sums in readers:
        weight = reader.weight.float()  # (out, size * in_block) or (out, size, kh, kw): one block per channel
        read = weight.reshape(weight.shape[0], group.size, -1).transpose(0, 1).reshape(group.size, -1).norm(dim=1)
        parts.append(signal(sums) * read)
    if not parts:
        return signal(None)
    return parts[0] if len(parts) == 1 else torch.stack(parts).pow(2).sum(0).sqrt()


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
def permute(group: ChannelGroup, perm: torch.Tensor) -> None:
    """Reorder ``group``'s channels (in place; new channel i is old channel ``perm[i]``) in everything that writes,
    normalises or reads them: the network's function is unchanged."""
    for layer in [layer for _, layer in group.writers] + group.depthwise:
        p = perm.to(layer.weight.device)
        layer.weight.copy_(layer.weight[p])
        if layer.bias is not None:
            layer.bias.copy_(layer.bias[p])
    for norm in group.norms:
        for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
            if tensor is not None:
                tensor.copy_(tensor[perm.to(tensor.device)])
    for reader, in_block, _ in group.readers:
        reader.weight.copy_(reader.weight[:, position_blocks(perm, in_block).to(reader.weight.device)])


@torch.no_grad()
def rank_channels(teacher: nn.Module, student: nn.Module, example: torch.Tensor, view: str = "teacher") -> nn.Module:
    """A copy of ``teacher`` that computes the same function, its hidden channels reordered so that spread
    selection for ``student`` keeps the best-scoring ones. ``example`` (a batch of inputs, any values) traces the
    graph and checks that the function is unchanged. ``view="student"`` scores by what the student keeps (the module
    docstring). A one-line :class:`DatafreeError` when channels the student cuts are tied by something the trace does
    not follow (concatenation, grouped convolutions, a shared layer), or when the student cuts channels that move
    together to different widths."""
    if view not in ("teacher", "student"):
        raise ValueError(f"view must be 'teacher' or 'student', not {view!r}")
    by, pairs = paired_layers(student, teacher, REASON, REMEDY)
    s_modules = dict(student.named_modules())
    student_size = {t: _size(s_modules[s]) for s, t in pairs}
    ranked = copy.deepcopy(teacher)
    kept = None
    if view == "student" and by == "name":  # paired in sequence, the student has every layer: the views agree
        names = {t for _, t in pairs} | {name for name, m in s_modules.items() if isinstance(m, _BatchNorm)}
        ids = {id(m) for name, m in ranked.named_modules() if name in names}
        kept = lambda module: id(module) in ids  # noqa: E731
    for group in channel_groups(ranked, example):
        keep = {student_size[name] for name, _ in group.writers if name in student_size}
        if not keep or min(keep) >= group.size:
            continue
        names = ", ".join(repr(name) for name, _ in group.writers[:3])
        if len(keep) > 1:
            raise DatafreeError(f"cannot {REASON}: the student cuts channels that move together (the outputs of "
                                f"{names}) to different widths {sorted(keep)}; {REMEDY}")
        if group.fixed:
            raise DatafreeError(f"cannot {REASON}: the channels of {names} are tied by {group.fixed}; {REMEDY}")
        permute(group, keep_first(channel_scores(group, kept), keep.pop()))
    was_training = teacher.training
    before, after = teacher.eval()(example), ranked.eval()(example)
    teacher.train(was_training)
    ranked.train(was_training)
    if not torch.allclose(before, after, rtol=1e-4, atol=1e-4 * float(before.abs().max()) + 1e-6):
        raise DatafreeError(f"cannot {REASON}: reordering them changes its outputs (a tie between channels the "
                            f"trace does not show); {REMEDY}")
    return ranked
