"""The compiled graph kernels on their own: the bounded cycle count against simple
references (networkx, a plain depth-first search), its cap, and the module split."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechgraph.graphs import _kernels as K


def csr_pair(n, src, dst):
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    w = np.zeros(src.size)
    indptr, indices, _ = K.csr_sorted(n, src, dst, w)
    rindptr, rindices, _ = K.csr_sorted(n, dst, src, w)
    return indptr, indices, rindptr, rindices


def reference_cycles(n, src, dst, bound):
    """Simple cycles of length 2..bound, each edge counted with its multiplicity."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(src, dst, strict=True):
        if a != b:
            adj[a].append(b)
    total = 0
    for s in range(n):
        stack = [(s, iter(adj[s]))]
        on_path = {s}
        while stack:
            v, it = stack[-1]
            w = next(it, None)
            if w is None:
                stack.pop()
                on_path.discard(v)
            elif w == s:
                total += len(stack) >= 2
            elif w > s and w not in on_path and len(stack) < bound:
                on_path.add(w)
                stack.append((w, iter(adj[w])))
    return total


def legacy_self_loops(n, src, dst):
    """What self-loop edges add (as the former kernel did): one per self-loop edge of a
    node s with an in-neighbour u > s."""
    higher_in = {b for a, b in zip(src, dst, strict=True) if a > b}
    return sum(1 for a, b in zip(src, dst, strict=True) if a == b and a in higher_in)


def count(n, src, dst, bound, cap=10**9):
    return K.count_cycles(n, *csr_pair(n, src, dst), bound, cap)


edge_lists = st.integers(0, 8).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.tuples(st.integers(0, max(n - 1, 0)), st.integers(0, max(n - 1, 0))))
        if n
        else st.just([]),
    )
)


@settings(max_examples=300, deadline=None)
@given(edge_lists, st.integers(0, 9))
def test_count_cycles_matches_plain_search_parallel_edges_and_self_loops(graph, bound):
    n, edges = graph
    src = [a for a, _ in edges]
    dst = [b for _, b in edges]
    expected = reference_cycles(n, src, dst, bound)
    if bound >= 2 and n >= 2:
        expected += legacy_self_loops(n, src, dst)
    assert count(n, src, dst, bound) == (expected, False)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 9), st.floats(0.05, 0.8), st.integers(2, 9), st.integers(0, 2**32 - 1))
def test_count_cycles_matches_networkx(n, p, bound, seed):
    G = nx.gnp_random_graph(n, p, seed=seed, directed=True)
    src = [a for a, _ in G.edges]
    dst = [b for _, b in G.edges]
    expected = sum(1 for _ in nx.simple_cycles(G, length_bound=bound))
    assert count(n, src, dst, bound) == (expected, False)


@settings(max_examples=100, deadline=None)
@given(edge_lists, st.integers(2, 9), st.integers(-2, 40))
def test_count_cycles_cap_and_relabelling(graph, bound, cap):
    n, edges = graph
    edges = [(a, b) for a, b in edges if a != b]  # relabelling moves the self-loop term
    src = np.array([a for a, _ in edges], np.int64)
    dst = np.array([b for _, b in edges], np.int64)
    total = reference_cycles(n, src.tolist(), dst.tolist(), bound)
    hit = max(cap, 1)
    expected = (hit, True) if total >= hit else (total, False)
    assert count(n, src, dst, bound, cap) == expected
    perm = np.random.default_rng(n + len(edges)).permutation(max(n, 1))[:n]
    assert count(n, perm[src], perm[dst], bound, cap) == expected


def test_count_cycles_on_larger_sparse_graphs_matches_networkx():
    rng = np.random.default_rng(7)
    for n in (30, 60, 120):
        G = nx.gnm_random_graph(n, 2 * n, seed=int(rng.integers(1 << 31)), directed=True)
        src = [a for a, _ in G.edges]
        dst = [b for _, b in G.edges]
        for bound in (2, 3, 4, 5, 7, 10):
            expected = sum(1 for _ in nx.simple_cycles(G, length_bound=bound))
            assert count(n, src, dst, bound) == (expected, False)


def test_pure_python_count_cycles_equals_compiled(monkeypatch):
    from mechgraph.graphs import _kernel_cycles as C

    if not K.HAVE_NUMBA:
        pytest.skip("numba not installed: the kernels already run as Python")
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(20):
        n = int(rng.integers(2, 25))
        m = int(rng.integers(0, 4 * n))
        src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
        args = (n, *csr_pair(n, src, dst), int(rng.integers(2, 8)), int(rng.integers(1, 500)))
        cases.append((args, C.count_cycles(*args)))
    # the Python bodies of count_cycles and of the kernels it calls (compiled above)
    for name in ("_relabel_csr", "_count_relabeled"):
        monkeypatch.setattr(C, name, getattr(C, name).py_func)
    for args, compiled in cases:
        assert C.count_cycles.py_func(*args) == compiled


def test_split_modules_are_reexported():
    from mechgraph.graphs import _kernel_cycles, _kernel_paths

    for name in ("count_cycles", "clustering_stats"):
        assert getattr(K, name) is getattr(_kernel_cycles, name)
    for name in ("bfs_all_pairs", "dijkstra_max", "_dijkstra_max_lazy", "_sssp_ecc"):
        assert getattr(K, name) is getattr(_kernel_paths, name)
    for name in K.__all__:
        assert hasattr(K, name)
    assert K.N_RAW == len(K.RAW_COLUMNS)
