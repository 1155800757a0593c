"""Bring your own teacher: load the checkpoint a user arrives with, and say what it supports.

Formats, recognised by their bytes rather than their names (:func:`datafree.checkpoint.archive_kind`):

- ``datafree``: a run directory, or ``NAME.safetensors`` / ``.pt`` with its ``NAME.json`` sidecar
  (architecture and DataSpec).
- ``state_dict``: ``.pt`` / ``.pth`` (``torch.save``, read with ``weights_only``) or ``.safetensors``
  without a sidecar, given an architecture (a zoo name, ``torchvision:NAME`` or
  ``package.module:callable``) and a DataSpec.
- ``torchscript``: a ``torch.jit.save`` archive, and ``torch.export``: a ``torch.export.save``
  program (``.pt2``). Both carry their architecture; no ``arch`` is given.
- ``module``: an ``nn.Module`` the caller already holds (:func:`teacher_from_module`), for Python users who load
  their weights their own way; it is identified by its class and the sha256 of its state_dict.

The DataSpec (input shape, classes, normalisation) never needs the dataset's files: it comes from
the sidecar, from ``--dataset NAME`` (:data:`~datafree.data.spec.KNOWN_SPECS`), from flags
(``--input-shape C H W --num-classes N [--mean ... --std ...]``), from a spec JSON file
(``--spec FILE``), or from the checkpoint itself (``embedded``: a ``datafree_spec.json`` extra
file in a TorchScript or torch.export archive, or a ``datafree_spec`` metadata entry of a
safetensors file); :func:`resolve_spec` turns the flags into one. Where it came from is kept in
``ModelInfo.spec_source`` and recorded in every manifest and result.

Whole-model files become an ordinary ``nn.Module`` whose BatchNorm and Linear layers are real
``nn.BatchNorm*d`` / ``nn.Linear`` submodules, so everything that reads a teacher through forward
hooks (BN-statistics matching, penultimate features, herding, audits) works on them unchanged:

- torch.export: ``ExportedProgram.module()`` is one flat graph of ATen operators whose
  submodules only hold tensors (hooks on them never fire, and it refuses ``eval()``). Each
  ``aten.batch_norm`` / ``aten.linear`` call whose weights are the module ``P``'s becomes a call of
  a real ``nn.BatchNorm*d`` / ``nn.Linear`` at ``P`` sharing those tensors (same outputs; the
  teacher always runs in eval mode, on its running statistics). The program's input guards are
  dropped, so any batch size runs where the graph allows it; a program exported with a fixed
  batch size that bakes it into a reshape is refused in one line (re-export with a dynamic batch).
- TorchScript: forward hooks are not supported on a scripted module (``register_forward_hook``
  raises), so the archive is converted to a torch.export program first (PyTorch's
  ``TS2EPConverter``, sample inputs from the spec) and then treated as above. Should the
  conversion fail, the scripted module is used as is (:class:`ScriptedTeacher`): plain KD and
  the methods that need no hooks still work, and the others are refused naming the reason.

Trust: loading a TorchScript or torch.export archive can run code it contains. ``torch.jit.load``
runs the archive's TorchScript ``__setstate__`` methods while loading (and PyTorch itself refuses
TorchScript under ``torch.load(weights_only=True)``); ``torch.export.load`` falls back to full
unpickling of its constants when the safe loader fails (PyTorch: never load one from an untrusted
source). Both are therefore loaded only with ``trust_pickle=True`` (``--trust-pickle``), like a
pickle holding code. State_dicts and safetensors never need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import operator
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from datafree.checkpoint import WHOLE_MODEL, ModelInfo, _reason, archive_kind, load_model, read_info, resolve_checkpoint
from datafree.data.spec import KNOWN_SPECS, DataSpec, check_compatible
from datafree.errors import DatafreeError
from datafree.io import sha256_file

SPEC_SOURCES = ("sidecar", "dataset", "flags", "spec-file", "embedded", "transfer-set", "dataset-files")
"""Where a teacher's DataSpec came from (``ModelInfo.spec_source``); the last two are the data a command reads."""
EXPLICIT_SOURCES = ("dataset", "flags", "spec-file")  # what the user said on the command line
SPEC_EXTRA_FILE = "datafree_spec.json"  # a DataSpec JSON inside a TorchScript / torch.export archive
SPEC_METADATA_KEY = "datafree_spec"  # the same as a safetensors metadata entry
SPEC_FLAGS = "--dataset NAME, or --input-shape C H W --num-classes N (with --mean/--std), or --spec FILE"
ARCH_FLAG_HELP = "a zoo name, torchvision:NAME or package.module:callable"


