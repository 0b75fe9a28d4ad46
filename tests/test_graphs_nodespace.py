"""Node space: determinism, save/load/reuse, K fallback, validation."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from mechgraph.errors import ConfigError, StoreError
from mechgraph.graphs import NodeSpace, NodeSpaceConfig, NodeSpaceWarning
from mechgraph.graphs.nodespace import fallback_k


def blobs(n_per=40, centers=4, d=6, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(0, 10, (centers, d))
    return np.concatenate([ci + rng.normal(0, 0.5, (n_per, d)) for ci in c]).astype(np.float32)


def test_fit_is_deterministic_under_seed():
    X = blobs()
    a = NodeSpace(NodeSpaceConfig(k=4, random_state=3)).fit(X)
    b = NodeSpace(NodeSpaceConfig(k=4, random_state=3)).fit(X)
    assert np.array_equal(a.centers_, b.centers_)
    assert np.array_equal(a.predict(X), b.predict(X))
    labels = a.predict(X)
    # four well separated blobs -> four pure nodes
    assert all(len(set(labels[i * 40 : (i + 1) * 40])) == 1 for i in range(4))
    assert len(set(labels)) == 4


def test_save_load_reuse(tmp_path):
    X = blobs()
    ns = NodeSpace(NodeSpaceConfig(k=4, standardize=True, pca_components=3)).fit(
        X, layer=5, pool="mean"
    )
    path = ns.save(tmp_path / "ns")
    assert sorted(p.name for p in path.iterdir()) == [
        "artifact.json",
        "nodespace.json",
        "nodespace.safetensors",
    ]
    doc = json.loads((path / "nodespace.json").read_text())
    assert doc["k"] == 4 and doc["config"]["pca_components"] == 3 and doc["meta"]["layer"] == 5
    back = NodeSpace.load(path)
    assert back.config == ns.config and back.k_ == 4
    other = blobs(seed=0)[::3] + 0.1  # another "store" in the same space
    assert np.array_equal(back.predict(other), ns.predict(other))
    assert np.allclose(back.distances(other), ns.distances(other))
    # saving again replaces the folder whole
    ns.save(path)
    assert NodeSpace.load(path).k_ == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_minibatch_method():
    X = blobs(n_per=100)
    ns = NodeSpace(NodeSpaceConfig(k=4, method="minibatch", batch_size=64)).fit(X)
    assert ns.meta["method"] == "minibatch" and ns.k_ == 4
    auto = NodeSpace(NodeSpaceConfig(k=4, minibatch_threshold=100)).fit(X)
    assert auto.meta["method"] == "minibatch"


def test_fallback_k_warns_and_records():
    X = blobs(n_per=10)  # 40 steps
    with pytest.warns(NodeSpaceWarning, match="too few"):
        ns = NodeSpace(NodeSpaceConfig(k=200)).fit(X)
    assert ns.k_ == 40 // 5 == fallback_k(40, 200, 5)
    assert fallback_k(3, 200, 5) == 2 and fallback_k(1000, 200, 5) == 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NodeSpace(NodeSpaceConfig(k=4)).fit(X)


def test_subsampled_fit_still_maps_everything():
    X = blobs(n_per=50)
    ns = NodeSpace(NodeSpaceConfig(k=4, max_fit_steps=60)).fit(X)
    assert ns.n_fit_steps_ == 60 and ns.meta["n_steps_seen"] == 200
    assert ns.predict(X).shape == (200,)


def test_degenerate_and_invalid():
    with pytest.raises(ConfigError):
        NodeSpace(NodeSpaceConfig(k=2)).fit(np.ones((1, 3)))
    with pytest.raises(ConfigError):
        NodeSpace(NodeSpaceConfig(k=2)).fit(np.ones(5))
    with pytest.raises(ConfigError):
        NodeSpace(NodeSpaceConfig(k=2)).fit(np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(ConfigError):
        NodeSpaceConfig(k=1)
    with pytest.raises(ConfigError):
        NodeSpaceConfig(method="dbscan")
    with pytest.raises(ConfigError):
        NodeSpace().predict(np.ones((2, 2)))
    ns = NodeSpace(NodeSpaceConfig(k=2)).fit(blobs(n_per=5, centers=2))
    with pytest.raises(ConfigError, match="expects"):
        ns.predict(np.ones((3, 2)))
    assert ns.predict(np.zeros((0, 6))).shape == (0,)
    # all steps identical: still defined (every step in one node)
    same = NodeSpace(NodeSpaceConfig(k=2)).fit(np.ones((12, 3)))
    assert len(set(same.predict(np.ones((4, 3))))) == 1


def test_load_errors(tmp_path):
    with pytest.raises(StoreError):
        NodeSpace.load(tmp_path)
    ns = NodeSpace(NodeSpaceConfig(k=2)).fit(blobs(n_per=5, centers=2))
    p = ns.save(tmp_path / "x")
    doc = json.loads((p / "nodespace.json").read_text())
    doc["version"] = 99
    (p / "nodespace.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="v1"):
        NodeSpace.load(p)
