"""Compiled kernels behind the reasoning-graph metrics.

Everything here works on small integer arrays (local node ids ``0..n-1``) so that it
compiles with numba in ``nopython`` mode.  When numba is missing (or the environment
variable ``MECHGRAPH_DISABLE_NUMBA`` is set) the very same functions run as plain
Python: slower, identical results.

The public wrappers live in :mod:`mechgraph.graphs.metrics`; nothing here is public.
"""

from __future__ import annotations

import os

import numpy as np

try:  # numba ships with umap-learn; keep a pure-Python fallback all the same.
    if os.environ.get("MECHGRAPH_DISABLE_NUMBA"):
        raise ImportError("disabled by MECHGRAPH_DISABLE_NUMBA")
    import numba

    HAVE_NUMBA = True

    def _jit(fn):
        return numba.njit(cache=True, nogil=True)(fn)

    def _jit_parallel(fn):
        return numba.njit(cache=True, nogil=True, parallel=True)(fn)

    _prange = numba.prange
except ImportError:  # pragma: no cover - exercised only without numba
    HAVE_NUMBA = False

    def _jit(fn):
        return fn

    _jit_parallel = _jit
    _prange = range

#: Columns of the raw metric matrix returned by :func:`path_metrics_batch`.
RAW_COLUMNS: tuple[str, ...] = (
    "n_steps",
    "n_nodes",
    "n_edges",
    "n_transitions",
    "has_loop",
    "loop_count",
    "revisits",
    "n_cycles",
    "n_cycles_capped",
    "diameter_hops",
    "diameter",
    "mean_step_distance",
    "clustering",
    "transitivity",
    "avg_path_length",
    "avg_path_length_directed",
    "mean_degree",
)
N_RAW = len(RAW_COLUMNS)
(
    I_N_STEPS,
    I_N_NODES,
    I_N_EDGES,
    I_N_TRANS,
    I_HAS_LOOP,
    I_LOOP_COUNT,
    I_REVISITS,
    I_N_CYCLES,
    I_CAPPED,
    I_DIAM_HOPS,
    I_DIAM,
    I_MEAN_STEP,
    I_CLUST,
    I_TRANS,
    I_APL,
    I_APL_DIR,
    I_MEAN_DEG,
) = range(N_RAW)


# --------------------------------------------------------------------------- CSR helpers
@_jit
def csr_from_sorted(n, src, dst):
    """CSR (indptr, indices) of edges already sorted by ``src``."""
    indptr = np.zeros(n + 1, np.int64)
    for i in range(src.shape[0]):
        indptr[src[i] + 1] += 1
    for i in range(n):
        indptr[i + 1] += indptr[i]
    return indptr, dst.copy()


@_jit
def csr_sorted(n, src, dst, w):
    """CSR of an arbitrary directed edge list (stable by ``src``), with weights."""
    order = np.argsort(src, kind="mergesort")
    indptr, indices = csr_from_sorted(n, src[order], dst[order])
    return indptr, indices, w[order]


@_jit
def undirected_csr(n, src, dst):
    """Symmetric CSR of the simple undirected graph underlying a directed edge list.

    Self-loops and duplicate (u, v) / (v, u) pairs are dropped.
    """
    m = src.shape[0]
    codes = np.empty(m, np.int64)
    k = 0
    for i in range(m):
        a = src[i]
        b = dst[i]
        if a == b:
            continue
        if a > b:
            a, b = b, a
        codes[k] = a * n + b
        k += 1
    codes = np.sort(codes[:k])
    uniq = 0
    for i in range(k):
        if i == 0 or codes[i] != codes[i - 1]:
            codes[uniq] = codes[i]
            uniq += 1
    s2 = np.empty(2 * uniq, np.int64)
    d2 = np.empty(2 * uniq, np.int64)
    for i in range(uniq):
        a = codes[i] // n
        b = codes[i] % n
        s2[2 * i] = a
        d2[2 * i] = b
        s2[2 * i + 1] = b
        d2[2 * i + 1] = a
    order = np.argsort(s2 * n + d2)
    indptr, indices = csr_from_sorted(n, s2[order], d2[order])
    return indptr, indices, uniq


