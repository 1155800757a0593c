"""The library calls: one function per job, each taking models, datasets or paths and a config object.

``import datafree.api as df``, then ``df.train_teacher``, ``df.synthesize``, ``df.distill``,
``df.condense``, ``df.evaluate_set``, ``df.evaluate``, ``df.audit``, ``df.quantize`` and ``df.compress``.
The command line (:mod:`datafree.cli`) parses flags, loads what they name and calls these; the
benchmark (:mod:`datafree.bench`), the scripts in ``benchmarks/`` and those in ``examples/`` call
them directly. Each returns
a small result dataclass; everything it wrote is in its ``out`` directory as well.

    teacher, info = df.load_teacher("teacher.safetensors", arch="lenet5", spec=FASHION_MNIST)
    # or a module you already hold: teacher, info = df.teacher_from_module(my_net, FASHION_MNIST)
    made = df.synthesize("set", teacher, info, "deepinversion", count=2560)
    student = df.distill("student", "lenet5_half", TrainConfig(alpha=0.0), teacher=teacher,
                         teacher_info=info, train=TransferSet(made.out))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from datafree.audit import AuditConfig
from datafree.checkpoint import ModelInfo, load_model
from datafree.condense import EvalProtocol, method_config
from datafree.data import FASHION_MNIST, KNOWN_SPECS, load_dataset
from datafree.data.spec import DataSpec, check_compatible
from datafree.data.transfer import TransferSet, rank_dir
from datafree.errors import DatafreeError
from datafree.synthesis import DCGANConfig, NoisyLayerConfig, PixelConfig, SynthesisConfig, preset
from datafree.teacher import teacher_from_module
from datafree.train import TrainConfig

# what a script needs besides the calls: configs, loaders, the transfer-set reader
__all__ = ["FASHION_MNIST", "KNOWN_SPECS", "AuditConfig", "AuditResult", "DCGANConfig", "DatafreeError", "EvalProtocol",
           "ModelInfo", "NoisyLayerConfig", "PixelConfig", "Evaluation", "RunResult", "SetEvaluation", "SetResult",
           "SynthesisConfig", "TrainConfig",
           "TransferSet", "audit", "compress", "condense", "distill", "evaluate", "evaluate_set", "load_dataset", "load_model",
           "load_teacher", "method_config", "preset", "quantize", "synthesize", "teacher_from_module", "train_teacher"]

# the defaults of each job where they differ from TrainConfig's (the CLI's flags default to these too)
TEACHER_DEFAULTS: dict[str, Any] = {"epochs": 20, "lr": 0.05}
DISTILL_DEFAULTS: dict[str, Any] = {"epochs": 20, "lr": 0.01, "alpha": 0.1}
BUFFER_DEFAULTS: dict[str, Any] = {"experts": 10, "epochs": 50, "net": "convnet", "net_kwargs": {}, "lr": 0.01}
DEFAULT_TEMPERATURE = 4.0  # Hinton's KD temperature: real data, stored sets without a method of their own
LIVE_STEPS_PER_EPOCH = 200  # student steps per epoch on a live stream (it has no length of its own)
LIVE_POOL = 50_000  # images a live pool keeps (stored images stay until this many fresh ones arrived)
NEEDS_INFO = ("pass teacher_info too: df.load_teacher(path, ...) gives it for a checkpoint, "
              "df.teacher_from_module(model, spec) for a module you hold")


@dataclass
class RunResult:
    """A finished training run (``train_teacher``, ``distill``): its directory and its result.json record."""

    out: Path
    record: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record["metrics"]

    @property
    def test_accuracy(self) -> float | None:
        return self.metrics.get("test_accuracy")

    @property
    def model_path(self) -> Path:
        return self.out / "model.safetensors"


@dataclass
class SetResult:
    """A written transfer set (``synthesize``, ``condense``): its directory and manifest."""

    out: Path
    manifest: dict[str, Any]

    @property
    def count(self) -> int:
        return int(self.manifest["count"])


@dataclass
class SetEvaluation:
    """``evaluate_set``: fresh networks trained on a set, tested on the real test split."""

    record: dict[str, Any]

    @property
    def accuracy_mean(self) -> float:
        return self.record["accuracy_mean"]

    @property
    def accuracy_std(self) -> float:
        return self.record["accuracy_std"]


@dataclass
class Evaluation:
    """``evaluate``: top-1 accuracy (%) and mean cross-entropy of a model on a dataset."""

    accuracy: float
    loss: float


@dataclass
class AuditResult:
    """``audit``: the report written to ``out/audit.json``."""

    out: Path
    report: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- loading, and helpers shared by the CLI and the bench
def load_teacher(path: str | Path, *, arch: str | None = None, arch_kwargs: dict[str, Any] | None = None,
                 spec: DataSpec | None = None, trust_pickle: bool = False) -> tuple[nn.Module, ModelInfo]:
    """A teacher checkpoint of any supported format (datafree run, state_dict with ``arch``, TorchScript,
    torch.export) and its :class:`ModelInfo`; ``spec`` says what inputs a checkpoint without a sidecar takes.
    The model comes back in eval mode: it is a teacher, to be read with its BatchNorm running statistics."""
    from datafree.teacher import load_teacher as load

    return load(path, arch=arch, arch_kwargs=arch_kwargs, spec=spec, spec_source="flags", trust_pickle=trust_pickle)


def quantize(model: str | Path, out: str | Path, **kwargs: Any) -> RunResult:
    """int8 post-training quantization of the checkpoint ``model`` into ``out``, calibrated on transfer sets
    (the keyword arguments of :func:`datafree.quantize.quantize`); the record is ``out/result.json``'s."""
    from datafree.quantize import quantize as run

    return RunResult(Path(out), run(model, out, **kwargs))


