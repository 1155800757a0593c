"""(b) Distill privately: synthesize -> distill -> audit, without reading the teacher's training data.

    python examples/distill_privately.py --teacher runs/teacher --out runs/private

1. synthesize a transfer set from the teacher alone (DeepInversion: BatchNorm statistics);
2. distill a student on that set: the stored teacher logits are the labels, no dataset is read;
3. test the student on the real test split: the only dataset file the pipeline reads;
4. audit (the data owner's check, and the one step that reads the training split): how close the
   synthetic images come to training images, against fresh test images, and whether a membership
   attack on the student beats chance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datafree.api as df
from datafree.audit import summary
from datafree.data import load_dataset
from datafree.data.transfer import TransferSet
from datafree.train import TrainConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="a teacher with BatchNorm (run directory or checkpoint)")
    parser.add_argument("--student", default="lenet5_half")
    parser.add_argument("--count", type=int, default=2560, help="synthetic images")
    parser.add_argument("--iterations", type=int, default=100, help="synthesis steps per batch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=40, help="student epochs on the synthetic set")
    parser.add_argument("--audit-count", type=int, default=1000, help="images of the audit's baseline and attack")
    parser.add_argument("--data-root", help="where the dataset files are (default: $DATAFREE_DATA, the system copy)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    teacher, info = df.load_teacher(args.teacher)  # a datafree run: architecture and spec from its sidecar
    config = df.preset("deepinversion", iterations=args.iterations, batch_size=args.batch_size)
    made = df.synthesize(args.out / "set", teacher, info, "deepinversion", args.count, config=config, progress=False)
    synthetic = TransferSet(made.out)
    student = df.distill(args.out / "student", args.student, TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, alpha=0.0, temperature=4.0, lr=0.01, augment="crop-flip",
        clip_grad_norm=5.0, progress=False), train=synthetic)  # the set's stored logits: no teacher, no data

    test = load_dataset(info.spec.name, "test", args.data_root)  # the first dataset file read
    accuracy = df.evaluate(df.load_model(student.out)[0], test).accuracy
    print(f"student: {accuracy:.2f}% on the test split, trained on {made.count} synthetic images only")

    train = load_dataset(info.spec.name, "train", args.data_root)  # the data owner's audit
    model, model_info = df.load_model(student.out)
    audit = df.audit(args.out / "audit", synthetic, train, test, teacher=teacher, teacher_info=info,
                     students=[(str(student.out), model, model_info)], overwrite=True,
                     config=df.AuditConfig(baseline_count=args.audit_count, mia_count=args.audit_count))
    print(summary(audit.report, audit.out))


if __name__ == "__main__":
    main()
