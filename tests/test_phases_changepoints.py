"""Tests of mechgraph.phases.changepoints (change points across checkpoints)."""

from __future__ import annotations

import itertools
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest
import ruptures as rpt
from hypothesis import given, settings
from hypothesis import strategies as st

from mechgraph.errors import ConfigError
from mechgraph.phases.changepoints import (
    ChangeConfig,
    WeightedCost,
    _fit_rows,
    change_points,
    default_penalty,
)

MEAN = ChangeConfig(model="mean")


def _step(n=30, at=12, height=1.0, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    mu = np.where(np.arange(n) >= at, height, 0.0)
    return mu + rng.normal(0, noise, n), mu


def _boot(mu, noise, B=100, seed=1):
    """Replicates like a within-checkpoint bootstrap: the point values plus noise of size se."""
    rng = np.random.default_rng(seed)
    return mu + rng.normal(0, noise, (B, mu.size))


def test_single_step_found_at_index():
    y, _ = _step()
    res = change_points(y, se=np.full(30, 0.1), config=MEAN)
    assert res.n_changes == 1
    assert res.changes[0]["index"] == 12 and res.changes[0]["x"] == 12.0
    assert res.noise == "se" and set(res.criterion) == {0, 1, 2, 3}


def test_knee_on_uneven_x_found_at_x():
    x = np.array([8, 16, 32, 48, 64, 96, 128, 192, 256, 320, 384, 448, 512, 640, 768.0])
    knee = (128 + 192) / 2  # between checkpoints: the new regime starts at x = 192
    rng = np.random.default_rng(3)
    y = 3.0 - 0.01 * np.minimum(x, knee) + rng.normal(0, 0.005, x.size)
    res = change_points(y, x, se=np.full(x.size, 0.005))
    assert res.n_changes == 1
    assert res.changes[0]["x"] == 192.0 and res.changes[0]["index"] == 7
    # on the index instead of x the same data look curved everywhere: x matters
    assert change_points(y, se=np.full(x.size, 0.005)).changes[0]["x"] != 192.0


def test_two_changes_in_order():
    rng = np.random.default_rng(4)
    mu = np.r_[np.zeros(10), np.ones(10), np.full(10, -0.5)]
    res = change_points(mu + rng.normal(0, 0.1, 30), se=np.full(30, 0.1), config=MEAN)
    assert [c["index"] for c in res.changes] == [10, 20]


def test_n_changes_forces_k():
    y, _ = _step()
    for k in (0, 1, 2, 3):
        res = change_points(y, se=np.full(30, 0.1), config=ChangeConfig(model="mean", n_changes=k))
        assert res.n_changes == k == len(res.changes)
    idx = [c["index"] for c in res.changes]
    assert idx == sorted(idx) and 12 in idx


def test_pure_noise_mostly_zero():
    zeros = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        y = 0.5 + 0.02 * np.arange(40) + rng.normal(0, 1, 40)
        zeros += change_points(y, se=np.ones(40)).n_changes == 0
    assert zeros >= 17


def test_constant_series():
    res = change_points(np.full(12, 0.7), replicates=np.full((5, 12), 0.7))
    assert res.n_changes == 0 and res.note == "constant series"
    assert np.isnan(res.replicate_first).all()
    with pytest.raises(ConfigError, match="constant"):
        change_points(np.full(12, 0.7), config=ChangeConfig(n_changes=1))


def test_near_constant_with_zero_se_is_not_significant():
    y = np.full(20, 1.0)
    y[[4, 13]] = 0.99  # one wrong sample at two checkpoints; se = 0 elsewhere
    se = np.where(y < 1, 0.01, 0.0)
    assert change_points(y, se=se, config=MEAN).n_changes == 0
    dust = 0.3 + np.random.default_rng(0).normal(0, 1e-15, 30)
    assert change_points(dust, se=np.zeros(30), config=MEAN).n_changes == 0


def test_nan_error_names_positions():
    y = np.arange(10.0)
    y[[2, 7]] = np.nan
    with pytest.raises(ConfigError, match=r"positions \[2, 7\]"):
        change_points(y)


def test_bad_inputs():
    y = np.arange(10.0)
    with pytest.raises(ConfigError, match="replicates must have shape"):
        change_points(y, replicates=np.zeros((5, 9)))
    with pytest.raises(ConfigError, match="strictly increasing"):
        change_points(y, x=np.r_[0, 2, 1, np.arange(3, 10)])
    with pytest.raises(ConfigError, match="se must have shape"):
        change_points(y, se=np.ones(3))
    with pytest.raises(ConfigError, match="cannot place 3 changes"):
        change_points(y, config=ChangeConfig(n_changes=3))
    for bad in ({"model": "rbf"}, {"min_size": 1}, {"level": 0}, {"penalty": -1.0}):
        with pytest.raises(ConfigError):
            ChangeConfig(**bad)


def test_too_few_points():
    res = change_points([1.0, 2.0, 3.0, 4.0, 5.0])
    assert res.n_changes == 0 and "too few checkpoints (5)" in res.note
    for y in ([], [1.0], [1.0, 2.0]):
        res = change_points(y, replicates=np.ones((4, len(y))))
        assert res.n_changes == 0 and "too few" in res.note and res.criterion == {0: 0.0}
    with pytest.raises(ConfigError, match="cannot place 1 changes"):
        change_points([1.0, 2.0, 3.0, 4.0, 5.0], config=ChangeConfig(n_changes=1))


def test_interval_holds_truth_and_is_narrow():
    y, _ = _step(n=40, at=16, height=1.0, noise=0.1)
    reps = _boot(y, 0.1, B=200)
    res = change_points(y, replicates=reps, config=MEAN)
    (ch,) = res.changes
    assert ch["lo"] <= 16 <= ch["hi"] and ch["hi"] - ch["lo"] <= 2
    assert ch["support"] == 1.0 and res.noise == "replicates"
    assert res.replicate_x.shape == (200, 1)
    assert np.mean(res.replicate_first == res.replicate_x[:, 0]) >= 0.9


def test_replicate_first_nan_without_change():
    rng = np.random.default_rng(7)
    y = rng.normal(0, 1, 25)
    reps = np.tile(y, (30, 1))  # replicates equal to a no-change fit
    res = change_points(y, replicates=reps, se=np.ones(25), config=MEAN)
    assert res.n_changes == 0 and res.replicate_x.shape == (30, 0)
    assert res.replicate_first.shape == (30,) and np.isnan(res.replicate_first).all()


def test_unfittable_replicate_is_nan():
    y, _ = _step()
    reps = _boot(y, 0.1, 60)
    reps[3, 0] = np.nan
    res = change_points(y, replicates=reps, config=MEAN)
    assert res.n_changes == 1 and np.isnan(res.replicate_x[3]).all()
    assert np.isnan(res.replicate_first[3]) and not np.isnan(res.replicate_first[:3]).any()


def test_to_dict_is_json():
    y, _ = _step()
    reps = _boot(y, 0.1, 20)
    reps[0, 3] = np.nan
    d = change_points(y, replicates=reps, config=MEAN).to_dict()
    text = json.dumps(d, allow_nan=False)
    assert d["replicate_x"][0] == [None] and d["replicate_first"][0] is None
    assert json.loads(text)["config"]["model"] == "mean"


def test_default_penalty_grows_with_n():
    assert default_penalty(10, "mean") < default_penalty(200, "mean")
    assert default_penalty(200, "linear") < default_penalty(200, "mean")


def test_scale_invariant():
    y, _ = _step(seed=5)
    a = change_points(y, se=np.full(30, 0.1), config=MEAN)
    b = change_points(1e6 * y + 3e7, se=np.full(30, 1e5), config=MEAN)
    assert [c["index"] for c in a.changes] == [c["index"] for c in b.changes]
    assert np.allclose(list(a.criterion.values()), list(b.criterion.values()), rtol=1e-6)


@pytest.mark.parametrize("kind", ["mean", "linear"])
def test_same_as_ruptures_dynp(kind):
    rng = np.random.default_rng(11)
    x = np.cumsum(rng.uniform(1, 5, 40))
    y = np.sin(x / 15) + rng.normal(0, 0.2, 40)
    w = rng.uniform(0.5, 2, 40)
    costs, bkps = _fit_rows(y[None], x, w, kind == "linear", 3, 3)
    algo = rpt.Dynp(custom_cost=WeightedCost(x, w, kind, 3), min_size=3, jump=1).fit(y)
    for k in (1, 2, 3):
        ref = algo.predict(n_bkps=k)
        assert bkps[k][0].tolist() == ref[:-1]
        assert costs[0, k] == pytest.approx(algo.cost.sum_of_costs(ref), rel=1e-9, abs=1e-9)


def _wrss(y, x, w, linear):
    A = np.c_[np.ones_like(x), x] if linear else np.ones((x.size, 1))
    sw = np.sqrt(w)
    beta = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[0]
    return float(np.sum(w * (y - A @ beta) ** 2))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(6, 12),
    k=st.integers(1, 3),
    linear=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_optimal_against_brute_force(n, k, linear, seed):
    min_size = 2
    if (k + 1) * min_size > n:
        k = n // min_size - 1
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.uniform(0.5, 3, n))
    y = rng.normal(0, 1, n) + np.where(np.arange(n) >= n // 2, rng.normal(0, 2), 0)
    w = rng.uniform(0.3, 3, n)
    costs, bkps = _fit_rows(y[None], x, w, linear, min_size, k)
    best = np.inf
    for cut in itertools.combinations(range(min_size, n - min_size + 1), k):
        b = [0, *cut, n]
        if min(np.diff(b)) < min_size:
            continue
        best = min(
            best, sum(_wrss(y[s:e], x[s:e], w[s:e], linear) for s, e in itertools.pairwise(b))
        )
    b = [0, *bkps[k][0].tolist(), n]
    chosen = sum(_wrss(y[s:e], x[s:e], w[s:e], linear) for s, e in itertools.pairwise(b))
    assert chosen <= best + 1e-8 * (1 + best)
    assert costs[0, k] == pytest.approx(best, rel=1e-7, abs=1e-9)


def test_recentred_replicates_rarely_select_on_noise():
    rng = np.random.default_rng(21)
    y = rng.normal(0, 1, 60)
    reps = y + rng.normal(0, 1, (200, 60))  # y's own noise + one more draw
    rec = change_points(y, replicates=reps, config=MEAN)
    raw = change_points(y, replicates=reps, config=ChangeConfig(model="mean", recentre=False))
    assert rec.n_changes == 0 == raw.n_changes
    sel_rec, sel_raw = (
        np.mean(~np.isnan(rec.replicate_first)),
        np.mean(~np.isnan(raw.replicate_first)),
    )
    assert sel_rec < 0.2 < sel_raw


def test_noise_from_data_and_se_window():
    y, _ = _step(n=40, at=20, height=1.0, noise=0.1, seed=8)
    res = change_points(y, config=MEAN)
    assert res.noise == "data" and [c["index"] for c in res.changes] == [20]
    assert ChangeConfig(**ChangeConfig(se_window=1).to_dict()).se_window == 1
    with pytest.raises(ConfigError, match="se_window"):
        ChangeConfig(se_window=4)
