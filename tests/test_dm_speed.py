"""DM's speed levers change how the real embeddings are computed, not what they are."""

from __future__ import annotations

import torch

from datafree.condense import METHODS, method_config
from tests.test_condense import SMALL_NET, SPEC, tiny_pool


def _real_embeddings(**levers) -> torch.Tensor:
    return _condenser_embeddings(**levers)[1]


def _condenser_embeddings(**levers):
    config = method_config("dm", ipc=1, batch_real=8, **SMALL_NET, **levers)
    dm = METHODS["dm"].condenser(config, SPEC, torch.Generator().manual_seed(0), pool=tiny_pool())
    net = dm.fresh_net()
    real = dm.real_batch(8).flatten(0, 1)
    return dm, dm.real_embeddings(net, real)


def test_chunked_and_bf16_real_embeddings_match_the_single_batch():
    whole = _real_embeddings(real_chunk=10_000)
    assert torch.allclose(_real_embeddings(real_chunk=3), whole, atol=1e-5)
    bf16 = _real_embeddings(real_chunk=3, real_bf16=True)
    assert bf16.dtype == torch.float32 and torch.allclose(bf16, whole, rtol=0.05, atol=0.05)
    assert not torch.equal(bf16, whole)  # autocast took effect


def test_compiled_real_embeddings_match_the_eager_ones():
    from datafree.condense.dm import embed

    dm, compiled = _condenser_embeddings(real_compile=True)
    assert dm._embed_real is not embed  # the compiled function ran, not the eager one
    assert torch.allclose(compiled, _real_embeddings(), atol=1e-5)
