"""Topology metrics: hand-made paths with known answers, agreement with networkx."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechgraph.errors import ConfigError
from mechgraph.graphs import (
    METRIC_COLUMNS,
    MetricOptions,
    avg_path_length,
    clustering,
    collapse_repeats,
    diameter,
    has_loop,
    loop_count,
    metrics_table,
    n_cycles,
    revisit_mask,
    revisits,
    small_world_sigma,
    topology_metrics,
    trace_graph,
)

TOR = [0, 1, 2, 1, 0, 2, 0]


def tor_reference(path):
    """Topology of Reasoning's loop detection, written from its definition."""
    last: dict[int, int] = {}
    entry = None
    for i, u in enumerate(path):
        if u in last and i - last[u] > 1:
            entry = u
            break
        last[u] = i
    if entry is None:
        return False, 0
    visits = sum(1 for i, u in enumerate(path) if u == entry and (i == 0 or path[i - 1] != u))
    return True, visits - 1


# ------------------------------------------------------------------ known answers
def test_issue_example():
    m = topology_metrics(TOR)
    assert m["has_loop"] is True and m["loop_count"] == 1 and m["revisits"] == 4
    # complete digraph on 3 nodes: three 2-cycles and two 3-cycles
    assert m["n_nodes"] == 3 and m["n_edges"] == 6 and m["n_cycles"] == 5
    assert m["diameter_hops"] == 1 and m["clustering"] == 1.0 and m["transitivity"] == 1.0
    assert m["avg_path_length"] == 1.0 and m["avg_path_length_directed"] == 1.0
    # n = 3, k = 2: C_r = 1, L_r = ln 3 / ln 2
    assert m["small_world_sigma"] == pytest.approx(math.log(3) / math.log(2))
    assert math.isnan(m["diameter"]) and math.isnan(m["diameter_norm"])
    assert list(m) == list(METRIC_COLUMNS)


def test_path_functions():
    assert has_loop(TOR) and loop_count(TOR) == 1 and revisits(TOR) == 4
    assert loop_count([0, 1, 0, 0, 1, 0]) == 2
    assert revisits([0, 0, 0]) == 0 and not has_loop([0, 0, 1, 1])
    assert revisits([0, 0, 1, 0]) == 1
    assert revisit_mask([0, 1, 0, 0, 1]).tolist() == [False, False, True, False, True]
    assert collapse_repeats([3, 3, 1, 1, 3]).tolist() == [3, 1, 3]


def test_straight_path():
    m = topology_metrics([0, 1, 2, 3, 4])
    assert (m["has_loop"], m["loop_count"], m["revisits"], m["n_cycles"]) == (False, 0, 0, 0)
    assert m["diameter_hops"] == 4
    # path graph P5: 20 hops over 10 unordered pairs
    assert m["avg_path_length"] == 2.0 and m["avg_path_length_directed"] == 2.0
    assert m["clustering"] == 0.0 and m["small_world_sigma"] == 0.0


def test_weighted_diameter_and_normalisation():
    path = [0, 1, 2]
    v = np.array([[0.0], [3.0], [7.0]])
    m = topology_metrics(path, v)
    assert m["diameter"] == 7.0 and m["mean_step_distance"] == 3.5 and m["diameter_norm"] == 2.0
    m10 = topology_metrics(path, 10 * v)
    assert m10["diameter"] == 70.0 and m10["diameter_norm"] == pytest.approx(2.0)


def test_distance_aggregation():
    # transitions 0->1 (1), 1->0 (2), 0->1 (5)
    v = np.array([[0.0], [1.0], [-1.0], [4.0]])
    path = [0, 1, 0, 1]
    assert topology_metrics(path, v)["diameter"] == 3.0  # mean 0->1 = 3
    assert topology_metrics(path, v, distance_agg="min")["diameter"] == 2.0  # ToR: min 0->1 = 1
    G = trace_graph(path, v)
    assert G.edges[0, 1]["count"] == 2 and G.edges[0, 1]["distance"] == 3.0


def test_self_loops_option():
    assert topology_metrics([0, 0, 1])["n_edges"] == 1
    m = topology_metrics([0, 0, 1], self_loops=True)
    assert m["n_edges"] == 2 and m["n_cycles"] == 1
    G = trace_graph([0, 0, 1], self_loops=True)
    assert G.has_edge(0, 0) and n_cycles(G) == 1


def test_cycle_bound_and_cap():
    path = [0, 1, 2, 3, 0]
    assert topology_metrics(path)["n_cycles"] == 1
    assert topology_metrics(path, cycle_length_bound=3)["n_cycles"] == 0
    m = topology_metrics(TOR, max_cycles=2)
    assert m["n_cycles"] == 2 and m["n_cycles_capped"] is True


