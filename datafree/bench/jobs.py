"""A planned step as a library call: what the runner executes, next to the command it records.

The planner (:mod:`datafree.bench.runner`) writes every step twice from the same recipe values: as
the ``datafree ...`` command a reader can copy (recorded in results and used to recognise a
finished run), and as a :class:`Job`, the :mod:`datafree.api` call this module makes. Recipes give
training settings as flag/value pairs (``("--epochs", "20", "--lr", "0.05")``); :func:`train_fields`
reads them by :class:`~datafree.train.TrainConfig`'s field names and types, so the bench needs no
command-line parser. ``tests/test_bench.py`` parses every planned command of every suite with the
real CLI and checks that it builds the same configs as the job.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datafree.errors import DatafreeError
from datafree.io import DISK_ERRNOS


@dataclass
class Job:
    """One library call: ``name`` is the job (train-teacher, distill, synthesize, condense, buffer)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


def _field_types() -> dict[str, Any]:
    from datafree.train import TrainConfig

    return typing.get_type_hints(TrainConfig)


def _parse(flag: str, value: str, kind: Any) -> Any:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        return kind(value) if kind in (int, float, str) else json.loads(value)
    except (TypeError, ValueError):
        raise DatafreeError(f"recipe flag {flag}: {value!r} is not a {getattr(kind, '__name__', kind)}") from None


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of a ``--set`` flag: the value as JSON, else the bare string (``adv_kind=js``)."""
    if "=" not in text:
        raise DatafreeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def layer_pair(text: str) -> tuple[str, str]:
    """``STUDENT_MODULE:TEACHER_MODULE`` of a hint or relation flag."""
    parts = text.split(":")
    if len(parts) != 2 or not all(parts):
        raise DatafreeError(f"expected STUDENT_MODULE:TEACHER_MODULE, got {text!r}")
    return parts[0], parts[1]


# distill's flags that are not named after the TrainConfig field they set
FLAG_FIELDS = {"--hint": "hint_layers", "--rkd-distance": "rkd_distance_weight", "--rkd-angle": "rkd_angle_weight",
               "--kept-hint": "kept_hint_weight"}
LAYER_PAIRS = ("hint_layers", "relation_layers")  # given as STUDENT_MODULE:TEACHER_MODULE
MODULE_LISTS = ("freeze",)  # repeatable flags: each names one more module


def train_fields(flags: Sequence[str]) -> dict[str, Any]:
    """TrainConfig fields from recipe flag/value pairs: ``--eval-every 5`` is ``eval_every=5``."""
    hints = _field_types()
    if len(flags) % 2:
        raise DatafreeError(f"recipe flags come in flag/value pairs: {' '.join(flags)}")
    out: dict[str, Any] = {}
    for flag, value in zip(flags[::2], flags[1::2]):
        name = FLAG_FIELDS.get(flag, flag.removeprefix("--").replace("-", "_"))
        if not flag.startswith("--") or name not in hints:
            raise DatafreeError(f"recipe flag {flag} is not a training setting (TrainConfig field)")
        if name in LAYER_PAIRS:
            try:
                out[name] = layer_pair(value)
            except DatafreeError as e:
                raise DatafreeError(f"recipe flag {flag}: {e}") from None
        elif name in MODULE_LISTS:
            out[name] = (*out.get(name, ()), *([value] if isinstance(value, str) else value))
        else:
            out[name] = _parse(flag, value, hints[name])
    return out


def train_config(kind: str, flags: Sequence[str], *, seed: int, device: str | None, method: str | None = None):
    """The TrainConfig of a train-teacher or distill step: the command's defaults, then the recipe's flags."""
    from datafree import api
    from datafree.train import TrainConfig

    base = dict(api.TEACHER_DEFAULTS if kind == "train-teacher" else api.DISTILL_DEFAULTS)
    given = train_fields(flags)
    if kind == "distill":
        base["temperature"] = api.kd_temperature(method)
        if method:
            base["steps_per_epoch"] = api.LIVE_STEPS_PER_EPOCH
    return TrainConfig(**{**base, **given, "seed": seed, "device": device or api.default_device(), "progress": False})


BUFFER_FLAGS = {"--experts": ("experts", int), "--epochs": ("epochs", int), "--net": ("net", str),
                "--net-kwargs": ("net_kwargs", json.loads), "--lr": ("lr", float)}


def buffer_fields(flags: Sequence[str]) -> dict[str, Any]:
    """train_experts keyword arguments from a recipe's 'datafree buffer' flags."""
    from datafree import api

    out = dict(api.BUFFER_DEFAULTS)
    for flag, value in zip(flags[::2], flags[1::2]):
        if flag not in BUFFER_FLAGS:
            raise DatafreeError(f"recipe flag {flag} is not a buffer setting ({', '.join(BUFFER_FLAGS)})")
        name, kind = BUFFER_FLAGS[flag]
        out[name] = kind(value)
    return out


def method_config(job: Job) -> dict[str, Any] | None:
    """The full synthesis or condensation config a job runs with; None for a job without a method."""
    p = job.params
    if job.name == "condense":
        from datafree.condense import method_config as condense_config

        return condense_config(p["method"], ipc=p["ipc"], **p["overrides"]).to_dict()
    if job.name in ("synthesize", "distill") and p.get("method"):
        from datafree.synthesis import preset

        return preset(p["method"], **p["overrides"]).to_dict()
    return None


