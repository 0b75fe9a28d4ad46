"""Resampling importance with a stub generator of known answer distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mechgraph.errors import ConfigError
from mechgraph.importance.answers import extract_boxed, normalize_answer
from mechgraph.importance.resampling import (
    Embedder,
    Generator,
    ResamplingConfig,
    Rollout,
    adaptive_importance,
    answer_kl,
    counterfactual_importance,
    first_sentence,
    importance_from_rollouts,
)
from mechgraph.importance.stubs import HashEmbedder, StubGenerator
from mechgraph.traces import Trace, segment_traces


def _trace(n=8):
    text = " ".join(f"Sentence {i} is about the value {i * 7}." for i in range(n))
    (t,) = segment_traces([Trace(id="t", text=text, prompt="Q: ", answer="42")], "sentences")
    return t


def test_boxed_nested_and_normalisation():
    assert extract_boxed(r"a \boxed{\frac{1}{2}} b \boxed{x^{2}+1}") == "x^{2}+1"
    assert extract_boxed("no box") is None
    assert extract_boxed(r"\boxed{a{b}") is None
    assert normalize_answer(r"\dfrac{3}{4}") == normalize_answer(r"\frac{3}{4}.")
    assert normalize_answer(r"\text{5 }") == "5"


def test_answer_kl_laplace():
    assert answer_kl(["1"] * 5, ["1"] * 5) == 0.0
    # Laplace over {1, 2}: p = (4/5, 1/5)... explicit formula
    p = np.array([3 + 1, 0 + 1]) / (3 + 2)
    q = np.array([1 + 1, 2 + 1]) / (3 + 2)
    assert answer_kl(["1"] * 3, ["1", "2", "2"]) == pytest.approx(float((p * np.log(p / q)).sum()))
    assert answer_kl([], ["1"]) == 0.0
    assert math.isfinite(answer_kl(["1"], ["2"]))


def test_importance_from_rollouts_sign_and_zero():
    same = [Rollout("s", "42", 0.9)] * 4
    dis_wrong = [Rollout("d", "7", 0.1)] * 4
    kl, acc, frac = importance_from_rollouts([dis_wrong, same, same], correct="42")
    assert acc[0] == -1.0 and frac[0] == 1.0 and kl[0] > 0  # dissimilar accuracy - next
    assert acc[1] == 0.0 and kl[1] == 0.0 and frac[1] == 0.0  # nothing dissimilar: 0


def test_protocols():
    t = _trace()
    gen = StubGenerator(t, np.zeros(9), np.zeros(9), np.ones(9))
    assert isinstance(gen, Generator) and isinstance(HashEmbedder(), Embedder)
    assert first_sentence(" Alpha beta gamma. Delta epsilon zeta.") == "Alpha beta gamma."


def test_stub_recovers_known_importance():
    t = _trace(8)
    S = 8
    p_dis = np.full(S + 1, 0.5)
    acc_dis = np.full(S + 1, 0.9)
    acc_keep = np.full(S + 1, 0.9)
    acc_dis[3] = 0.1  # resampling sentence 3 away breaks the answer
    gen = StubGenerator(t, p_dis, acc_dis, acc_keep)
    r = counterfactual_importance(t, gen, HashEmbedder(), n_rollouts=200)
    assert r.n_total == 200 * (S + 1) == gen.calls
    assert np.argmax(r.kl) == 3 and np.argmin(r.accuracy) == 3
    assert r.accuracy[3] == pytest.approx(0.1 - 0.9, abs=0.1)
    np.testing.assert_allclose(r.different_fraction, 0.5, atol=0.1)
    # the reference for sentence 2 (rollouts from 3) resamples 3 half the time: 0.9 - 0.5
    assert r.accuracy[2] == pytest.approx(0.9 - 0.5, abs=0.1)
    assert np.abs(np.delete(r.accuracy, [2, 3])).max() < 0.12


def test_adaptive_respects_budget_and_ranks():
    from scipy.stats import spearmanr

    t = _trace(12)
    S = 12
    rng = np.random.default_rng(0)
    p_dis = rng.uniform(0.3, 0.9, S + 1)
    acc_keep = np.full(S + 1, 0.8)
    acc_dis = np.clip(0.8 - np.linspace(0, 0.7, S + 1)[rng.permutation(S + 1)], 0, 1)
    gen = StubGenerator(t, p_dis, acc_dis, acc_keep)
    full = counterfactual_importance(t, gen, HashEmbedder(), n_rollouts=100)
    cheap = adaptive_importance(
        t, gen, HashEmbedder(), n_rollouts=100, budget=0.2, n_boot=30, metric="accuracy"
    )
    assert cheap.n_total <= 0.2 * full.n_total
    # a weak bound: the 0.9 target is not met, see docs/importance.md
    assert spearmanr(full.accuracy, cheap.accuracy).statistic > 0.4


def test_config_validation():
    with pytest.raises(ConfigError):
        ResamplingConfig(alpha=0)
    with pytest.raises(ConfigError):
        ResamplingConfig(n_rollouts=0)
