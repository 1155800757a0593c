"""DC/DSA's bfloat16 lever changes the precision of the first-order passes, not what a step computes."""

from __future__ import annotations

import pytest
import torch

from datafree.condense import METHODS, method_config
from tests.test_condense import SMALL_NET, SPEC, tiny_pool


def _condenser(method: str, **levers):
    config = method_config(method, ipc=2, batch_real=8, outer_loop=2, inner_loop=2, **SMALL_NET, **levers)
    return METHODS[method].condenser(config, SPEC, torch.Generator().manual_seed(0), pool=tiny_pool())


def _one_step(method: str, **levers) -> tuple[dict[str, float], torch.Tensor]:
    condenser = _condenser(method, **levers)
    start = condenser.images.detach().clone()
    logs = condenser.step()
    return logs, condenser.images.detach() - start


@pytest.mark.parametrize("method", ["dc", "dsa"])
def test_bf16_first_order_passes_give_nearly_the_float32_step(method):
    logs32, moved32 = _one_step(method)
    logs16, moved16 = _one_step(method, bf16=True)
    assert moved32.abs().sum() > 0 and moved16.dtype == torch.float32  # the images moved and stay float32
    assert not torch.equal(moved16, moved32)  # autocast took effect
    cos = torch.nn.functional.cosine_similarity(moved16.flatten(), moved32.flatten(), dim=0)
    assert cos > 0.9, cos
    assert logs16["dc"] == pytest.approx(logs32["dc"], rel=0.1)  # the matching loss of the step


def test_compiled_first_order_passes_give_the_eager_step():
    from datafree.condense.dc import _class_loss

    _, eager = _one_step("dc")
    _, compiled = _one_step("dc", compile=True)
    assert torch.allclose(compiled, eager, atol=1e-5), (compiled - eager).abs().max()
    assert _condenser("dc", compile=True)._first_order_loss is not _class_loss  # the compiled loss is the one used
