"""Receiver heads: sentence-matrix averaging, chunked patterns, vertical scores, kurtosis."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import kurtosis

from mechgraph.errors import ConfigError
from mechgraph.importance.receivers import (
    ReceiverConfig,
    _Collector,
    head_kurtosis,
    receiver_scores,
    sentence_attention,
    sentence_matrix_from_pattern,
    top_heads,
    vertical_scores,
)
from mechgraph.models import LoadedModel
from mechgraph.traces import Trace, segment_traces


def _random_lm(seed: int = 0) -> LoadedModel:
    from mechgraph.testing import tiny_llama

    model = tiny_llama(vocab_size=100, seed=seed)
    return LoadedModel(model, None, "tiny", 3, 64, 256, "float32", "cpu")


def test_sentence_matrix_by_hand():
    # uniform causal attention over 4 tokens: row q attends 1/(q+1) to each k <= q
    p = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]
    m = sentence_matrix_from_pattern(p, [(0, 2), (2, 4)])
    # [0,0]: (1 + 0 + 1/2 + 1/2) / 4; [1,0]: (1/3+1/3+1/4+1/4)/4; [1,1]: (1/3+0+1/4+1/4)/4
    assert m[0, 0] == pytest.approx(2 / 4)
    assert m[0, 1] == 0.0
    assert m[1, 0] == pytest.approx((2 / 3 + 1 / 2) / 4)
    assert m[1, 1] == pytest.approx((1 / 3 + 1 / 2) / 4)


def test_collector_with_hand_set_queries_matches_formula():
    # q = 0: softmax is uniform over the causal prefix, whatever the keys
    T, spans = 9, [(1, 3), (3, 4), (4, 9)]
    col = _Collector(spans, T, chunk=2)
    q = torch.zeros(1, 2, T, 4)
    k = torch.randn(1, 1, T, 4)  # GQA: one KV head for two query heads
    col.add(0, q, k, 1.0)
    want = sentence_matrix_from_pattern(
        np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None], spans
    )
    np.testing.assert_allclose(col.out[0][0].numpy(), want, atol=1e-6)
    np.testing.assert_allclose(col.out[0][1].numpy(), want, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 500])
def test_chunked_attention_equals_eager_pattern(chunk):
    lm = _random_lm()
    ids = np.random.default_rng(0).integers(0, 100, size=40)
    spans = [(3, 10), (10, 11), (11, 25), (25, 40)]
    got = sentence_attention(lm, ids, spans, query_chunk=chunk)
    assert lm.hf.config._attn_implementation == "sdpa"  # restored
    lm.hf.set_attn_implementation("eager")
    try:
        out = lm.hf(torch.as_tensor(ids)[None], output_attentions=True)
    finally:
        lm.hf.set_attn_implementation("sdpa")
    pat = np.stack([a[0].detach().numpy() for a in out.attentions])
    np.testing.assert_allclose(got, sentence_matrix_from_pattern(pat, spans), atol=1e-6)
    assert got.shape == (3, 4, 4, 4)


def test_model_logits_unchanged_by_collection():
    lm = _random_lm()
    x = torch.arange(20)[None]
    ref = lm.hf(x).logits
    sentence_attention(lm, x[0].numpy(), [(0, 10), (10, 20)])
    torch.testing.assert_close(lm.hf(x).logits, ref, rtol=0, atol=0)


def test_vertical_kurtosis_top_heads():
    S = 8
    m = np.zeros((2, 2, S, S))
    m[0, 0, :, 1] = 1.0  # layer 0 head 0: every sentence attends to sentence 1
    m[1, 1] = np.tril(np.ones((S, S))) / S  # flat
    m[0, 1] = m[1, 0] = np.tril(np.ones((S, S))) * np.linspace(0.1, 0.2, S)
    v = vertical_scores(m, 4)
    assert np.isnan(v[..., 4:]).all()
    assert v[0, 0].tolist()[:4] == [0.0, 1.0, 0.0, 0.0]
    assert v[0, 1, 2] == pytest.approx(np.linspace(0.1, 0.2, S)[2])
    k = head_kurtosis(v)
    assert k[0, 0] == pytest.approx(kurtosis([0.0, 1.0, 0.0, 0.0], fisher=True))
    assert top_heads(k, 1).tolist() == [[0, 0]]


def test_receiver_scores_on_tiny_model(tiny_model):
    text = " ".join(f"Sentence number {i} says that x is {i * 3}." for i in range(9))
    (trace,) = segment_traces([Trace(id="t", text=text, prompt="Problem: ")], "sentences")
    r = receiver_scores(tiny_model, trace, top_k=3)
    S = len(trace.steps)
    assert r.sentence_attn.shape == (3, 4, S, S)
    assert r.heads.shape == (3, 2)
    assert r.scores.shape == (S,) and np.isfinite(r.scores[: S - 4]).all()
    assert np.isnan(r.scores[S - 4 :]).all()
    # rows over token pairs of a causal softmax: upper triangle is zero
    assert np.allclose(np.triu(r.sentence_attn, 1), 0)


def test_config_validation():
    with pytest.raises(ConfigError):
        ReceiverConfig(top_k=0)
    with pytest.raises(ConfigError):
        ReceiverConfig(query_chunk=0)
