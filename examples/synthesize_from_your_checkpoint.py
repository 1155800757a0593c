"""(a) Synthesize a transfer set from your own checkpoint: a plain state_dict of your own nn.Module.

    python examples/synthesize_from_your_checkpoint.py --checkpoint my_net.pt --out runs/my-set

``load_teacher`` reads the state_dict without unpickling code, builds the module named by
``arch`` ("file:callable"; the file beside this script here, your package in real use), loads the
weights and probes it once on inputs of the spec. No dataset file is read: the spec says what the
inputs look like. ``--make-checkpoint`` writes an untrained ``SmallNet`` state_dict first, so the
script runs on its own (the tests use that).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import datafree.api as df
from datafree.data import FASHION_MNIST


class SmallNet(nn.Module):
    """Your model: any nn.Module works; DeepInversion needs BatchNorm layers to match."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a state_dict of SmallNet (.pt or .safetensors)")
    parser.add_argument("--make-checkpoint", action="store_true", help="write an untrained SmallNet state_dict first")
    parser.add_argument("--method", default="deepinversion", help="synthesis preset (default: %(default)s)")
    parser.add_argument("--count", type=int, default=1024, help="images to synthesize")
    parser.add_argument("--iterations", type=int, default=200, help="optimisation steps per batch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True, help="transfer-set directory")
    args = parser.parse_args(argv)

    if args.make_checkpoint:
        torch.save(SmallNet().state_dict(), args.checkpoint)
    arch = f"{Path(__file__).stem}:SmallNet"  # your_package.models:SmallNet in real use
    teacher, info = df.load_teacher(args.checkpoint, arch=arch, spec=FASHION_MNIST)
    config = df.preset(args.method, iterations=args.iterations, batch_size=args.batch_size)
    made = df.synthesize(args.out, teacher, info, args.method, args.count, config=config, progress=False)
    print(f"{made.count} images from {args.method} -> {made.out} (preview: {made.out / 'preview.png'})")


if __name__ == "__main__":
    main()
