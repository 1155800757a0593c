"""Run a benchmark step through the library (:mod:`datafree.api`), given the command it records.

The scripts in ``benchmarks/`` record every step as the ``datafree ...`` command a reader can copy
(in their results, in docs/results.md, and in the "reuse a finished run" check), so they plan steps
as argument lists. :func:`call` makes the library call that command stands for, without the command
line: training flags are :class:`~datafree.train.TrainConfig` fields read by the bench's
:func:`~datafree.bench.jobs.train_config` (the command's defaults, then the flags), the rest are
the few options the scripts use, read below. ``tests/test_benchmark_calls.py`` checks, for each
kind of step the scripts plan, that the CLI makes the same library call with the same arguments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from datafree.errors import DatafreeError

# options without a value; the options given more than once collect a list
# switches that set a TrainConfig field to true
TRAINING_SWITCHES = {"--standardize-logits", "--bf16", "--balance-classes", "--teacher-flip"}
SWITCHES = {"--resume", "--overwrite", "--no-progress", "--calibration-real", "--no-calibration", "--soft-labels",
            "--no-test", "--allow-float", "--no-dsa", "--crop-labels", "--live-teacher", "--fair", "--json",
            "--inherit", *TRAINING_SWITCHES}
REPEATED = {"--transfer", "--student", "--set", "--calibration", "--freeze"}
# the options of each command that are not training flags (TrainConfig fields)
NOT_TRAINING = {"--arch", "--arch-kwargs", "--teacher", "--student", "--student-kwargs", "--student-init", "--inherit",
                "--transfer", "--transfer-count", "--method", "--set", "--out", "--dataset", "--data-root", "--device", "--seed"}
DEFAULT_DATASET = "fashion-mnist"
# where and how a step runs, not what it computes: a call may leave them unread (teacher-only condensation reads no data)
CONTEXT = ("--data-root", "--device", "--no-progress")
# the flags each call can apply besides CONTEXT (and, for the training commands, training flags), checked before the
# call starts, so a recorded command it would not make fails in a second, not after an hour of training
READS: dict[str, set[str]] = {
    "train-teacher": {"--out", "--arch", "--arch-kwargs", "--seed", "--resume", "--overwrite", "--dataset"},
    "distill": {"--method", "--transfer", "--transfer-count", "--teacher", "--student", "--student-init",
                "--student-kwargs", "--out", "--set", "--resume", "--overwrite", "--inherit", "--seed", "--dataset"},
    "synthesize": {"--teacher", "--method", "--count", "--set", "--seed", "--resume", "--part", "--out", "--dataset"},
    "condense": {"--method", "--ipc", "--set", "--teacher", "--soft-labels", "--seed", "--resume", "--checkpoint-every",
                 "--out", "--dataset"},
    "evaluate-set": {"--teacher", "--crop-labels", "--protocol", "--arch", "--arch-kwargs", "--models", "--augment",
                     "--epochs", "--temperature", "--batch-size", "--seed", "--bf16", "--live-teacher", "--out",
                     "--resume", "--fair", "--real-accuracy", "--dataset"},
    "buffer": {"--experts", "--epochs", "--net", "--net-kwargs", "--lr", "--no-dsa", "--seed", "--resume", "--out",
               "--dataset"},
    "compress": {"--teacher", "--rank-ratio", "--out", "--overwrite", "--dataset"},
    "audit": {"--teacher", "--student", "--transfer", "--out", "--seed", "--mia-count", "--overwrite", "--dataset"},
    "quantize": {"--model", "--out", "--qat-epochs", "--qat-lr", "--qat-batch-size", "--batch-size", "--allow-float",
                 "--calibration", "--calibration-count", "--calibration-method", "--calibration-real", "--no-calibration",
                 "--set", "--no-test", "--seed", "--overwrite", "--dataset"},
}
TRAINING_COMMANDS = {"train-teacher", "distill"}


def parse(argv: Sequence[str]) -> tuple[str, list[str], dict[str, Any]]:
    """``(command, positionals, options)`` of a recorded command (without ``datafree``)."""
    command, rest = argv[0], list(argv[1:])
    positional: list[str] = []
    options: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        if not token.startswith("--"):
            positional.append(token)
            i += 1
        elif token in SWITCHES:
            options[token] = True
            i += 1
        elif i + 1 == len(rest):
            raise DatafreeError(f"{token} needs a value: datafree {' '.join(argv)}")
        else:
            value = rest[i + 1]
            if token in REPEATED:
                options.setdefault(token, []).append(value)
            else:
                options[token] = value
            i += 2
    return command, positional, options


def _json(options: dict[str, Any], flag: str, default: Any = None) -> Any:
    return json.loads(options[flag]) if flag in options else default


def _settings(options: dict[str, Any]) -> dict[str, Any]:
    from datafree.bench.jobs import key_value

    return dict(key_value(text) for text in options.get("--set", []))


def _is_training_flag(flag: str) -> bool:
    return flag not in NOT_TRAINING and (flag not in SWITCHES or flag in TRAINING_SWITCHES)


def _training_flags(options: dict[str, Any]) -> list[str]:
    """The training flags of a command, as flag/value pairs (``train_fields`` refuses one it does not know);
    they count as read, a switch that is not a training flag does not."""
    flags = [flag for flag in dict.keys(options) if _is_training_flag(flag)]
    getattr(options, "read", set()).update(flags)
    return [a for flag in flags for a in (flag, "true" if flag in TRAINING_SWITCHES else dict.__getitem__(options, flag))]


def _device(options: dict[str, Any]) -> str:
    from datafree.api import default_device

    return options.get("--device") or default_device()


def _dataset(options: dict[str, Any], spec: Any = None) -> str:
    """--dataset, else the dataset ``spec`` names, else the default (as the command decides)."""
    from datafree.data import DATASETS

    if options.get("--dataset"):
        return options["--dataset"]
    return spec.name if spec is not None and spec.name in DATASETS else DEFAULT_DATASET


def _split(options: dict[str, Any], split: str, spec: Any = None):
    from datafree.data import load_dataset

    return load_dataset(_dataset(options, spec), split, options.get("--data-root"))


def _teacher(options: dict[str, Any], data_spec: Any = None, data_source: str = "dataset-files"):
    """--teacher; its input spec from --dataset, else from the data the step reads."""
    from datafree.teacher import load_teacher, resolve_spec

    given = resolve_spec(dataset=options.get("--dataset"))
    spec, source = given if given is not None else (data_spec, data_source)
    return load_teacher(options["--teacher"], spec=spec, spec_source=source)


class _Read(dict):
    """Options that remember which of them a call looked at (a flag nobody reads is a recorded command
    that the library call does not make)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)



