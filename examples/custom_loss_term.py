"""(e) A synthesis loss term of your own, plugged into the engine next to a preset's terms.

    python examples/custom_loss_term.py --teacher runs/teacher --out runs/diverse-set

A term is a function ``(images, teacher_logits, target_classes) -> scalar`` that the generator
minimises, weighted inside the function; ``synthesize(..., terms={"name": fn})`` adds it to the
preset's terms (BN statistics, cross-entropy, priors). Here: a diversity term that pushes the
images of a batch apart in pixel space, so fewer synthetic images look alike. The set records the
term's name (``custom_terms`` in its manifest).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import datafree.api as df


def diversity(weight: float):
    """Minus the mean pairwise distance between the batch's images (scaled by ``weight``)."""

    def term(images: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(1)
        return -weight * torch.cdist(flat, flat).mean()

    return term


def mean_pairwise_distance(images: torch.Tensor) -> float:
    flat = images.flatten(1)
    return torch.cdist(flat, flat).mean().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="a teacher with BatchNorm (run directory or checkpoint)")
    parser.add_argument("--weight", type=float, default=0.01, help="weight of the diversity term")
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    teacher, info = df.load_teacher(args.teacher)
    config = df.preset("deepinversion", iterations=args.iterations, batch_size=args.batch_size)
    spread = {}
    for name, terms in (("plain", None), ("diverse", {"diversity": diversity(args.weight)})):
        made = df.synthesize(args.out / name, teacher, info, "deepinversion", args.count, config=config,
                             terms=terms, progress=False)
        images = df.TransferSet(made.out).get_batch(torch.arange(made.count))[0]
        spread[name] = mean_pairwise_distance(images)
    print(f"mean pairwise distance: plain {spread['plain']:.2f}, with the diversity term {spread['diverse']:.2f} "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
