"""BatchNorm folded into the convolution or linear layer before it: the one implementation (QAT, weight selection)."""

from __future__ import annotations

import copy

from torch import nn

from datafree.errors import DatafreeError


def fold_batchnorm(model: nn.Module, *, purpose: str, instead: str) -> nn.Module:
    """A copy of ``model`` in eval mode (CPU, float32) with every Conv->BatchNorm and Linear->BatchNorm pair folded.

    torch.fx traces the model, so the pairs are the ones its forward computes, whatever order the modules were
    registered in; the result is an fx GraphModule with the original module names. A model fx cannot trace gets a
    one-line error: ``purpose`` needs a traceable model; ``instead`` says what to do.
    """
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).cpu().float().eval()
    try:
        return fuse(model, inplace=True)
    except Exception as e:  # symbolic tracing fails on data-dependent control flow
        raise DatafreeError(f"{purpose} needs a model torch.fx can trace ({str(e).splitlines()[0][:120]}); "
                            f"{instead}") from None