def compress(out: str | Path, teacher: nn.Module, teacher_info: ModelInfo, teacher_path: str | Path, rank_ratio: float,
             *, overwrite: bool = False) -> RunResult:
    """Tucker-2 compress ``teacher`` (keeping ``rank_ratio`` of each convolution's channels) into
    ``out/model.safetensors``: a student to fine-tune data-free; the record is the model's metrics."""
    from datafree.checkpoint import save_model
    from datafree.models import count_parameters
    from datafree.models.tucker import compress as tucker

    out = Path(out)
    if (out / "model.safetensors").exists() and not overwrite:
        raise DatafreeError(f"{out} already holds a model; pass --overwrite to replace it")
    model, kwargs = tucker(teacher, teacher_info.arch, teacher_info.arch_kwargs, rank_ratio, teacher_info.format)
    before, after = count_parameters(teacher), count_parameters(model)
    info = ModelInfo("tucker", teacher_info.spec, kwargs, metrics={
        "compressed_from": teacher_record(teacher_path, teacher_info),
        "rank_ratio": rank_ratio, "parameters": after, "compression": before / after})
    save_model(out / "model.safetensors", model, info)
    return RunResult(out, {"model": {"arch": "tucker", "arch_kwargs": kwargs, "parameters": after},
                          "teacher_parameters": before, "metrics": info.metrics})


def default_device() -> str:
    """``cuda`` where a GPU is visible, else ``cpu``: every job's default device."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def kd_temperature(method: str | None) -> float:
    """The KD temperature a student distils with: the method's own for a live method, else 4."""
    from datafree.synthesis import KD_TEMPERATURE

    return KD_TEMPERATURE.get(method, DEFAULT_TEMPERATURE) if method else DEFAULT_TEMPERATURE


def teacher_record(path: str | Path, info: ModelInfo) -> dict[str, Any]:
    """How a result names the teacher it came from."""
    return {"path": str(path), **info.record(), "spec_source": info.spec_source}


