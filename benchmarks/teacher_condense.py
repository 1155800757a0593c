"""Teacher-only condensation (SRe2L/CDA recover + FKD relabel) on Fashion-MNIST, measured end to end.

For each IPC: ``datafree condense --method teacher`` from the ResNet-14 teacher (no real data),
then ``datafree evaluate-set --protocol kd --crop-labels --temperature 20 --fair`` on each student
architecture: the student trains on the stored crop labels (no live teacher), and the same command
relabels a random real subset of the same IPC with the same recipe and trains on it identically
(IOR). Condensation time, image and label storage are recorded beside the accuracies. 1 thread.

    python -m benchmarks.teacher_condense --teacher ../main/artifacts/quant/teachers/resnet14 \\
        --ipc 10 --iterations 300 --models 2 --out artifacts/teacher-condense
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.calls import call
from datafree.data.transfer import read_manifest

ARCHS = {"convnet": "{}", "resnet8": "{}"}  # ConvNet-128 (the protocol's network) and ResNet-8


@torch.no_grad()
def bn_fit(teacher_path: str, set_dir: Path, ipc: int, data_root: str) -> dict[str, float]:
    """How far a set sits from the teacher's BatchNorm statistics, against as many random real training images.

    The recovery's own BN term (first layer x10, every BN layer, whole images in one batch) evaluated on the
    final images, and the teacher's mean top-1 probability on them. Needs no test image: this is the
    diagnostic that chose ``bn`` (docs/condensation.md).
    """
    from datafree.api import load_dataset, load_teacher
    from datafree.condense import ClassPool
    from datafree.data import dataset_spec
    from datafree.data.transfer import TransferSet
    from datafree.hooks import BatchNormStatistics

    teacher, _ = load_teacher(teacher_path)
    teacher.eval()
    recovered = TransferSet(set_dir)
    images = recovered.get_batch(torch.arange(len(recovered)))[0]
    train = load_dataset("fashion-mnist", "train", data_root)
    real = ClassPool.from_dataset(train, dataset_spec(train)).sample(ipc, torch.Generator().manual_seed(0)).flatten(0, 1)
    stats = BatchNormStatistics(teacher, first_layer_weight=10.0)
    out = {}
    for name, x in (("set", images), ("real", real)):
        with stats.recording():
            probs = teacher(x).softmax(1)
        out[f"bn_distance_{name}"] = float(stats.loss())
        out[f"top_prob_{name}"] = float(probs.max(1).values.mean())
    stats.remove()
    return out


def run(args: argparse.Namespace, ipc: int) -> dict:
    out = Path(args.out)
    set_dir = out / f"teacher-ipc{ipc}"
    overrides = [f"iterations={args.iterations}", f"crops={args.crops}", f"relabel_epochs={args.epochs}", *args.set]
    argv = ["condense", "--method", "teacher", "--ipc", str(ipc), "--teacher", args.teacher, "--seed", "0",
            "--out", str(set_dir), "--no-progress", *[a for o in overrides for a in ("--set", o)]]
    if (set_dir / "manifest.json").is_file():
        argv.append("--resume")
    call(argv)
    manifest = read_manifest(set_dir)
    row = {"ipc": ipc, "condense_argv": ["datafree", *argv], "condensation_time_s": manifest["condensation_time_s"],
           "iterations": manifest["iterations_done"], "image_bytes": manifest.get("image_bytes"),
           "crop_label_bytes": manifest.get("crop_label_bytes"),
           **bn_fit(args.teacher, set_dir, ipc, args.data_root), "students": {}}
    print(f"IPC {ipc}: BN distance {row['bn_distance_set']:.2f} (random real images {row['bn_distance_real']:.2f}), "
          f"teacher's top-1 probability {row['top_prob_set']:.3f} (real {row['top_prob_real']:.3f})", flush=True)
    if args.diagnose_only:
        return row
    for arch, kwargs in ARCHS.items():
        result = out / f"eval-ipc{ipc}-{arch}.json"
        eval_argv = ["evaluate-set", str(set_dir), "--protocol", "kd", "--crop-labels", "--temperature", "20",
                     "--arch", arch, "--arch-kwargs", kwargs, "--models", str(args.models), "--teacher", args.teacher,
                     "--batch-size", str(args.batch_size),
                     "--fair", "--data-root", args.data_root, "--out", str(result), "--no-progress"]
        t0 = time.perf_counter()
        call(eval_argv)
        record = json.loads(result.read_text())
        row["students"][arch] = {"argv": ["datafree", *eval_argv], "accuracies": record["accuracies"],
                                 "accuracy_mean": record["accuracy_mean"], "accuracy_std": record["accuracy_std"],
                                 "random_accuracies": record["fair"]["random_control"]["accuracies"],
                                 "ior": record["fair"]["ior"], "eval_time_s": time.perf_counter() - t0}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--ipc", type=int, nargs="+", default=[10])
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--crops", type=int, default=1)
    p.add_argument("--epochs", type=int, default=300, help="relabelled crop epochs = student epochs")
    p.add_argument("--models", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more condense --set overrides")
    p.add_argument("--batch-size", type=int, default=32, help="student batch (256: one step an epoch at IPC 10)")
    p.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", default="artifacts/teacher-condense")
    p.add_argument("--diagnose-only", action="store_true",
                   help="condense and print the BN-statistics fit, without training students (no test image read)")
    args = p.parse_args()
    torch.set_num_threads(1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    rows = [run(args, ipc) for ipc in args.ipc]
    summary = Path(args.out) / "summary.json"
    summary.write_text(json.dumps(rows, indent=1))
    for r in rows:
        for arch, s in r.get("students", {}).items():
            rnd = sum(s["random_accuracies"]) / len(s["random_accuracies"])
            print(f"IPC {r['ipc']} {arch}: {s['accuracy_mean']:.2f} +- {s['accuracy_std']:.2f} (random subset, same "
                  f"crop labels: {rnd:.2f}; IOR {s['ior']['mean']:+.2f}); condensation {r['condensation_time_s']:.0f}s; "
                  f"images {r['image_bytes']} B, crop labels {r['crop_label_bytes']} B")


if __name__ == "__main__":
    main()
