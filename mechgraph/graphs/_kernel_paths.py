"""Path-length kernels: all-pairs BFS (bitsets or a queue) and the weighted diameter
(Dijkstra with an indexed heap and eccentricity pruning; a lazy heap for negative weights).

Local node ids ``0..n-1`` on CSR arrays; see :mod:`mechgraph.graphs._kernels`.
"""

from __future__ import annotations

import numpy as np

from mechgraph.graphs._kernel_jit import HAVE_NUMBA, _jit

_U1 = np.uint64(1)
_P1 = np.uint64(0x5555555555555555)
_P2 = np.uint64(0x3333333333333333)
_P4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_BITSET_MAX_N = 1024  # bit-parallel BFS up to this many nodes (n * n / 8 bytes of bitsets)


@_jit
def _popcount(x):
    """Set bits of a uint64 (SWAR, no multiplication: no overflow in plain Python)."""
    x = x - ((x >> np.uint64(1)) & _P1)
    x = (x & _P2) + ((x >> np.uint64(2)) & _P2)
    x = (x + (x >> np.uint64(4))) & _P4
    x = x + (x >> np.uint64(8))
    x = x + (x >> np.uint64(16))
    x = x + (x >> np.uint64(32))
    return np.int64(x & np.uint64(0x7F))


@_jit
def _bfs_bitset(n, indptr, indices):
    """:func:`bfs_all_pairs` level by level on bitsets of every source at once.

    ``R_k[s]`` (nodes within k hops of s) is ``{s}`` plus the union of ``R_{k-1}[v]`` over
    the successors v of s; the nodes new at level k are at distance exactly k.  The last
    bitsets, returned too, are the sets of nodes reachable from each node.
    """
    words = (n + 63) >> 6
    cur = np.zeros((n, words), np.uint64)
    nxt = np.zeros((n, words), np.uint64)
    active = np.ones(n, np.bool_)
    for s in range(n):
        cur[s, s >> 6] = _U1 << np.uint64(s & 63)
        if indptr[s + 1] == indptr[s]:
            active[s] = False
    best = 0
    total = 0
    pairs = 0
    level = 0
    n_active = 0
    for s in range(n):
        if active[s]:
            n_active += 1
    while n_active > 0:
        level += 1
        for s in range(n):
            if not active[s]:
                for q in range(words):
                    nxt[s, q] = cur[s, q]
                continue
            added = 0
            for q in range(words):
                x = cur[s, q]
                for j in range(indptr[s], indptr[s + 1]):
                    x |= cur[indices[j], q]
                nxt[s, q] = x
                diff = x & ~cur[s, q]
                if diff != 0:
                    added += _popcount(diff)
            if added == 0:
                active[s] = False
                n_active -= 1
            else:
                total += level * added
                pairs += added
                best = level
        cur, nxt = nxt, cur
    return best, total, pairs, cur


@_jit
def _bfs_queue(n, indptr, indices):
    dist = np.empty(n, np.int64)
    queue = np.empty(max(n, 1), np.int64)
    best = 0
    total = 0
    pairs = 0
    for s in range(n):
        dist[:] = -1
        dist[s] = 0
        queue[0] = s
        head = 0
        tail = 1
        while head < tail:
            v = queue[head]
            head += 1
            dv = dist[v] + 1
            for j in range(indptr[v], indptr[v + 1]):
                w = indices[j]
                if dist[w] < 0:
                    dist[w] = dv
                    queue[tail] = w
                    tail += 1
                    total += dv
                    pairs += 1
                    if dv > best:
                        best = dv
    return best, total, pairs


@_jit
def bfs_all_pairs(n, indptr, indices):
    """Hop distances from every source.

    Returns ``(max_finite, sum_finite, n_reachable_pairs)`` over ordered pairs u != v.
    """
    if HAVE_NUMBA and 0 < n <= _BITSET_MAX_N:
        best, total, pairs, _ = _bfs_bitset(n, indptr, indices)
        return best, total, pairs
    return _bfs_queue(n, indptr, indices)


@_jit
def bfs_all_pairs_reach(n, indptr, indices):
    """:func:`bfs_all_pairs` and the reachability bitsets of its bitset search, (n, words),
    for :func:`dijkstra_max_reach` (an empty (0, 1) array after a queue search)."""
    if HAVE_NUMBA and 0 < n <= _BITSET_MAX_N:
        return _bfs_bitset(n, indptr, indices)
    best, total, pairs = _bfs_queue(n, indptr, indices)
    return best, total, pairs, np.zeros((0, 1), np.uint64)


@_jit
def _sift_up(hkey, hnode, pos, i):
    key = hkey[i]
    node = hnode[i]
    while i > 0:
        parent = (i - 1) >> 1
        pk = hkey[parent]
        if pk <= key:
            break
        hkey[i] = pk
        u = hnode[parent]
        hnode[i] = u
        pos[u] = i
        i = parent
    hkey[i] = key
    hnode[i] = node
    pos[node] = i


