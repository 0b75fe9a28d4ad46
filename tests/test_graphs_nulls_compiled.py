"""Compiled null draws: seeded streams, slicing independence, the draws' invariants and
statistical agreement with the NumPy draws (``shuffled_orders``, ``corpus_walks``)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechgraph.errors import ConfigError
from mechgraph.graphs import _null_kernels as NK
from mechgraph.graphs import corpus_walks, metrics_table, null_zscores, shuffled_orders
from mechgraph.graphs.nulls import walk_tables
from mechgraph.graphs.paths import step_distances


def corpus(seed=0, lens=(12, 1, 25, 8, 0, 30, 17), k=6, d=3):
    rng = np.random.default_rng(seed)
    nodes = rng.integers(0, k, sum(lens))
    off = np.r_[0, np.cumsum(lens)].astype(np.int64)
    vec = rng.normal(size=(nodes.size, d))
    return nodes, off, vec


GROUPS = ["x", "y", "x", "y", "x", "x", "y"]


def draws(kind, nodes, off, vec, n_null, seed=0, groups=None):
    """The raw draws of ``null_zscores`` (nodes, step lengths), shape (n_null, N)."""
    has_w = vec is not None
    d = step_distances(vec, off) if has_w else None
    tables = walk_tables(nodes, off, groups=groups, distances=d)
    B = off.size - 1
    return NK.null_draws(
        NK.KIND_CODES[kind], nodes, off, vec if has_w else np.zeros((1, 1)), has_w,
        tables.group_codes(groups, B), np.arange(B, dtype=np.uint64), NK.stream_seed(seed),
        0, n_null, *NK._kernel_args(kind, tables),
    )  # fmt: skip


def test_same_seed_same_result_other_seed_other_result():
    nodes, off, vec = corpus()
    a = null_zscores(nodes, off, vectors=vec, n_null=8, seed=3, groups=GROUPS)
    b = null_zscores(nodes, off, vectors=vec, n_null=8, seed=3, groups=GROUPS)
    c = null_zscores(nodes, off, vectors=vec, n_null=8, seed=4, groups=GROUPS)
    assert a.equals(b)
    assert not a.equals(c)
    # a kind's draws do not depend on the other kinds asked for
    w = null_zscores(nodes, off, vectors=vec, n_null=8, seed=3, groups=GROUPS, kinds=["walk"])
    assert w.equals(a[w.columns])


def test_whole_equals_halves_concatenated():
    nodes, off, vec = corpus()
    kw = dict(vectors=vec, n_null=9, seed=1, groups=GROUPS)
    whole = null_zscores(nodes, off, **kw)
    for cut in (1, 3, 5):
        halves = pd.concat(
            [
                null_zscores(nodes, off, traces=(0, cut), **kw),
                null_zscores(nodes, off, traces=slice(cut, None), **kw),
            ],
            ignore_index=True,
        )
        assert whole.equals(halves)


def test_worker_slices_with_shared_tables_and_keys():
    """A worker that only holds its slice, the corpus tables and the slice's keys."""
    nodes, off, vec = corpus()
    tables = walk_tables(nodes, off, groups=GROUPS, distances=step_distances(vec, off))
    whole = null_zscores(nodes, off, vectors=vec, n_null=7, groups=GROUPS)
    lo, hi = 2, 6
    o = off[lo : hi + 1]
    part = null_zscores(
        nodes[o[0] : o[-1]], o - o[0], vectors=vec[o[0] : o[-1]], n_null=7,
        groups=GROUPS[lo:hi], tables=tables, trace_keys=np.arange(lo, hi),
    )  # fmt: skip
    assert whole.iloc[lo:hi].reset_index(drop=True).equals(part)