def test_degenerate_inputs():
    one = topology_metrics([7], np.ones((1, 4)))
    assert one["n_steps"] == 1 and one["n_nodes"] == 1 and one["n_edges"] == 0
    assert (one["has_loop"], one["loop_count"], one["revisits"], one["n_cycles"]) == (
        False,
        0,
        0,
        0,
    )
    assert one["diameter_hops"] == 0 and one["diameter"] == 0.0 and one["diameter_norm"] == 0.0
    assert one["clustering"] == 0.0 and one["avg_path_length"] == 0.0
    assert math.isnan(one["small_world_sigma"]) and math.isnan(one["mean_step_distance"])
    same = topology_metrics([3, 3, 3, 3], np.arange(8.0).reshape(4, 2))
    assert same["n_nodes"] == 1 and same["revisits"] == 0 and same["diameter"] == 0.0
    assert same["n_transitions"] == 0
    empty = topology_metrics([])
    assert empty["n_steps"] == 0 and empty["n_nodes"] == 0 and empty["n_cycles"] == 0
    assert math.isnan(empty["clustering"]) and math.isnan(empty["avg_path_length"])
    two = topology_metrics([0, 1])
    assert math.isnan(two["small_world_sigma"])  # n < 3


def test_bad_inputs():
    with pytest.raises(ConfigError):
        topology_metrics([[0, 1]])
    with pytest.raises(ConfigError):
        topology_metrics([0, 1], np.ones((3, 2)))
    with pytest.raises(ConfigError):
        topology_metrics([0, 1], sigma_baseline="nope")
    with pytest.raises(ConfigError):
        topology_metrics([0, 1], cycle_length_bound=0)
    with pytest.raises(ConfigError):
        topology_metrics([0, 1], colour="red")
    with pytest.raises(ConfigError):
        n_cycles(nx.Graph([(0, 1)]))
    with pytest.raises(ConfigError):
        diameter(nx.DiGraph([(0, 1)]), weight="distance")


# ------------------------------------------------------------ agreement with networkx
def _random_digraph(rng, n, p):
    G = nx.gnp_random_graph(n, p, seed=int(rng.integers(1 << 30)), directed=True)
    for u, v in G.edges:
        G.edges[u, v]["distance"] = float(rng.uniform(0.1, 3.0))
    return G


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_networkx_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    G = _random_digraph(rng, int(rng.integers(5, 25)), float(rng.uniform(0.08, 0.4)))
    U = nx.Graph(G)
    for bound in (2, 4, 6):
        assert n_cycles(G, bound) == sum(1 for _ in nx.simple_cycles(G, length_bound=bound))
    assert clustering(G) == pytest.approx(nx.average_clustering(U))
    if nx.is_connected(U):
        assert avg_path_length(G) == pytest.approx(nx.average_shortest_path_length(U))
    else:
        assert math.isnan(avg_path_length(G))
    if nx.is_strongly_connected(G):
        assert diameter(G, weight=None) == nx.diameter(G)
        assert diameter(G) == pytest.approx(nx.diameter(G, weight="distance"))
    lengths = dict(nx.all_pairs_dijkstra_path_length(G, weight="distance"))
    assert diameter(G) == pytest.approx(max(d for row in lengths.values() for d in row.values()))
    hops = dict(nx.all_pairs_shortest_path_length(G))
    assert diameter(G, weight=None) == max(d for row in hops.values() for d in row.values())
    reach = [d for u, row in hops.items() for v, d in row.items() if u != v]
    if reach:
        assert avg_path_length(G, directed=True) == pytest.approx(np.mean(reach))


def test_undirected_input_graphs():
    G = nx.cycle_graph(6)
    assert diameter(G, weight=None) == nx.diameter(G) == 3
    assert avg_path_length(G) == pytest.approx(nx.average_shortest_path_length(G))
    assert clustering(nx.complete_graph(5)) == 1.0


def test_sampled_sigma_reproduces_networkx_sigma():
    G = nx.connected_watts_strogatz_graph(14, 4, 0.2, seed=1)
    ours = small_world_sigma(
        G, baseline="sampled", clustering="transitivity", nrand=2, niter=3, seed=5
    )
    assert ours == pytest.approx(nx.sigma(G, niter=3, nrand=2, seed=5))
    analytic = small_world_sigma(G)
    assert np.isfinite(analytic) and analytic > 0


def test_sampled_sigma_in_table_is_seeded():
    rng = np.random.default_rng(0)
    nodes = rng.integers(0, 6, 60)
    a = metrics_table(
        nodes, np.array([0, 30, 60]), sigma_baseline="sampled", sigma_nrand=2, sigma_niter=2, seed=3
    )
    b = metrics_table(
        nodes, np.array([0, 30, 60]), sigma_baseline="sampled", sigma_nrand=2, sigma_niter=2, seed=3
    )
    assert np.allclose(a["small_world_sigma"], b["small_world_sigma"], equal_nan=True)


