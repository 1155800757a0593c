"""The ``datafree`` command line: one function per command, parsers kept apart from the work.

User errors end with a one-line ``datafree: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from datafree.errors import DatafreeError
from datafree.io import DISK_ERRNOS

EXIT_USER_ERROR = 2


# ---------------------------------------------------------------- argument helpers
def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"width\": 8}}', got {text!r}")
    return value


def _layer_pair(text: str) -> tuple[str, str]:
    from datafree.bench.jobs import layer_pair

    try:
        return layer_pair(text)
    except DatafreeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _key_value(text: str) -> tuple[str, Any]:
    from datafree.bench.jobs import key_value

    try:
        return key_value(text)
    except DatafreeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _part(text: str) -> tuple[int, int]:
    from datafree.synthesis.run import parse_part

    try:
        return parse_part(text)
    except DatafreeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_teacher_args(p: argparse.ArgumentParser, *, required: bool, positional: bool = False) -> None:
    checkpoint = ("a run directory; a .safetensors/.pt/.pth state_dict (with --teacher-arch unless it has a datafree "
                  "sidecar); a TorchScript archive or a torch.export .pt2 (whole models: no --teacher-arch, needs "
                  "--trust-pickle)")
    if positional:
        p.add_argument("teacher", metavar="CHECKPOINT", help=f"the teacher: {checkpoint}")
    else:
        p.add_argument("--teacher", required=required, help=f"teacher checkpoint: {checkpoint}")
    p.add_argument("--teacher-arch", help="the architecture of a state_dict without a datafree sidecar: a zoo name, "
                                          "torchvision:NAME or package.module:callable")
    p.add_argument("--teacher-kwargs", type=_json_dict, default=None, help="JSON keyword arguments for --teacher-arch")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow files that can run code when loaded: .pt pickles holding code, TorchScript archives, "
                        "torch.export programs (only for files you trust)")


def _add_spec_args(p: argparse.ArgumentParser, *, dataset: bool) -> None:
    """How a teacher without a datafree sidecar says what inputs it takes; no data file is read."""
    from datafree.data import KNOWN_SPECS

    g = p.add_argument_group("input spec (for a teacher without a datafree sidecar; no data files needed)")
    if dataset:
        g.add_argument("--dataset", choices=KNOWN_SPECS,
                       help="the dataset the teacher was trained on: its shape, classes and normalisation")
    g.add_argument("--input-shape", type=int, nargs=3, metavar=("C", "H", "W"), help="input channels, height, width")
    g.add_argument("--num-classes", type=int, help="number of classes (with --input-shape)")
    g.add_argument("--mean", type=float, nargs="+", help="per-channel normalisation mean (default with --input-shape: 0)")
    g.add_argument("--std", type=float, nargs="+", help="per-channel normalisation std (default with --input-shape: 1)")
    g.add_argument("--spec", dest="spec_file", metavar="FILE",
                   help='a spec JSON, e.g. {"input_shape": [3, 32, 32], "num_classes": 100, "mean": [...], "std": [...]}')


DEFAULT_DATASET = "fashion-mnist"


def _add_data_args(p: argparse.ArgumentParser) -> None:
    from datafree.data import DATASETS

    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS,
                   help=f"dataset (default: {DEFAULT_DATASET}; for data-free sources: the teacher's, for reporting only)")
    g.add_argument("--data-root", help="directory holding the dataset files (default: $DATAFREE_DATA, then the system copy)")
    g.add_argument("--image-size", type=int, default=32, help="imagefolder only: resize images to this size")
    g.add_argument("--channels", type=int, default=3, choices=(1, 3), help="imagefolder only: 1 (grayscale) or 3")


def _add_device_arg(p: argparse.ArgumentParser | Any, what: str = "") -> None:
    from datafree.api import default_device

    p.add_argument("--device", default=default_device(), help=f"torch device{what} (default: %(default)s)")


def _add_run_args(p: argparse.ArgumentParser, seed_help: str, *, progress: bool = True) -> None:
    """--seed, --device (and --no-progress): the same three options on every long-running command."""
    p.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default: %(default)s)")
    _add_device_arg(p)
    if progress:
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _add_train_args(p: argparse.ArgumentParser, defaults: dict[str, Any], *, augment: str = "none") -> None:
    from datafree.train import AUGMENTS

    epochs, lr = defaults["epochs"], defaults["lr"]
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=epochs, help="epochs (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=128, help="batch size (default: %(default)s)")
    g.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"), help="optimizer (default: %(default)s)")
    g.add_argument("--lr", type=float, default=lr, help="peak learning rate (default: %(default)s)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum, Nesterov (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (default: %(default)s)")
    g.add_argument("--schedule", default="cosine", choices=("cosine", "step", "constant"),
                   help="per-step learning-rate schedule; 'step' decays x0.1 at 50%% and 75%% (default: %(default)s)")
    g.add_argument("--clip-grad-norm", type=float, default=None,
                   help="clip the gradient norm to this value (default: no clipping)")
    g.add_argument("--augment", default=augment, choices=AUGMENTS,
                   help="batch augmentation: random 2-pixel translation, optional horizontal flip, or dsa "
                        "(one of color/crop/cutout/flip/scale/rotate per batch) (default: %(default)s)")
    g.add_argument("--mix", default="none", choices=("none", "mixup", "cutmix"),
                   help="after --augment, mix each image with another of the batch (blend or pasted box); "
                        "the teacher labels the mixed image, so only with --alpha 0 (default: %(default)s)")
    g.add_argument("--mix-share", type=float, default=1.0, metavar="P",
                   help="mix each image with probability P and leave the others whole (default: %(default)s, all)")
    g.add_argument("--noise-std", type=float, default=0.0, metavar="STD",
                   help="after --augment and --mix, add Gaussian noise of this standard deviation (normalised input "
                        "units) to every pixel; a teacher labels the noisy view (default: %(default)s, off)")
    g.add_argument("--balance-classes", action="store_true",
                   help="draw each epoch's images so that every label comes up equally often (with replacement), "
                        "e.g. a synthetic set whose teacher labels are unbalanced (default: the set as it is)")
    g.add_argument("--teacher-flip", action="store_true",
                   help="label each view with the mean of the teacher's logits on it and on its mirror image; for "
                        "teachers trained with horizontal flips, whose synthetic images they may read differently "
                        "each way round (default: the view alone)")
    g.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights with this decay per step (e.g. 0.999: "
                        "about the last 1000 steps) and test and save it in place of the last weights (default: off)")
    g.add_argument("--seed", type=int, default=0, help="seed for weights, batch order and augmentation (default: %(default)s)")
    _add_device_arg(g, ", e.g. cpu, cuda, cuda:1")
    g.add_argument("--eval-every", type=int, default=1, metavar="N",
                   help="test every N epochs; the last epoch is always tested (default: %(default)s)")
    g.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision on CUDA")
    g.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the training steps on any device (on a CPU, faster only where it has "
                        "native bfloat16, e.g. avx512_bf16 or AMX); testing stays float32")
    g.add_argument("--out", required=True, help="run directory for model.safetensors, metrics.jsonl, result.json")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars or epoch lines")


def _train_config(args: argparse.Namespace, **overrides: Any):
    from datafree.train import TrainConfig

    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
        clip_grad_norm=args.clip_grad_norm, eval_every=args.eval_every,
        augment=args.augment, mix=args.mix, mix_share=args.mix_share, noise_std=args.noise_std,
        balance_classes=args.balance_classes,
        teacher_flip=args.teacher_flip,
        ema=args.ema, seed=args.seed,
        device=args.device, amp=args.amp, bf16=args.bf16, progress=args.progress, **overrides,
    )


def _dataset(args: argparse.Namespace, spec=None) -> str:
    """--dataset, else the dataset ``spec`` names (a teacher's or a set's), else the default."""
    from datafree.data import DATASETS

    if args.dataset:
        return args.dataset
    return spec.name if spec is not None and spec.name in DATASETS else DEFAULT_DATASET


def _load_split(args: argparse.Namespace, split: str, spec=None):
    from datafree.data import load_dataset

    return load_dataset(_dataset(args, spec), split, args.data_root, image_size=args.image_size, channels=args.channels)


def _print_result(name: str, result: dict[str, Any], out: str) -> None:
    from datafree import distributed

    if not distributed.is_main():
        return
    m = result["metrics"]
    accuracy = f"test accuracy {m['test_accuracy']:.2f}%" if "test_accuracy" in m else "not evaluated"
    print(f"{name}: {accuracy} after epoch {m['epoch']} "
          f"({m['train_time_total_s']:.0f}s training) -> {Path(out) / 'model.safetensors'}")


def _is_main() -> bool:
    from datafree import distributed

    return distributed.is_main()


# commands that run as one job of several processes under torchrun (the others refuse to)
DISTRIBUTED_COMMANDS = ("train-teacher", "distill", "synthesize", "condense")


def _process_group(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """Under torchrun: the process group for the command (each rank on its own GPU); else nothing."""
    from datafree import distributed

    if not distributed.launched():
        return contextlib.nullcontext()
    if args.command not in DISTRIBUTED_COMMANDS:
        raise DatafreeError(f"'datafree {args.command}' runs in one process; under torchrun use "
                            f"{', '.join(DISTRIBUTED_COMMANDS)}")
    args.device = distributed.device_for(args.device)
    if int(os.environ["RANK"]) != 0 and hasattr(args, "progress"):
        args.progress = False  # progress bars and epoch lines from rank 0 only
    return distributed.process_group(args.device)


# ---------------------------------------------------------------- commands
def cmd_train_teacher(args: argparse.Namespace) -> int:
    from datafree import api

    train, test = _load_split(args, "train"), _load_split(args, "test")
    result = api.train_teacher(args.out, args.arch, train, test, _train_config(args), arch_kwargs=args.arch_kwargs,
                               resume=args.resume, overwrite=args.overwrite,
                               extra={"argv": args.argv, "dataset": _dataset(args), "spec_source": "dataset-files"})
    _print_result("model", result.record, args.out)
    return 0


def _check_compatible(teacher_spec, data_spec) -> None:
    from datafree.data import check_compatible

    check_compatible(teacher_spec, data_spec)


def _load_teacher(args: argparse.Namespace, data_spec=None, data_source: str = "dataset-files"):
    """--teacher in any format; its spec from the spec flags, else from the data the command reads."""
    from datafree.teacher import load_teacher, resolve_spec

    given = resolve_spec(dataset=args.dataset, input_shape=args.input_shape, num_classes=args.num_classes,
                         mean=args.mean, std=args.std, spec_file=args.spec_file)
    spec, source = given if given is not None else (data_spec, data_source)
    return load_teacher(args.teacher, arch=args.teacher_arch, arch_kwargs=args.teacher_kwargs, spec=spec,
                        spec_source=source, trust_pickle=args.trust_pickle)


def _teacher_record(args: argparse.Namespace, info) -> dict[str, Any]:
    from datafree.api import teacher_record

    return teacher_record(args.teacher, info)


def _note(text: str) -> None:
    if _is_main():
        print(f"datafree: {text}", file=sys.stderr)


def _synthesis_config(args: argparse.Namespace, method: str | None = None):
    from datafree.synthesis import preset

    return preset(method or args.method, **dict(args.set or []))


def _test_split(args: argparse.Namespace, spec):
    """The real test split, used only to report accuracy (never for training in data-free mode).

    A data-free run never needs it: with no dataset named (by --dataset or the teacher's spec) there
    is none, and when its files are not found the student is reported as not evaluated, unless the
    user pointed --data-root at them (then the missing files are an error).
    """
    from datafree.data import DATASETS, dataset_spec

    if args.no_test:
        return None
    if not args.dataset and spec.name not in DATASETS:
        _note("no --dataset names a test split: the student is not evaluated")
        return None
    try:
        test = _load_split(args, "test", spec)
    except DatafreeError as e:
        if args.data_root:
            raise
        _note(f"{e}; the student is not evaluated (or pass --no-test)")
        return None
    _check_compatible(spec, dataset_spec(test))
    return test


def _distill_config(args: argparse.Namespace):
    from datafree import api

    return _train_config(
        args, alpha=args.alpha,
        temperature=args.temperature if args.temperature is not None else api.kd_temperature(args.method),
        hint_weight=args.hint_weight, hint_layers=args.hint, jacobian_weight=args.jacobian_weight,
        standardize_logits=args.standardize_logits, kd_loss=args.kd_loss, dkd_beta=args.dkd_beta,
        rkd_distance_weight=args.rkd_distance,
        rkd_angle_weight=args.rkd_angle, relation_layers=args.relation_layers, kept_hint_weight=args.kept_hint,
        freeze=tuple(args.freeze or ()),
        fade=args.fade, keep_channels=args.keep_channels,
        steps_per_epoch=args.steps_per_epoch or (api.LIVE_STEPS_PER_EPOCH if args.method else None),
    )


def cmd_distill(args: argparse.Namespace) -> int:
    """Load what the flags name (the source, the teacher, the test split), then :func:`datafree.api.distill`."""
    from datafree import api
    from datafree.data import dataset_spec
    from datafree.data.transfer import read_transfer_source

    if args.transfer and args.method and args.teacher is None:
        raise DatafreeError("--transfer with --method grows the set with live batches: it needs --teacher")
    if args.hint is not None and args.hint_weight == 0:
        raise DatafreeError("--hint needs --hint-weight > 0")
    if args.teacher is None and not args.transfer:
        raise DatafreeError("--teacher is required (only a --transfer set carries its own teacher logits)")
    teacher, teacher_info = (None, None)
    if args.transfer_count is not None and not args.transfer:
        raise DatafreeError("--transfer-count reads the first N images of each --transfer set: give --transfer")
    if args.transfer:
        train, source = read_transfer_source(args.transfer, args.transfer_count)
        spec = train.spec
        if args.teacher is not None:
            teacher, teacher_info = _load_teacher(args, spec, "transfer-set")
            _check_compatible(teacher_info.spec, spec)
        test = _test_split(args, spec)
        if args.method:
            source.update(source="transfer+live", method=args.method)
    elif args.method:
        teacher, teacher_info = _load_teacher(args)
        spec, train, source = teacher_info.spec, None, {"source": "live", "method": args.method,
                                                       "spec_source": teacher_info.spec_source}
        test = _test_split(args, spec)
    else:
        train, test = _load_split(args, "train"), _load_split(args, "test")
        spec, source = dataset_spec(train), {"source": "real", "spec_source": "dataset-files"}
        teacher, teacher_info = _load_teacher(args, spec)
        _check_compatible(teacher_info.spec, spec)
    student, student_info = args.student, None
    if args.student_init:  # e.g. a Tucker-compressed teacher from 'datafree compress'
        from datafree.checkpoint import load_model

        student, student_info = load_model(args.student_init, trust_pickle=args.trust_pickle)
        _check_compatible(student_info.spec, spec)
        source["student_init"] = {"path": str(args.student_init), "sha256": student_info.sha256}
    config = _distill_config(args)
    if teacher_info is not None:
        source["teacher"] = _teacher_record(args, teacher_info)
    extra = {"argv": args.argv, "dataset": _dataset(args, spec) if test is not None else None, **source}
    result = api.distill(args.out, student, config, teacher=teacher, teacher_info=teacher_info, train=train,
                         method=args.method, synthesis=_synthesis_config(args) if args.method else None, test=test,
                         student_kwargs=args.student_kwargs, student_info=student_info,
                         save_transfer=args.save_transfer, resume=args.resume, overwrite=args.overwrite, extra=extra,
                         inherit=args.inherit)
    _print_result("student", result.record, args.out)
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from datafree import api

    teacher, info = _load_teacher(args)
    made = api.compress(args.out, teacher, info, args.teacher, args.rank_ratio, overwrite=args.overwrite)
    m = made.metrics
    print(f"tucker: {len(made.record['model']['arch_kwargs']['ranks'])} convolutions at rank ratio {args.rank_ratio}: "
          f"{made.record['teacher_parameters']:,} -> {m['parameters']:,} parameters ({m['compression']:.2f}x) "
          f"-> {made.model_path}")
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    from datafree import api

    teacher, info = _load_teacher(args)
    made = api.synthesize(args.out, teacher, info, args.method, args.count, config=_synthesis_config(args),
                          seed=args.seed, device=args.device, resume=args.resume, preview_every=args.preview_every,
                          progress=args.progress, part=args.part)
    if not _is_main():
        return 0
    what = f"part {args.part[0]}/{args.part[1]}: " if args.part else ""
    waiting = " (the set is complete once every part is)" if made.out != Path(args.out) else ""
    print(f"transfer set {what}{made.count} images from {args.method} in {made.manifest['synthesis_time_s']:.0f}s "
          f"-> {made.out} (preview: {made.out / 'preview.png'}){waiting}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from datafree.data.transfer import TransferSet
    from datafree.viz import save_class_grid, save_images

    ts = TransferSet(args.directory, count=args.count)
    m = ts.manifest
    teacher = m.get("teacher") or {}
    teacher_text = f"teacher {teacher.get('arch')} ({teacher.get('sha256', '')[:12]})" if teacher else "no teacher"
    read = f", the first {len(ts)} of {int(ts.offsets[-1])} images" if args.count is not None else f", {len(ts)} images"
    print(f"{args.directory}: {m['kind']} transfer set, method {m['method']}{read} "
          f"in {len(m['shards'])} shards, {teacher_text}, labels: {m.get('label_type')}")
    if len(ts) == 0:
        return 0
    x, y, *logits = ts.get_batch(torch.arange(len(ts)))
    counts = torch.bincount(y, minlength=ts.spec.num_classes).tolist()
    names = ts.spec.class_names or tuple(str(i) for i in range(ts.spec.num_classes))
    print("per class: " + ", ".join(f"{n}={c}" for n, c in zip(names, counts)))
    if logits:
        confidence = logits[0].softmax(1).max(1).values
        print(f"teacher confidence: mean {confidence.mean():.3f}, min {confidence.min():.3f}")
    # the first N images' grids go beside the whole set's, not over them
    default = "grids" if args.count is None else f"grids-first-{len(ts)}"
    out = Path(args.out) if args.out else Path(args.directory) / default
    out.mkdir(parents=True, exist_ok=True)
    for c in range(ts.spec.num_classes):
        if (y == c).any():
            save_images(out / f"class-{c:03d}.png", x[y == c][: args.per_class], ts.spec)
    save_class_grid(out / "all-classes.png", x, y, ts.spec)
    print(f"grids: {out}/class-*.png and all-classes.png")
    return 0


def cmd_condense(args: argparse.Namespace) -> int:
    from datafree import api
    from datafree.condense import METHODS, method_config
    from datafree.data import dataset_spec

    config = method_config(args.method, ipc=args.ipc, **dict(args.set or []))
    teacher, teacher_info, train = None, None, None
    if not METHODS[args.method].reads_data:  # teacher-only: no real data is read at all
        if not args.teacher:
            raise DatafreeError("teacher-only condensation needs --teacher")
        teacher, teacher_info = _load_teacher(args)
        dataset = args.dataset or teacher_info.spec.name
    else:
        train = _load_split(args, "train")
        dataset = _dataset(args)
        if args.teacher:
            teacher, teacher_info = _load_teacher(args, dataset_spec(train))
    made = api.condense(args.out, config, train=train, teacher=teacher, teacher_info=teacher_info,
                        soft_labels=args.soft_labels, dataset=dataset, seed=args.seed, device=args.device,
                        resume=args.resume, checkpoint_every=args.checkpoint_every, progress=args.progress)
    if not _is_main():
        return 0
    manifest = made.manifest
    print(f"condensed set: {manifest['count']} images ({config.ipc} per class) from {args.method} after "
          f"{manifest['iterations_done']} iterations in {manifest['condensation_time_s']:.0f}s -> {args.out} "
          f"(preview: {Path(args.out) / 'preview.png'})")
    return 0


def cmd_evaluate_set(args: argparse.Namespace) -> int:
    from datafree import api
    from datafree.condense import EvalProtocol
    from datafree.condense.relabel import load_crop_labels
    from datafree.data.transfer import TransferSet

    train = TransferSet(args.directory)
    test = _load_split(args, "test", train.spec)
    teacher, teacher_record = None, None
    if args.teacher:
        teacher, info = _load_teacher(args, train.spec, "transfer-set")
        _check_compatible(info.spec, train.spec)
        teacher_record = _teacher_record(args, info)
    crop_labels = load_crop_labels(args.directory) if args.crop_labels else None
    protocol = EvalProtocol(name=args.protocol, arch=args.arch, arch_kwargs=args.arch_kwargs, models=args.models,
                            augment="none" if args.crop_labels else args.augment,
                            epochs=args.epochs or (crop_labels.epochs if crop_labels is not None else 0),
                            temperature=args.temperature, batch_size=args.batch_size, seed=args.seed,
                            crop_labels=args.crop_labels, bf16=args.bf16)
    live = None if args.crop_labels and not args.live_teacher else teacher  # --teacher may only relabel the control
    result = api.evaluate_set(train, test, protocol, teacher=live, device=args.device, progress=args.progress,
                              out=args.out, resume=args.resume, crop_labels=crop_labels,
                              fair_data=_load_split(args, "train", train.spec) if args.fair else None,
                              real_accuracy=args.real_accuracy,
                              relabel_teacher=teacher if crop_labels is not None else None,
                              extra={"dataset": _dataset(args, train.spec), "argv": args.argv,
                                     "teacher": teacher_record}).record
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.directory}: {result['accuracy_mean']:.2f} +- {result['accuracy_std']:.2f}% test accuracy "
              f"({protocol.models} x {protocol.arch}, protocol {protocol.name}, {protocol.epochs} epochs, "
              f"augment {protocol.augment}, last epoch)")
        if args.fair:
            print(fair_line(result["fair"]))
    return 0


def fair_line(fair: dict[str, Any]) -> str:
    """One line of DD-Ranking metrics: the random control beside IOR, then HLR and DDRS when defined."""
    def ms(d: dict[str, float] | None, fmt: str = "{:.2f}") -> str:
        return "-" if d is None else f"{fmt.format(d['mean'])} +- {fmt.format(d['std'])}"
    return (f"random real subset ({fair['random_ipc']} per class, same protocol): {ms(fair['random_accuracy'])}%; "
            f"IOR {ms(fair['ior'])} points; HLR {ms(fair['hlr'])} points "
            f"(real, hard labels: {'-' if fair['real_hard_accuracy'] is None else fair['real_hard_accuracy']}); "
            f"DDRS {ms(fair['ddrs'], '{:.3f}')}")


def cmd_buffer(args: argparse.Namespace) -> int:
    from datafree.condense.mtt import train_experts
    from datafree.data import dataset_spec

    train = _load_split(args, "train")
    meta = train_experts(args.out, train, dataset_spec(train), experts=args.experts, epochs=args.epochs, net=args.net,
                         net_kwargs=args.net_kwargs, lr=args.lr, dsa=args.dsa, seed=args.seed, device=args.device,
                         progress=args.progress, resume=args.resume)
    print(f"expert buffer: {len(meta['experts'])} experts x {args.epochs} epochs -> {args.out}")
    return 0


def cmd_export_set(args: argparse.Namespace) -> int:
    from datafree.condense.interop import export_set

    path = export_set(args.directory, args.out, args.layout, overwrite=args.overwrite)
    print(f"exported {args.directory} in the {args.layout} layout -> {path}")
    return 0


def cmd_import_set(args: argparse.Namespace) -> int:
    from datafree.condense.interop import import_set
    from datafree.data import KNOWN_SPECS

    spec = KNOWN_SPECS[args.dataset]
    if args.mean or args.std:
        spec = dataclasses.replace(spec, mean=tuple(args.mean or spec.mean), std=tuple(args.std or spec.std))
    manifest = import_set(args.path, args.out, spec=spec, method=args.method, dataset=args.dataset, zca=args.zca,
                          exp=args.exp)
    print(f"imported {manifest['count']} images ({manifest['label_type']}) -> {args.out}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from datafree import api
    from datafree.audit import AuditConfig, summary
    from datafree.checkpoint import load_model
    from datafree.data import dataset_spec
    from datafree.data.transfer import TransferSet

    config = AuditConfig(baseline_count=args.baseline_count, mia_count=args.mia_count, closest=args.closest,
                         seed=args.seed, device=args.device, resamples=args.resamples)  # checks its values
    if args.reference_student and not args.student:  # before loading anything (api.audit checks it too)
        raise DatafreeError("--reference-student calibrates the attack on a --student; give at least one --student")
    transfer = TransferSet(args.transfer)
    train, test = _load_split(args, "train"), _load_split(args, "test")
    teacher, info, teacher_record = None, None, None
    if args.teacher:
        teacher, info = _load_teacher(args, dataset_spec(train))
        teacher_record = _teacher_record(args, info)
    students = [(str(path), *load_model(path, trust_pickle=args.trust_pickle)) for path in args.student]
    reference = ((str(args.reference_student), *load_model(args.reference_student, trust_pickle=args.trust_pickle))
                 if args.reference_student else None)
    protocol = {"dataset": _dataset(args), "argv": args.argv, "transfer": str(args.transfer), "teacher": args.teacher,
                "teacher_model": teacher_record, "students": [str(s) for s in args.student],
                "reference_student": args.reference_student}
    result = api.audit(args.out, transfer, train, test, teacher=teacher, teacher_info=info, students=students,
                       reference=reference, config=config, overwrite=args.overwrite, protocol=protocol)
    print(summary(result.report, result.out))
    return 0


def cmd_describe_teacher(args: argparse.Namespace) -> int:
    from datafree.teacher import describe_teacher, format_description

    if args.probe_batch < 1:
        raise DatafreeError("--probe-batch must be at least 1")
    teacher, info = _load_teacher(args)
    record = describe_teacher(teacher, info, path=args.teacher, device=args.device, probe=args.probe,
                              probe_batch=args.probe_batch)
    print(json.dumps(record) if args.json else format_description(record))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from datafree.api import evaluate
    from datafree.checkpoint import load_model
    from datafree.data import dataset_spec
    from datafree.models import count_parameters
    from datafree.quantize import is_int8

    if is_int8(args.model):  # an int8 run of 'datafree quantize'
        return _evaluate_int8(args)

    data = _load_split(args, args.split)
    spec = dataset_spec(data)
    model, info = load_model(args.model, arch=args.arch, arch_kwargs=args.arch_kwargs,
                             spec=spec if args.arch else None, trust_pickle=args.trust_pickle)
    _check_compatible(info.spec, spec)
    metrics = dataclasses.asdict(evaluate(model, data, batch_size=args.batch_size, device=args.device))
    record = {"model": str(args.model), "arch": info.arch, "parameters": count_parameters(model),
              "dataset": _dataset(args), "split": args.split, **metrics}
    return _print_evaluation(args, record, info.arch, f" ({record['parameters']:,} parameters)")


def _print_evaluation(args: argparse.Namespace, record: dict, model: str, suffix: str = "") -> int:
    """'datafree evaluate''s output: the record as one JSON line with --json, else one sentence."""
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{model} on {record['dataset']} {record['split']}: accuracy {record['accuracy']:.2f}%, "
              f"loss {record['loss']:.4f}{suffix}")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from datafree import api
    from datafree.quantize import QATConfig, QuantizeConfig

    qat = QATConfig(epochs=args.qat_epochs, lr=args.qat_lr, batch_size=args.qat_batch_size,
                    temperature=args.qat_temperature)
    config = QuantizeConfig(ranges=args.ranges, percentile=args.percentile, batch_size=args.batch_size,
                            allow_float=args.allow_float, qat=qat)
    result = api.quantize(args.model, args.out, calibration=args.calibration or (), calibration_method=args.calibration_method,
                      calibration_real=args.calibration_real, calibration_count=args.calibration_count,
                      synthesis_overrides=dict(args.set or []), config=config, teacher_path=args.qat_teacher,
                      dataset=args.dataset, data_root=args.data_root, test=not args.no_test, seed=args.seed,
                      device=args.device, trust_pickle=args.trust_pickle, overwrite=args.overwrite,
                      progress=args.progress, argv=args.argv).record
    m, sizes = result["metrics"], result["sizes"]
    accuracy = (f"test accuracy {m['test_accuracy']:.2f}% (fp32 {m['fp32_test_accuracy']:.2f}%)"
                if "test_accuracy" in m else "not evaluated")
    print(f"int8 {result['mode']}, calibration {result['calibration']['kind']} "
          f"({result['quantization']['calibration_images_read']} images): {accuracy}, "
          f"{sizes['int8_onnx_bytes'] / 1024:.0f} KiB (fp32 {sizes['fp32_onnx_bytes'] / 1024:.0f} KiB) -> {result['model']}")
    return 0


