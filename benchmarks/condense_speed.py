"""Seconds per condensation iteration: ``datafree condense`` against the reference DatasetCondensation code.

The reference (VICO-UoE/DatasetCondensation, fetched outside this repository: ``--reference DIR``)
runs where it stands, its network, DiffAugment and loop unchanged: this script only imports its
``main_DM`` / ``main`` module, wraps the module's ``get_network`` with a clock (the loop draws one
fresh network per iteration, so the time between two draws is one iteration) and stops it after
``--iterations`` draws, and makes DiffAugment's output contiguous (on this torch it can return a
batch the reference network's ``view`` refuses). DSA runs with the augmentation strategy of the reference's
readme command (``main.py``'s own default is none). Ours is :class:`datafree.condense` 's condenser for the same method and
settings, timed step by step. Both run in this process with the same thread count, alternately,
``--rounds`` times, so machine load hits both alike; the first ``--warmup`` iterations are dropped.

    python -m benchmarks.condense_speed --reference /work/ref21 --method dm --ipc 10 --threads 1 \
        --ours '' --ours real_compile=true --ours real_compile=true,real_bf16=true
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

FMNIST = "/usr/share/datasets/fashion-mnist"


class _Stop(Exception):
    pass


def reference_times(ref: Path, method: str, ipc: int, batch_real: int, iterations: int, data: Path) -> list[float]:
    """Per-iteration seconds of the reference loop (``iterations`` of them)."""
    sys.path.insert(0, str(ref))
    module = importlib.import_module("main_DM" if method == "dm" else "main")
    stamps: list[float] = []
    original = module.get_network

    def clocked(*args: Any, **kwargs: Any):
        stamps.append(time.perf_counter())
        if len(stamps) > iterations:
            raise _Stop
        return original(*args, **kwargs)

    module.get_network = clocked
    # on this torch, DiffAugment can return a non-contiguous batch that the reference network's
    # ``out.view(out.size(0), -1)`` refuses (strides (784, 1, 28, 1)); a copy of its output (one 256-image copy per
    # class, well under 1% of an iteration) with standard strides lets the reference run unchanged otherwise
    augment = module.DiffAugment
    contiguous = lambda *a, **k: augment(*a, **k).clone(memory_format=torch.contiguous_format)  # noqa: E731
    utils = sys.modules["utils"]  # the reference's utils: its inner loop's ``epoch`` augments through its own name
    module.DiffAugment = utils.DiffAugment = contiguous
    argv = ["--dataset", "FashionMNIST", "--model", "ConvNet", "--ipc", str(ipc), "--eval_mode", "M",
            "--num_exp", "1", "--num_eval", "1", "--Iteration", str(iterations + 5), "--batch_real", str(batch_real),
            "--data_path", str(data), "--save_path", str(data / "result"), "--init", "real"]
    if method in ("dc", "dsa"):
        argv += ["--method", "DSA" if method == "dsa" else "DC"]
    if method == "dsa":  # main.py's own default strategy is 'None' (no augmentation); its readme's DSA command names it
        argv += ["--dsa_strategy", "color_crop_cutout_flip_scale_rotate"]
    sys.argv = ["main", *argv]
    cwd = os.getcwd()
    os.chdir(ref)
    try:
        module.main()
    except _Stop:
        pass
    finally:
        os.chdir(cwd)
        module.get_network, module.DiffAugment, utils.DiffAugment = original, augment, augment
    return [b - a for a, b in zip(stamps, stamps[1:])]


def ours_times(method: str, ipc: int, batch_real: int, iterations: int, overrides: dict[str, Any]) -> list[float]:
    from datafree.condense import METHODS, ClassPool, method_config
    from datafree.data import dataset_spec, load_dataset

    train = load_dataset("fashion-mnist", "train", FMNIST)
    spec = dataset_spec(train)
    pool = ClassPool.from_dataset(train, spec)
    config = method_config(method, ipc=ipc, batch_real=batch_real, **overrides)
    condenser = METHODS[method].condenser(config, spec, torch.Generator().manual_seed(0), pool=pool)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        condenser.step()
        times.append(time.perf_counter() - t0)
    condenser.close()
    return times


def reference_data(root: Path) -> Path:
    """torchvision's FashionMNIST layout (the decompressed files) from the local copy: nothing is downloaded."""
    import gzip
    import shutil

    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in Path(FMNIST).glob("*.gz"):
        target = raw / f.name[:-3]
        if not target.exists():
            with gzip.open(f) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    (root / "result").mkdir(exist_ok=True)
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="a checkout of VICO-UoE/DatasetCondensation")
    p.add_argument("--method", default="dm", choices=("dm", "dsa", "dc"))
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--batch-real", type=int, default=256)
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ours", action="append", default=[], metavar="KEY=JSON[,KEY=JSON...]",
                   help="a variant of ours to time (config overrides; repeatable; '' = the defaults)")
    p.add_argument("--data", default="artifacts/reference-data")
    p.add_argument("--out", help="write the result JSON here")
    args = p.parse_args()
    argv = ["python", "-m", "benchmarks.condense_speed", *sys.argv[1:]]  # the reference's run replaces sys.argv
    torch.set_num_threads(args.threads)
    variants = {v: {k: json.loads(x) for k, x in (kv.split("=", 1) for kv in v.split(",") if kv)}
                for v in (args.ours or [""])}
    data = reference_data(Path(args.data).resolve())
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        ref = reference_times(Path(args.reference), args.method, args.ipc, args.batch_real, args.iterations, data)
        row: dict[str, Any] = {"reference_s_per_iter": statistics.median(ref[args.warmup:]), "ours": {}}
        for name, overrides in variants.items():
            ours = statistics.median(ours_times(args.method, args.ipc, args.batch_real, args.iterations,
                                                overrides)[args.warmup:])
            row["ours"][name or "defaults"] = {"s_per_iter": ours, "ratio": ours / row["reference_s_per_iter"]}
        rounds.append(row)
        print(f"round {r}: reference {row['reference_s_per_iter']:.3f} s/iter; "
              + "; ".join(f"ours [{k}] {v['s_per_iter']:.3f} s/iter ({v['ratio']:.2f}x)" for k, v in row["ours"].items()),
              flush=True)
    result = {"method": args.method, "ipc": args.ipc, "batch_real": args.batch_real, "threads": args.threads,
              "dsa": args.method != "dc", "iterations": args.iterations,
              "warmup": args.warmup, "rounds": rounds, "argv": argv, "torch": torch.__version__}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