# ---------------------------------------------------------------- the spec
def _per_channel(values: Sequence[float] | None, channels: int, default: float, flag: str) -> tuple[float, ...]:
    if not values:
        return (default,) * channels
    if len(values) == 1:
        return (float(values[0]),) * channels
    if len(values) != channels:
        raise DatafreeError(f"{flag} needs 1 or {channels} values (one per channel), got {len(values)}")
    return tuple(float(v) for v in values)


def _spec_from_file(path: str | Path, mean: Sequence[float] | None, std: Sequence[float] | None) -> DataSpec:
    """A spec JSON: DataSpec's own fields, or ``input_shape: [C, H, W]`` for the three sizes; mean/std optional."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatafreeError(f"spec file {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatafreeError(f"spec file {path} is not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise DatafreeError(f"spec file {path} must hold a JSON object like "
                            '{"input_shape": [3, 32, 32], "num_classes": 100, "mean": [...], "std": [...]}')
    if "input_shape" in d:
        shape = d.pop("input_shape")
        if not isinstance(shape, list) or len(shape) != 3:
            raise DatafreeError(f"spec file {path}: input_shape must be [C, H, W], got {shape!r}")
        d.update(channels=shape[0], height=shape[1], width=shape[2])
    missing = [k for k in ("channels", "height", "width", "num_classes") if k not in d]
    if missing:
        raise DatafreeError(f"spec file {path} lacks {', '.join(missing)} (give input_shape [C, H, W] and num_classes)")
    try:
        channels = int(d["channels"])
    except (TypeError, ValueError):
        raise DatafreeError(f"spec file {path}: channels must be a number, got {d['channels']!r}") from None
    d["mean"] = _per_channel(mean or d.get("mean"), channels, 0.0, "mean")
    d["std"] = _per_channel(std or d.get("std"), channels, 1.0, "std")
    spec = DataSpec.from_dict(d)
    _check_sizes(spec, f"spec file {path}")
    return spec


def _check_sizes(spec: DataSpec, where: str) -> None:
    if min(spec.shape) < 1 or spec.num_classes < 2 or min(spec.std) <= 0:
        raise DatafreeError(f"{where}: the input shape must be positive, classes at least 2 and std above 0 "
                            f"(got shape {spec.shape}, {spec.num_classes} classes, std {spec.std})")


def resolve_spec(*, dataset: str | None = None, input_shape: Sequence[int] | None = None,
                 num_classes: int | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, spec_file: str | Path | None = None) -> tuple[DataSpec, str] | None:
    """The DataSpec the spec flags describe, with its source (``spec-file``, ``flags`` or ``dataset``), or None.

    ``--spec FILE`` or ``--input-shape``/``--num-classes`` describe the input directly; then
    ``dataset`` only names the test split. Otherwise a known ``dataset`` gives its spec (no files
    are read). ``mean``/``std`` override the normalisation (one value is used for every channel);
    without them a directly described input is taken as unnormalised [0, 1] pixels (mean 0, std 1).
    """
    if spec_file is not None:
        if input_shape is not None or num_classes is not None:
            raise DatafreeError("--spec FILE and --input-shape/--num-classes both describe the input: pass one of them")
        return _spec_from_file(spec_file, mean, std), "spec-file"
    if input_shape is not None:
        if num_classes is None:
            raise DatafreeError("--input-shape needs --num-classes N as well")
        if len(input_shape) != 3:
            raise DatafreeError(f"--input-shape takes C H W, got {list(input_shape)}")
        c, h, w = (int(v) for v in input_shape)
        spec = DataSpec(c, h, w, int(num_classes), _per_channel(mean, c, 0.0, "--mean"), _per_channel(std, c, 1.0, "--std"))
        _check_sizes(spec, "--input-shape/--num-classes/--std")
        return spec, "flags"
    if num_classes is not None:
        raise DatafreeError("--num-classes needs --input-shape C H W as well")
    if dataset in KNOWN_SPECS:
        spec = KNOWN_SPECS[dataset]
        if mean or std:
            spec = dataclasses.replace(spec, mean=_per_channel(mean or spec.mean, spec.channels, 0.0, "--mean"),
                                       std=_per_channel(std or spec.std, spec.channels, 1.0, "--std"))
            _check_sizes(spec, "--std")
        return spec, "dataset"
    if mean or std:
        raise DatafreeError("--mean/--std change a spec: give it with --dataset NAME, --input-shape C H W or --spec FILE")
    return None


def _embedded_spec(text: str | bytes, path: Path) -> DataSpec | None:
    if not text:
        return None
    try:
        d = json.loads(text)
        spec = DataSpec.from_dict(d)
    except (ValueError, TypeError, DatafreeError) as e:
        raise DatafreeError(f"{path}: its embedded {SPEC_EXTRA_FILE} is not a valid DataSpec ({e})") from None
    _check_sizes(spec, f"{path}: embedded spec")
    return spec


def _safetensors_spec(path: Path) -> DataSpec | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return None  # a broken file is reported when its tensors are read
    return _embedded_spec(meta.get(SPEC_METADATA_KEY, ""), path)


def _choose_spec(path: Path, spec: DataSpec | None, source: str,
                 embedded: DataSpec | None) -> tuple[DataSpec | None, str]:
    """The checkpoint's own spec when it embeds one (as a sidecar's is used): what the flags or the
    data say must then agree with it. Otherwise the caller's."""
    if embedded is None:
        return spec, source
    if spec is not None:
        check_compatible(embedded, spec, f"{path} (its embedded spec)",
                         "the spec given by flags" if source in EXPLICIT_SOURCES else "the data")
    return embedded, "embedded"


