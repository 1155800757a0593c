"""Start a small student from a selection of its teacher's weights (weight selection).

A student trained from random weights on synthetic images learns only what those images show; a student
that starts from the teacher's own filters starts from what the teacher learned on its real data. Weight
selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024) builds that start without any
data: each student layer takes a subset of the matching teacher layer's weights. The subset is *consistent*:
a channel count of ``t`` cut to ``s`` always keeps the same evenly spaced channels, so the channels a layer
keeps are the ones the next layer's kept inputs read. Spatial kernel dimensions keep their centre. A linear
layer that reads a conv's output through ``flatten`` (VGG-style heads, ``x.view(n, -1)`` of a map larger than 1x1)
keeps those channels' whole blocks of positions.

Layers are matched by name when every student conv/linear name is in the teacher (a shallower or thinner
network of the same family: ResNet-8 from ResNet-14 shares the names of each stage's first block), else by
position (the same sequence of convolutions and linear layers, as LeNet-5-half and LeNet-5-BN). BatchNorm layers the
student lacks are folded into the teacher layer that feeds them first (:func:`datafree.models.fold_batchnorm`),
so the selected filters keep the teacher's scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from datafree.errors import DatafreeError
from datafree.models.fold import fold_batchnorm

WEIGHTED = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class Inheritance:
    """What :func:`inherit_weights` did: how the layers were paired, and how many tensors it copied."""

    matched_by: str  # "name" or "position"
    layers: int  # student layers (conv, linear, BatchNorm) that took teacher weights
    tensors: int  # parameters and buffers copied
    parameters: int  # student parameters (elements) that were set from the teacher
    total_parameters: int  # all of the student's parameters (elements)


def evenly_spaced(teacher_size: int, student_size: int) -> torch.Tensor:
    """The indices a dimension of ``teacher_size`` keeps for ``student_size``: evenly spaced, from 0."""
    return (torch.arange(student_size) * teacher_size) // student_size


def centred(teacher_size: int, student_size: int) -> torch.Tensor:
    start = (teacher_size - student_size) // 2
    return torch.arange(start, start + student_size)


def position_blocks(channels: torch.Tensor, in_block: int) -> torch.Tensor:
    """The flattened input indices of ``channels`` when each reaches a linear layer as a block of ``in_block``
    positions (``flatten`` of a (channels, positions) map); the channels themselves when ``in_block`` is 1."""
    if in_block == 1:
        return channels
    return (channels[:, None] * in_block + torch.arange(in_block, device=channels.device)).flatten()


def kept_indices(teacher_size: int, student_size: int, in_block: int = 1) -> torch.Tensor:
    """The indices a channel (or feature) dimension of ``teacher_size`` keeps for ``student_size``: evenly spaced,
    or with ``in_block`` > 1 (a flattened (channels, positions) map) the kept channels' whole blocks of positions."""
    if in_block > 1 and teacher_size % in_block == 0 and student_size % in_block == 0:
        return position_blocks(evenly_spaced(teacher_size // in_block, student_size // in_block), in_block)
    return evenly_spaced(teacher_size, student_size)


def select(teacher: torch.Tensor, shape: torch.Size, in_block: int = 1) -> torch.Tensor | None:
    """The consistent selection of ``teacher`` with ``shape`` (None: a dimension is larger in the student).

    ``in_block`` > 1: the input dimension is a flattened (channels, positions) map with that many positions per
    channel (a linear layer after ``flatten`` of a conv's output): it keeps whole channels, the ones the conv
    kept, each with all its positions, where spreading single features would pair a kept channel's positions
    with weights of other channels and positions (a student whose input does not split into such blocks keeps
    the features spread out)."""
    if teacher.dim() != len(shape) or any(s > t for s, t in zip(shape, teacher.shape)):
        return None
    out = teacher
    for dim, (t, s) in enumerate(zip(teacher.shape, shape)):
        if t == s:
            continue
        if dim >= 2:
            pick = centred(t, s)  # kernels keep their centre
        else:
            pick = kept_indices(t, s, in_block if dim == 1 else 1)  # channels spread out
        out = out.index_select(dim, pick.to(out.device))
    return out


def flattened_positions(previous: nn.Module | None, layer: nn.Module) -> int:
    """How many positions per channel a linear layer reads when it follows a conv through ``flatten`` (1: it reads
    channels, as after global pooling; or it does not follow a conv)."""
    if not isinstance(layer, nn.Linear) or not isinstance(previous, nn.Conv2d):
        return 1
    channels = previous.out_channels
    return layer.in_features // channels if layer.in_features % channels == 0 else 1


def _layers(model: nn.Module, kinds: tuple[type, ...]) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def paired_layers(student: nn.Module, teacher: nn.Module, purpose: str = "inherit the teacher's weights",
                  remedy: str = "leave --inherit off") -> tuple[str, list[tuple[str, str]]]:
    """How weight selection pairs the student's conv/linear layers with the teacher's: ``("name" or "position",
    [(student layer, teacher layer), ...])``, by module name. One-line :class:`DatafreeError` ("cannot
    ``purpose``: ...; ``remedy``") when they do not pair."""
    s_layers, t_layers = _layers(student, WEIGHTED), _layers(teacher, WEIGHTED)
    t_names = {name for name, _ in t_layers}
    if s_layers and all(name in t_names for name, _ in s_layers):
        return "name", [(name, name) for name, _ in s_layers]
    if [type(m) for _, m in s_layers] == [type(m) for _, m in t_layers]:
        return "position", [(s, t) for (s, _), (t, _) in zip(s_layers, t_layers)]
    raise DatafreeError(f"cannot {purpose}: the student's conv/linear layers match the teacher's neither by name "
                        "nor in sequence (weight selection needs a shallower or thinner version of the teacher's "
                        f"architecture); {remedy}")


def _input_size(layer: nn.Module) -> int:
    return layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features


def kept_inputs(student: nn.Module, teacher: nn.Module) -> list[tuple[str, str, torch.Tensor]]:
    """``(student layer, teacher layer, kept)`` for every layer pair of :func:`paired_layers` but the first, whose
    input is the image: ``kept`` indexes the teacher layer's input (dim 1) at what the student layer's input holds
    under weight selection, so an inherited student starts with each layer reading those very channels."""
    _, pairs = paired_layers(student, teacher, "pair the student's layers with the teacher's for the kept-channel hint",
                             "leave --kept-hint off")
    s_by_name, t_layers = dict(_layers(student, WEIGHTED)), _layers(teacher, WEIGHTED)
    t_by_name = dict(t_layers)
    previous = {name: prev for (_, prev), (name, _) in zip(t_layers, t_layers[1:])}
    kept = []
    for s_name, t_name in pairs:
        if t_name == t_layers[0][0]:
            continue
        t_mod = t_by_name[t_name]
        in_block = flattened_positions(previous.get(t_name), t_mod)
        kept.append((s_name, t_name, kept_indices(_input_size(t_mod), _input_size(s_by_name[s_name]), in_block)))
    return kept


def inherit_weights(student: nn.Module, teacher: nn.Module) -> Inheritance:
    """Set ``student``'s weights (in place) to a consistent selection of ``teacher``'s; returns what it did.

    Raises a one-line :class:`DatafreeError` when the two cannot be paired (different families): weight
    selection needs the student to be a shallower or thinner version of the teacher.
    """
    student_norms, teacher_norms = _layers(student, NORMS), _layers(teacher, NORMS)
    if teacher_norms and not student_norms:
        teacher = fold_batchnorm(teacher)
        teacher_norms = []
    t_layers = _layers(teacher, WEIGHTED)
    matched_by, layer_names = paired_layers(student, teacher)
    s_modules, t_modules = dict(student.named_modules()), dict(teacher.named_modules())
    pairs: list[tuple[nn.Module, nn.Module]] = [(s_modules[s], t_modules[t]) for s, t in layer_names]
    if matched_by == "name":
        t_norms = dict(teacher_norms)
        pairs += [(m, t_norms[n]) for n, m in student_norms if n in t_norms]
    elif [type(m) for _, m in student_norms] == [type(m) for _, m in teacher_norms]:
        pairs += list(zip([m for _, m in student_norms], [m for _, m in teacher_norms]))
    chosen: dict[str, torch.Tensor] = {}
    ids = {id(m): n for n, m in student.named_modules()}
    previous = {id(t): p for (_, p), (_, t) in zip(t_layers, t_layers[1:])}  # the teacher layer before each one
    for s_mod, t_mod in pairs:
        t_state = t_mod.state_dict()
        in_block = flattened_positions(previous.get(id(t_mod)), t_mod)
        for key, value in s_mod.state_dict().items():
            if key not in t_state:
                continue
            picked = select(t_state[key], value.shape, in_block) if value.dim() else t_state[key]
            if picked is None:
                raise DatafreeError(f"cannot inherit the teacher's weights: student layer {ids[id(s_mod)]!r} "
                                    f"({key} {tuple(value.shape)}) is larger than its teacher layer "
                                    f"({tuple(t_state[key].shape)})")
            chosen[f"{ids[id(s_mod)]}.{key}"] = picked.to(value.dtype)
    student.load_state_dict(chosen, strict=False)
    names = dict(student.named_parameters())
    set_elements = sum(names[k].numel() for k in chosen if k in names)
    return Inheritance(matched_by, len(pairs), len(chosen), set_elements,
                       sum(p.numel() for p in student.parameters()))