def check(job: Job) -> None:
    """Build every config the job would run with (a wrong recipe fails before anything runs)."""
    p = job.params
    method_config(job)
    if job.name in ("train-teacher", "distill"):
        train_config(job.name, p["flags"], seed=p["seed"], device=p["device"], method=p.get("method"))
    elif job.name == "buffer":
        buffer_fields(p["flags"])


# ---------------------------------------------------------------- running
def _split(p: dict[str, Any], split: str):
    from datafree.data import load_dataset

    return load_dataset(p["dataset"], split, p["data_root"])


def load_job_teacher(ref: dict[str, Any], dataset: str):
    """A bench teacher (``runner.teacher_ref``: a run directory, or a foreign state_dict with its architecture),
    loaded as the command would: the suite's dataset names its input spec. Returns ``(model, info)``."""
    from datafree.teacher import load_teacher, resolve_spec

    spec, source = resolve_spec(dataset=dataset)  # type: ignore[misc]
    return load_teacher(ref["path"], arch=ref.get("arch"), arch_kwargs=ref.get("kwargs"), spec=spec,
                        spec_source=source)


def _teacher(p: dict[str, Any]):
    """The job's teacher."""
    return load_job_teacher(p["teacher"], p["dataset"])


def execute(job: Job, argv: list[str], *, out: Path, resume: bool, overwrite: bool) -> None:
    """Run ``job`` into ``out`` through :mod:`datafree.api`; ``argv`` is the command it records.

    A full disk is a failed step (one line), as it is for the command, not a crashed suite.
    """
    try:
        _execute(job, ["datafree", *argv], out, resume, overwrite)
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        why = e.strerror or os.strerror(e.errno or errno.EIO)
        raise DatafreeError(f"{why} while writing {e.filename or out}") from None


def _execute(job: Job, argv: list[str], out: Path, resume: bool, overwrite: bool) -> None:
    from datafree import api

    p = job.params
    device = p.get("device") or api.default_device()
    if job.name == "train-teacher":
        config = train_config(job.name, p["flags"], seed=p["seed"], device=p["device"])
        api.train_teacher(out, p["arch"], _split(p, "train"), _split(p, "test"), config, arch_kwargs=p["arch_kwargs"],
                          resume=resume, overwrite=overwrite,
                          extra={"argv": argv, "dataset": p["dataset"], "spec_source": "dataset-files"})
    elif job.name == "synthesize":
        from datafree.synthesis import preset

        teacher, info = _teacher(p)
        part = tuple(p["part"]) if p.get("part") else None  # ``out`` is then the set's rank-K directory
        api.synthesize(p["set"] if part else out, teacher, info, p["method"], p["count"],
                       config=preset(p["method"], **p["overrides"]), seed=p["seed"], device=device, resume=resume,
                       progress=False, part=part)
    elif job.name == "distill":
        _distill(p, argv, out, resume, overwrite)
    elif job.name == "condense":
        from datafree.condense import method_config as condense_config

        teacher, info = _teacher(p) if p["teacher"] else (None, None)
        train = None if p["method"] == "teacher" else _split(p, "train")
        api.condense(out, condense_config(p["method"], ipc=p["ipc"], **p["overrides"]), train=train, teacher=teacher,
                     teacher_info=info, soft_labels=p["soft_labels"], dataset=p["dataset"], seed=p["seed"],
                     device=device, resume=resume, checkpoint_every=p["checkpoint_every"], progress=False)
    elif job.name == "buffer":
        from datafree.condense.mtt import train_experts
        from datafree.data import dataset_spec

        train = _split(p, "train")
        train_experts(out, train, dataset_spec(train), **buffer_fields(p["flags"]), seed=p["seed"], device=device,
                      progress=False, resume=resume)
    else:
        raise DatafreeError(f"unknown bench job {job.name!r}")


def _distill(p: dict[str, Any], argv: list[str], out: Path, resume: bool, overwrite: bool) -> None:
    """A student from real data, a stored set (grown live with a method), or a live method."""
    from datafree import api
    from datafree.data import check_compatible, dataset_spec
    from datafree.data.transfer import read_transfer_source
    from datafree.synthesis import preset

    method = p.get("method")
    config = train_config("distill", p["flags"], seed=p["seed"], device=p["device"], method=method)
    teacher, info = (None, None)
    if p.get("transfer"):
        train, source = read_transfer_source([p["transfer"]])
        if p["teacher"]:
            teacher, info = _teacher(p)
        if method:
            source.update(source="transfer+live", method=method)
    elif method:
        teacher, info = _teacher(p)
        train, source = None, {"source": "live", "method": method, "spec_source": info.spec_source}
    else:
        train = _split(p, "train")
        source = {"source": "real", "spec_source": "dataset-files"}
        teacher, info = _teacher(p)
    test = _split(p, "test")
    if p.get("transfer"):
        check_compatible(train.spec, dataset_spec(test))
    if info is not None:
        source["teacher"] = api.teacher_record(p["teacher"]["path"], info)
    save_transfer = p.get("save_transfer")
    if save_transfer and overwrite and Path(save_transfer).exists():
        shutil.rmtree(save_transfer)  # the batches of the run this one replaces (live runs start again, never resume)
    api.distill(out, p["student"], config, teacher=teacher, teacher_info=info, train=train, method=method,
                synthesis=preset(method, **p["overrides"]) if method else None, test=test,
                student_kwargs=p["student_kwargs"], save_transfer=save_transfer, resume=resume, overwrite=overwrite,
                extra={"argv": argv, "dataset": p["dataset"], **source}, inherit=p.get("inherit", False))
