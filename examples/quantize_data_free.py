"""Distill, then quantize, without a real training image: teacher -> synthetic set -> student -> int8.

    python examples/quantize_data_free.py --teacher artifacts/quant/teachers/resnet14 --out runs/df-int8

1. synthesize a transfer set from the teacher alone (Fast-DFKD's meta-generator, no adversarial term);
2. distill a student on it (here a fresh ResNet-8 of width 8; ``datafree compress`` + ``--student-init``
   gives KegNet's compressed-teacher student instead, as benchmarks/quantize.py does);
3. quantize the student to int8, calibrated on images of the same set;
4. reload the int8 model (ONNX: no code runs) and test it: the test split is the only real data read.

The CLI equivalent is in the README ("Distill, then quantize"). Sizes here are small so it runs in
minutes on a CPU; the benchmark's settings give a better student.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from datafree.checkpoint import ModelInfo, load_model, save_model
from datafree.data import load_dataset
from datafree.data.transfer import TransferSet
from datafree.models import build_model
from datafree.quantize import evaluate_int8, load_int8, quantize
from datafree.synthesis import preset
from datafree.synthesis.run import synthesize_set
from datafree.train import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="a teacher with BatchNorm (checkpoint or run directory)")
    parser.add_argument("--count", type=int, default=2560, help="synthetic images")
    parser.add_argument("--epochs", type=int, default=5, help="student epochs on the synthetic set")
    parser.add_argument("--out", type=Path, default=Path("runs/df-int8"))
    args = parser.parse_args()

    teacher, info = load_model(args.teacher)
    synthetic = args.out / "set"
    synthesize_set(synthetic, teacher, info, "fast5", preset("fast5", adv=0.0, ngf=16, batch_size=128), args.count,
                   seed=0, resume=True)

    student = build_model("resnet8", info.spec, seed=0, width=8)
    config = TrainConfig(epochs=args.epochs, alpha=0.0, temperature=4.0, lr=0.05, augment="crop-flip",
                         clip_grad_norm=5.0)
    Trainer(student, config, teacher=teacher).fit(TransferSet(synthetic))  # no test split during training
    save_model(args.out / "student" / "model.safetensors", student, ModelInfo("resnet8", info.spec, {"width": 8}))

    result = quantize(args.out / "student", args.out / "int8", calibration=[synthetic], calibration_count=256,
                      test=False, overwrite=True)
    int8 = load_int8(args.out / "int8")
    test = load_dataset(info.spec.name, "test")  # the only real images read, for reporting
    fp32 = load_model(args.out / "student")[0]
    from datafree.train import evaluate

    print(f"student fp32 {evaluate(fp32, test)['accuracy']:.2f}%, int8 {evaluate_int8(int8, test)['accuracy']:.2f}% "
          f"({result['sizes']['int8_onnx_bytes'] / 1024:.0f} KiB, calibrated on "
          f"{result['calibration']['count']} synthetic images) -> {args.out / 'int8'}")


if __name__ == "__main__":
    main()
