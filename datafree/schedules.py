"""Learning-rate shapes shared by the trainer, the synthesis engine and teacher-only recovery."""

from __future__ import annotations

import math


def cosine_decay(step: int, total: int) -> float:
    """Factor of the base learning rate at ``step`` of ``total``: 1 at the start, 0 at ``total`` (half a cosine).

    Late small steps let what is being optimised settle instead of jittering around the optimum at full lr.
    """
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
