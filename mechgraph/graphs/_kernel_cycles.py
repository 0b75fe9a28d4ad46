"""Cycle and clustering kernels: bounded simple-cycle counts and triangle statistics.

Local node ids ``0..n-1`` on CSR arrays; see :mod:`mechgraph.graphs._kernels`.
"""

from __future__ import annotations

import numpy as np

from mechgraph.graphs._kernel_jit import _jit


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
def _relabel_csr(n, indptr, indices, perm, inv):
    """The CSR, self-loops left out, of the graph whose node ``i`` is the old ``perm[i]``.

    ``inv`` is the inverse of ``perm``; the rows keep their order.
    """
    m = indptr[n]
    nptr = np.zeros(n + 1, np.int64)
    nind = np.empty(max(m, 1), np.int64)
    k = 0
    for i in range(n):
        v = perm[i]
        for j in range(indptr[v], indptr[v + 1]):
            u = indices[j]
            if u != v:
                nind[k] = inv[u]
                k += 1
        nptr[i + 1] = k
    return nptr, nind


@_jit
def count_cycles(n, indptr, indices, rindptr, rindices, bound, cap):
    """Number of simple directed cycles of length 2..bound (self-loops excluded).

    ``rindptr``/``rindices`` is the CSR of the reversed graph.  Parallel edges count
    apart (a cycle counts once per choice of its edges).  Stops at ``cap`` cycles and
    returns ``(count, capped)``: ``(min(total, cap), total >= cap)``, where a ``cap``
    below 1 counts as 1.

    The total is a property of the graph, not of its labels, so the nodes are first
    renumbered by decreasing ``indegree * outdegree`` (stable): the busiest nodes become
    the first sources of :func:`_count_relabeled`, which leaves each source out of every
    later search, so the later searches run on smaller graphs.

    Self-loops (never passed by the metric drivers, which count them apart) keep the
    counts of the former kernel bit for bit: each self-loop edge of a node ``s`` with an
    in-neighbour ``u > s`` (in the given numbering) adds one.
    """
    if bound < 2 or n < 2:
        return 0, False
    hit = cap if cap >= 1 else 1
    extra = 0
    for s in range(n):
        loops = 0
        for j in range(indptr[s], indptr[s + 1]):
            if indices[j] == s:
                loops += 1
        if loops > 0:
            for j in range(rindptr[s], rindptr[s + 1]):
                if rindices[j] > s:
                    extra += loops
                    break
    if extra >= hit:
        return hit, True
    score = np.empty(n, np.int64)
    for v in range(n):
        score[v] = -(indptr[v + 1] - indptr[v]) * (rindptr[v + 1] - rindptr[v])
    perm = np.argsort(score, kind="mergesort")
    inv = np.empty(n, np.int64)
    for i in range(n):
        inv[perm[i]] = i
    nptr, nind = _relabel_csr(n, indptr, indices, perm, inv)
    rptr, rind = _relabel_csr(n, rindptr, rindices, perm, inv)
    c, capped = _count_relabeled(n, nptr, nind, rptr, rind, bound, hit - extra)
    if capped:
        return hit, True
    return c + extra, False


@_jit
def _count_relabeled(n, indptr, indices, rindptr, rindices, bound, cap):
    """:func:`count_cycles` in the given numbering (``bound >= 2``, ``n >= 2``, no self-loops).

    Each cycle is enumerated once, from its smallest node ``s``, by a depth-first search
    restricted to nodes > s and pruned with the hop distance back to ``s`` (a reverse BFS),
    so a branch is explored only while it can still close within ``bound``.  Stops at
    ``cap`` cycles and returns ``(count, capped)``.

    Per source, the search runs on a compacted adjacency (only the edges into ``s`` or into
    nodes that reach ``s`` in time), each row sorted by that distance so that a row is left
    at its first successor too far from ``s``.  The last steps are counted without entering
    the nodes: a node entered one step before the bound can only close by its direct edges
    back to ``s``; a node two steps before by those and its successors one step from ``s``;
    a node three steps before by those and, through each successor two steps or less from
    ``s``, the same two-step count.
    """
    count = 0
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
    ns = np.empty(n, np.int64)  # entries s at the head of a row
    c1 = np.empty(n, np.int64)  # end of the row's entries with back <= 1
    c2 = np.empty(n, np.int64)  # end of the row's entries with back <= 2
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
                # the row's cuts: entries s (back 0), back <= 1, back <= 2
                k = lo
                while k < pos and back[cind[k]] == 0:
                    k += 1
                ns[v] = k - lo
                while k < pos and back[cind[k]] <= 1:
                    k += 1
                c1[v] = k
                while k < pos and back[cind[k]] <= 2:
                    k += 1
                c2[v] = k
            # depth-first search: the node v on top, its next row entry p and its row end
            # e in locals (the stack keeps them for the nodes below); a node's edges into s,
            # at the head of its row, are counted when it is entered
            depth = 0
            v = s
            p = clo[s] + ns[s]
            e = chi[s]
            r = bound - 1  # steps left after a successor of v
            on_path[s] = True
            while True:
                if p < e:
                    w = cind[p]
                    p += 1
                    if back[w] > r:
                        p = e  # the rest of the row is as far from s, or farther
                        continue
                    if on_path[w]:
                        continue
                    if r == 1:
                        # w one step before the bound: back[w] == 1, it closes only directly
                        c = mult[w]
                    elif r == 2:
                        # w two steps before the bound: closes directly or through one
                        # successor x with back[x] == 1 (the row is sorted by back[])
                        c = ns[w]
                        for q in range(clo[w] + ns[w], c1[w]):
                            x = cind[q]
                            if x != w and not on_path[x]:
                                c += mult[x]
                    elif r == 3:
                        # w three steps before the bound: for each successor x (not on
                        # the path, back[x] <= 2) the two-step count of x, w on the path
                        c = ns[w]
                        for q in range(clo[w] + ns[w], c2[w]):
                            x = cind[q]
                            if x == w or on_path[x]:
                                continue
                            c += ns[x]
                            for q2 in range(clo[x] + ns[x], c1[x]):
                                y = cind[q2]
                                if y != x and y != w and not on_path[y]:
                                    c += mult[y]
                    else:
                        stack_node[depth] = v
                        stack_ptr[depth] = p
                        depth += 1
                        r -= 1
                        v = w
                        p = clo[w] + ns[w]
                        e = chi[w]
                        on_path[w] = True
                        c = ns[w]
                    count += c
                    if count >= hit:
                        return hit, True
                else:
                    on_path[v] = False
                    if depth == 0:
                        break
                    depth -= 1
                    r += 1
                    v = stack_node[depth]
                    p = stack_ptr[depth]
                    e = chi[v]
        for qi in range(tail):
            back[queue[qi]] = big
            mult[queue[qi]] = 0
        for j in range(rindptr[s], rindptr[s + 1]):
            mult[rindices[j]] = 0
    return count, False