def call(argv: Sequence[str]) -> None:
    """Make the library call of the recorded command ``argv`` (without ``datafree``).

    A flag the call does not read fails it: the results would otherwise record a command that was not run. Flags
    outside the call's :data:`READS` fail before it starts; one it lists but did not read, once it has run.
    """
    command, positional, parsed = parse(argv)
    run = CALLS.get(command)
    if run is None:
        raise DatafreeError(f"no library call for 'datafree {command}' in benchmarks.calls")
    training = command in TRAINING_COMMANDS
    unknown = [flag for flag in parsed if flag not in READS[command] and flag not in CONTEXT
               and not (training and _is_training_flag(flag))]
    if unknown:
        raise DatafreeError(f"benchmarks.calls does not apply {', '.join(sorted(unknown))} (refused before running) "
                            f"of: datafree {' '.join(argv)}")
    options = _Read(parsed)
    options.read.update(CONTEXT)
    run(["datafree", *argv], positional, options)
    unread = sorted(set(options) - options.read)
    if unread:
        raise DatafreeError(f"benchmarks.calls does not apply {', '.join(unread)} (listed, but the call did not read "
                            f"it) of: datafree {' '.join(argv)}")


def _train_teacher(argv: list[str], _: list[str], o: dict[str, Any]) -> None:
    from datafree import api
    from datafree.bench.jobs import train_config

    config = train_config("train-teacher", _training_flags(o), seed=int(o.get("--seed", 0)), device=_device(o))
    api.train_teacher(o["--out"], o["--arch"], _split(o, "train"), _split(o, "test"), config,
                      arch_kwargs=_json(o, "--arch-kwargs", {}), resume="--resume" in o, overwrite="--overwrite" in o,
                      extra={"argv": argv, "dataset": _dataset(o), "spec_source": "dataset-files"})


