"""Bootstrap draws, ratio metrics, semantic entropy and rarefaction, on arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from scipy import stats as sps

from mechgraph.errors import ConfigError
from mechgraph.phases import stats


def test_independent_draws_resample_within_each_checkpoint():
    ck = np.array([0, 0, 0, 1, 1, 2])
    d = stats.draw_weights(ck, 3, n_boot=50, seed=1)
    assert not d.paired
    assert [w.shape for w in d.weights] == [(50, 3), (50, 2), (50, 1)]
    assert all(np.all(w.sum(1) == len(r)) for w, r in zip(d.weights, d.rows, strict=True))


def test_paired_draws_share_the_prompts():
    ck = np.repeat([0, 1, 2], 4)
    prompts = np.tile([2, 0, 1, 3], 3)
    d = stats.draw_weights(ck, 3, prompt_of=prompts, n_boot=40, seed=0)
    assert d.paired
    for c in (1, 2):  # same prompt -> same weight at every checkpoint
        assert np.array_equal(d.weights[0], d.weights[c])
    with pytest.raises(ConfigError, match="every prompt"):
        stats.draw_weights(np.array([0, 0, 1]), 2, prompt_of=np.array([0, 1, 0]))


def test_ratio_metric_is_weighted_sums_and_skips_unknowns():
    ck = np.array([0, 0, 0, 1, 1])
    d = stats.draw_weights(ck, 2, n_boot=30, seed=3)
    num = np.array([1.0, np.nan, 3.0, 2.0, 4.0])
    den = np.array([1.0, 1.0, 2.0, 1.0, 1.0])
    point, reps = stats.ratio_metric(d, num, den)
    assert point.tolist() == [4 / 3, 3.0]
    w = d.weights[0]
    known = np.array([1.0, 0.0, 1.0])
    with np.errstate(invalid="ignore"):
        want = (w @ np.array([1.0, 0.0, 3.0])) / (w @ (den[:3] * known))
    want[(w @ (den[:3] * known)) == 0] = np.nan
    np.testing.assert_allclose(reps[:, 0], want)


def test_entropy_matches_scipy():
    rng = np.random.default_rng(0)
    c = rng.integers(0, 9, size=(5, 12))
    np.testing.assert_allclose(stats.shannon_entropy(c), sps.entropy(c, axis=1))
    assert stats.shannon_entropy(np.zeros(4)) == 0


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(0, 12), min_size=2, max_size=8).filter(lambda c: sum(c) >= 3),
    st.integers(1, 20),
)
def test_hurlbert_expected_distinct_matches_monte_carlo(counts, m):
    c = np.array(counts)
    m = min(m, int(c.sum()))
    exact = stats.expected_distinct(c, m)
    rng = np.random.default_rng(0)
    sub = rng.multivariate_hypergeometric(c, m, size=4000)
    mc = (sub > 0).sum(1).mean()
    assert abs(exact - mc) < 0.12
    assert 1 - 1e-9 <= exact <= np.count_nonzero(c) + 1e-9


def test_rarefaction_removes_the_sample_size_effect():
    # two checkpoints drawing from the SAME gram distribution, one with 5x the text
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(60) * 0.3)
    small = rng.multinomial(300, p, size=40)  # 40 samples
    big = rng.multinomial(1500, p, size=40)
    g = sparse.csr_matrix(np.vstack([small, big]))
    d = stats.draw_weights(np.repeat([0, 1], 40), 2, n_boot=30, seed=0)
    out = stats.semantic_entropy(d, g, seed=0, point_draws=20, rep_draws=2)
    raw, rare = out["n_distinct_grams"][0], out["n_distinct_grams_rarefied"][0]
    assert raw[1] >= raw[0]
    assert abs(rare[1] - rare[0]) < 1.5
    assert out["_m"] == (3 * small.sum()) // 4
    h = out["semantic_entropy_rarefied"][0]
    assert abs(h[1] - h[0]) < 0.02


def test_rarefied_entropy_edge_cases():
    rng = np.random.default_rng(0)
    c = np.array([4, 4])
    assert stats.rarefied_entropy(c, 100, rng, 3) == pytest.approx(np.log(2))
    assert stats.rarefied_entropy(np.array([5, 0]), 3, rng, 3) == 0.0
    assert stats.expected_distinct(np.array([5, 5]), 10) == 2.0


def test_percentile_ci_needs_two_finite_values():
    r = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, 5.0]])
    lo, hi = stats.percentile_ci(r, 0.5)
    assert lo[0] == 1.5 and hi[0] == 2.5 and np.isnan(lo[1]) and np.isnan(hi[1])