# ---------------------------------------------------------------- training
def train_teacher(out: str | Path, arch: str, train: Dataset, test: Dataset | None, config: TrainConfig, *,
                  arch_kwargs: dict[str, Any] | None = None, resume: bool = False, overwrite: bool = False,
                  extra: dict[str, Any] | None = None) -> RunResult:
    """Train ``arch`` (a zoo name or ``package.module:callable``) with cross-entropy on real data."""
    from datafree.data import dataset_spec
    from datafree.models import build_model
    from datafree.run import train_run

    arch_kwargs = dict(arch_kwargs or {})
    spec = dataset_spec(train)
    model = build_model(arch, spec, seed=config.seed, **arch_kwargs)
    extra = {"dataset": spec.name, "spec_source": "dataset-files", **(extra or {})}
    record = train_run(out, model, ModelInfo(arch, spec, arch_kwargs), config, train, test, resume=resume,
                       overwrite=overwrite, extra=extra)
    return RunResult(Path(out), record)


def distill(out: str | Path, student: str | nn.Module, config: TrainConfig, *, teacher: nn.Module | None = None,
            teacher_info: ModelInfo | None = None, train: Dataset | None = None, method: str | None = None,
            synthesis: Any = None, test: Dataset | None = None, student_kwargs: dict[str, Any] | None = None,
            student_info: ModelInfo | None = None, save_transfer: str | Path | None = None, resume: bool = False,
            overwrite: bool = False, extra: dict[str, Any] | None = None, inherit: bool = False) -> RunResult:
    """Distill ``teacher`` into ``student`` from one of three sources.

    - ``train`` alone: real data or a stored transfer set (its stored teacher logits stand in for
      a missing ``teacher``);
    - ``method`` (a synthesis preset, or ``synthesis``, its config): a live stream synthesized
      against the student as it learns (``config.steps_per_epoch`` steps an epoch);
    - both: the live pool starts from the stored set ``train`` and grows with batches made against
      the student (ADI's two stages).

    ``student`` is an architecture name (built with ``config.seed``) or a model with ``student_info``.
    ``inherit`` starts it from a consistent selection of the teacher's weights
    (:func:`datafree.models.inherit_weights`), not from random ones: with ``config.keep_channels="important"`` the
    channels a data-free score ranks highest (:func:`datafree.models.rank_channels`; the teacher the run uses is then
    that reordered copy, the same function), and with ``config.fade`` it trains at the teacher's
    width while the channels it lacks fade out, and ends as that selection (:class:`datafree.models.FadingWidth`).
    ``save_transfer`` keeps every live batch as a transfer set.
    """
    from datafree.models import build_model
    from datafree.run import train_run

    if method is None and synthesis is not None:
        raise DatafreeError("a synthesis config needs a method name (the label its transfer set records)")
    if method is not None and (teacher is None or teacher_info is None):
        raise DatafreeError(f"a live method synthesizes against the teacher: pass teacher; {NEEDS_INFO}")
    if train is None and method is None:
        raise DatafreeError("distill needs a source: train (real data or a transfer set), a live method, or both")
    spec = teacher_info.spec if train is None else _spec_of(train)
    if teacher_info is not None:
        check_compatible(teacher_info.spec, spec)
    if isinstance(student, str):
        info = ModelInfo(student, spec, dict(student_kwargs or {}))
        student = build_model(info.arch, spec, seed=config.seed, **info.arch_kwargs)
    elif student_info is None:
        raise DatafreeError("a student model needs its student_info, so that the saved student can be rebuilt: "
                            "student_info=df.ModelInfo('package.module:Class', spec)")
    else:
        check_compatible(student_info.spec, spec, "student")
        info = ModelInfo(student_info.arch, spec, student_info.arch_kwargs)
    extra = dict(extra or {})
    if teacher_info is not None:  # a result names the teacher it came from (the CLI's record adds its path)
        extra.setdefault("teacher", {**teacher_info.record(), "spec_source": teacher_info.spec_source})
    final = None
    if config.fade > 0 and not inherit:
        raise DatafreeError("a fade (--fade) starts from the teacher's own width: it needs inherit (--inherit)")
    if config.keep_channels != "spread" and not inherit:
        raise DatafreeError("--keep-channels chooses the teacher channels weight selection keeps: it needs --inherit")
    if inherit:
        from datafree.models import FadingWidth, inherit_weights, rank_channels

        if teacher is None:
            raise DatafreeError("inherit (--inherit) starts the student from the teacher's weights: give the teacher (--teacher)")
        if config.keep_channels != "spread":  # the same function, its best channels where selection looks
            probe = torch.randn(8, *spec.shape, generator=torch.Generator().manual_seed(0))  # checks the function
            view = "student" if config.keep_channels == "important-student" else "teacher"
            teacher = rank_channels(teacher, student, probe.to(next(teacher.parameters()).device), view)
        extra["student_inherit"] = asdict(inherit_weights(student, teacher))
        if config.fade > 0:  # trained at the teacher's width; the run ends with the student it fades into
            student = FadingWidth(teacher, student, config.fade)
            extra["student_fade"] = {"fade": config.fade, "trained_parameters": sum(p.numel() for p in student.parameters())}
            final = FadingWidth.student
    if method is None:
        record = train_run(out, student, info, config, train, test, teacher=teacher, resume=resume,
                           overwrite=overwrite, extra=extra, final=final)
        return RunResult(Path(out), record)
    return _distill_live(out, student, info, config, teacher, teacher_info, train, method, synthesis, test,
                         save_transfer, resume, overwrite, extra, final)


