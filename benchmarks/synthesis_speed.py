"""Where synthesis time goes: per-batch cost of deepinversion, cmi and fast on BatchNorm teachers.

For each teacher -> student pair and each preset (plus the ``--set`` changes a user would try),
one synthesis call is timed end to end (median of ``--repeats``, after a warm-up call) and split
into its parts, each timed alone on the same batch: the teacher's forward and backward to the
input, the generator's forward and backward, the student's forward and backward (adversarial
term), and the teacher's labelling pass. Timing runs on weights as initialised: the cost does not
depend on what the networks learned.

Also measured, side by side on the same teacher: channels_last against the default layout for the
teacher's gradient to its input, ``torch.inference_mode`` against ``torch.no_grad`` for the
labelling pass, and 1 against 2 threads.

    OMP_NUM_THREADS=1 python -m benchmarks.synthesis_speed [--compile]   # ~10 min on one core
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.readme import publish
from datafree.data import FASHION_MNIST
from datafree.models import build_model
from datafree.synthesis import preset
from datafree.synthesis.engine import Synthesizer
from datafree.train import peak_memory_mb

PAIRS = {
    "LeNet-5-BN -> LeNet-5-half": ("lenet5_bn", {}, "lenet5_half", {}),
    "ResNet-14 -> ResNet-8 (width 8)": ("resnet14", {}, "resnet8", {"width": 8}),
}
# (label, preset, --set overrides): the presets as shipped, then what a user would try first
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("deepinversion", "deepinversion", {}),
    ("deepinversion, batch 256", "deepinversion", {"batch_size": 256}),
    ("deepinversion, no augmentation", "deepinversion", {"augment": False}),
    ("cmi", "cmi", {}),
    ("cmi, ngf 16", "cmi", {"ngf": 16}),
    ("cmi, no contrastive term", "cmi", {"contrastive": 0.0}),
    ("fast", "fast", {}),
    ("fast, ngf 16, batch 128", "fast", {"ngf": 16, "batch_size": 128}),
    ("fast, no adversarial term", "fast", {"adv": 0.0}),
    # the README's stored recipe (fast5-stored: ngf 16), the ResNet pair's wider variant (ngf 32) and Fast-DFKD's own
    # width, everything else equal: what a wider generator costs per batch
    ("fast5-stored (the README's recipe): ngf 16, batch 128, no adversarial term", "fast5",
     {"ngf": 16, "batch_size": 128, "adv": 0.0}),
    ("fast5-stored at ngf 32", "fast5", {"ngf": 32, "batch_size": 128, "adv": 0.0}),
    ("fast5-stored at ngf 64", "fast5", {"ngf": 64, "batch_size": 128, "adv": 0.0}),
]


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: allocator, first-call dispatch
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def input_grad_pass(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One forward and backward of ``model`` to a fresh copy of ``x`` (the gradient synthesis needs)."""
    def run() -> None:
        model(x.clone().requires_grad_(True)).sum().backward()

    return run


def parts(synth: Synthesizer, repeats: int) -> dict[str, float]:
    """Seconds per generator step of each part of a synthesis step, timed alone on one batch."""
    c = synth.config
    z, y, _ = synth._draw()
    gen = synth.generator
    out: dict[str, float] = {}

    def generator_pass() -> None:
        gen.zero_grad(set_to_none=True)
        gen(z, y).sum().backward()

    x = gen(z, y).detach()
    out["generator fwd+bwd"] = median_time(generator_pass, repeats)
    out["teacher fwd+bwd"] = median_time(input_grad_pass(synth.teacher, x), repeats) * (2 if c.contrastive > 0 else 1)
    if c.adv > 0 and synth.student is not None:
        student = synth.student.eval().requires_grad_(False)
        out["student fwd+bwd"] = median_time(input_grad_pass(student, x), repeats)
    out["teacher labelling (no_grad)"] = median_time(lambda: synth.label(x), repeats) / c.iterations
    return out


def time_case(teacher, student, spec, name: str, overrides: dict[str, Any], iterations: int,
              repeats: int) -> dict[str, Any]:
    config = preset(name, **overrides)
    per_batch_iterations = config.iterations
    config = preset(name, **{**overrides, "iterations": iterations})
    synth = Synthesizer(teacher, spec, config, student=student if config.needs_student else None, seed=0)
    try:
        call = median_time(synth.synthesize, repeats)
        split = parts(synth, repeats)
    finally:
        synth.close()
    step = call / iterations
    return {"preset": name, "set": overrides, "batch_size": config.batch_size,
            "iterations_per_batch": per_batch_iterations, "s_per_step": step,
            "s_per_batch": step * per_batch_iterations, "ms_per_image": 1000 * step * per_batch_iterations
            / config.batch_size, "parts_s_per_step": split, "peak_rss_mb": peak_memory_mb(torch.device("cpu"))}


