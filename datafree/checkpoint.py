"""Safe checkpoints: safetensors weights + a JSON sidecar; no code is ever unpickled by default.

A model checkpoint is ``NAME.safetensors`` (weights) beside ``NAME.json`` (arch, arch kwargs,
DataSpec with normalisation, metrics, sha256 of the weights). Loading also accepts ``.pt`` /
``.pth`` files through ``torch.load(weights_only=True)``; a pickle that needs arbitrary code is
refused unless the caller passes ``trust_pickle=True``. Every write is atomic.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import datafree
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.io import atomic_path, sha256_file, write_json
from datafree.models import build_model

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
# what torch.load raises on a truncated or garbage file (random bytes reach all of these)
UNREADABLE = (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError, TypeError,
              AttributeError)
PREFIXES = ("module.", "_orig_mod.")
MODEL_FILE = "model.safetensors"


@dataclass
class ModelInfo:
    """What the sidecar says about a checkpoint.

    ``format`` and ``spec_source`` say how a loaded checkpoint was read (see :mod:`datafree.teacher`):
    ``datafree`` with its sidecar, a ``state_dict`` given an architecture, a ``torchscript`` or
    ``torch.export`` archive; and where its DataSpec came from. They describe one loading, so
    they are recorded in manifests and results, never written into a sidecar.
    """

    arch: str
    spec: DataSpec
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    format: str = "datafree"
    spec_source: str = "sidecar"

    def record(self) -> dict[str, Any]:
        """What identifies this model in a manifest or result (the format only when it is not
        datafree's own, so sets made before formats were recorded still match on ``--resume``)."""
        record = {"arch": self.arch, "arch_kwargs": self.arch_kwargs, "sha256": self.sha256}
        if self.format != "datafree":
            record["format"] = self.format
        return record

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "datafree-model/1",
            "datafree_version": datafree.__version__,
            "arch": self.arch,
            "arch_kwargs": self.arch_kwargs,
            "spec": self.spec.to_dict(),
            "metrics": self.metrics,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        try:
            return cls(d["arch"], DataSpec.from_dict(d["spec"]), dict(d.get("arch_kwargs", {})),
                       dict(d.get("metrics", {})), str(d.get("sha256", "")))
        except (KeyError, TypeError) as e:
            raise DatafreeError(f"checkpoint sidecar is missing {e}") from None


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory holding ``model.safetensors``."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.is_file():
        raise DatafreeError(f"checkpoint {path} not found")
    return p


def save_model(path: str | Path, model: nn.Module, info: ModelInfo) -> Path:
    """Write ``model`` as safetensors plus its sidecar, both atomically. Returns the weights path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise DatafreeError(f"model checkpoints are saved as .safetensors, got {path.name}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        # one metadata key: safetensors writes several in a random order, so identical models would hash differently
        save_file(tensors, str(tmp), metadata={"format": f"datafree-model/1 {info.arch}"})
        info.sha256 = sha256_file(tmp)
    write_json(sidecar_path(path), info.to_dict())
    return path


# ------------------------------------------------------------------ reading state dicts
def _reason(e: BaseException) -> str:
    """The informative sentence of a ``torch.load`` error (torch wraps it in paragraphs of advice)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    elif text.startswith("Weights only load failed"):
        lines = [ln.strip() for ln in text.splitlines()[1:]]
        lines = [ln for ln in lines if ln and not ln.startswith(("Check the documentation", "Please file", "("))]
        text = lines[0] if lines else text
    first = text.strip().splitlines()[0].strip() if text.strip() else type(e).__name__
    if isinstance(e, (KeyError, IndexError, TypeError, AttributeError)):
        first = f"{type(e).__name__} {first}"
    return first.split(". ")[0].rstrip(".")[:160]


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if isinstance(obj, nn.Module):
            obj = obj.state_dict()
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if isinstance(obj, dict):
            key = next((k for k in WRAPPER_KEYS if k in obj), None)
            if key is None:
                raise DatafreeError(
                    f"{path}: no state_dict found (top-level keys: {', '.join(map(str, list(obj)[:10]))})"
                )
            obj = obj[key]
        else:
            raise DatafreeError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    if not isinstance(obj, dict):
        raise DatafreeError(f"{path}: no state_dict found")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_tensors_file(path: str | Path, *, trust_pickle: bool = False, advice: str = "") -> Any:
    """``torch.load`` that never runs pickled code unless trusted, with one-line errors.

    ``advice`` ends the refusal message (what the user can do instead).
    """
    path = Path(path)
    if not path.is_file():
        raise DatafreeError(f"{path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        if trust_pickle:
            raise DatafreeError(f"cannot unpickle {path}: {_reason(e)}") from None
        raise DatafreeError(f"{path} contains pickled code, which datafree will not run ({_reason(e)}){advice}") from None
    except UNREADABLE as e:
        raise DatafreeError(f"cannot read {path}: {_reason(e)} (truncated or corrupted?)") from None


ZIP_MAGIC = b"PK\x03\x04"
WHOLE_MODEL = {"torchscript": "a TorchScript archive", "torch.export": "a torch.export program",
               "aoti": "an AOTInductor package"}


def archive_kind(path: str | Path) -> str:
    """What a checkpoint file holds, judged from its bytes alone (nothing is unpickled or run).

    ``safetensors`` (by its suffix), ``torchscript`` (``torch.jit.save``: ``code/`` and
    ``constants.pkl``), ``torch.export`` (``torch.export.save``: ``archive_format``, ``models/``),
    ``aoti`` (an AOTInductor package, compiled code), ``torch.save`` (a zip with ``data.pkl``),
    ``broken-zip`` (starts like a zip but cannot be read: truncated) or ``pickle`` (anything else:
    torch's legacy format, or garbage that torch.load will report).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return "safetensors"
    with open(path, "rb") as f:
        zipped = f.read(4) == ZIP_MAGIC
    if not zipped:
        return "pickle"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "broken-zip"
    parts = {part for name in names for part in name.split("/")[1:]}
    if any("/aotinductor/" in name for name in names):
        return "aoti"
    if "code" in parts or "constants.pkl" in parts:
        return "torchscript"
    if "archive_format" in parts or "models" in parts:
        return "torch.export"
    return "torch.save"


def _check_state_file(path: Path) -> str:
    """:func:`archive_kind` of a file that should hold a state_dict, refusing whole models and broken zips in one line."""
    kind = archive_kind(path)
    if kind in WHOLE_MODEL:
        raise DatafreeError(f"{path} is {WHOLE_MODEL[kind]} (a whole model), not a state_dict: as --teacher give it "
                            "without --teacher-arch; elsewhere save the model's state_dict() and pass that")
    if kind == "broken-zip":
        raise DatafreeError(f"cannot read {path}: a zip archive whose directory is missing (truncated or corrupted?)")
    return kind


def read_state_dict(path: str | Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pt/.pth`` file, unwrapped and de-prefixed.

    A whole-model archive (TorchScript, torch.export) is refused in one line: it is not a
    state_dict, and :func:`datafree.teacher.load_teacher` is what reads it as a teacher.
    """
    path = resolve_checkpoint(path)
    if _check_state_file(path) == "safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise DatafreeError(f"{path} is not a readable safetensors file ({e}); it may be truncated or corrupted") from None
    obj = load_tensors_file(path, trust_pickle=trust_pickle, advice="; re-save it as a state_dict or safetensors, "
                            "or pass --trust-pickle if you trust its source")
    return _unwrap(obj, path)


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], arch: str = "") -> None:
    """``model.load_state_dict(state)`` with a one-line report of every mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
                 if k in state and state[k].shape != v.shape]
    if missing or unexpected or misshaped:
        def few(items: list[str]) -> str:
            return ", ".join(items[:3]) + (f", +{len(items) - 3} more" if len(items) > 3 else "")
        parts = [f"{len(missing)} missing ({few(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({few(unexpected)})" if unexpected else "",
                 f"{len(misshaped)} mis-shaped ({few(misshaped)})" if misshaped else ""]
        name = arch or type(model).__name__
        raise DatafreeError(
            f"checkpoint does not fit {name}: " + "; ".join(p for p in parts if p)
            + " — check --arch/--arch-kwargs and the dataset"
        )
    model.load_state_dict(state)


def read_info(path: str | Path) -> ModelInfo | None:
    """The sidecar of a checkpoint, or None when it has none."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        return ModelInfo.from_dict(json.loads(side.read_text()))
    except json.JSONDecodeError as e:
        raise DatafreeError(f"{side} is not valid JSON ({e}); restore it or delete it and pass --arch") from None


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    spec: DataSpec | None = None,
    trust_pickle: bool = False,
) -> tuple[nn.Module, ModelInfo]:
    """Build the checkpoint's architecture and load its weights (on the CPU).

    The sidecar supplies arch, kwargs and DataSpec; explicit arguments override it, and are
    required for files without a sidecar (e.g. another project's ``.pt``).
    """
    path = resolve_checkpoint(path)
    info = read_info(path)
    if info is not None and info.sha256 and sha256_file(path) != info.sha256:
        raise DatafreeError(
            f"{path} does not match the sha256 in {sidecar_path(path).name}: the file was modified or corrupted"
        )
    if info is None:
        _check_state_file(path)  # a whole model or a broken file is said before asking for an architecture
        if arch is None or spec is None:
            raise DatafreeError(f"{path} has no {sidecar_path(path).name} sidecar; pass --arch and --dataset")
        info = ModelInfo(arch, spec, dict(arch_kwargs or {}))
    else:
        info.arch = arch or info.arch
        info.arch_kwargs = dict(arch_kwargs) if arch_kwargs is not None else info.arch_kwargs
        info.spec = spec or info.spec
    state = read_state_dict(path, trust_pickle=trust_pickle)
    model = build_model(info.arch, info.spec, **info.arch_kwargs)
    load_state_into(model, state, info.arch)
    return model, info


# ------------------------------------------------------------------ resumable training state
def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a dict of tensors/primitives (model, optimiser, scheduler, RNG, step)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Load a state saved by :func:`save_training_state` (tensors and primitives only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DatafreeError(f"nothing to resume: {path} does not exist") from None
    except (pickle.UnpicklingError, *UNREADABLE) as e:
        raise DatafreeError(f"cannot resume from {path}: not a readable training state ({_reason(e)}); the file is "
                            "corrupted or was not written by datafree: start again without --resume") from None