def _spec_of(data: Dataset) -> DataSpec:
    from datafree.data import dataset_spec

    return dataset_spec(data)


def _distill_live(out: str | Path, student: nn.Module, info: ModelInfo, config: TrainConfig, teacher: nn.Module,
                  teacher_info: ModelInfo, stored: Dataset | None, method: str, synthesis: Any, test: Dataset | None,
                  save_transfer: str | Path | None, resume: bool, overwrite: bool,
                  extra: dict[str, Any], final: Callable[[nn.Module], nn.Module] | None = None) -> RunResult:
    from datafree.distributed import world_size
    from datafree.run import train_run
    from datafree.synthesis import preset
    from datafree.synthesis.run import finish_live_transfer, live_stream
    from datafree.teacher import check_synthesis

    synth_config = synthesis if synthesis is not None else preset(method)
    check_synthesis(teacher, teacher_info.spec, synth_config, config.device)
    # the stored images stay in the pool until LIVE_POOL fresh ones have arrived
    pool_size = LIVE_POOL + (len(stored) if stored is not None else 0)  # type: ignore[arg-type]
    stream = live_stream(student, teacher, teacher_info, method, synth_config, batch_size=config.batch_size,
                         seed=config.seed, device=config.device, transfer_dir=save_transfer, resume=resume,
                         pool_size=pool_size)
    if stored is not None:
        try:
            stream.seed_pool(stored.get_batch(torch.arange(len(stored)))[0])  # type: ignore[attr-defined,arg-type]
        except BaseException:
            stream.close()
            raise
    extra["synthesis_config"] = synth_config.to_dict()

    def made() -> dict[str, Any]:  # known after training: how many images the generator made (all processes)
        return {"synthesis_calls": stream.synth.calls,
                "synthetic_images": stream.synth.calls * synth_config.batch_size * world_size()}

    try:  # the stream's state (generator, pool, RNG, transfer shards) is saved inside state.pt
        record = train_run(out, student, info, config, stream, test, teacher=teacher, resume=resume,
                           overwrite=overwrite, extra=extra, source_state=stream, late_extra=made, final=final)
        if save_transfer:
            finish_live_transfer(stream, save_transfer, config.seed)
    finally:
        stream.close()
    return RunResult(Path(out), record)