def test_trace_keys_make_rows_follow_their_trace():
    nodes, off, vec = corpus(lens=(12, 25, 8, 30))
    ids = np.array(["a", "b", "c", "d"], dtype=object)
    perm = [2, 0, 3, 1]
    pn = np.concatenate([nodes[off[b] : off[b + 1]] for b in perm])
    pv = np.concatenate([vec[off[b] : off[b + 1]] for b in perm])
    po = np.r_[0, np.cumsum(np.diff(off)[perm])]
    # the walk tables count the same transitions in any trace order
    z = null_zscores(nodes, off, n_null=6, trace_keys=ids)
    zp = null_zscores(pn, po, n_null=6, trace_keys=ids[perm])
    assert zp.equals(z.iloc[perm].reset_index(drop=True))
    # with step lengths, the walk's mean edge lengths are sums in another order
    z = null_zscores(nodes, off, vectors=vec, n_null=6, trace_keys=ids)
    zp = null_zscores(pn, po, vectors=pv, n_null=6, trace_keys=ids[perm])
    want = z.iloc[perm].reset_index(drop=True)
    shuffle = [c for c in z.columns if c.endswith("_shuffle")]
    assert zp[shuffle].equals(want[shuffle])
    np.testing.assert_allclose(zp.to_numpy(), want.to_numpy(), rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    lens=st.lists(st.integers(0, 15), min_size=1, max_size=8),
    seed=st.integers(0, 2**40),
    cut=st.integers(0, 8),
    data_seed=st.integers(0, 1000),
)
def test_any_cut_gives_the_whole(lens, seed, cut, data_seed):
    nodes, off, _ = corpus(data_seed, tuple(lens), k=4)
    cut = min(cut, len(lens))
    whole = null_zscores(nodes, off, n_null=3, seed=seed)
    left = null_zscores(nodes, off, n_null=3, seed=seed, traces=(0, cut))
    right = null_zscores(nodes, off, n_null=3, seed=seed, traces=(cut, len(lens)))
    assert whole.equals(pd.concat([left, right], ignore_index=True))


def test_shuffle_draws_permute_nodes_and_vectors():
    nodes, off, vec = corpus()
    wn, wd = draws("shuffle", nodes, off, vec, 6)
    pair_d = {}
    for b in range(off.size - 1):
        lo, hi = off[b], off[b + 1]
        for r in range(6):
            p = wn[r, lo:hi]
            assert sorted(p.tolist()) == sorted(nodes[lo:hi].tolist())  # same multiset, length
            if hi > lo:
                assert np.isnan(wd[r, hi - 1])
            # each step length is the distance between two distinct steps' vectors
            all_d = np.linalg.norm(vec[lo:hi, None] - vec[None, lo:hi], axis=-1)
            pair_d[b] = all_d
            for t in range(hi - lo - 1):
                assert np.isclose(all_d, wd[r, lo + t], rtol=0, atol=1e-12).any()
    assert not np.array_equal(wn[0], wn[1])


def test_walk_draws_follow_the_group_transitions():
    nodes, off, vec = corpus()
    d = step_distances(vec, off)
    wn, wd = draws("walk", nodes, off, vec, 7, groups=GROUPS)
    seen = {g: {} for g in ("x", "y")}
    for b in range(off.size - 1):
        p = nodes[off[b] : off[b + 1]]
        for t in range(p.size - 1):
            seen[GROUPS[b]].setdefault((p[t], p[t + 1]), []).append(d[off[b] + t])
    visited = {
        g: {int(u) for b in range(7) if GROUPS[b] == g for u in nodes[off[b] : off[b + 1]]}
        for g in seen
    }
    dead = {g: set(range(6)) - {a for a, _ in seen[g]} for g in seen}
    for r in range(7):
        for b in range(off.size - 1):
            lo, hi, g = off[b], off[b + 1], GROUPS[b]
            p = wn[r, lo:hi]
            if hi == lo:
                continue
            assert p[0] == nodes[lo] and np.isnan(wd[r, hi - 1])  # same start, same length
            for t in range(p.size - 1):
                if p[t] in dead[g]:  # a jump by visit frequency
                    assert p[t + 1] in visited[g]
                    continue
                assert (p[t], p[t + 1]) in seen[g]
                assert wd[r, lo + t] == pytest.approx(np.mean(seen[g][(p[t], p[t + 1])]))


def test_zscore_formula_and_nan_rule_on_the_draws():
    nodes, off, vec = corpus(lens=(20, 30, 3, 1))
    n = 10
    z = null_zscores(nodes, off, vectors=vec, n_null=n, kinds=["shuffle", "walk"], seed=0)
    obs = metrics_table(nodes, off, vectors=vec)
    B = off.size - 1
    for kind in ("shuffle", "walk"):
        wn, wd = draws(kind, nodes, off, vec, n)
        flat_off = np.r_[
            (off[:-1][None, :] + (np.arange(n) * nodes.size)[:, None]).ravel(), n * nodes.size
        ]
        t = metrics_table(wn.ravel(), flat_off, distances=wd.ravel())
        for m in ("revisits", "diameter_norm", "clustering", "small_world_sigma"):
            x = t[m].to_numpy(float).reshape(n, B)
            for b in range(B):
                v = x[:, b][np.isfinite(x[:, b])]
                mean = v.mean() if v.size else np.nan
                assert z[f"{m}_null_{kind}"][b] == pytest.approx(mean, nan_ok=True)
                sd = v.std(ddof=1) if v.size >= 2 else np.nan
                want = (
                    (float(obs[m][b]) - mean) / sd
                    if v.size >= 2 and sd > 1e-12 * max(1, abs(mean))
                    else np.nan
                )
                assert z[f"{m}_z_{kind}"][b] == pytest.approx(want, nan_ok=True, rel=1e-9)
    # no spread in the null -> NaN, not inf
    z0 = null_zscores([0, 0, 0], np.array([0, 3]), n_null=5)
    assert np.isnan(z0["revisits_z_shuffle"][0]) and np.isnan(z0["revisits_z_walk"][0])


