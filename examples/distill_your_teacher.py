"""Distill your own teacher with the Python API (real-data KD; the data-free sources plug in the same way).

    python examples/distill_your_teacher.py --teacher artifacts/teachers/fashion-mnist-lenet5 --epochs 5

A teacher saved by another project works too: ``load_model("ckpt.pth", arch="resnet14",
spec=FASHION_MNIST)`` reads ``.pt/.pth`` files without unpickling code, unwraps
``state_dict``/``model``/``net`` and strips ``module.`` prefixes. ``datafree.teacher.load_teacher``
also reads TorchScript and torch.export files and takes the spec from ``resolve_spec(dataset=...,
input_shape=..., num_classes=...)`` (what the CLI's ``--teacher`` does).
"""

from __future__ import annotations

import argparse

from datafree.checkpoint import ModelInfo, load_model, save_model
from datafree.data import load_dataset
from datafree.models import build_model
from datafree.train import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="checkpoint file or run directory")
    parser.add_argument("--student", default="lenet5_half")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="student.safetensors")
    args = parser.parse_args()

    teacher, info = load_model(args.teacher)  # arch and DataSpec come from the sidecar
    train, test = load_dataset(info.spec.name, "train"), load_dataset(info.spec.name, "test")
    student = build_model(args.student, info.spec, seed=0)
    config = TrainConfig(epochs=args.epochs, alpha=0.1, temperature=4.0, lr=0.05)
    result = Trainer(student, config, teacher=teacher).fit(train, test)
    print(f"student test accuracy after the last epoch: {result['test_accuracy']:.2f}%")
    save_model(args.out, student, ModelInfo(args.student, info.spec, metrics={"test_accuracy": result["test_accuracy"]}))


if __name__ == "__main__":
    main()
