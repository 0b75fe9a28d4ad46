"""BiGRUTagger on small sequences (fast: a few hundred steps, a few epochs)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

pytest.importorskip("torch")

from probes.artifacts import ProbeConfig, load_probe, save_probe
from probes.estimators import LinearProbe
from probes.sequence import BiGRUTagger


def _data(seed=0, n_traces=10, length=30):
    """Planning 'episodes': a step is positive when a cue occurred 1 to 3 steps before."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_traces * length, 4))
    cue = rng.random(len(X)) < 0.12
    X[:, 0] += 3.0 * cue
    g = np.repeat(np.arange(n_traces), length)
    y = np.zeros(len(X), dtype=int)
    for t in range(n_traces):
        c = np.flatnonzero(cue[g == t])
        for k in c:
            y[t * length + k + 1 : t * length + min(k + 4, length)] = 1
    return X, y, g


def test_bigru_uses_the_sequence():
    X, y, g = _data()
    tr, te = g < 7, g >= 7
    m = BiGRUTagger(epochs=40, dropout=0.0, seed=0).fit(X[tr], y[tr], groups=g[tr])
    flat = LinearProbe().fit(X[tr], y[tr])
    acc = m.score(X[te], y[te], groups=g[te])
    assert acc > 0.85 and acc > flat.score(X[te], y[te]) + 0.1
    p = m.predict_proba(X[te], groups=g[te])
    assert p.shape == (te.sum(), 2) and np.allclose(p.sum(axis=1), 1)


def test_bigru_is_deterministic_and_clonable():
    X, y, g = _data(n_traces=4)
    a = BiGRUTagger(epochs=3, seed=1).fit(X, y, groups=g).decision_function(X, g)
    b = clone(BiGRUTagger(epochs=3, seed=1)).fit(X, y, groups=g).decision_function(X, g)
    assert np.allclose(a, b)


def test_bigru_multiclass_and_artifact(tmp_path):
    X, y, g = _data(n_traces=4)
    y3 = np.where(y == 1, "plan", np.where(X[:, 1] > 0, "calc", "fact"))
    m = BiGRUTagger(epochs=3).fit(X, y3, groups=g)
    assert set(m.predict(X, groups=g)) <= {"plan", "calc", "fact"}
    cfg = ProbeConfig(
        "bigru",
        m.get_params(),
        "tag",
        m.classes_.tolist(),
        0,
        "resid_post",
        "mean",
        "default",
        None,
        4,
    )
    m2, _ = load_probe(save_probe(m, cfg, tmp_path / "p"))
    one = g == 2
    assert np.allclose(m2.predict_proba(X[one]), m.predict_proba(X[one], groups=g[one]), atol=1e-6)
