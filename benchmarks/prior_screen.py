"""A few seconds' look at what an image-prior weight does to a pair's synthetic images, before any student.

Synthesizes ``--count`` images from the pair's teacher with the zskd preset at its bench settings plus
``--base`` overrides (or, with ``--variant``, with the synthesis of a benchmarks.datafree_kd method or variant),
once per named row of extra overrides, and prints for each how the teacher sees them
(benchmarks.teacher_view) and their pixel statistics in [0, 1] units: mean, share below 0.1 and total
variation (mean |neighbour difference|, datafree.losses.total_variation). The real test split's row is there
as a diagnostic only: a data-free user has no real images, so a weight is read off the images' own change
(and their grid, ``preview.png`` under ``--out``), never chosen to match a real number or any accuracy.

    python -m benchmarks.prior_screen --rows 'base={}' 'tv1={"tv": 0.0784}' 'tv10={"tv": 0.784}'
    python -m benchmarks.prior_screen --pair resnet --root artifacts-res --variant fast5-stored-ngf32-inherit \
        --count 2560 --results prior_screen_resnet_teacher94b6d71c --rows 'base={}' 'tv1={"tv": 0.0784}'
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.baselines import PAIRS, REPO, teacher_dir
from benchmarks.datafree_kd import METHODS as DATAFREE_KD_METHODS
from benchmarks.datafree_kd import method_recipe
from benchmarks.readme import publish
from benchmarks.teacher_view import pixel_view, teacher_view
from datafree import api
from datafree.audit import gather
from datafree.checkpoint import load_model
from datafree.data import iterate_batches, load_dataset
from datafree.data.transfer import TransferSet
from datafree.losses import total_variation
from datafree.synthesis import METHODS, preset


def image_view(teacher: torch.nn.Module, images: torch.Tensor, spec) -> dict[str, float]:
    """The teacher's view of ``images`` and their pixel statistics, total variation in [0, 1] units included."""
    pixels = spec.denormalize(images).clamp(0, 1)
    return {**teacher_view(teacher, images), **pixel_view(images, spec), "tv": total_variation(pixels).item()}


def screened_synthesis(variant: str | None, zskd_base: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """``(preset, overrides every row shares, words for the report)``: a benchmarks.datafree_kd method's or variant's
    synthesis, or zskd at its bench settings plus ``zskd_base``."""
    if variant:
        name, base = method_recipe(variant)[:2]
        return name, base, f"{variant}'s synthesis ({name}, {json.dumps(base)})"
    return "zskd", {**METHODS["zskd"].bench, **zskd_base}, f"zskd images (bench settings and {json.dumps(zskd_base)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", choices=PAIRS, default="lenet")
    parser.add_argument("--base", type=json.loads, default={"augment": True, "oh_temperature": 4.0, "input_stats": 1.0},
                        help="overrides of the zskd bench settings every row shares (JSON; default: the BN-free recipe)")
    parser.add_argument("--variant", choices=DATAFREE_KD_METHODS, default=None, metavar="METHOD",
                        help="synthesize as this benchmarks.datafree_kd method or variant does (its preset and "
                             "overrides) in place of zskd with --base")
    parser.add_argument("--root", type=Path, default=Path("artifacts"), help="where the pair's teacher is")
    parser.add_argument("--rows", nargs="+", default=["base={}"], help="NAME=JSON extra overrides, one row each")
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("artifacts/prior_screen"))
    parser.add_argument("--results", default=None,
                        help="results file stem under benchmarks/results (default: prior_screen_PAIR); another "
                             "teacher file's screen gets its own, as in benchmarks.datafree_kd")
    args = parser.parse_args(argv)
    stem = args.results or f"prior_screen_{args.pair}"
    os.chdir(REPO)
    teacher, info = load_model(teacher_dir(args.pair, args.root))
    teacher.eval()
    x_test = next(iter(iterate_batches(load_dataset("fashion-mnist", "test"), 1000)))[0]
    views = {"real test images (1000; diagnostic)": image_view(teacher, x_test, info.spec)}
    name, base, described = screened_synthesis(args.variant, args.base)
    for row in args.rows:
        row_name, _, extra = row.partition("=")
        config = preset(name, **{**base, **json.loads(extra or "{}")})
        out = args.out / args.pair / row_name
        shutil.rmtree(out, ignore_errors=True)  # this script's own scratch folder
        api.synthesize(out, teacher, info, name, args.count, config=config, seed=args.seed, progress=False)
        images = gather(TransferSet(out), list(range(args.count)))[0]
        views[f"{row_name}: {extra}"] = image_view(teacher, images, info.spec)
    lines = ["| images | teacher's mean top logit | top probability | mean pixel | pixels < 0.1 (%) | total variation |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {v['top_logit']:.1f} | {v['top_prob']:.3f} | {v['pixel_mean']:.3f} | {v['dark_pixels']:.1f} "
              f"| {v['tv']:.3f} |" for k, v in views.items()]
    md = (f"Fashion-MNIST, {PAIRS[args.pair].name} (teacher file sha256 {info.sha256[:8]}): {args.count} "
          f"{described}, seed {args.seed}, per row.\n\n" + "\n".join(lines)
          + "\n\nProduced by `python -m benchmarks.prior_screen --pair " + args.pair
          + (f" --root {args.root}" if args.root != parser.get_default("root") else "")
          + (f" --variant {args.variant}" if args.variant else "")
          + (f" --count {args.count}" if args.count != parser.get_default("count") else "")
          + (f" --results {args.results}" if args.results else "") + " --rows "
          + " ".join(f"'{r}'" for r in args.rows) + "`.")
    publish(stem, md, {"method": name, "variant": args.variant, "base": base, "rows": args.rows, "count": args.count,
                       "seed": args.seed, "teacher_sha256": info.sha256, "views": views})
    return 0


if __name__ == "__main__":
    sys.exit(main())
