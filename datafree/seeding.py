"""Drawing a seed for a nested random source from an explicit generator (the one line every draw shares)."""

from __future__ import annotations

import torch


def draw_seed(generator: torch.Generator) -> int:
    """A fresh 62-bit seed from ``generator``: for a sub-generator, or for code that reads the global RNG
    (run it under ``torch.random.fork_rng`` seeded with this), so every draw still comes from ``generator``."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))