def _distill(argv: list[str], _: list[str], o: dict[str, Any]) -> None:
    """A student from real data, stored sets (grown live with --method), or a live method; from --student-init."""
    from datafree import api
    from datafree.bench.jobs import train_config
    from datafree.checkpoint import load_model
    from datafree.data import check_compatible, dataset_spec
    from datafree.data.transfer import read_transfer_source
    from datafree.synthesis import preset

    method = o.get("--method")
    teacher, info = None, None
    if o.get("--transfer"):
        count = o.get("--transfer-count")
        train, source = read_transfer_source(o["--transfer"], None if count is None else int(count))
        spec = train.spec
        if "--teacher" in o:
            teacher, info = _teacher(o, spec, "transfer-set")
            check_compatible(info.spec, spec)
        if method:
            source.update(source="transfer+live", method=method)
    elif method:
        teacher, info = _teacher(o)
        spec, train, source = info.spec, None, {"source": "live", "method": method, "spec_source": info.spec_source}
    else:
        train = _split(o, "train")
        spec, source = dataset_spec(train), {"source": "real", "spec_source": "dataset-files"}
        teacher, info = _teacher(o, spec)
        check_compatible(info.spec, spec)
    test = _split(o, "test", spec)
    check_compatible(spec, dataset_spec(test))
    student, student_info = o.get("--student"), None
    student = student[0] if student else None
    if "--student-init" in o:
        student, student_info = load_model(o["--student-init"])
        check_compatible(student_info.spec, spec)
        source["student_init"] = {"path": o["--student-init"], "sha256": student_info.sha256}
    if info is not None:
        source["teacher"] = api.teacher_record(o["--teacher"], info)
    config = train_config("distill", _training_flags(o), seed=int(o.get("--seed", 0)), device=_device(o), method=method)
    api.distill(o["--out"], student, config, teacher=teacher, teacher_info=info, train=train, method=method,
                synthesis=preset(method, **_settings(o)) if method else None, test=test,
                student_kwargs=_json(o, "--student-kwargs", {}), student_info=student_info, resume="--resume" in o,
                overwrite="--overwrite" in o, extra={"argv": argv, "dataset": _dataset(o, spec), **source},
                inherit="--inherit" in o)


def _synthesize(_: list[str], __: list[str], o: dict[str, Any]) -> None:
    from datafree import api
    from datafree.synthesis import preset
    from datafree.synthesis.run import parse_part

    teacher, info = _teacher(o)
    api.synthesize(o["--out"], teacher, info, o["--method"], int(o["--count"]), config=preset(o["--method"], **_settings(o)),
                   seed=int(o.get("--seed", 0)), device=_device(o), resume="--resume" in o, progress="--no-progress" not in o,
                   part=parse_part(o["--part"]) if "--part" in o else None)


def _condense(_: list[str], __: list[str], o: dict[str, Any]) -> None:
    from datafree import api
    from datafree.condense import METHODS, method_config
    from datafree.data import dataset_spec

    config = method_config(o["--method"], ipc=int(o.get("--ipc", 10)), **_settings(o))
    teacher, info, train = None, None, None
    if not METHODS[o["--method"]].reads_data:  # teacher-only: no real data is read at all
        teacher, info = _teacher(o)
        dataset = o.get("--dataset") or info.spec.name
    else:
        train, dataset = _split(o, "train"), _dataset(o)
        if "--teacher" in o:
            teacher, info = _teacher(o, dataset_spec(train))
    api.condense(o["--out"], config, train=train, teacher=teacher, teacher_info=info, soft_labels="--soft-labels" in o,
                 dataset=dataset, seed=int(o.get("--seed", 0)), device=_device(o), resume="--resume" in o,
                 checkpoint_every=int(o.get("--checkpoint-every", 50)), progress="--no-progress" not in o)


def _evaluate_set(argv: list[str], positional: list[str], o: dict[str, Any]) -> None:
    from datafree import api
    from datafree.condense import EvalProtocol
    from datafree.condense.relabel import load_crop_labels
    from datafree.data import check_compatible
    from datafree.data.transfer import TransferSet

    train = TransferSet(positional[0])
    test = _split(o, "test", train.spec)
    teacher, record = None, None
    if "--teacher" in o:
        teacher, info = _teacher(o, train.spec, "transfer-set")
        check_compatible(info.spec, train.spec)
        record = api.teacher_record(o["--teacher"], info)
    crop_labels = load_crop_labels(positional[0]) if "--crop-labels" in o else None
    protocol = EvalProtocol(name=o.get("--protocol", "dc"), arch=o.get("--arch", "convnet"),
                            arch_kwargs=_json(o, "--arch-kwargs", {}), models=int(o.get("--models", 5)),
                            augment="none" if crop_labels is not None else o.get("--augment", "dsa"),
                            epochs=int(o.get("--epochs", 0)) or (crop_labels.epochs if crop_labels is not None else 0),
                            temperature=float(o.get("--temperature", 4.0)), batch_size=int(o.get("--batch-size", 256)),
                            seed=int(o.get("--seed", 0)), crop_labels=crop_labels is not None, bf16="--bf16" in o)
    live = None if crop_labels is not None and "--live-teacher" not in o else teacher
    real = o.get("--real-accuracy")
    api.evaluate_set(train, test, protocol, teacher=live, device=_device(o), progress="--no-progress" not in o,
                     out=o.get("--out"), resume="--resume" in o, crop_labels=crop_labels,
                     fair_data=_split(o, "train", train.spec) if "--fair" in o else None,
                     real_accuracy=float(real) if real is not None else None,
                     relabel_teacher=teacher if crop_labels is not None else None,
                     extra={"dataset": _dataset(o, train.spec), "argv": argv, "teacher": record})