@pytest.mark.slow
def test_null_means_agree_with_the_numpy_draws():
    """Same null models: the means over many draws agree with the former NumPy draws."""
    rng = np.random.default_rng(5)
    lens = (20, 35, 15, 40)
    nodes, off, _ = corpus(2, lens, k=8)
    n = 400
    B, N = len(lens), nodes.size
    flat_off = np.r_[(off[:-1][None, :] + (np.arange(n) * N)[:, None]).ravel(), n * N]
    old = {
        "shuffle": nodes[shuffled_orders(off, n, rng)].ravel(),
        "walk": corpus_walks(nodes, off, n, rng, groups=GROUPS[:B])[0].ravel(),
    }
    z = null_zscores(nodes, off, n_null=n, groups=GROUPS[:B], seed=11)
    for kind, flat in old.items():
        t = metrics_table(flat, flat_off)
        for m in ("revisits", "loop_count", "n_cycles", "diameter_hops", "clustering"):
            x = t[m].to_numpy(float).reshape(n, B)
            se = np.sqrt(2 * np.nanvar(x, axis=0, ddof=1) / n)
            diff = np.abs(z[f"{m}_null_{kind}"].to_numpy() - np.nanmean(x, axis=0))
            assert np.all(diff <= 4.5 * se + 1e-9), (kind, m, diff, se)


def test_sampled_sigma_is_slice_independent():
    nodes, off, _ = corpus(lens=(12, 25, 30))
    kw = dict(n_null=3, kinds=["walk"], metrics=["small_world_sigma"], sigma_baseline="sampled")
    kw |= dict(sigma_nrand=1, sigma_niter=1)
    whole = null_zscores(nodes, off, **kw)
    halves = pd.concat(
        [
            null_zscores(nodes, off, traces=(0, 1), **kw),
            null_zscores(nodes, off, traces=(1, 3), **kw),
        ],
        ignore_index=True,
    )
    assert whole.equals(halves)
    assert np.isfinite(whole["small_world_sigma_null_walk"]).any()


def test_errors():
    nodes, off, vec = corpus()
    with pytest.raises(ConfigError):
        null_zscores(nodes, off, n_null=3, traces=(4, 2))
    with pytest.raises(ConfigError):
        null_zscores(nodes, off, n_null=3, trace_keys=[1, 1, 2, 3, 4, 5, 6])
    with pytest.raises(ConfigError):
        null_zscores(nodes, off, n_null=3, trace_keys=[1, 2])
    with pytest.raises(ConfigError):
        null_zscores(nodes, off, n_null=3, engine="spark")
    with pytest.raises(ConfigError):
        null_zscores(nodes, off[:-1], n_null=3)
    tables = walk_tables(nodes, off, groups=GROUPS)
    with pytest.raises(ConfigError):
        null_zscores(nodes, off, n_null=3, tables=tables)  # several groups, none given
    with pytest.raises(ConfigError):
        null_zscores(nodes, off, n_null=3, tables=tables, groups=["z"] * 7)
    with pytest.raises(ConfigError):
        null_zscores(nodes, off, vectors=vec, n_null=3, tables=tables, groups=GROUPS)
    with pytest.raises(ConfigError):
        null_zscores(nodes + 10, off, n_null=3, tables=tables, groups=GROUPS)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_ray_engine_gives_the_numba_numbers():
    import ray

    nodes, off, vec = corpus()
    kw = dict(vectors=vec, n_null=5, groups=GROUPS, seed=2)
    local = null_zscores(nodes, off, **kw)
    if ray.is_initialized():  # another test's instance: used as it is
        remote = null_zscores(nodes, off, engine="ray", n_tasks=3, **kw)
    else:  # a local instance started for the call and stopped after it
        remote = null_zscores(nodes, off, engine="ray", n_tasks=3, **kw)
        assert not ray.is_initialized()
    assert local.equals(remote)