@_jit
def _sift_down(hkey, hnode, pos, size):
    """Restore the heap after the root was replaced."""
    key = hkey[0]
    node = hnode[0]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        ck = hkey[child]
        if child + 1 < size and hkey[child + 1] < ck:
            child += 1
            ck = hkey[child]
        if key <= ck:
            break
        hkey[i] = ck
        u = hnode[child]
        hnode[i] = u
        pos[u] = i
        i = child
    hkey[i] = key
    hnode[i] = node
    pos[node] = i


@_jit
def _heap_push(keys, vals, size, key, val):
    i = size
    keys[i] = key
    vals[i] = val
    while i > 0:
        parent = (i - 1) // 2
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        vals[parent], vals[i] = vals[i], vals[parent]
        i = parent
    return size + 1


@_jit
def _heap_pop(keys, vals, size):
    key = keys[0]
    val = vals[0]
    size -= 1
    keys[0] = keys[size]
    vals[0] = vals[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and keys[left + 1] < keys[left]:
            child = left + 1
        if keys[i] <= keys[child]:
            break
        keys[child], keys[i] = keys[i], keys[child]
        vals[child], vals[i] = vals[i], vals[child]
        i = child
    return key, val, size


@_jit
def _dijkstra_max_lazy(n, indptr, indices, weights):
    """The lazy-deletion heap Dijkstra of :func:`dijkstra_max` (kept for negative weights)."""
    m = indices.shape[0]
    dist = np.empty(n, np.float64)
    done = np.zeros(n, np.bool_)
    keys = np.empty(m + 1, np.float64)
    vals = np.empty(m + 1, np.int64)
    best = 0.0
    for s in range(n):
        dist[:] = np.inf
        done[:] = False
        dist[s] = 0.0
        size = _heap_push(keys, vals, 0, 0.0, s)
        while size > 0:
            d, v, size = _heap_pop(keys, vals, size)
            if done[v]:
                continue
            done[v] = True
            if d > best:
                best = d
            for j in range(indptr[v], indptr[v + 1]):
                w = indices[j]
                nd = d + weights[j]
                if nd < dist[w]:
                    dist[w] = nd
                    size = _heap_push(keys, vals, size, nd, w)
    return best


@_jit
def _reach_bitsets(n, indptr, indices):
    """Bitset of the nodes reachable from each node (itself included), shape (n, words)."""
    words = (n + 63) >> 6
    cur = np.zeros((n, words), np.uint64)
    nxt = np.zeros((n, words), np.uint64)
    for s in range(n):
        cur[s, s >> 6] = _U1 << np.uint64(s & 63)
    changed = True
    while changed:
        changed = False
        for s in range(n):
            for q in range(words):
                x = cur[s, q]
                for j in range(indptr[s], indptr[s + 1]):
                    x |= cur[indices[j], q]
                nxt[s, q] = x
                if x != cur[s, q]:
                    changed = True
        cur, nxt = nxt, cur
    return cur


@_jit
def _sssp_ecc(s, indptr, indices, weights, hkey, hnode, pos, seen, done):
    """Dijkstra from ``s``: (largest settled distance, the last node settled).

    ``seen``/``done`` hold the source of the last search that reached / settled a node
    (the buffers serve every source without a reset); weights are >= 0.
    """
    best = 0.0
    last = s
    seen[s] = s
    hkey[0] = 0.0
    hnode[0] = s
    pos[s] = 0
    size = 1
    while size > 0:
        d = hkey[0]
        v = hnode[0]
        size -= 1
        if size > 0:
            hkey[0] = hkey[size]
            hnode[0] = hnode[size]
            _sift_down(hkey, hnode, pos, size)
        done[v] = s
        if d > best:
            best = d
        last = v
        for j in range(indptr[v], indptr[v + 1]):
            w = indices[j]
            if done[w] == s:
                continue
            nd = d + weights[j]
            if seen[w] != s:
                if nd < np.inf:
                    seen[w] = s
                    hkey[size] = nd
                    hnode[size] = w
                    _sift_up(hkey, hnode, pos, size)
                    size += 1
            elif nd < hkey[pos[w]]:
                q = pos[w]
                hkey[q] = nd
                _sift_up(hkey, hnode, pos, q)
    return best, last


@_jit
def dijkstra_max(n, indptr, indices, weights):
    """Largest finite weighted shortest-path length over all ordered pairs (0 if none)."""
    return dijkstra_max_reach(n, indptr, indices, weights, np.zeros((0, 1), np.uint64))


@_jit
def dijkstra_max_reach(n, indptr, indices, weights, reach):
    """:func:`dijkstra_max`, given the reachability bitsets when known (else 0 rows).

    Largest finite weighted shortest-path length over all ordered pairs (0 if none).

    Dijkstra from every source that can matter, with an indexed binary heap
    (decrease-key) whose buffers serve every source.  Any label-setting order gives the
    same floats: each distance is the minimum, over paths, of the left-to-right sum.

    Sources are skipped by an upper bound on their eccentricity: for an edge s -> u whose
    head reaches s (so it reaches all that s reaches), ``ecc(s) <= w(s, u) + ecc(u)`` up to
    the rounding of the sums, covered by a relative margin of ``(8 n + 32) 2**-53``; a
    source whose bound is below the largest distance found so far cannot raise it.  A few
    searches first find a long distance (the farthest node v of a hub, then the node
    farthest from v through the reverse graph); the other sources follow in reverse-BFS
    order from the hub, so each meets a bounded successor.  Negative weights run the
    plain lazy-heap search; NaN/infinite weights, or more than 1024 nodes, search from
    every source.
    """
    m = indptr[n] if n > 0 else 0
    prune = 0 < n <= _BITSET_MAX_N
    for j in range(m):
        x = weights[j]
        if x < 0.0:
            return _dijkstra_max_lazy(n, indptr, indices, weights)
        if not x < np.inf:  # NaN or infinite
            prune = False
    hkey = np.empty(max(n, 1), np.float64)
    hnode = np.empty(max(n, 1), np.int64)
    pos = np.empty(max(n, 1), np.int64)
    seen = np.full(max(n, 1), -1, np.int64)
    done = np.full(max(n, 1), -1, np.int64)
    best = 0.0
    if not prune:
        for s in range(n):
            if indptr[s + 1] > indptr[s]:
                e, _ = _sssp_ecc(s, indptr, indices, weights, hkey, hnode, pos, seen, done)
                if e > best:
                    best = e
        return best
    if reach.shape[0] != n:
        reach = _reach_bitsets(n, indptr, indices)
    # reverse CSR
    rptr = np.zeros(n + 1, np.int64)
    for j in range(m):
        rptr[indices[j] + 1] += 1
    for v in range(n):
        rptr[v + 1] += rptr[v]
    fill = rptr[:n].copy()
    rind = np.empty(max(m, 1), np.int64)
    rw = np.empty(max(m, 1), np.float64)
    for v in range(n):
        for j in range(indptr[v], indptr[v + 1]):
            t = indices[j]
            rind[fill[t]] = v
            rw[fill[t]] = weights[j]
            fill[t] += 1
    bound = np.full(n, np.inf)
    handled = np.zeros(n, np.bool_)
    # a hub (most in-edges), its farthest node v, and the node farthest from v (reversed)
    root = 0
    for v in range(n):
        if rptr[v + 1] - rptr[v] > rptr[root + 1] - rptr[root]:
            root = v
    e, far = _sssp_ecc(root, indptr, indices, weights, hkey, hnode, pos, seen, done)
    best = e
    bound[root] = e
    handled[root] = True
    seen[:] = -1
    done[:] = -1
    _, x0 = _sssp_ecc(far, rptr, rind, rw, hkey, hnode, pos, seen, done)
    seen[:] = -1
    done[:] = -1
    if not handled[x0]:
        e, _ = _sssp_ecc(x0, indptr, indices, weights, hkey, hnode, pos, seen, done)
        if e > best:
            best = e
        bound[x0] = e
        handled[x0] = True
    # reverse BFS order from the hub, then the nodes that cannot reach it
    order = np.empty(n, np.int64)
    mark = np.zeros(n, np.bool_)
    order[0] = root
    mark[root] = True
    tail = 1
    head = 0
    while head < tail:
        v = order[head]
        head += 1
        for j in range(rptr[v], rptr[v + 1]):
            u = rind[j]
            if not mark[u]:
                mark[u] = True
                order[tail] = u
                tail += 1
    for v in range(n):
        if not mark[v]:
            order[tail] = v
            tail += 1
    margin = 1.0 + (8.0 * n + 32.0) * 1.1102230246251565e-16
    for k in range(n):
        s = order[k]
        if handled[s]:
            continue
        handled[s] = True
        if indptr[s + 1] == indptr[s]:
            bound[s] = 0.0
            continue
        b = np.inf
        sw = s >> 6
        sb = _U1 << np.uint64(s & 63)
        for j in range(indptr[s], indptr[s + 1]):
            u = indices[j]
            if handled[u] and (reach[u, sw] & sb) != 0:
                c = (weights[j] + bound[u]) * margin
                if c < b:
                    b = c
        if b < best:
            bound[s] = b
            continue
        e, _ = _sssp_ecc(s, indptr, indices, weights, hkey, hnode, pos, seen, done)
        bound[s] = e
        if e > best:
            best = e
    return best
