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


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, padding=3), dict(kernel_size=3, stride=2, padding=1, dilation=2),
                                    dict(kernel_size=(3, 5), padding=(0, 2), bias=False)])
def test_im2col_conv_is_the_convolution_and_its_gradients(kwargs):
    from datafree.models.im2col import Im2colConv2d, im2col_single_channel_convs

    conv = torch.nn.Conv2d(1, 6, **kwargs)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1), conv, torch.nn.ReLU())
    keys, weight = list(net.state_dict()), conv.weight
    x = torch.randn(4, 3, 11, 9, generator=torch.Generator().manual_seed(0), requires_grad=True)
    reference = net(x)
    grads = torch.autograd.grad(reference.square().sum(), [x, *net.parameters()])
    assert im2col_single_channel_convs(net) == 1  # the 3-channel convolution is left alone
    assert type(net[1]) is Im2colConv2d and type(net[0]) is torch.nn.Conv2d
    assert list(net.state_dict()) == keys and net[1].weight is weight  # same parameters, same checkpoint
    out = net(x)
    assert torch.allclose(out, reference, atol=1e-5), (out - reference).abs().max()
    for got, want in zip(torch.autograd.grad(out.square().sum(), [x, *net.parameters()]), grads):
        assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_compile_swaps_the_matching_networks_grayscale_convolutions():
    from datafree.models.im2col import Im2colConv2d

    def first_conv(condenser):
        return next(m for m in condenser.fresh_net().modules() if isinstance(m, torch.nn.Conv2d))

    assert type(first_conv(_condenser("dsa", compile=True))) is Im2colConv2d
    assert type(first_conv(_condenser("dsa"))) is torch.nn.Conv2d