def test_trace_graph_matches_kernel():
    rng = np.random.default_rng(3)
    path = rng.integers(0, 8, 40)
    v = rng.normal(size=(40, 5))
    G = trace_graph(path, v)
    m = topology_metrics(path, v)
    assert m["n_nodes"] == G.number_of_nodes() and m["n_edges"] == G.number_of_edges()
    assert m["n_cycles"] == n_cycles(G) and m["diameter"] == pytest.approx(diameter(G))
    assert m["clustering"] == pytest.approx(clustering(G))
    assert m["small_world_sigma"] == pytest.approx(small_world_sigma(G))
    assert sum(c for _, _, c in G.edges(data="count")) == m["n_transitions"]


# --------------------------------------------------------------------- tables
def test_metrics_table_rows_match_single_trace():
    rng = np.random.default_rng(1)
    lens = [5, 1, 30, 12]
    nodes = rng.integers(0, 7, sum(lens))
    ids = np.repeat(["a", "b", "c", "d"], lens)
    v = rng.normal(size=(sum(lens), 3))
    t = metrics_table(nodes, trace_ids=ids, vectors=v)
    assert t["trace_id"].tolist() == ["a", "b", "c", "d"]
    assert str(t["n_cycles"].dtype) == "Int64" and str(t["has_loop"].dtype) == "boolean"
    off = np.r_[0, np.cumsum(lens)]
    for b in range(4):
        one = topology_metrics(nodes[off[b] : off[b + 1]], v[off[b] : off[b + 1]])
        for k, x in one.items():
            y = t.iloc[b][k]
            if isinstance(x, float) and math.isnan(x):
                assert y is pd_na or (isinstance(y, float) and math.isnan(y)), k
            else:
                assert y == pytest.approx(x), k


pd_na = __import__("pandas").NA


def test_metrics_table_errors():
    with pytest.raises(ConfigError, match="not contiguous"):
        metrics_table([0, 1, 2], trace_ids=["a", "b", "a"])
    with pytest.raises(ConfigError):
        metrics_table([0, 1, 2], np.array([0, 2]))
    with pytest.raises(ConfigError):
        metrics_table([0, 1, 2], trace_ids=["a", "b"])


def test_options_roundtrip():
    o = MetricOptions(cycle_length_bound=None, distance_agg="min")
    assert MetricOptions(**o.to_dict()) == o
    assert topology_metrics(TOR, cycle_length_bound=None)["n_cycles"] == 5


# ------------------------------------------------------------------ properties
paths = st.lists(st.integers(0, 6), min_size=0, max_size=40)


@settings(max_examples=150, deadline=None)
@given(paths)
def test_path_metric_properties(path):
    m = topology_metrics(path)
    ref_loop, ref_count = tor_reference(path)
    assert m["has_loop"] == ref_loop and m["loop_count"] == ref_count
    assert m["revisits"] == revisits(path) == int(revisit_mask(path).sum())
    assert m["has_loop"] == (m["revisits"] > 0)
    assert m["loop_count"] <= m["revisits"] <= max(len(path) - 2, 0)
    collapsed = collapse_repeats(path)
    assert m["revisits"] == len(collapsed) - len(set(path))
    assert m["n_nodes"] == len(set(path))


@settings(max_examples=60, deadline=None)
@given(paths, st.integers(2, 7))
def test_cycles_match_networkx(path, bound):
    G = trace_graph(path)
    expected = sum(1 for _ in nx.simple_cycles(G, length_bound=bound))
    assert topology_metrics(path, cycle_length_bound=bound)["n_cycles"] == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=2, max_size=30), st.floats(0.1, 100))
def test_normalised_diameter_is_scale_free(path, scale):
    v = np.random.default_rng(len(path)).normal(size=(len(path), 3))
    a = topology_metrics(path, v)["diameter_norm"]
    b = topology_metrics(path, v * scale)["diameter_norm"]
    assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9)


def test_pure_python_fallback_gives_same_numbers():
    code = (
        "import json; from mechgraph.graphs import topology_metrics;"
        "import numpy as np;"
        "print(json.dumps(topology_metrics([0, 1, 2, 1, 0, 2, 0], np.arange(14.0).reshape(7, 2))))"
    )
    env = {**os.environ, "MECHGRAPH_DISABLE_NUMBA": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    import json

    slow = json.loads(out.stdout)
    fast = topology_metrics([0, 1, 2, 1, 0, 2, 0], np.arange(14.0).reshape(7, 2))
    assert slow == pytest.approx(fast, nan_ok=True)