def layout_and_modes(teacher, spec, repeats: int, compile_teacher: bool = False) -> list[dict[str, Any]]:
    """channels_last vs default layout, inference_mode vs no_grad, 1 vs 2 threads (and optionally
    torch.compile): one teacher, batch 256."""
    x = torch.rand(256, *spec.shape, generator=torch.Generator().manual_seed(0))
    rows = []
    for layout in (torch.contiguous_format, torch.channels_last):
        teacher = teacher.to(memory_format=layout)
        rows.append({"what": f"teacher fwd+bwd to the input, {str(layout).split('.')[-1]}",
                     "s": median_time(input_grad_pass(teacher, x), repeats)})
    with torch.no_grad():
        rows.append({"what": "teacher labelling pass, no_grad", "s": median_time(lambda: teacher(x), repeats)})
    with torch.inference_mode():
        rows.append({"what": "teacher labelling pass, inference_mode", "s": median_time(lambda: teacher(x), repeats)})
    before = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rows.append({"what": f"teacher fwd+bwd to the input, {threads} thread(s)",
                     "s": median_time(input_grad_pass(teacher, x), repeats)})
    torch.set_num_threads(before)
    if compile_teacher:  # minutes of compilation on a CPU: only on request
        compiled = torch.compile(teacher)
        start = time.perf_counter()
        input_grad_pass(compiled, x)()
        rows.append({"what": "torch.compile: first call (compilation)", "s": time.perf_counter() - start})
        rows.append({"what": "teacher fwd+bwd to the input, torch.compile",
                     "s": median_time(input_grad_pass(compiled, x), repeats)})
    return rows


def to_markdown(data: dict[str, Any]) -> str:
    lines = ["| pair | case | batch | steps/batch | s per step | s per batch | ms per image | where a step goes (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        split = ", ".join(f"{k} {v:.3f}" for k, v in r["parts_s_per_step"].items())
        lines.append(f"| {r['pair']} | {r['case']} | {r['batch_size']} | {r['iterations_per_batch']} | "
                     f"{r['s_per_step']:.3f} | {r['s_per_batch']:.2f} | {r['ms_per_image']:.1f} | {split} |")
    lines += ["", "| teacher | measurement (batch 256) | s |", "|---|---|---|"]
    for r in data["modes"]:
        lines.append(f"| {r['teacher']} | {r['what']} | {r['s']:.4f} |")
    lines.append(f"\n{data['threads']} thread(s), median of {data['repeats']} after a warm-up; "
                 f"`{data['command']}`; peak RSS {max(r['peak_rss_mb'] for r in data['rows']):.0f} MB.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=3, help="generator steps per timed call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--compile", action="store_true", help="also time torch.compile on the teacher (slow to compile)")
    p.add_argument("--no-publish", action="store_true", help="print only; keep benchmarks/results unchanged")
    args = p.parse_args(argv)
    spec = FASHION_MNIST
    rows, modes = [], []
    for pair in args.pairs:
        t_arch, t_kw, s_arch, s_kw = PAIRS[pair]
        teacher = build_model(t_arch, spec, seed=0, **t_kw).eval()
        student = build_model(s_arch, spec, seed=1, **s_kw)
        for label, name, overrides in CASES:
            row = time_case(teacher, student, spec, name, overrides, args.iterations, args.repeats)
            rows.append({"pair": pair, "case": label, **row})
            print(f"{pair} | {label}: {row['s_per_step']:.3f} s/step, {row['s_per_batch']:.2f} s/batch")
        modes += [{"teacher": t_arch, **m} for m in layout_and_modes(build_model(t_arch, spec, seed=0, **t_kw).eval(),
                                                                      spec, args.repeats, args.compile)]
    data = {"rows": rows, "modes": modes, "threads": torch.get_num_threads(), "repeats": args.repeats,
            "iterations": args.iterations, "command": "OMP_NUM_THREADS=1 python -m benchmarks.synthesis_speed"}
    md = to_markdown(data)
    if args.no_publish:
        print(md)
    else:
        publish("synthesis_speed", md, data)


if __name__ == "__main__":
    main()