# ---------------------------------------------------------------- whole-model files
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the deprecation warnings and log lines torch prints while loading and converting archives."""
    names = [n for n in list(logging.root.manager.loggerDict)
             if n.split(".")[:2] in (["torch", "export"], ["torch", "_export"], ["torch", "jit"])]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


class _AnyBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm layer of an exported graph whose input rank is not recorded."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        pass


_BN_BY_RANK = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


def _parameter(t: torch.Tensor) -> nn.Parameter:
    return t if isinstance(t, nn.Parameter) else nn.Parameter(t, requires_grad=False)


def _owner(node: Any, attr: str) -> str | None:
    """``P`` when ``node`` reads the tensor ``P.attr`` of the graph module, else None."""
    from torch import fx

    if isinstance(node, fx.Node) and node.op == "get_attr" and str(node.target).endswith("." + attr):
        return str(node.target)[: -len(attr) - 1]
    return None


def _replace_module(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def _as_layer(gm: Any, node: Any) -> tuple[str, nn.Module] | None:
    """The real ``nn.BatchNorm*d`` / ``nn.Linear`` a graph node computes (sharing its tensors), or None."""
    aten = torch.ops.aten
    if node.target in (aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default):
        x, weight, bias, mean, var = node.args[:5]
        path = _owner(mean, "running_mean")
        if path is None or _owner(var, "running_var") != path:
            return None
        momentum, eps = node.args[6:8] if node.target == aten.batch_norm.default else node.args[5:7]
        holder = gm.get_submodule(path)
        if any(True for _ in holder.children()):
            return None  # replacing it would drop what it holds
        val = x.meta.get("val") if hasattr(x, "meta") else None
        kind = _BN_BY_RANK.get(val.dim(), _AnyBatchNorm) if isinstance(val, torch.Tensor) else _AnyBatchNorm
        layer = kind(holder.running_mean.numel(), eps=float(eps), momentum=momentum, affine=weight is not None)
        if weight is not None:
            if _owner(weight, "weight") != path or (bias is not None and _owner(bias, "bias") != path):
                return None
            layer.weight, layer.bias = _parameter(holder.weight), _parameter(holder.bias) if bias is not None else None
        layer.running_mean, layer.running_var = holder.running_mean, holder.running_var
        if isinstance(getattr(holder, "num_batches_tracked", None), torch.Tensor):
            layer.num_batches_tracked = holder.num_batches_tracked
        return path, layer
    if node.target == aten.linear.default:
        weight = node.args[1]
        bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
        path = _owner(weight, "weight")
        if path is None or (bias is not None and _owner(bias, "bias") != path):
            return None
        if any(True for _ in gm.get_submodule(path).children()):
            return None
        w = gm.get_submodule(path).weight
        layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
        layer.weight = _parameter(w)
        if bias is not None:
            layer.bias = _parameter(gm.get_submodule(path).bias)
        return path, layer
    return None


def hookable(gm: Any) -> nn.Module:
    """An ``ExportedProgram.module()`` as a plain ``fx.GraphModule`` with real BatchNorm and Linear layers.

    Forward hooks fire on those layers, ``eval()``/``train()`` work, and the program's input guards
    are gone (they pin the batch size it was exported with). Outputs are unchanged.
    """
    from torch import fx

    graph = gm.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("_guards"):
            graph.erase_node(node)
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        layer = _as_layer(gm, node)
        if layer is None:
            continue
        path, module = layer
        users = list(node.users)
        returns_tuple = node.target != torch.ops.aten.batch_norm.default and node.target != torch.ops.aten.linear.default
        if returns_tuple and not all(u.target is operator.getitem and u.args[1] == 0 for u in users):
            continue  # the batch statistics are used too: leave the operator as it is
        _replace_module(gm, path, module)
        with graph.inserting_before(node):
            call = graph.call_module(path, (node.args[0],))
        call.meta = dict(node.meta)
        if returns_tuple:
            for u in users:
                u.replace_all_uses_with(call)
                graph.erase_node(u)
        else:
            node.replace_all_uses_with(call)
        graph.erase_node(node)
    graph.eliminate_dead_code()
    module = fx.GraphModule(gm, graph, class_name="ExportedTeacher")
    for name in ("_in_spec", "_out_spec"):
        if hasattr(gm, name):
            setattr(module, name, getattr(gm, name))
    module.recompile()
    return module.eval()


class ScriptedTeacher(nn.Module):
    """A TorchScript teacher that could not be converted: it runs as is, but no forward hook fires inside it."""

    def __init__(self, script: nn.Module, reason: str) -> None:
        super().__init__()
        self.script = script
        self.no_hooks = reason

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.script(x)


def _from_torchscript(script: nn.Module, spec: DataSpec) -> nn.Module:
    """TorchScript -> torch.export (PyTorch's converter, sample inputs from ``spec``) -> :func:`hookable`."""
    x = torch.randn(3, *spec.shape, generator=torch.Generator().manual_seed(0))
    try:
        from torch._export.converter import TS2EPConverter

        with _quiet():
            program = TS2EPConverter(script, (torch.zeros(2, *spec.shape),)).convert()
            module = hookable(program.module())
            with torch.no_grad():
                same = torch.allclose(module(x), script.eval()(x), rtol=1e-4, atol=1e-5)
    except Exception as e:  # noqa: BLE001 - the converter is experimental: any failure falls back to the script
        return ScriptedTeacher(script, f"converting it to torch.export failed: {_reason(e)}").eval()
    if not same:
        return ScriptedTeacher(script, "its conversion to torch.export gave other outputs").eval()
    return module


def _load_archive(path: Path, kind: str) -> tuple[Any, DataSpec | None]:
    """The loaded TorchScript module or ExportedProgram, and the spec it embeds (if any)."""
    extra: dict[str, Any] = {SPEC_EXTRA_FILE: ""}
    try:
        with _quiet():
            if kind == "torchscript":
                loaded = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            else:
                with open(path, "rb") as f:  # a file object: torch.export.load insists on a .pt2 name otherwise
                    loaded = torch.export.load(f, extra_files=extra)
    except Exception as e:  # noqa: BLE001 - a broken archive fails in many ways: each is one line
        raise DatafreeError(f"cannot read {path}: {_reason(e.__cause__ or e)} ({WHOLE_MODEL[kind]}, "
                            "truncated or corrupted?)") from None
    return loaded, _embedded_spec(extra[SPEC_EXTRA_FILE], path)


def _probe(model: nn.Module, spec: DataSpec, what: str, kind: str) -> None:
    """Run the teacher once on a batch of 2 inputs of ``spec``'s shape: a wrong spec fails here, in one line."""
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))  # a module handed in may be on CUDA
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *spec.shape, device=device))
    except Exception as e:  # noqa: BLE001 - user code raises anything: the point is to say the spec is wrong
        hint = ("; if it was exported with a fixed batch size, export it with a dynamic one: torch.export.export(model, "
                "(x,), dynamic_shapes=({0: torch.export.Dim('batch')},))" if kind == "torch.export" else "")
        where = "the spec passed with it" if kind == "module" else "the spec (--dataset, --input-shape)"
        raise DatafreeError(f"{what} cannot run on inputs of shape {spec.shape} ({_reason(e)}); check {where}{hint}") \
            from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, spec.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DatafreeError(f"{what} returns {got} for 2 inputs, not (2, {spec.num_classes}) class logits; check "
                            "--num-classes/--dataset (a teacher must return one logits tensor)")