# --------------------------------------------------------------------------- metrics on CSR
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
    the successors v of s; the nodes new at level k are at distance exactly k.
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
    return best, total, pairs


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
        return _bfs_bitset(n, indptr, indices)
    return _bfs_queue(n, indptr, indices)


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
    """Largest finite weighted shortest-path length over all ordered pairs (0 if none).

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


@_jit
def clustering_stats(n, indptr, indices):
    """(average clustering, transitivity) of a symmetric simple CSR graph.

    Average clustering counts nodes of degree < 2 as 0 (as networkx does);
    transitivity is 0 when there is no connected triple.
    """
    mark = np.full(n, -1, np.int64)
    csum = 0.0
    tri_total = 0.0
    triads = 0.0
    for u in range(n):
        deg = indptr[u + 1] - indptr[u]
        if deg < 2:
            continue
        for j in range(indptr[u], indptr[u + 1]):
            mark[indices[j]] = u
        tri = 0
        for j in range(indptr[u], indptr[u + 1]):
            v = indices[j]
            for q in range(indptr[v], indptr[v + 1]):
                if mark[indices[q]] == u:
                    tri += 1
        pairs = deg * (deg - 1)
        csum += tri / pairs
        tri_total += tri
        triads += pairs
    avg = csum / n if n > 0 else np.nan
    trans = tri_total / triads if triads > 0 else 0.0
    return avg, trans


@_jit
def count_cycles(n, indptr, indices, rindptr, rindices, bound, cap):
    """Number of simple directed cycles of length 2..bound (self-loops excluded).

        Each cycle is enumerated once, from its smallest node ``s``, by a depth-first search
        restricted to nodes > s and pruned with the hop distance back to ``s`` (a reverse BFS),
        so a branch is explored only while it can still close within ``bound``.  Stops at
        ``cap`` cycles and returns ``(count, capped)``.

        Per source, the search runs on a compacted adjacency (only the edges into ``s`` or into
        nodes that reach ``s`` in time), each row sorted by that distance so that a row is left
        at its first successor too far from ``s``; a node entered one step before the bound
        can only close by its direct edges back to ``s``, which are counted without entering it
    (and a node two steps before the bound by its successors one step from ``s``).
    """
    count = 0
    if bound < 2 or n < 2:
        return 0, False
    big = n + bound + 1
    back = np.full(n, big, np.int64)
    mult = np.zeros(n, np.int64)  # edges v -> s, for the nodes v > s
    queue = np.empty(n, np.int64)
    on_path = np.zeros(n, np.bool_)
    depth_max = min(bound, n) + 1
    stack_node = np.empty(depth_max, np.int64)
    stack_ptr = np.empty(depth_max, np.int64)
    clo = np.empty(n, np.int64)
    chi = np.empty(n, np.int64)
    cind = np.empty(max(indptr[n], 1), np.int64)
    hit = cap if cap >= 1 else 1  # the count at which the enumeration stops
    for s in range(n):
        # reverse BFS: hops from each node > s back to s, inside the subgraph of nodes >= s
        back[s] = 0
        queue[0] = s
        head = 0
        tail = 1
        for j in range(rindptr[s], rindptr[s + 1]):
            w = rindices[j]
            if w > s:
                mult[w] += 1
        while head < tail:
            v = queue[head]
            head += 1
            if back[v] + 1 >= bound:
                continue
            for j in range(rindptr[v], rindptr[v + 1]):
                w = rindices[j]
                if w > s and back[w] == big:
                    back[w] = back[v] + 1
                    queue[tail] = w
                    tail += 1
        if tail > 1:
            # compacted adjacency of the nodes that can reach s, rows sorted by back[]
            pos = 0
            for qi in range(tail):
                v = queue[qi]
                lo = pos
                for j in range(indptr[v], indptr[v + 1]):
                    w = indices[j]
                    b = back[w]
                    if b < big:
                        k = pos
                        while k > lo and back[cind[k - 1]] > b:
                            cind[k] = cind[k - 1]
                            k -= 1
                        cind[k] = w
                        pos += 1
                clo[v] = lo
                chi[v] = pos
            depth = 0
            stack_node[0] = s
            stack_ptr[0] = clo[s]
            on_path[s] = True
            while depth >= 0:
                v = stack_node[depth]
                p = stack_ptr[depth]
                if p < chi[v]:
                    w = cind[p]
                    if w == s:
                        stack_ptr[depth] = p + 1
                        count += 1
                        if count >= hit:
                            for q in range(depth + 1):
                                on_path[stack_node[q]] = False
                            return hit, True
                        continue
                    if depth + 1 + back[w] > bound:
                        stack_ptr[depth] = chi[v]
                        continue
                    stack_ptr[depth] = p + 1
                    if on_path[w]:
                        continue
                    if depth + 2 == bound:
                        # w one step before the bound: back[w] == 1, it closes only directly
                        count += mult[w]
                        if count >= hit:
                            for q in range(depth + 1):
                                on_path[stack_node[q]] = False
                            return hit, True
                        continue
                    if depth + 3 == bound:
                        # w two steps before the bound: closes directly or through one
                        # successor x with back[x] == 1 (the row is sorted by back[])
                        c = 0
                        for q in range(clo[w], chi[w]):
                            x = cind[q]
                            if x == s:
                                c += 1
                            elif back[x] > 1:
                                break
                            elif x != w and not on_path[x]:
                                c += mult[x]
                        count += c
                        if count >= hit:
                            for q in range(depth + 1):
                                on_path[stack_node[q]] = False
                            return hit, True
                        continue
                    depth += 1
                    stack_node[depth] = w
                    stack_ptr[depth] = clo[w]
                    on_path[w] = True
                else:
                    on_path[v] = False
                    depth -= 1
        for qi in range(tail):
            back[queue[qi]] = big
            mult[queue[qi]] = 0
        for j in range(rindptr[s], rindptr[s + 1]):
            mult[rindices[j]] = 0
    return count, False


@_jit
def graph_metrics(n, src, dst, w, has_w, n_self, bound, cap, out):
    """Fill ``out`` (a row of RAW_COLUMNS) with the graph metrics of one directed graph.

    ``src``/``dst``/``w`` list the distinct directed edges u != v (any order);
    ``n_self`` self-loops are counted as edges and as cycles of length 1.
    """
    out[I_N_NODES] = n
    out[I_N_EDGES] = src.shape[0] + n_self
    if n == 0:
        return
    indptr, indices, weights = csr_sorted(n, src, dst, w)
    rindptr, rindices, _ = csr_sorted(n, dst, src, w)
    # cycles
    c, capped = count_cycles(n, indptr, indices, rindptr, rindices, bound, cap)
    c += n_self
    if c >= cap:
        c = cap
        capped = True
    out[I_N_CYCLES] = c
    out[I_CAPPED] = 1.0 if capped else 0.0
    # directed hop metrics
    best, total, pairs = bfs_all_pairs(n, indptr, indices)
    out[I_DIAM_HOPS] = best
    if n == 1:
        out[I_APL_DIR] = 0.0
    elif pairs > 0:
        out[I_APL_DIR] = total / pairs
    if has_w:
        out[I_DIAM] = dijkstra_max(n, indptr, indices, weights)
    # undirected simple graph: clustering, path length, degree
    uptr, uind, m_u = undirected_csr(n, src, dst)
    avg_c, trans = clustering_stats(n, uptr, uind)
    out[I_CLUST] = avg_c
    out[I_TRANS] = trans
    out[I_MEAN_DEG] = 2.0 * m_u / n
    if n == 1:
        out[I_APL] = 0.0
    else:
        _, utotal, upairs = bfs_all_pairs(n, uptr, uind)
        if upairs == n * (n - 1):
            out[I_APL] = utotal / upairs


@_jit
def path_metrics_one(nodes, dists, has_w, self_loops, agg_min, bound, cap, out):
    """Fill ``out`` with every raw metric of one node path.

    ``dists[t]`` is the L2 distance between step t and t + 1 (length T - 1).
    """
    T = nodes.shape[0]
    out[I_N_STEPS] = T
    out[I_HAS_LOOP] = 0.0
    out[I_LOOP_COUNT] = 0.0
    out[I_REVISITS] = 0.0
    out[I_N_TRANS] = 0.0
    out[I_N_CYCLES] = 0.0
    out[I_CAPPED] = 0.0
    out[I_N_NODES] = 0.0
    out[I_N_EDGES] = 0.0
    if T == 0:
        return
    # local ids, in sorted order of the global ids
    order = np.argsort(nodes, kind="mergesort")
    loc = np.empty(T, np.int64)
    n = 0
    for i in range(T):
        if i > 0 and nodes[order[i]] != nodes[order[i - 1]]:
            n += 1
        loc[order[i]] = n
    n += 1
    # revisits, loop detection (Topology of Reasoning definitions)
    seen = np.zeros(n, np.bool_)
    first = -1
    rev = 0
    for t in range(T):
        u = loc[t]
        if t > 0 and loc[t - 1] == u:
            continue
        if seen[u]:
            rev += 1
            if first < 0:
                first = u
        seen[u] = True
    out[I_REVISITS] = rev
    if first >= 0:
        visits = 0
        for t in range(T):
            if loc[t] == first and (t == 0 or loc[t - 1] != first):
                visits += 1
        out[I_HAS_LOOP] = 1.0
        out[I_LOOP_COUNT] = visits - 1
    # transitions -> distinct directed edges with count / distance aggregates
    codes = np.empty(max(T - 1, 0), np.int64)
    cd = np.empty(max(T - 1, 0), np.float64)
    k = 0
    self_seen = np.zeros(n, np.bool_)
    n_self = 0
    step_sum = 0.0
    for t in range(T - 1):
        a = loc[t]
        b = loc[t + 1]
        if a == b:
            if self_loops and not self_seen[a]:
                self_seen[a] = True
                n_self += 1
            continue
        codes[k] = a * n + b
        cd[k] = dists[t] if has_w else 0.0
        step_sum += cd[k]
        k += 1
    out[I_N_TRANS] = k
    if has_w:
        out[I_MEAN_STEP] = step_sum / k if k > 0 else np.nan
    eorder = np.argsort(codes[:k], kind="mergesort")
    src = np.empty(k, np.int64)
    dst = np.empty(k, np.int64)
    w = np.empty(k, np.float64)
    m = 0
    cnt = 0
    for i in range(k):
        c = codes[eorder[i]]
        x = cd[eorder[i]]
        if i == 0 or c != codes[eorder[i - 1]]:
            if m > 0 and not agg_min:
                w[m - 1] /= cnt
            src[m] = c // n
            dst[m] = c % n
            w[m] = x
            cnt = 1
            m += 1
        else:
            cnt += 1
            if agg_min:
                if x < w[m - 1]:
                    w[m - 1] = x
            else:
                w[m - 1] += x
    if m > 0 and not agg_min:
        w[m - 1] /= cnt
    graph_metrics(n, src[:m], dst[:m], w[:m], has_w, n_self, bound, cap, out)


@_jit_parallel
def path_metrics_batch(nodes, offsets, dists, has_w, self_loops, agg_min, bound, cap):
    """Raw metric matrix (n_traces, N_RAW) for concatenated paths split by ``offsets``."""
    B = offsets.shape[0] - 1
    out = np.full((B, N_RAW), np.nan)
    for b in _prange(B):
        lo = offsets[b]
        hi = offsets[b + 1]
        dhi = hi - 1 if hi > lo else lo
        path_metrics_one(
            nodes[lo:hi], dists[lo:dhi], has_w, self_loops, agg_min, bound, cap, out[b]
        )
    return out