# ---------------------------------------------------------------- synthetic and condensed sets
def synthesize(out: str | Path, teacher: nn.Module, teacher_info: ModelInfo, method: str, count: int, *,
               config: Any = None, seed: int = 0, device: str = "cpu", resume: bool = False, preview_every: int = 10,
               progress: bool = True, terms: dict[str, Any] | None = None,
               part: tuple[int, int] | None = None) -> SetResult:
    """Write a transfer set of ``count`` images synthesized from ``teacher`` alone (no data is read).

    ``config`` is a :class:`~datafree.synthesis.SynthesisConfig` (default: the preset ``method``);
    ``method`` is also the name the set records. ``terms`` adds loss terms of your own, by name:
    functions ``(images, teacher_logits, target_classes) -> scalar`` (see examples/custom_loss_term.py).
    ``part=(K, N)`` makes only part K of N (``out/rank-K``, what rank K of ``torchrun --nproc_per_node N``
    makes), so N independent jobs can share one set; the part that completes it writes its manifest, and
    the result is then the whole set's (else the part's).
    """
    from datafree.synthesis import preset
    from datafree.synthesis.run import synthesize_set
    from datafree.teacher import check_synthesis

    if not isinstance(teacher_info, ModelInfo):
        raise DatafreeError(f"synthesize records which teacher made the set: {NEEDS_INFO}")
    config = config if config is not None else preset(method)
    check_synthesis(teacher, teacher_info.spec, config, device)
    manifest = synthesize_set(out, teacher, teacher_info, method, config, count, seed=seed, device=device,
                              resume=resume, preview_every=preview_every, progress=progress, terms=terms, part=part)
    complete = part is None or "world_size" in manifest
    return SetResult(Path(out) if complete else Path(out) / rank_dir(part[0]), manifest)


def condense(out: str | Path, config: Any, *, train: Dataset | None = None, teacher: nn.Module | None = None,
             teacher_info: ModelInfo | None = None, soft_labels: bool = False, dataset: str = "", seed: int = 0,
             device: str = "cpu", resume: bool = False, checkpoint_every: int = 50,
             progress: bool = True) -> SetResult:
    """Condense ``train`` into ``config.ipc`` images per class (``config``: :func:`datafree.condense.method_config`).

    The ``teacher`` method reads no data: it recovers images from the teacher's BatchNorm statistics
    and always stores the teacher's logits. Other methods store them with ``soft_labels``.
    """
    from datafree.condense import METHODS, ClassPool, condense_set

    reads_data = METHODS[config.method].reads_data
    if not reads_data:  # teacher-only: no real data is read at all
        if teacher is None:
            raise DatafreeError("teacher-only condensation needs --teacher")
        if teacher_info is None:
            raise DatafreeError(f"teacher-only condensation records which teacher made the set: {NEEDS_INFO}")
        spec, pool, spec_source = teacher_info.spec, None, teacher_info.spec_source
        dataset = dataset or spec.name
    else:
        if train is None:
            raise DatafreeError(f"{config.method} condenses real data: pass the training split")
        spec, spec_source = _spec_of(train), "dataset-files"
        dataset = dataset or spec.name
        pool = ClassPool.from_dataset(train, spec)
        if teacher_info is not None:
            check_compatible(teacher_info.spec, spec)
    manifest = condense_set(out, config, spec, pool=pool, teacher=teacher, teacher_info=teacher_info,
                            soft_labels=soft_labels or not reads_data, dataset=dataset, seed=seed,
                            device=device, resume=resume, checkpoint_every=checkpoint_every, progress=progress,
                            spec_source=spec_source)
    return SetResult(Path(out), manifest)


