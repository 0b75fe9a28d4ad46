"""Probe artifacts: safetensors + JSON round trips, no pickle, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mechgraph.errors import ConfigError
from probes import DiffMeansProbe, LinearProbe, ProbeConfig, RidgeProbe, load_probe, save_probe


def _cfg(est, classes, d, **kw):
    name = {LinearProbe: "logistic", DiffMeansProbe: "diffmeans", RidgeProbe: "ridge"}[type(est)]
    base = dict(
        estimator=name,
        params=est.get_params(),
        target="planning",
        classes=classes,
        layer=3,
        hook="resid_post",
        pool="mean",
        model_id="default",
        fingerprint="abc",
        d_model=d,
    )
    base.update(kw)
    return ProbeConfig(**base)


@pytest.mark.parametrize("est", [LinearProbe(C=0.5), DiffMeansProbe(), RidgeProbe(alpha=2.0)])
@pytest.mark.parametrize("multiclass", [False, True])
def test_round_trip(tmp_path, est, multiclass):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 6))
    if isinstance(est, RidgeProbe):
        y, classes, target = X[:, 0] + 0.1, None, "importance:counterfactual_importance_kl"
    elif multiclass:
        y = np.array(["a", "b", "c"])[np.arange(90) % 3]
        X[:, 0] += (y == "a") * 2
        classes, target = ["a", "b", "c"], "tag"
    else:
        y, classes, target = (X[:, 0] > 0).astype(int), [0, 1], "planning"
    est.fit(X, y)
    path = save_probe(
        est,
        _cfg(
            est, classes, 6, target=target, metrics={"auroc": np.float64(0.9), "nan": float("nan")}
        ),
        tmp_path / "p",
    )
    assert sorted(p.name for p in path.iterdir()) == [
        "artifact.json",
        "config.json",
        "weights.safetensors",
    ]
    est2, cfg2 = load_probe(path)
    assert type(est2) is type(est) and cfg2.layer == 3 and cfg2.classes == classes
    assert cfg2.metrics["nan"] is None
    assert np.array_equal(est2.predict(X), est.predict(X))
    if hasattr(est, "predict_proba"):
        assert np.allclose(est2.predict_proba(X), est.predict_proba(X))
    # saving again replaces the folder atomically
    save_probe(est, _cfg(est, classes, 6, target=target, layer=4), path)
    assert load_probe(path)[1].layer == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a probe artifact"):
        load_probe(tmp_path)
    est = LinearProbe().fit(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(ConfigError, match="estimator is a"):
        save_probe(est, _cfg(DiffMeansProbe(), [0, 1], 4), tmp_path / "x")
    p = save_probe(est, _cfg(est, [0, 1], 4), tmp_path / "ok")
    cfg = json.loads((p / "config.json").read_text())
    cfg["d_model"] = 5
    (p / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="features"):
        load_probe(p)
    (p / "config.json").write_text("{")
    with pytest.raises(ConfigError, match="invalid probe config"):
        load_probe(p)


@pytest.mark.parametrize(
    "kw",
    [
        {"estimator": "svm"},
        {"target": "vibes"},
        {"classes": None},
        {"d_model": 0},
        {"format": "other/9"},
    ],
)
def test_config_validation(kw):
    classes = kw.pop("classes", [0, 1])
    with pytest.raises(ConfigError):
        _cfg(LinearProbe(), classes, 4, **kw)


def test_unknown_estimator_is_one_config_error_everywhere():
    from probes.estimators import make_estimator
    from probes.sweep import SweepConfig

    for make in (
        lambda: make_estimator("svm"),
        lambda: SweepConfig(estimator="svm", n_splits=1),
        lambda: ProbeConfig("svm", {}, "planning", [0, 1], 0, "resid_post", "mean", "m", None, 3),
    ):
        with pytest.raises(ConfigError, match="unknown estimator 'svm'"):
            make()