def _evaluate_int8(args: argparse.Namespace) -> int:
    """'datafree evaluate' of an int8 run: ONNX Runtime on the CPU."""
    from datafree.data import dataset_spec
    from datafree.quantize import evaluate_int8, load_int8

    explicit = any(a == "--device" or a.startswith("--device=") for a in args.argv)
    if explicit and not str(args.device).startswith("cpu"):  # the default (cuda where present) falls back quietly
        raise DatafreeError("int8 models run on the CPU only (ONNX Runtime's CPU provider); use --device cpu")
    model = load_int8(args.model)
    data = _load_split(args, args.split)
    _check_compatible(model.info.spec, dataset_spec(data))
    metrics = evaluate_int8(model, data, args.batch_size)
    dataset = args.dataset or dataset_spec(data).name
    record = {"model": str(args.model), "arch": model.info.arch, "precision": "int8", "dataset": dataset,
              "split": args.split, **metrics}
    return _print_evaluation(args, record, f"{model.info.arch} (int8)")


def cmd_bench(args: argparse.Namespace) -> int:
    from datafree.bench import SUITES, get_suite, report, run_suite

    if args.bench_command == "list":
        for suite in SUITES.values():
            pairs = ", ".join(p.name for p in suite.pairs)
            print(f"{suite.name}: {suite.dataset}; {pairs}; {len(suite.all_sources())} sources; seeds "
                  f"{' '.join(map(str, suite.seeds))}\n    {suite.description}")
        return 0
    if args.bench_command == "audit":
        from datafree.bench.audit import audit_suite

        audits = audit_suite(args.directory, data_root=args.data_root, device=args.device)
        print(f"bench audit: {len(audits)} stored data-free sets audited (report: datafree bench report "
              f"{args.directory})")
        return 0
    if args.bench_command == "report":
        report(args.directory)
        print(f"report: {Path(args.directory) / 'report.md'}, report.csv, accuracy_vs_time.png, condensation_ipc.png, "
              "synthetic_grid.png")
        return 0
    try:
        summary = run_suite(get_suite(args.suite), args.out, data_root=args.data_root, device=args.device,
                            seeds=args.seeds, teachers=args.teachers, pairs=args.pairs, jobs=args.jobs)
    except KeyboardInterrupt:
        print(f"bench: interrupted; run the same 'datafree bench run {args.suite}' command again to continue",
              file=sys.stderr)
        raise
    print(f"suite {args.suite}: {len(summary.ran)} runs finished, {len(summary.reused)} reused, "
          f"{len(summary.failed)} failed, {len(summary.not_applicable)} not applicable -> {Path(args.out) / 'results.jsonl'}"
          f" (report: datafree bench report {args.out})")
    if summary.failed:
        raise DatafreeError(f"{len(summary.failed)} runs failed ({', '.join(summary.failed[:3])}"
                            f"{', ...' if len(summary.failed) > 3 else ''}); see {Path(args.out) / 'failures.jsonl'}")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from datafree import __version__, api
    from datafree.models import available_models
    from datafree.synthesis import PRESETS
    from datafree.train import AUGMENTS

    models = ", ".join(available_models())
    methods = ", ".join(sorted(PRESETS))
    parser = argparse.ArgumentParser(
        prog="datafree",
        description="Distill a trained teacher into a small student, with or without its training data.",
    )
    parser.add_argument("--version", action="version", version=f"datafree {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train-teacher", help="train a model with cross-entropy on real data",
                       description=f"Train a teacher with cross-entropy. Architectures: {models}.")
    p.add_argument("--arch", default="lenet5", help="architecture (default: %(default)s)")
    p.add_argument("--arch-kwargs", type=_json_dict, default={}, help="JSON keyword arguments, e.g. '{\"width\": 8}'")
    _add_data_args(p)
    _add_train_args(p, api.TEACHER_DEFAULTS)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("synthesize", help="synthesize a transfer set from a teacher checkpoint alone",
                       description="Run a data-free method against a teacher and store its images, teacher labels "
                                   f"and teacher logits as a transfer set. Methods: {methods}.")
    _add_teacher_args(p, required=True)
    _add_spec_args(p, dataset=True)
    p.add_argument("--method", required=True, choices=sorted(PRESETS), help="synthesis method (a preset)")
    p.add_argument("--set", type=_key_value, action="append", metavar="KEY=VALUE",
                   help="override a preset field, e.g. --set iterations=500 --set bn=5 (repeatable)")
    p.add_argument("--count", type=int, required=True, help="number of images to synthesize")
    p.add_argument("--out", required=True, help="transfer-set directory")
    p.add_argument("--resume", action="store_true", help="extend an interrupted set in --out up to --count")
    p.add_argument("--preview-every", type=int, default=10, help="write preview.png every N batches (default: %(default)s)")
    p.add_argument("--part", type=_part, metavar="K/N",
                   help="make only part K of N (0-based) into OUT/rank-K: what rank K of 'torchrun --nproc_per_node "
                        "N' makes, as an independent job (a job array); the part that completes the set writes "
                        "OUT/manifest.json")
    _add_run_args(p, "seed of every random draw")
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("compress", help="Tucker-2 compress a trained network (a student to fine-tune data-free)",
                       description="Factorise every k x k convolution of a checkpoint (but a 1-channel stem) into "
                                   "1x1, k x k and 1x1 convolutions of rank-ratio x its channels, initialised by "
                                   "HOSVD (Tucker-2, as KegNet compresses its students). The result loads like any "
                                   "checkpoint: 'datafree distill --student-init OUT', 'datafree evaluate OUT'.")
    _add_teacher_args(p, required=True)
    _add_spec_args(p, dataset=True)
    p.add_argument("--rank-ratio", type=float, required=True, help="fraction of each convolution's channels kept")
    p.add_argument("--out", required=True, help="output directory (model.safetensors + model.json)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("inspect", help="summarise a transfer set and write PNG grids per class",
                       description="Print a transfer set's manifest summary and write one PNG grid per class.")
    p.add_argument("directory", help="transfer-set directory")
    p.add_argument("--out", help="where to write the grids (default: DIRECTORY/grids, or DIRECTORY/grids-first-N "
                                 "with --count N)")
    p.add_argument("--per-class", type=int, default=64, help="images per class grid (default: %(default)s)")
    p.add_argument("--count", type=int, metavar="N",
                   help="summarise only the set's first N images, the ones `distill --transfer-count N` reads "
                        "(a set is made batch by batch, so these show what its early batches hold)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("distill", help="distill a teacher into a student: real data, a transfer set, or a live method",
                       description="Train a student with alpha*CE + (1-alpha)*T^2*KL(teacher || student), plus "
                                   "optional hint and relation terms. The source is the real training set "
                                   "(default), a stored --transfer set, or a live data-free --method. "
                                   f"Architectures: {models}. Methods: {methods}.")
    _add_teacher_args(p, required=False)
    p.add_argument("--student", default="lenet5_half", help="student architecture (default: %(default)s)")
    p.add_argument("--student-kwargs", type=_json_dict, default={}, help="JSON keyword arguments for the student")
    p.add_argument("--student-init", metavar="CKPT",
                   help="start the student from this checkpoint's architecture and weights instead of --student "
                        "(e.g. a compressed teacher from 'datafree compress')")
    p.add_argument("--inherit", action="store_true",
                   help="start the student from a consistent selection of the teacher's weights (weight selection: "
                        "each layer keeps evenly spaced channels of the matching teacher layer; the student must be "
                        "a shallower or thinner version of the teacher's architecture)")
    from datafree.train import KEEP_CHANNELS

    p.add_argument("--keep-channels", choices=KEEP_CHANNELS, default="spread",
                   help="with --inherit: which of the teacher's channels each layer keeps: spread (evenly spaced in "
                        "the teacher's own order) or important (the ones that carry the most signal into the next "
                        "layer, scored from the weights and BatchNorm statistics; channels a residual addition ties "
                        "are ranked together) or important-student (the same score, counting only the layers the "
                        "student keeps: for a student with fewer blocks than the teacher) (default: %(default)s)")
    p.add_argument("--fade", type=float, default=0.0, metavar="FRACTION",
                   help="with --inherit: train at the teacher's own width (its BatchNorm folded) while the channels "
                        "weight selection drops fade linearly to zero over this fraction of the steps, then end as "
                        "the student (a student without BatchNorm, thinner layer for layer; e.g. 0.5) "
                        "(default: %(default)s, off)")
    g = p.add_argument_group("source (default: the real training set)")
    g.add_argument("--transfer", action="append", help="a transfer-set directory made by 'datafree synthesize' "
                   "(repeat to train on several sets as one); with a pool "
                   "--method (e.g. zskd --set adv=0.3), the live pool starts from it and grows with batches "
                   "synthesized against the student (ADI's scheme)")
    g.add_argument("--transfer-count", type=int, metavar="N",
                   help="read only the first N images of each --transfer set (a set made by one process is written "
                        "batch by batch from its seed, so these are the images 'synthesize --count N' makes)")
    g.add_argument("--method", choices=sorted(PRESETS), help="a live data-free method (generator trained alongside)")
    g.add_argument("--set", type=_key_value, action="append", metavar="KEY=VALUE", help="override a --method preset field")
    g.add_argument("--steps-per-epoch", type=int, help="student steps per epoch for --method (default: 200)")
    g.add_argument("--save-transfer", help="with --method: also store every synthesized batch in this directory")
    g.add_argument("--no-test", action="store_true", help="do not evaluate on the real test split")
    g = p.add_argument_group("distillation")
    g.add_argument("--alpha", type=float, default=api.DISTILL_DEFAULTS["alpha"],
                   help="weight of hard-label CE; 1-alpha goes to KL (default: %(default)s)")
    g.add_argument("--temperature", "-T", type=float, default=None,
                   help="softmax temperature (default: 4, or the method's own for --method)")
    g.add_argument("--hint", type=_layer_pair, help="FitNets hint between modules, STUDENT_MODULE:TEACHER_MODULE")
    g.add_argument("--hint-weight", type=float, default=0.0, help="weight of the hint MSE (default: %(default)s)")
    g.add_argument("--standardize-logits", action="store_true",
                   help="z-score teacher and student logits per sample before the KD softmax (logit "
                        "standardisation: match their shape, not their scale)")
    from datafree.train import KD_LOSSES

    g.add_argument("--kd-loss", choices=KD_LOSSES, default="kl",
                   help="the soft-target term: kl (T^2 * KL at the temperature), mse (the centred logits' squared "
                        "error / 2K, KL's limit as T grows: every class's logit gap counts alike) or dkd (decoupled KD: "
                        "the teacher's top class against the rest, plus --dkd-beta times the KL among the other "
                        "classes) (default: %(default)s)")
    g.add_argument("--dkd-beta", type=float, default=8.0,
                   help="with --kd-loss dkd, the weight of the other classes' KL (default: %(default)s)")
    g.add_argument("--jacobian-weight", type=float, default=0.0,
                   help="weight of Jacobian matching: the student's input gradient of the teacher's predicted "
                        "class follows the teacher's (normalised; double backward, about 3x a step) (default: %(default)s)")
    g.add_argument("--rkd-distance", type=float, default=0.0, help="weight of the RKD distance loss (default: %(default)s)")
    g.add_argument("--rkd-angle", type=float, default=0.0, help="weight of the RKD angle loss (default: %(default)s)")
    g.add_argument("--relation-layers", type=_layer_pair,
                   help="STUDENT_MODULE:TEACHER_MODULE for RKD (default: inputs of the last Linear layers)")
    g.add_argument("--kept-hint", type=float, default=0.0, metavar="WEIGHT",
                   help="with --inherit: weight of an MSE that keeps every layer's input at the teacher's, on the "
                        "channels weight selection kept (default: %(default)s)")
    g.add_argument("--freeze", action="append", metavar="MODULE",
                   help="keep this student module's parameters at their start (repeatable; e.g. features.0 with "
                        "--inherit keeps the teacher's first filters)")
    _add_data_args(p)
    _add_spec_args(p, dataset=False)
    _add_train_args(p, api.DISTILL_DEFAULTS)
    p.set_defaults(func=cmd_distill)

    from datafree.condense import METHODS as CONDENSE_METHODS

    p = sub.add_parser("condense", help="condense a dataset into a few synthetic images per class",
                       description="Make a tiny synthetic transfer set (kind 'condensed'): random/herding baselines, "
                                   "DC, DSA, DM, MTT (needs --set buffer=DIR from 'datafree buffer'), or 'teacher' "
                                   "(recovered from a teacher's BatchNorm statistics, no real data). "
                                   "Resumable; --resume with a larger --set iterations=N extends a finished run. "
                                   f"Methods: {', '.join(CONDENSE_METHODS)}.")
    p.add_argument("--method", required=True, choices=CONDENSE_METHODS, help="condensation method")
    p.add_argument("--ipc", type=int, default=10, help="synthetic images per class (default: %(default)s)")
    p.add_argument("--set", type=_key_value, action="append", metavar="KEY=VALUE",
                   help="override a method default, e.g. --set iterations=500 --set batch_real=64 (repeatable)")
    _add_teacher_args(p, required=False)
    p.add_argument("--soft-labels", action="store_true", help="store the teacher's logits for every image (needs --teacher)")
    p.add_argument("--out", required=True, help="output transfer-set directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--checkpoint-every", type=int, default=50,
                   help="save state, the set and preview.png every N iterations (default: %(default)s)")
    _add_run_args(p, "seed of every random draw")
    _add_data_args(p)
    _add_spec_args(p, dataset=False)
    p.set_defaults(func=cmd_condense)

    p = sub.add_parser("evaluate-set", help="train fresh networks on a condensed set and test them",
                       description="The condensation evaluation protocol: train --models fresh networks on the set, "
                                   "report the last epoch's test accuracy (mean +- std). Protocol dc: hard labels, "
                                   "SGD 0.01 momentum 0.9 wd 5e-4 batch 256, lr x0.1 at half, 1000 epochs with DSA "
                                   "augmentation (300 without). Protocol kd: the teacher's soft labels (alpha 0, T 4).")
    p.add_argument("directory", help="transfer-set directory")
    p.add_argument("--protocol", default="dc", choices=("dc", "kd"), help="hard labels (dc) or teacher soft labels (kd)")
    p.add_argument("--models", type=int, default=5, help="networks to train (default: %(default)s)")
    p.add_argument("--arch", default="convnet", help="architecture (default: %(default)s; e.g. mlp, lenet5, alexnet_dc, "
                                                     "vgg11, resnet18)")
    p.add_argument("--arch-kwargs", type=_json_dict, default={}, help="JSON keyword arguments for --arch")
    p.add_argument("--augment", default="dsa", choices=AUGMENTS,
                   help="training augmentation (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=0, help="epochs (default: 1000 with dsa, 300 otherwise)")
    _add_teacher_args(p, required=False)
    p.add_argument("--seed", type=int, default=0, help="model i uses seed + i (default: %(default)s)")
    _add_device_arg(p)
    p.add_argument("--out", help="also write the result JSON here (after every model)")
    p.add_argument("--resume", action="store_true",
                   help="keep the models --out already holds for this set and protocol and train the rest (also "
                        "extends an evaluation to more --models)")
    p.add_argument("--crop-labels", action="store_true",
                   help="kd on the set's stored FKD crop labels (teacher-only sets): the stored crops replace "
                        "--augment, epochs default to the stored ones")
    p.add_argument("--live-teacher", action="store_true",
                   help="with --crop-labels: --teacher labels the stored crops live instead of the stored top-k logits")
    p.add_argument("--temperature", type=float, default=4.0, help="kd temperature (default: %(default)s; SRe2L: 20)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the training steps (recorded in the protocol; faster on CPUs with native "
                        "bfloat16); testing stays float32")
    p.add_argument("--batch-size", type=int, default=256,
                   help="training batch (default: %(default)s, the reference's; an IPC-10 set is then one step an epoch)")
    p.add_argument("--fair", action="store_true",
                   help="also report DD-Ranking's IOR (against a random real subset of the same IPC, evaluated here "
                        "under the identical protocol and seeds), HLR (the set under hard labels against "
                        "--real-accuracy) and DDRS; reads the real training split")
    p.add_argument("--real-accuracy", type=float,
                   help="test accuracy (%%) of the real training set under hard labels, for HLR and DDRS with --fair")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    _add_data_args(p)
    _add_spec_args(p, dataset=False)
    p.set_defaults(func=cmd_evaluate_set)

    p = sub.add_parser("buffer", help="train expert trajectories on real data for MTT",
                       description="Train --experts fresh networks on the real training set (SGD, DSA augmentation) "
                                   "and store each one's parameters after every epoch (one safetensors file per "
                                   "expert, resumable per expert). Use with: datafree condense --method mtt "
                                   "--set buffer=DIR.")
    p.add_argument("--out", required=True, help="buffer directory")
    p.add_argument("--experts", type=int, default=api.BUFFER_DEFAULTS["experts"],
                   help="number of experts (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=api.BUFFER_DEFAULTS["epochs"], help="epochs per expert (default: %(default)s)")
    p.add_argument("--net", default=api.BUFFER_DEFAULTS["net"], help="architecture (default: %(default)s)")
    p.add_argument("--net-kwargs", type=_json_dict, default={}, help="JSON keyword arguments for --net")
    p.add_argument("--lr", type=float, default=api.BUFFER_DEFAULTS["lr"], help="expert SGD learning rate (default: %(default)s)")
    p.add_argument("--no-dsa", dest="dsa", action="store_false", help="train experts without DSA augmentation")
    p.add_argument("--resume", action="store_true", help="keep finished experts in --out and train the rest")
    _add_run_args(p, "expert i uses seed + i")
    _add_data_args(p)
    p.set_defaults(func=cmd_buffer)

    p = sub.add_parser("export-set", help="export a condensed set to the DatasetCondensation or MTT file layout",
                       description="Write a transfer set as DatasetCondensation's res_*.pt (data = [[images, labels]]) "
                                   "or as MTT's images_best.pt / labels_best.pt, normalised, with a datafree.json "
                                   "sidecar recording the normalisation.")
    p.add_argument("directory", help="transfer-set directory")
    p.add_argument("--layout", required=True, choices=("dc", "mtt"), help="target layout")
    p.add_argument("--out", required=True, help="a .pt file (dc) or a directory (mtt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    p.set_defaults(func=cmd_export_set)

    p = sub.add_parser("import-set", help="import a DatasetCondensation or MTT result as a condensed transfer set",
                       description="Read a res_*.pt file (DatasetCondensation) or a directory with images_best.pt and "
                                   "labels_best.pt (MTT), safely (tensors only, never pickled code), check it against "
                                   "the dataset's shape and classes, and write a condensed transfer set.")
    p.add_argument("path", help="res_*.pt file or MTT result directory")
    p.add_argument("--out", required=True, help="new transfer-set directory")
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist", "cifar10", "cifar100"),
                   help="the dataset the images were condensed from (default: %(default)s)")
    p.add_argument("--mean", type=float, nargs="+", help="normalisation mean the images use, if not the dataset's")
    p.add_argument("--std", type=float, nargs="+", help="normalisation std the images use, if not the dataset's")
    p.add_argument("--zca", action="store_true", help="the images are ZCA-whitened (recorded; evaluate-set refuses them)")
    p.add_argument("--method", default="imported", help="method name to record (default: %(default)s)")
    p.add_argument("--exp", type=int, default=0, help="which experiment of a res_*.pt file (default: %(default)s)")
    p.set_defaults(func=cmd_import_set)

    p = sub.add_parser("audit", help="privacy audit: what a transfer set (and its students) reveal about the training data",
                       description="For every image of a transfer set, the distance to its nearest training image "
                                   "(pixel space, and the teacher's penultimate features with --teacher), against the "
                                   "same distance for real test images: the share of synthetic images closer than "
                                   "a fresh real image usually is flags memorisation. With --student: membership "
                                   "inference AUCs (loss threshold, and calibrated by --reference-student or, without "
                                   "one, by per-class loss standardisation). Writes OUT/audit.json and "
                                   "OUT/closest_pairs.png.")
    p.add_argument("--transfer", required=True, help="transfer-set directory to audit")
    _add_teacher_args(p, required=False)
    p.add_argument("--student", action="append", default=[], metavar="CKPT",
                   help="student checkpoint to attack with membership inference (repeatable; labelled by path)")
    p.add_argument("--reference-student", metavar="CKPT",
                   help="reference model trained without the members, for difficulty-calibrated membership inference")
    p.add_argument("--baseline-count", type=int, default=1000, help="test images of the baseline (default: %(default)s)")
    p.add_argument("--mia-count", type=int, default=2000,
                   help="training images as members, and as many test images as non-members (default: %(default)s)")
    p.add_argument("--closest", type=int, default=16, help="closest pairs shown in closest_pairs.png (default: %(default)s)")
    p.add_argument("--resamples", type=int, default=1000,
                   help="bootstrap resamples for each AUC's 95%% interval and each student's paired difference from "
                        "the first --student (0: none; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the baseline and member draws (default: %(default)s)")
    _add_device_arg(p)
    p.add_argument("--out", required=True, help="audit directory (must be new or empty)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    _add_data_args(p)
    _add_spec_args(p, dataset=False)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("describe-teacher", help="what a teacher checkpoint is and which data-free methods fit it",
                       description="Load a teacher as every command does and print its input spec and parameter "
                                   "count, its BatchNorm layers (1d/2d), which synthesis presets apply and why the "
                                   "others do not, and each applicable preset's synthesis cost per 1,000 images "
                                   "on --device, measured by a short timed probe (2 steps of a small batch per "
                                   "preset, extrapolated to the preset's steps).")
    _add_teacher_args(p, required=True, positional=True)
    _add_spec_args(p, dataset=True)
    _add_device_arg(p, " for the probe")
    p.add_argument("--no-probe", dest="probe", action="store_false", help="do not time the presets")
    p.add_argument("--probe-batch", type=int, default=8, help="images per probe batch (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_describe_teacher)

    p = sub.add_parser("quantize", help="int8 post-training quantization, calibrated on a transfer set (data-free)",
                       description="Post-training static int8 quantization on ONNX Runtime: per-channel int8 weights, "
                                   "uint8 activations calibrated on the images given, optionally after data-free "
                                   "quantization-aware fine-tuning (the fp32 model distils into its fake-quantized "
                                   "copy on those images). Writes OUT/model.onnx (loads without running code) and "
                                   "OUT/model.json; 'datafree evaluate OUT' tests it. The int8 model runs on the CPU.")
    p.add_argument("--model", required=True, help="fp32 checkpoint to quantize (.safetensors, .pt/.pth, or a run directory)")
    p.add_argument("--trust-pickle", action="store_true", help="allow .pt files that execute code when unpickled")
    g = p.add_argument_group("calibration images (choose one)").add_mutually_exclusive_group(required=True)
    g.add_argument("--calibration", action="append", metavar="SET",
                   help="a transfer set (data-free; repeat to use several as one)")
    g.add_argument("--calibration-method", choices=sorted(PRESETS), metavar="PRESET",
                   help="synthesize the calibration set against the model itself into OUT/calibration "
                        "(ZeroQ's distilled data), e.g. deepinversion, or zskd for models without BatchNorm")
    g.add_argument("--calibration-real", action="store_true", help="real training images (the reference; not data-free)")
    g.add_argument("--no-calibration", action="store_true",
                   help="no images: dynamic int8 (activations quantized per batch at run time), the floor")
    p.add_argument("--calibration-count", type=int,
                   help="images: a seeded random subset of --calibration (default: all of it), or how many to "
                        "synthesize or draw from the training split (default: 512)")
    p.add_argument("--set", type=_key_value, action="append", metavar="KEY=VALUE",
                   help="override a --calibration-method preset field, e.g. --set iterations=100")
    p.add_argument("--ranges", default="minmax", choices=("minmax", "percentile"),
                   help="activation ranges from the calibration images (default: %(default)s)")
    p.add_argument("--percentile", type=float, default=99.999, help="with --ranges percentile (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="calibration batch size (default: %(default)s)")
    p.add_argument("--allow-float", action="store_true",
                   help="accept compute operations ONNX Runtime cannot quantize (they stay fp32) instead of refusing")
    g = p.add_argument_group("quantization-aware fine-tuning (data-free with a synthetic calibration set)")
    g.add_argument("--qat-epochs", type=int, default=0, help="epochs of KD into the fake-quantized copy (default: 0, off)")
    g.add_argument("--qat-lr", type=float, default=1e-3, help="learning rate (default: %(default)s)")
    g.add_argument("--qat-batch-size", type=int, default=64, help="batch size (default: %(default)s)")
    g.add_argument("--qat-temperature", type=float, default=4.0, help="KD temperature (default: %(default)s)")
    g.add_argument("--qat-teacher", metavar="CKPT", help="distil from this model instead of the fp32 model itself")
    p.add_argument("--no-test", action="store_true", help="do not report accuracy on the real test split")
    p.add_argument("--out", required=True, help="output directory (model.onnx, model.json, result.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an int8 model (and calibration set) in --out")
    _add_run_args(p, "seed of the calibration subset, synthesis and fine-tuning")
    p.set_defaults(func=cmd_quantize)
    _add_data_args(p)

    p = sub.add_parser("evaluate", help="test accuracy of a checkpoint",
                       description="Top-1 accuracy and cross-entropy of a checkpoint on a dataset split.")
    p.add_argument("model", help="checkpoint (.safetensors, .pt/.pth, a run directory, or an int8 run of 'datafree "
                                 "quantize', which runs on the CPU)")
    p.add_argument("--arch", help="architecture, for checkpoints without a datafree sidecar")
    p.add_argument("--arch-kwargs", type=_json_dict, default=None, help="JSON keyword arguments for --arch")
    p.add_argument("--trust-pickle", action="store_true", help="allow .pt files that execute code when unpickled")
    p.add_argument("--split", default="test", choices=("train", "test"), help="split (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=1000, help="batch size (default: %(default)s)")
    _add_device_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_args(p)
    p.set_defaults(func=cmd_evaluate)
    from datafree.bench.suites import SUITES

    p = sub.add_parser("bench", help="run a benchmark suite against real-data KD, and report it",
                       description="Benchmark suites: every (teacher/student pair, source, seed) of a suite is run "
                                   "through these commands into one directory; results.jsonl gets one row per "
                                   "finished run, and an interrupted suite continues where it stopped. Sources: "
                                   "scratch, kd (real data), df:PRESET (data-free), cond:METHOD:IPC:hard|soft "
                                   f"(condensed). Suites: {', '.join(SUITES)}.")
    bench = p.add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    q = bench.add_parser("run", help="run a suite (finished runs are reused)",
                         description="Run every run of SUITE into --out: teachers once per pair (teachers/), each run "
                                     "in runs/PAIR/SOURCE/seedN/, one row per finished run in results.jsonl. A run "
                                     "whose row is there with the same commands is skipped; a half-finished one is "
                                     "resumed or redone. Use one --out per suite.")
    q.add_argument("suite", help=f"suite name: {', '.join(SUITES)} (see 'datafree bench list')")
    q.add_argument("--out", required=True, help="the suite's output directory")
    q.add_argument("--seeds", type=int, nargs="+", help="override the suite's seeds")
    q.add_argument("--pairs", nargs="+", metavar="PAIR",
                   help="run only these pairs (keys as in runs/PAIR); one process per pair may share --out")
    q.add_argument("--data-root", help="directory holding the dataset files (default: $DATAFREE_DATA, then the system copy)")
    q.add_argument("--device", help="torch device for every command (default: each command's own, cuda if available)")
    q.add_argument("--jobs", type=int, default=1,
                   help="after the teachers, run this many runs at once, each in its own process with an equal share "
                        "of the CPU threads (small models: about 2x faster with 2 on 2 cores) (default: %(default)s)")
    q.add_argument("--teachers", help="reuse trained teachers from this directory (DIR/PAIR, as a suite writes them, "
                                      "or DIR/DATASET-ARCH, as benchmarks/baselines.py does) instead of training them")
    q.set_defaults(func=cmd_bench)
    q = bench.add_parser("report", help="write report.md, report.csv and plots of a suite's results",
                         description="Read DIR/results.jsonl and write report.md and report.csv (mean ± std over seeds "
                                     "per pair and source, fraction of the real-data KD student's accuracy, times and "
                                     "their ratio to KD's, peak memory) and accuracy_vs_time.png, condensation_ipc.png "
                                     "and synthetic_grid.png.")
    q.add_argument("directory", help="a suite's output directory (the --out of 'datafree bench run')")
    q.set_defaults(func=cmd_bench)
    q = bench.add_parser("audit", help="privacy-audit every stored data-free set of a suite (for the report)",
                         description="For each data-free run with a stored set in DIR: 'datafree audit' of the set, "
                                     "its student and the real-data KD student of the same pair and seed, into "
                                     "runs/PAIR/SOURCE/seedN/audit/ (reused while those runs are unchanged). "
                                     "'datafree bench report' then adds a privacy table. Reads the real training and "
                                     "test data: the data owner's check.")
    q.add_argument("directory", help="a suite's output directory (the --out of 'datafree bench run')")
    q.add_argument("--data-root", help="directory holding the dataset files (default: $DATAFREE_DATA, then the system copy)")
    q.add_argument("--device", default="cpu", help="torch device of the audit (default: %(default)s)")
    q.set_defaults(func=cmd_bench)
    q = bench.add_parser("list", help="list the suites", description="Print every suite with its description.")
    q.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``datafree`` command; ``argv`` None reads ``sys.argv``. As a torchrun rank's process, it ends in
    :func:`_end_rank`."""
    code = _run(argv)
    if argv is None:
        from datafree import distributed

        if distributed.launched():
            _end_rank(code)
    return code


def _end_rank(code: int) -> None:
    """End a torchrun rank whose process group is already destroyed without the interpreter's teardown.

    Under torch 2.14 with gloo, about one 2-process run in eight (on 2 loaded CPU cores) aborted after its work was
    written and ``destroy_process_group`` had returned ("terminate called without an active exception", SIGABRT
    while the interpreter tears down), and torchrun then fails the whole job. The atexit handlers still run, and
    output is flushed; then the process exits with the command's code.
    """
    import atexit

    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def _run(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = ["datafree", *argv]  # recorded in result.json: the exact command of every run
    try:
        with _process_group(args):
            return args.func(args)
    except DatafreeError as e:
        print(f"datafree: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        where = f" while writing {e.filename}" if e.filename else ""
        fix = "choose a writable --out" if e.errno == errno.EROFS else "free some space (or choose another --out)"
        print(f"datafree: error: {e.strerror or os.strerror(e.errno)}{where}; {fix} and run the command again "
              "(no half-written file was kept; --resume continues from the last saved state where supported)",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("datafree: interrupted; the last finished epoch is saved (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