def evaluate_set(train: Any, test: Dataset, protocol: Any, *, teacher: nn.Module | None = None,
                 device: str = "cpu", progress: bool = True, out: str | Path | None = None, resume: bool = False,
                 extra: dict[str, Any] | None = None, crop_labels: Any = None, fair_data: Dataset | None = None,
                 real_accuracy: float | None = None, relabel_teacher: nn.Module | None = None) -> SetEvaluation:
    """The condensation protocol: train ``protocol.models`` fresh networks on the set ``train``, test each.

    With ``out`` the result JSON is rewritten after every model, and ``resume`` keeps the models an
    earlier evaluation of the same set and protocol already finished there. ``crop_labels`` (a
    :class:`datafree.condense.relabel.CropLabels`) feeds a ``crop_labels`` protocol its stored crops.
    With ``fair_data`` (the real training split) the record also gets DD-Ranking's metrics under
    ``"fair"``: a random real subset of the same IPC drawn from it, under the same protocol (IOR),
    and with ``real_accuracy`` (the real set's hard-label accuracy) HLR and DDRS. Under crop labels
    ``relabel_teacher`` relabels that subset with the set's own recipe.
    """
    from datafree.condense import evaluate_set as run_protocol
    from datafree.io import write_json

    if (train.manifest.get("protocol") or {}).get("zca"):
        raise DatafreeError(f"{train.dir} is stored in ZCA-whitened space, which evaluate-set does not apply; "
                            "evaluate it with the tool that made it")
    check_compatible(train.spec, _spec_of(test))
    shards = [s.get("sha256") for s in train.manifest.get("shards", [])]
    done, earlier = _earlier_evaluation(out, protocol, shards) if resume else ([], {})

    def finish(result: dict[str, Any]) -> dict[str, Any]:
        result.update(set=str(train.dir), set_shards=shards, method=train.manifest.get("method"),
                      ipc=train.manifest.get("ipc"), spec=train.spec.to_dict(), spec_source="transfer-set",
                      **(extra or {}),
                      peak_memory_mb=max(result["peak_memory_mb"], earlier.get("peak_memory_mb", 0.0)))
        if out:  # after every model too: a killed evaluation keeps its finished models (resume)
            write_json(out, result)
        return result

    record = finish(run_protocol(train, train.spec, test, protocol, teacher=teacher, device=device,
                                 progress=progress, done=done, on_model=finish, crop_labels=crop_labels))
    if fair_data is not None:
        record["fair"] = _fair_metrics(train, test, protocol, record, fair_data, real_accuracy=real_accuracy,
                                       teacher=teacher, crop_labels=crop_labels, relabel_teacher=relabel_teacher,
                                       device=device, progress=progress)
        if out:
            write_json(out, record)
    return SetEvaluation(record)


