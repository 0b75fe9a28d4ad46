"""Layer sweep with grouped CV: metrics, best layer, and no leakage across traces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, cross_val_predict

from mechgraph.errors import ConfigError
from probes import (
    DiffMeansProbe,
    LinearProbe,
    SweepConfig,
    cross_validate_probe,
    grouped_folds,
    layer_sweep,
)


def _planted(n_traces=20, per=15, d=16, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"t{i}" for i in range(n_traces)], per)
    y = (rng.random(len(groups)) < 0.3).astype(int)
    direction = rng.normal(size=d)
    states = {
        0: rng.normal(size=(len(y), d)),  # nothing
        1: rng.normal(size=(len(y), d)) + 0.7 * np.outer(y, direction),  # some signal
        2: rng.normal(size=(len(y), d)) + 2.0 * np.outer(y, direction),  # strong signal
    }
    return states, y, groups


@pytest.mark.parametrize("estimator", ["logistic", "diffmeans"])
def test_sweep_finds_the_planted_layer(estimator):
    states, y, groups = _planted()
    res = layer_sweep(states, y, groups, config=SweepConfig(estimator=estimator, n_splits=5))
    t = res.table.set_index("layer")
    assert res.task == "binary" and res.best_layer == 2
    assert t.loc[0, "auroc"] < 0.65 < t.loc[1, "auroc"] < t.loc[2, "auroc"]
    assert t.loc[2, "auroc"] > 0.95 and t.loc[2, "f1"] > 0.8
    txt = res.format()
    assert "auroc" in txt and "20 groups" in txt and "*" in txt
    d = res.to_dict()
    assert d["best_layer"] == 2 and len(d["table"]) == 3


def test_grouped_cv_does_not_leak_trace_identity():
    """Labels constant within a trace, states = a per-trace fingerprint plus noise.

    Plain K-fold memorises the trace and looks perfect; grouped CV is at chance."""
    rng = np.random.default_rng(1)
    n_traces, per, d = 24, 20, 64
    groups = np.repeat(np.arange(n_traces), per)
    y = np.repeat(rng.permutation([0, 1] * (n_traces // 2)), per)
    X = np.repeat(rng.normal(size=(n_traces, d)), per, axis=0) + 0.3 * rng.normal(size=(len(y), d))
    leaky = cross_val_predict(
        LinearProbe(), X, y, cv=KFold(5, shuffle=True, random_state=0), method="predict_proba"
    )[:, 1]
    assert roc_auc_score(y, leaky) > 0.95
    res = cross_validate_probe(LinearProbe(), X, y, groups, n_splits=6)
    assert res.metrics["auroc"] < 0.75


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=3, max_size=12),
    n_splits=st.integers(2, 3),
)
def test_folds_never_share_a_trace(sizes, n_splits):
    groups = np.repeat([f"g{i}" for i in range(len(sizes))], sizes)
    folds = grouped_folds(groups, n_splits)
    seen = np.zeros(len(groups), dtype=int)
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        seen[te] += 1
    assert (seen == 1).all()  # every step is tested exactly once


def test_multiclass_and_regression():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(15), 12)
    tags = np.array(["plan", "compute", "check"])[rng.integers(0, 3, len(groups))]
    X = rng.normal(size=(len(groups), 8))
    X[:, 0] += 3 * (tags == "plan")
    X[:, 1] += 3 * (tags == "check")
    res = layer_sweep({5: X}, tags, groups, config=SweepConfig(n_splits=3))
    assert res.task == "multiclass" and res.table.loc[0, "macro_f1"] > 0.8
    res = layer_sweep({5: X}, tags, groups, config=SweepConfig("diffmeans", n_splits=3))
    assert res.table.loc[0, "accuracy"] > 0.8
    imp = X[:, 2] * 0.5 + 0.1 * rng.normal(size=len(groups))
    res = layer_sweep({5: X}, imp, groups, config=SweepConfig("ridge", n_splits=3))
    assert res.task == "regression" and res.table.loc[0, "spearman"] > 0.9
    assert res.primary == "spearman"


def test_sweep_errors():
    states, y, groups = _planted(n_traces=3)
    with pytest.raises(ConfigError, match="at least 5 traces"):
        layer_sweep(states, y, groups, config=SweepConfig(n_splits=5))
    with pytest.raises(ConfigError, match="ridge"):
        layer_sweep(
            states,
            y.astype(float) + 0.5 * np.arange(len(y)) / len(y),
            groups,
            config=SweepConfig(n_splits=3),
        )
    with pytest.raises(ConfigError, match="single value"):
        layer_sweep(states, np.zeros_like(y), groups, config=SweepConfig(n_splits=3))
    with pytest.raises(ConfigError, match="rows"):
        layer_sweep({0: np.zeros((3, 2))}, y, groups, config=SweepConfig(n_splits=3))
    with pytest.raises(ConfigError):
        SweepConfig(estimator="svm")
    with pytest.raises(ConfigError):
        SweepConfig(n_splits=1)
    with pytest.raises(ValueError):
        SweepConfig(params={"not_a_param": 1})


def test_diffmeans_is_the_difference_of_means():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 4))
    y = np.r_[np.zeros(60, int), np.ones(40, int)]
    p = DiffMeansProbe().fit(X, y)
    assert np.allclose(p.vectors_[0], X[y == 1].mean(0) - X[y == 0].mean(0))
    assert np.isclose(np.linalg.norm(p.directions_[0]), 1.0)
    pa = DiffMeansProbe(reference="all").fit(X, y)
    assert np.allclose(pa.vectors_[0], X[y == 1].mean(0) - X.mean(0))
    with pytest.raises(ValueError):
        DiffMeansProbe(reference="none").fit(X, y)
