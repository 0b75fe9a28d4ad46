"""Context features, ContextProbe and calibration helpers (small arrays, fast)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from probes.artifacts import ProbeConfig, load_probe, save_probe
from probes.calibration import (
    apply_platt,
    brier_score,
    fit_platt,
    reliability_curve,
    threshold_for_precision,
)
from probes.context import ContextProbe, context_features, trace_slices
from probes.estimators import LinearProbe


def _seq_data(seed=0, n_traces=12, length=40, d=6):
    """The label of a step is written in the features of the step *before* it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_traces * length, d))
    g = np.repeat(np.arange(n_traces), length)
    y = np.zeros(len(X), dtype=int)
    for sl in trace_slices(g, len(X)):
        y[sl][1:] = (X[sl][:-1, 0] > 0.6).astype(int)
    return X, y, g


def test_neighbours_never_cross_traces():
    X = np.arange(10.0).reshape(5, 2)
    g = ["a", "a", "a", "b", "b"]
    Z = context_features(X, g, window=1, position=False)
    # first step of b: its "previous" is itself, not the last step of a
    assert np.array_equal(Z[3, 2:4], X[3])
    # last step of a: its "next" is itself
    assert np.array_equal(Z[2, 4:6], X[2])
    assert np.array_equal(Z[1, 2:4], X[0]) and np.array_equal(Z[1, 4:6], X[2])


def test_previous_mean_and_position():
    X = np.arange(5.0)[:, None]
    Z = context_features(X, window=0, prev_k=2)
    assert Z.shape == (5, 1 + 1 + 4)
    assert Z[:, 1].tolist() == [0.0, 0.0, 0.5, 1.5, 2.5]  # mean of up to 2 before
    assert Z[:, 2].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]  # relative position
    assert Z[[0, 4], 4].tolist() == [1.0, 0.0] and Z[[0, 4], 5].tolist() == [0.0, 1.0]


def test_features_of_a_trace_do_not_depend_on_other_traces():
    X, _, g = _seq_data()
    full = context_features(X, g, window=2, prev_k=3)
    alone = context_features(X[g == 4], window=2, prev_k=3)
    assert np.array_equal(full[g == 4], alone)


def test_groups_must_be_consecutive():
    with pytest.raises(ValueError, match="consecutive"):
        trace_slices(["a", "b", "a"], 3)


def test_context_probe_reads_the_step_before():
    X, y, g = _seq_data()
    tr, te = g < 8, g >= 8
    ctx = ContextProbe(window=1, position=False).fit(X[tr], y[tr], groups=g[tr])
    flat = LinearProbe().fit(X[tr], y[tr])
    assert ctx.score(X[te], y[te], groups=g[te]) > 0.9
    assert flat.score(X[te], y[te]) < 0.75
    assert clone(ctx).get_params() == ctx.get_params()


def test_sigmoid_calibration_lowers_brier_of_balanced_weights():
    rng = np.random.default_rng(1)
    n = 1200
    y = (rng.random(n) < 0.15).astype(int)
    X = rng.normal(size=(n, 4))
    X[:, 0] += 1.2 * y
    g = np.repeat(np.arange(12), n // 12)
    tr, te = g < 8, g >= 8
    raw = ContextProbe(window=0, position=False).fit(X[tr], y[tr], groups=g[tr])
    cal = ContextProbe(window=0, position=False, calibration="sigmoid").fit(
        X[tr], y[tr], groups=g[tr]
    )
    b_raw = brier_score(y[te], raw.predict_proba(X[te], groups=g[te])[:, 1])
    b_cal = brier_score(y[te], cal.predict_proba(X[te], groups=g[te])[:, 1])
    assert b_cal < b_raw - 0.02
    # same ranking: calibration is monotone
    assert np.array_equal(
        np.argsort(raw.decision_function(X[te], g[te])),
        np.argsort(cal.predict_proba(X[te], groups=g[te])[:, 1]),
    )


def test_pca_round_trip_through_an_artifact(tmp_path):
    X, y, g = _seq_data(d=30)
    est = ContextProbe(window=1, prev_k=4, n_components=8, calibration="sigmoid").fit(
        X, y, groups=g
    )
    assert est.components_.shape == (8, 30)
    cfg = ProbeConfig(
        "context",
        est.get_params(),
        "planning",
        [0, 1],
        0,
        "resid_post",
        "mean",
        "default",
        None,
        30,
    )
    est2, cfg2 = load_probe(save_probe(est, cfg, tmp_path / "p"))
    assert isinstance(est2, ContextProbe) and cfg2.blocks == [(0, "mean")]
    one = g == 3
    assert np.allclose(est2.predict_proba(X[one]), est.predict_proba(X[one], groups=g[one]))


def test_multi_block_config_counts_features():
    cfg = ProbeConfig(
        "stacked",
        {},
        "planning",
        [0, 1],
        19,
        "resid_post",
        "mean",
        "default",
        None,
        576,
        features={"layers": [15, 19], "pools": ["mean", "last"], "rules": True},
    )
    assert cfg.n_features == 4 * 576 + 8
    with pytest.raises(Exception, match="unknown feature"):
        ProbeConfig(
            "context",
            {},
            "planning",
            [0, 1],
            19,
            "resid_post",
            "mean",
            "default",
            None,
            576,
            features={"layer": [1]},
        )


def test_platt_reliability_threshold():
    rng = np.random.default_rng(0)
    s = rng.normal(size=4000)
    p_true = 1 / (1 + np.exp(-(1.5 * s - 1)))
    y = rng.random(4000) < p_true
    ab = fit_platt(s, y)
    assert abs(ab[0] - 1.5) < 0.25 and abs(ab[1] + 1) < 0.2
    p = apply_platt(s, ab)
    rel = reliability_curve(y, p, n_bins=10)
    assert sum(rel["count"]) == 4000 and rel["ece"] < 0.05
    assert reliability_curve(y, np.clip(p + 0.3, 0, 1))["ece"] > 0.2
    t = threshold_for_precision(y, p, 0.8)
    sel = p >= t
    assert y[sel].mean() >= 0.8 and y[p >= t - 0.05].mean() < y[sel].mean() + 0.05
