"""Attention suppression: the float mask, empty spans, prefix reuse == naive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_importance_receivers import _random_lm

from mechgraph.errors import ConfigError
from mechgraph.importance._common import PreparedTrace
from mechgraph.importance.suppression import (
    SuppressionConfig,
    additive_mask,
    masked_token_kl,
    suppression_matrix,
    suppression_matrix_naive,
)
from mechgraph.traces import Trace, segment_traces


def _prep(n=60):
    ids = np.random.default_rng(1).integers(0, 100, size=n)
    spans = [(3, 10), (10, 11), (11, 25), (25, 40), (40, 52), (52, 60)]
    return PreparedTrace(None, ids, [None] * len(spans), spans)  # type: ignore[arg-type]


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_all_allowed_mask_reproduces_logits(impl):
    lm = _random_lm()
    lm.hf.set_attn_implementation(impl)
    x = torch.arange(30)[None]
    try:
        ref = lm.hf(x).logits
        got = lm.hf(x, attention_mask=additive_mask(30, 0, [[]])).logits
    finally:
        lm.hf.set_attn_implementation("sdpa")
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_empty_span_changes_nothing_and_prefix_untouched():
    lm = _random_lm()
    ids = np.arange(40) % 100
    assert masked_token_kl(lm, ids, [(20, 20)]).max() == 0.0
    kl = masked_token_kl(lm, ids, [(20, 30)])
    assert kl[:20].max() == 0.0 and kl[30:].max() > 0


@pytest.mark.parametrize("batch", [1, 4, 10])
def test_prefix_reuse_equals_naive(batch):
    lm = _random_lm()
    p = _prep()
    fast = suppression_matrix(lm, p, batch_size=batch)
    naive = suppression_matrix_naive(lm, p)
    assert np.array_equal(np.isnan(fast.matrix), np.isnan(naive.matrix))
    np.testing.assert_allclose(fast.matrix, naive.matrix, atol=1e-6, equal_nan=True)
    assert np.isnan(fast.matrix[np.triu_indices(6)]).all()
    assert fast.token_forwards < naive.token_forwards
    s = fast.scores()
    assert s.shape == (6,) and np.isnan(s[-1]) and np.isfinite(s[:-1]).all()


def test_prefix_reuse_equals_naive_from_token_zero():
    # the first sentence starts at token 0: its batch runs without a prefix cache
    lm = _random_lm()
    ids = np.random.default_rng(2).integers(0, 100, size=30)
    p = PreparedTrace(None, ids, [None] * 4, [(0, 6), (6, 13), (13, 21), (21, 30)])  # type: ignore[arg-type]
    fast = suppression_matrix(lm, p, batch_size=2)
    naive = suppression_matrix_naive(lm, p)
    np.testing.assert_allclose(fast.matrix, naive.matrix, atol=1e-6, equal_nan=True)


def test_on_tiny_model_trace(tiny_model):
    text = " ".join(f"Step {i} computes y = {i} + 2." for i in range(6))
    (trace,) = segment_traces([Trace(id="t", text=text, prompt="Q: ")], "sentences")
    a = suppression_matrix(tiny_model, trace, batch_size=2)
    b = suppression_matrix_naive(tiny_model, trace)
    np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-6, equal_nan=True)


def test_config_validation():
    with pytest.raises(ConfigError):
        SuppressionConfig(batch_size=0)
