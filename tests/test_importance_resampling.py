"""Resampling importance with a stub generator of known answer distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mechgraph.errors import ConfigError
from mechgraph.importance.adaptive import adaptive_importance
from mechgraph.importance.answers import extract_answer, extract_boxed, normalize_answer
from mechgraph.importance.generation import rollout_seeds
from mechgraph.importance.resampling import (
    Embedder,
    Generator,
    ResamplingConfig,
    Rollout,
    answer_kl,
    counterfactual_importance,
    first_sentence,
    importance_from_rollouts,
    ranking_reliability,
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
    assert cheap.n_total == sum(len(r) for r in cheap.rollouts) == gen.calls - full.n_total
    # an early-stopped full run: every position holds the full run's first rollouts
    # (similarities equal to float rounding: the embedder saw different batches)
    for a, b in zip(cheap.rollouts, full.rollouts, strict=True):
        assert [(r.sentence, r.answer) for r in a] == [(r.sentence, r.answer) for r in b[: len(a)]]
        np.testing.assert_allclose([r.similarity for r in a], [r.similarity for r in b[: len(a)]])
    assert cheap.n_per_position.min() >= 6 and cheap.n_per_position.max() <= 100
    # a weak bound on one seed; the agreement is measured in benchmarks/bench_resampling.py
    assert spearmanr(full.accuracy, cheap.accuracy).statistic > 0.4


def test_rollouts_depend_on_their_seed_only():
    t = _trace(6)
    gen = StubGenerator(t, np.full(7, 0.5), np.full(7, 0.3), np.full(7, 0.9))
    assert rollout_seeds(3, 2, 0, 10)[4:] == rollout_seeds(3, 2, 4, 6)
    assert len(set(rollout_seeds(3, 2, 0, 50) + rollout_seeds(3, 1, 0, 50))) == 100
    a = counterfactual_importance(t, gen, HashEmbedder(), n_rollouts=30, seed=5)
    b = counterfactual_importance(t, gen, HashEmbedder(), n_rollouts=12, seed=5)
    c = counterfactual_importance(t, gen, HashEmbedder(), n_rollouts=12, seed=6)

    def key(rolls):
        return [[(r.sentence, r.answer) for r in pos] for pos in rolls]

    assert [pos[:12] for pos in key(a.rollouts)] == key(b.rollouts)
    assert key(b.rollouts) != key(c.rollouts)
    assert a.config.n_rollouts == 30 and a.correct == "42"


def test_answer_fallbacks():
    assert extract_answer(r"x \boxed{5} so the answer is 6", "boxed_or_stated") == "5"
    assert extract_answer("The final answer is: $1,024$.", "boxed_or_stated") == "1024"
    assert extract_answer("we get 3, then 4.0", "boxed_or_stated") is None
    assert extract_answer("we get 3, then 4.0", "boxed_or_last_number") == "4"
    assert extract_answer("The answer is 7") is None  # Thought Anchors: boxed only
    with pytest.raises(ValueError):
        extract_answer("1", "last")
    with pytest.raises(ConfigError):
        ResamplingConfig(answer="last")


def test_ranking_reliability_tracks_signal():
    from scipy.stats import spearmanr

    S = 30
    t = _trace(S)
    rng = np.random.default_rng(1)
    p_dis = np.full(S + 1, 0.8)
    keep = np.full(S + 1, 0.9)
    strong = StubGenerator(
        t, p_dis, np.clip(0.9 - rng.permutation(np.linspace(0, 0.9, S + 1)), 0, 1), keep
    )
    null = StubGenerator(t, p_dis, keep.copy(), keep)  # no sentence matters: ranks are noise
    emb = HashEmbedder()
    rel_s = ranking_reliability(counterfactual_importance(t, strong, emb, n_rollouts=60))
    rel_n = ranking_reliability(counterfactual_importance(t, null, emb, n_rollouts=60))
    assert rel_s.full > 0.85 and rel_s.rollouts_for_target < 60
    assert abs(rel_n.full) < 0.5 and rel_n.rollouts_for_target > 200
    # the prediction for the strong profile matches an actual rerun
    a = counterfactual_importance(t, strong, emb, n_rollouts=60, seed=1)
    b = counterfactual_importance(t, strong, emb, n_rollouts=60, seed=2)
    assert abs(spearmanr(a.accuracy, b.accuracy).statistic - rel_s.full) < 0.1
    assert np.isclose(rel_s.full, 2 * rel_s.split_half / (1 + rel_s.split_half))
    with pytest.raises(ConfigError):
        ranking_reliability(a, target=1.0)


def test_config_validation():
    with pytest.raises(ConfigError):
        ResamplingConfig(alpha=0)
    with pytest.raises(ConfigError):
        ResamplingConfig(n_rollouts=0)


def test_sequential_stops_at_target_reliability():
    S = 20
    t = _trace(S)
    rng = np.random.default_rng(2)
    p_dis = np.full(S + 1, 0.9)
    keep = np.full(S + 1, 0.95)
    acc_dis = np.clip(0.95 - rng.permutation(np.linspace(0, 0.95, S + 1)), 0, 1)
    gen = StubGenerator(t, p_dis, acc_dis, keep)
    emb = HashEmbedder(64)
    kw = dict(n_rollouts=100, budget=1.0, n_initial=8, batch=4, allocation="uniform")
    r = adaptive_importance(t, gen, emb, target_reliability=0.9, **kw)
    n = r.n_per_position
    assert (n == n[0]).all() and 8 < n[0] < 100  # stopped early, the same everywhere
    assert ranking_reliability(r).full >= 0.9
    null = StubGenerator(t, p_dis, keep.copy(), keep)  # never reliable: runs to the cap
    rn = adaptive_importance(t, null, emb, target_reliability=0.9, **kw)
    assert (rn.n_per_position == 100).all()
    with pytest.raises(ConfigError):
        adaptive_importance(t, gen, emb, target_reliability=1.5, **kw)
    with pytest.raises(ConfigError):
        adaptive_importance(t, gen, emb, allocation="random")


def test_true_kl_importance_with_rate_arrays_longer_than_the_trace():
    from mechgraph.importance.stubs import StubGenerator
    from mechgraph.traces import Trace, segment_traces

    t = segment_traces([Trace("t", "So 2 + 2 = 4.\nCheck it again.", answer="4")], "lines")[0]
    kw = dict(acc_dissimilar=[0.2, 0.4, 0.0], acc_keep=[0.9, 0.9, 0.9])
    short = StubGenerator(t, p_dissimilar=[0.5, 0.5, 0.0], **kw)
    long = StubGenerator(
        t,
        p_dissimilar=[0.5, 0.5, 0.0, 0.3],
        acc_dissimilar=[0.2, 0.4, 0.0, 0.1],
        acc_keep=[0.9, 0.9, 0.9, 0.9],
    )
    assert long.true_kl_importance().shape == (2,)
    assert long.true_kl_importance().tolist() == short.true_kl_importance().tolist()