# ---------------------------------------------------------------- loading
def load_teacher(path: str | Path, *, arch: str | None = None, arch_kwargs: dict[str, Any] | None = None,
                 spec: DataSpec | None = None, spec_source: str = "flags",
                 trust_pickle: bool = False) -> tuple[nn.Module, ModelInfo]:
    """A teacher of any supported format (see the module docstring) and its :class:`ModelInfo`, on the CPU,
    in eval mode whatever its format: a teacher is read, not trained, and a train-mode BatchNorm teacher
    would answer from each batch's statistics instead of its running ones (silently different logits).

    ``spec`` with its ``spec_source`` (one of :data:`SPEC_SOURCES`) is what the caller knows about
    the input: explicit flags, or the data it reads. The checkpoint's own word wins: a sidecar's
    spec (an explicit spec must agree with it, unless ``arch`` overrides the sidecar as well) or an
    embedded one (any given spec must agree with it). Every foreign teacher is run once on two
    inputs of the spec, so a wrong shape or class count fails here, in one line naming the flag.
    """
    model, info = _load_any(path, arch, arch_kwargs, spec, spec_source, trust_pickle)
    return model.eval(), info


def _load_any(path: str | Path, arch: str | None, arch_kwargs: dict[str, Any] | None, spec: DataSpec | None,
              spec_source: str, trust_pickle: bool) -> tuple[nn.Module, ModelInfo]:
    """:func:`load_teacher`'s work, in whatever mode the format's loader leaves the model."""
    path = resolve_checkpoint(path)
    kind = archive_kind(path)
    label = f"{path} ({WHOLE_MODEL.get(kind, 'a state_dict')})"
    if kind == "broken-zip" or (kind == "pickle" and path.suffix == ".pt2"):
        raise DatafreeError(f"cannot read {path}: not a readable archive (truncated or corrupted?)")
    if kind == "aoti":
        raise DatafreeError(f"{path} is an AOTInductor package (compiled code, not a model datafree can hook into); "
                            "pass its torch.export program (.pt2 from torch.export.save) or a state_dict instead")
    if kind in ("torchscript", "torch.export"):
        if arch is not None:
            raise DatafreeError(f"{path} is {WHOLE_MODEL[kind]}, which carries its own architecture: drop --teacher-arch")
        if not trust_pickle:
            raise DatafreeError(f"{path} is {WHOLE_MODEL[kind]}; loading one can run code it contains, so datafree loads "
                                "it only with --trust-pickle (only for files you trust), or pass its state_dict "
                                "(.safetensors) with --teacher-arch instead")
        loaded, embedded = _load_archive(path, kind)
        spec, spec_source = _choose_spec(path, spec, spec_source, embedded)
        if spec is None:
            raise DatafreeError(f"{path} is {WHOLE_MODEL[kind]} without an embedded spec: say what inputs it takes "
                                f"with {SPEC_FLAGS}")
        if kind == "torchscript":
            model = _from_torchscript(loaded, spec)
        else:
            try:
                with _quiet():
                    model = hookable(loaded.module())
            except Exception as e:  # noqa: BLE001 - an unusual graph: say so in one line rather than a traceback
                raise DatafreeError(f"cannot prepare the torch.export program {path} as a teacher: {_reason(e)}") from None
        _probe(model, spec, label, kind)
        return model, ModelInfo(kind, spec, {}, sha256=sha256_file(path), format=kind, spec_source=spec_source)
    info = read_info(path)
    if info is not None:  # datafree's own checkpoint
        if arch is not None:  # the caller overrides the sidecar (and then its spec too)
            model, info = load_model(path, arch=arch, arch_kwargs=arch_kwargs, spec=spec, trust_pickle=trust_pickle)
            info.spec_source = spec_source if spec is not None else "sidecar"
            return model, info
        model, info = load_model(path, arch_kwargs=arch_kwargs, trust_pickle=trust_pickle)
        if spec is not None and spec_source in EXPLICIT_SOURCES:
            check_compatible(info.spec, spec, f"teacher {path}", f"the {spec_source.replace('-', ' ')} given")
        return model, info
    embedded = _safetensors_spec(path) if kind == "safetensors" else None
    spec, spec_source = _choose_spec(path, spec, spec_source, embedded)
    if arch is None:
        spec_too = "" if spec is not None else f", and the input spec: {SPEC_FLAGS}"
        raise DatafreeError(f"{path} is a state_dict without a datafree sidecar ({path.with_suffix('.json').name}): "
                            f"pass --teacher-arch ARCH ({ARCH_FLAG_HELP}){spec_too}")
    if spec is None:
        raise DatafreeError(f"{path} has no sidecar saying what inputs it takes: pass {SPEC_FLAGS}")
    model, info = load_model(path, arch=arch, arch_kwargs=arch_kwargs, spec=spec, trust_pickle=trust_pickle)
    info.sha256, info.format, info.spec_source = sha256_file(path), "state_dict", spec_source
    _probe(model, spec, f"{path} ({arch})", "state_dict")
    return model, info