def _buffer(_: list[str], __: list[str], o: dict[str, Any]) -> None:
    from datafree.bench.jobs import buffer_fields
    from datafree.condense.mtt import train_experts
    from datafree.data import dataset_spec

    train = _split(o, "train")
    flags = [a for flag in ("--experts", "--epochs", "--net", "--net-kwargs", "--lr") if flag in o for a in (flag, o[flag])]
    train_experts(o["--out"], train, dataset_spec(train), **buffer_fields(flags), dsa="--no-dsa" not in o,
                  seed=int(o.get("--seed", 0)), device=_device(o), progress="--no-progress" not in o, resume="--resume" in o)


def _compress(_: list[str], __: list[str], o: dict[str, Any]) -> None:
    from datafree import api

    teacher, info = _teacher(o)
    api.compress(o["--out"], teacher, info, o["--teacher"], float(o["--rank-ratio"]), overwrite="--overwrite" in o)


def _audit(argv: list[str], _: list[str], o: dict[str, Any]) -> None:
    from datafree import api
    from datafree.audit import AuditConfig
    from datafree.checkpoint import load_model
    from datafree.data import dataset_spec
    from datafree.data.transfer import TransferSet

    train, test = _split(o, "train"), _split(o, "test")
    teacher, info, record = None, None, None
    if "--teacher" in o:
        teacher, info = _teacher(o, dataset_spec(train))
        record = api.teacher_record(o["--teacher"], info)
    students = [(path, *load_model(path)) for path in o.get("--student", [])]
    protocol = {"dataset": _dataset(o), "argv": argv, "transfer": o["--transfer"][0], "teacher": o.get("--teacher"),
                "teacher_model": record, "students": list(o.get("--student", [])), "reference_student": None}
    api.audit(o["--out"], TransferSet(o["--transfer"][0]), train, test, teacher=teacher, teacher_info=info,
              students=students, config=AuditConfig(seed=int(o.get("--seed", 0)), device=_device(o),
                                                    mia_count=int(o.get("--mia-count", AuditConfig.mia_count))),
              overwrite="--overwrite" in o, protocol=protocol)


CALIBRATION_SOURCES = ("--calibration", "--calibration-method", "--calibration-real", "--no-calibration")


def _quantize(argv: list[str], _: list[str], o: dict[str, Any]) -> None:
    from datafree import api
    from datafree.quantize import QATConfig, QuantizeConfig

    qat = QATConfig(epochs=int(o.get("--qat-epochs", 0)), lr=float(o.get("--qat-lr", 1e-3)),
                    batch_size=int(o.get("--qat-batch-size", 64)))
    config = QuantizeConfig(batch_size=int(o.get("--batch-size", 64)), allow_float="--allow-float" in o, qat=qat)
    sources = [flag for flag in CALIBRATION_SOURCES if flag in o]
    if len(sources) != 1:  # the command's required choice; --no-calibration: dynamic int8, no images
        raise DatafreeError(f"quantize takes one of {', '.join(CALIBRATION_SOURCES)}: datafree {' '.join(argv)}")
    count = o.get("--calibration-count")
    api.quantize(o["--model"], o["--out"], calibration=o.get("--calibration", ()),
                 calibration_method=o.get("--calibration-method"), calibration_real="--calibration-real" in o,
                 calibration_count=int(count) if count is not None else None, synthesis_overrides=_settings(o),
                 config=config, dataset=o.get("--dataset"), data_root=o.get("--data-root"), test="--no-test" not in o,
                 seed=int(o.get("--seed", 0)), device=_device(o), overwrite="--overwrite" in o,
                 progress="--no-progress" not in o, argv=argv)


CALLS = {"train-teacher": _train_teacher, "distill": _distill, "synthesize": _synthesize, "condense": _condense,
         "evaluate-set": _evaluate_set, "buffer": _buffer, "compress": _compress, "audit": _audit, "quantize": _quantize}
