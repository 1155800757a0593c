"""(d) Condense a dataset into a few images per class, then train a student on them.

    python examples/condense_and_train.py --out runs/condensed --ipc 10

1. DM (distribution matching) condenses the training split into ``--ipc`` images per class;
2. a fresh student trains on those images alone (hard labels, the condensation protocol's SGD);
3. it is tested on the real test split.
Every method of ``datafree condense --method`` is a ``method_config`` name; ``--set`` fields are its
keyword arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datafree.api as df


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="dm", help="condensation method (default: %(default)s)")
    parser.add_argument("--ipc", type=int, default=10, help="images per class")
    parser.add_argument("--iterations", type=int, default=200, help="condensation iterations")
    parser.add_argument("--batch-real", type=int, default=64, help="real images per class per iteration")
    parser.add_argument("--student", default="lenet5_half")
    parser.add_argument("--epochs", type=int, default=300, help="student epochs on the condensed set")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-root", help="where the dataset files are (default: $DATAFREE_DATA, the system copy)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    train = df.load_dataset(args.dataset, "train", args.data_root)
    test = df.load_dataset(args.dataset, "test", args.data_root)
    config = df.method_config(args.method, ipc=args.ipc, iterations=args.iterations, batch_real=args.batch_real,
                              net_kwargs={"width": 32})
    made = df.condense(args.out / "set", config, train=train, progress=False)
    student = df.distill(args.out / "student", args.student, df.TrainConfig(
        epochs=args.epochs, batch_size=256, lr=0.01, schedule="step", alpha=1.0, progress=False),
        train=df.TransferSet(made.out), test=test)
    print(f"{made.count} condensed images ({args.ipc} per class, {args.method}): student {student.test_accuracy:.2f}% "
          f"on the test split -> {student.out}")


if __name__ == "__main__":
    main()