def _fair_metrics(train: Any, test: Dataset, protocol: Any, record: dict[str, Any], fair_data: Dataset, *,
                  real_accuracy: float | None, teacher: nn.Module | None, crop_labels: Any,
                  relabel_teacher: nn.Module | None, device: str, progress: bool) -> dict[str, Any]:
    """HLR, IOR and DDRS of ``train`` against a random real subset of ``fair_data`` (same IPC, same protocol)."""
    from datafree.condense import ClassPool
    from datafree.condense.evaluate import evaluate_fair
    from datafree.condense.relabel import control_relabeller

    pool = ClassPool.from_dataset(fair_data, train.spec)
    ipc = int(train.manifest.get("ipc") or len(train) // train.spec.num_classes)
    relabel_control = None
    if crop_labels is not None and relabel_teacher is not None:
        relabel_control = control_relabeller(train.manifest, crop_labels, relabel_teacher, seed=protocol.seed,
                                             device=device)
    return evaluate_fair(train, train.spec, test, protocol, record, pool=pool, ipc=ipc, real_hard=real_accuracy,
                         teacher=teacher, device=device, progress=progress, relabel_control=relabel_control)


def _earlier_evaluation(out: str | Path | None, protocol: Any,
                        shards: list[str]) -> tuple[list[tuple[float, float]], dict[str, Any]]:
    """(accuracy, seconds) of the models an earlier evaluation in ``out`` holds for this set and protocol."""
    if not out:
        raise DatafreeError("--resume needs --out (the evaluation to extend)")
    path = Path(out)
    if not path.is_file():
        return [], {}
    try:
        earlier = json.loads(path.read_text())
        # a field added to the protocol since (e.g. bf16) is absent from older records: its default is what they ran
        defaults = {f.name: f.default for f in fields(protocol) if f.default is not MISSING}
        same = ({**defaults, **earlier["protocol"], "models": protocol.models} == protocol.to_dict()
                and earlier.get("set_shards") == shards)
        done = list(zip(earlier["accuracies"], earlier["train_times_s"], strict=True))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatafreeError(f"{path} is not an evaluation this command can extend ({e}); remove it or drop --resume") from e
    if not same:
        raise DatafreeError(f"{path} evaluates another set or protocol; remove it or drop --resume")
    return done[: protocol.models], earlier


# ---------------------------------------------------------------- checking a model, auditing a set
def evaluate(model: nn.Module, data: Dataset, *, batch_size: int = 1000, device: str = "cpu") -> Evaluation:
    """Top-1 accuracy (%) and cross-entropy of ``model`` on ``data`` (int8 models: :func:`datafree.quantize.evaluate_int8`)."""
    from datafree.train import evaluate as run_evaluation

    metrics = run_evaluation(model.to(device), data, batch_size, device)
    return Evaluation(accuracy=metrics["accuracy"], loss=metrics["loss"])


def audit(out: str | Path, transfer: Any, train: Dataset, test: Dataset, *, teacher: nn.Module | None = None,
          teacher_info: ModelInfo | None = None, students: Sequence[tuple[str, nn.Module, ModelInfo]] = (),
          reference: tuple[str, nn.Module, ModelInfo] | None = None, config: Any = None, overwrite: bool = False,
          protocol: dict[str, Any] | None = None) -> AuditResult:
    """Privacy audit of a transfer set: how close its images come to the training images (against real
    test images), and, for each ``(label, model, info)`` of ``students``, membership-inference AUCs
    (calibrated by ``reference``, a model trained without the members, when given), each with a 95% bootstrap
    interval, and every student after the first with its AUC minus the first's on the same resamples. Writes
    ``out/audit.json`` and ``out/closest_pairs.png``; ``protocol`` adds fields to the report's protocol."""
    from datafree.audit import AuditConfig, prepare_output, run_audit

    config = config if config is not None else AuditConfig()  # AuditConfig checks its own values
    if reference is not None and not students:
        raise DatafreeError("--reference-student calibrates the attack on a --student; give at least one --student")
    protocol = dict(protocol or {})
    spec = _spec_of(train)
    dataset = protocol.get("dataset") or spec.name

    def fits(label: str, model_spec: DataSpec) -> None:
        try:
            check_compatible(model_spec, spec)
        except DatafreeError as e:
            text = str(e)
            text = "it" + text[len("teacher"):] if text.startswith("teacher ") else text
            raise DatafreeError(f"{label} does not fit the {dataset} data: {text}") from None

    fits(f"transfer set {getattr(transfer, 'directory', '')}", transfer.spec)
    if teacher_info is not None:
        fits(f"teacher {protocol.get('teacher') or ''}".strip(), teacher_info.spec)
    for label, _, info in [*students, *([reference] if reference else [])]:
        fits(f"student {label}", info.spec)
    directory = prepare_output(out, overwrite)
    report = run_audit(transfer, transfer.manifest, train, test, spec, directory, teacher=teacher,
                       students=[(label, model) for label, model, _ in students],
                       reference=reference[1] if reference else None, config=config,
                       protocol={"dataset": dataset, **protocol, "spec": spec.to_dict(),
                                 "spec_source": "dataset-files"})
    return AuditResult(directory, report)