def teacher_from_module(model: nn.Module, spec: DataSpec, *, arch: str | None = None) -> tuple[nn.Module, ModelInfo]:
    """A teacher you already hold as a module (weights loaded your own way) and its :class:`ModelInfo`,
    as :func:`load_teacher` gives for a file: in eval mode, run once on two inputs of ``spec`` (a wrong spec
    fails here, in one line), identified in manifests by ``arch`` (default: its class as
    ``package.module:Class``) and the sha256 of its weights, so a resumed set cannot mix two teachers."""
    if isinstance(model, dict):
        raise DatafreeError("that is a state_dict, not a module: load it into your module first "
                            "(model.load_state_dict(state_dict)), or pass its file to load_teacher(path, arch=..., spec=...)")
    if not isinstance(model, nn.Module):
        raise DatafreeError(f"a teacher is an nn.Module, not {type(model).__name__}")
    cls = type(model)
    arch = arch or (f"{cls.__module__}:{cls.__qualname__}" if cls.__module__ != "__main__" else cls.__qualname__)
    _probe(model, spec, f"teacher {arch}", "module")
    return model.eval(), ModelInfo(arch, spec, sha256=weights_sha256(model), format="module", spec_source="flags")


def weights_sha256(model: nn.Module) -> str:
    """Hex sha256 of a module's state_dict (names, dtypes, shapes and bytes, in order): a file's hash for a model
    that has no file."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        h.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- describing
def batchnorm_layers(model: nn.Module) -> list[dict[str, Any]]:
    """Every BatchNorm layer: name, kind (1d/2d/3d, or ? when an exported graph does not say) and features."""
    layers = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            kind = {nn.BatchNorm1d: "1d", nn.BatchNorm2d: "2d", nn.BatchNorm3d: "3d"}.get(type(m), "?")
            layers.append({"name": name, "kind": kind, "features": m.num_features, "hooks": True})
        elif type(m).__name__ == "RecursiveScriptModule" and str(getattr(m, "original_name", "")).startswith("BatchNorm"):
            kind = str(m.original_name)[len("BatchNorm"):] or "?"
            layers.append({"name": name.removeprefix("script."), "kind": kind,
                           "features": int(m.running_mean.numel()), "hooks": False})
    return layers


def check_synthesis(teacher: nn.Module, spec: DataSpec, config: Any, device: str = "cpu") -> None:
    """Raise one line when the synthesis ``config`` cannot run on ``teacher`` (before anything is written).

    The engine's own constructor is the judge (no list of presets is kept here); for a TorchScript
    teacher whose layers hooks cannot reach, the line says that this is why.
    """
    from datafree.synthesis import Synthesizer

    try:
        Synthesizer(teacher, spec, config, student=teacher if config.needs_student else None, device=device).close()
    except DatafreeError as e:
        reason = getattr(teacher, "no_hooks", None)
        if reason:
            raise DatafreeError(f"{e} (forward hooks cannot reach inside this TorchScript teacher: {reason}; pass its "
                                "state_dict with --teacher-arch, or a torch.export .pt2)") from None
        raise


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def probe_cost(teacher: nn.Module, spec: DataSpec, config: Any, *, device: str = "cpu", batch_size: int = 8,
               steps: int = 2) -> float:
    """Measured seconds per generator step and image of ``config`` on ``teacher`` (a short timed probe).

    A warm-up call of one step, then one timed call of ``steps`` steps on ``batch_size`` images.
    Methods that train against a student use the teacher itself as the stand-in student.
    """
    from datafree.synthesis import Synthesizer

    probe = dataclasses.replace(config, iterations=steps, batch_size=batch_size)
    synth = Synthesizer(teacher, spec, probe, student=teacher if probe.needs_student else None, device=device)
    try:
        synth.config = dataclasses.replace(probe, iterations=1)  # warm-up: first-call allocations, kernel choice
        synth.synthesize()
        synth.config = probe
        _sync(device)
        start = time.perf_counter()
        synth.synthesize()
        _sync(device)
        return (time.perf_counter() - start) / (steps * batch_size)
    finally:
        synth.close()


def count_weights(model: nn.Module) -> int:
    """Learned numbers of a model: its state without BatchNorm running statistics (an exported or converted
    graph may hold some weights as buffers, so ``parameters()`` alone would miss them)."""
    stats = ("running_mean", "running_var", "num_batches_tracked")
    return sum(t.numel() for k, t in model.state_dict().items() if not k.endswith(stats))


def describe_teacher(teacher: nn.Module, info: ModelInfo, *, path: str | Path = "", device: str = "cpu",
                     probe: bool = True, probe_batch: int = 8) -> dict[str, Any]:
    """What a teacher is and what datafree can do with it, as one JSON-able record.

    Per synthesis preset: whether it applies (and why not), the commands that run it, and, with
    ``probe``, its measured cost per 1,000 images on ``device``: seconds per image and step from
    :func:`probe_cost`, times the preset's steps per image (``iterations``) and 1,000. Presets that
    differ only in iterations or student steps share one probe.
    """
    from datafree.condense import method_config
    from datafree.synthesis import PRESETS, preset

    teacher = teacher.to(device).eval()
    layers = batchnorm_layers(teacher)
    presets: dict[str, dict[str, Any]] = {}
    measured: dict[str, float] = {}
    for name in sorted(PRESETS):
        config = preset(name)
        entry: dict[str, Any] = {"iterations": config.iterations, "needs_batchnorm": config.needs_batchnorm,
                                 "needs_student": config.needs_student}
        try:
            check_synthesis(teacher, info.spec, config, device)
        except DatafreeError as e:
            entry.update(applies=False, reason=str(e), commands=[])
            presets[name] = entry
            continue
        entry.update(applies=True, reason=None, commands=(["distill --method"] if config.needs_student
                                                          else ["synthesize", "distill --method"]))
        if probe:
            same = {k: v for k, v in config.to_dict().items() if k not in ("iterations", "student_steps")}
            key = json.dumps(same, sort_keys=True, default=str)
            if key not in measured:
                measured[key] = probe_cost(teacher, info.spec, config, device=device, batch_size=probe_batch)
            entry["seconds_per_1000_images"] = round(measured[key] * config.iterations * 1000, 3)
        presets[name] = entry
    condense_bn = method_config("teacher").bn > 0
    hookable_bn = [layer for layer in layers if layer["hooks"]]
    condense_teacher = {"applies": not condense_bn or bool(hookable_bn),
                        "reason": None if not condense_bn or hookable_bn else
                        "matches the teacher's BatchNorm statistics: " + (
                            getattr(teacher, "no_hooks", "") or "the teacher has no BatchNorm layer")}
    return {
        "path": str(path), "format": info.format, "arch": info.arch, "arch_kwargs": info.arch_kwargs,
        "sha256": info.sha256, "parameters": count_weights(teacher),
        "spec": info.spec.to_dict(), "spec_source": info.spec_source, "batchnorm": layers,
        "hooks": getattr(teacher, "no_hooks", None) or "forward hooks reach every layer",
        "presets": presets, "condense_teacher": condense_teacher, "device": str(device),
        "probe": ({"batch_size": probe_batch, "steps": 2, "extrapolation": "seconds per image and step x iterations "
                   "x 1000; generator or pixel steps only (a student's own training steps are not included); "
                   "adversarial methods use the teacher as a stand-in student"} if probe else None),
    }


SPEC_SOURCE_TEXT = {"sidecar": "the datafree sidecar", "dataset": "--dataset", "flags": "--input-shape/--num-classes",
                    "spec-file": "--spec", "embedded": "the checkpoint itself", "transfer-set": "the transfer set",
                    "dataset-files": "the dataset files"}


def format_description(d: dict[str, Any]) -> str:
    """:func:`describe_teacher`'s record as lines of text."""
    s = d["spec"]
    what = d["format"] if d["format"] == d["arch"] else f"{d['format']}, {d['arch']}"
    what += f" {json.dumps(d['arch_kwargs'])}" if d["arch_kwargs"] else ""
    source = SPEC_SOURCE_TEXT.get(d["spec_source"], d["spec_source"])
    lines = [f"{d['path']}: {what}, {d['parameters']:,} parameters",
             f"input: {s['channels']}x{s['height']}x{s['width']}, {s['num_classes']} classes, mean {s['mean']} "
             f"std {s['std']} (spec from {source}{': ' + s['name'] if s['name'] else ''})"]
    bn = d["batchnorm"]
    if bn:
        kinds = ", ".join(f"{layer['name']} ({layer['kind']}, {layer['features']})" for layer in bn)
        lines.append(f"BatchNorm layers: {len(bn)}: {kinds}")
        if d["hooks"].startswith("forward hooks reach"):
            lines.append("measured best with BatchNorm: fast5 with --set adv=0, stored, then a long student (README)")
    else:
        lines.append("BatchNorm layers: none (BN-statistics methods do not apply)")
        lines.append("measured best without BatchNorm: zskd with --set input_stats=1 --set oh_temperature=4 "
                     "--set pixel_scale=1 --set tv=0.784, a plain and an augmented set, grown against the student "
                     "(README)")
    if not d["hooks"].startswith("forward hooks reach"):
        lines.append(f"forward hooks: not usable ({d['hooks']})")
    lines.append("synthesis presets (" + (f"cost measured on {d['device']}, extrapolated from "
                                         f"{d['probe']['steps']} steps of {d['probe']['batch_size']} images"
                                         if d["probe"] else "cost not measured (--no-probe)") + "):")
    width = max(len(n) for n in d["presets"])
    for name, p in d["presets"].items():
        if p["applies"]:
            cost = p.get("seconds_per_1000_images")
            cost_text = f"~{cost:,.0f} s per 1,000 images ({p['iterations']} steps each); " if cost is not None else ""
            where = "synthesize or distill --method" if "synthesize" in p["commands"] else "distill --method only"
            lines.append(f"  {name:<{width}}  yes  {cost_text}{where}")
        else:
            lines.append(f"  {name:<{width}}  no   {p['reason']}")
    ct = d["condense_teacher"]
    lines.append("condense --method teacher: " + ("yes" if ct["applies"] else f"no ({ct['reason']})"))
    return "\n".join(lines)
