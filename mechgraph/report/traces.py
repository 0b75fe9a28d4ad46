"""Per-trace data of the report: sentences with their tags, scores and nodes; tokens; matrices.

Everything is read from the run folder's artifacts and joined on exact keys: the store's
steps (char spans into the trace text) are the sentences; labels join on the same char
span, importance rows on ``(trace_id, step)`` with the same text, token weights on char
offsets into the same text. A row that does not match is left out, never guessed.

Node ids come from the graph stage's fitted node space (``graph.nodespace``) applied to
the store states it was fitted on (layer, pool and hook from ``graph.parquet.json``):
the nearest center of each step, which is what the graph stage assigns (it does not keep
the per-step ids). The 2-D trajectory is a PCA of those states in the node space's own
coordinates (a rendering projection, not an analysis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mechgraph.report.config import ReportConfig
from mechgraph.report.run import RunFolder

__all__ = ["IMPORTANCE_COLUMNS", "NodeData", "TraceData", "collect_traces", "pca_2d"]

#: importance.parquet columns -> (key in the viewer, label). Resampling's are optional.
IMPORTANCE_COLUMNS: dict[str, tuple[str, str]] = {
    "receiver_score": ("receiver", "receiver-head score"),
    "suppression_score": ("suppression", "suppression effect (mean KL, nats)"),
    "counterfactual_kl": ("resampling", "resampling importance (KL)"),
    "counterfactual_accuracy": ("resampling_acc", "resampling importance (accuracy)"),
    "different_fraction": ("different_fraction", "share of dissimilar resamples"),
}


def _num(v: Any, digits: int = 4) -> float | None:
    """A float rounded to ``digits`` significant digits, None for NaN / missing."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return float(f"{f:.{digits}g}")


def pca_2d(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, the two leading principal axes and their explained-variance shares.

    Examples
    --------
    >>> Z = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 0.1]])
    >>> mean, axes, share = pca_2d(Z)
    >>> axes.shape, bool(share[0] > 0.99)
    ((2, 2), True)
    """
    Z = np.asarray(Z, np.float64)
    mean = Z.mean(0)
    if len(Z) < 2:
        axes = np.eye(2, Z.shape[1])
        return mean, axes, np.zeros(2)
    _, s, vt = np.linalg.svd(Z - mean, full_matrices=False)
    axes = np.zeros((2, Z.shape[1]))
    axes[: min(2, len(vt))] = vt[:2]
    var = s**2
    share = np.zeros(2)
    share[: min(2, len(var))] = var[:2] / max(var.sum(), 1e-300)
    for k in range(2):  # a deterministic sign: the largest loading is positive
        if axes[k].any() and axes[k][np.argmax(np.abs(axes[k]))] < 0:
            axes[k] = -axes[k]
    return mean, axes, share


@dataclass
class NodeData:
    """Node ids, revisits and 2-D coordinates of every step of the store (graph stage)."""

    layer: int
    pool: str
    hook: str
    k: int
    nodes: np.ndarray
    revisit: np.ndarray
    xy: np.ndarray
    centers_xy: np.ndarray
    explained: np.ndarray


@dataclass
class TraceData:
    """What the viewer, matrices and trace graph show of one trace."""

    id: str
    text: str
    fields: dict[str, Any]
    sentences: list[dict[str, Any]]
    tokens: dict[str, Any] | None = None
    matrices: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "fields": self.fields,
            "sents": self.sentences,
            "tokens": self.tokens,
            "notes": self.notes,
        }


def node_data(run: RunFolder) -> NodeData | None:
    """Nodes of every store step under the graph stage's node space; None without it."""
    if not (run.has("store") and run.has("nodespace") and run.has("graph")):
        return None
    from mechgraph.graphs.paths import offsets_from_ids, revisit_mask

    store = run.load("store")
    ns = run.load("nodespace")
    cfg = run.load("graph").meta.get("config", {})
    layer = int(cfg.get("layer", ns.meta.get("layer", max(store.layers))))
    pool = str(cfg.get("pool", ns.meta.get("pool", "mean")))
    hook = str(cfg.get("hook", ns.meta.get("hook", "resid_post")))
    X = np.asarray(store.states(layer, pool=pool, hook=hook))
    nodes = ns.predict(X)
    offsets, _ = offsets_from_ids(store.steps["trace_id"].astype(str))
    Z = ns.transform(X)
    mean, axes, share = pca_2d(Z)
    return NodeData(
        layer=layer,
        pool=pool,
        hook=hook,
        k=int(ns.k_),
        nodes=nodes,
        revisit=revisit_mask(nodes, offsets),
        xy=(Z - mean) @ axes.T,
        centers_xy=(np.asarray(ns.centers_, np.float64) - mean) @ axes.T,
        explained=share,
    )


def _labels_by_trace(run: RunFolder) -> dict[str, dict[tuple[int, int], dict[str, Any]]]:
    if not run.has("labels"):
        return {}
    out: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    for rec in run.load("labels"):
        steps = rec.get("steps") or []
        out[str(rec.get("id"))] = {(int(s["start"]), int(s["end"])): s for s in steps}
    return out


def _importance_by_trace(run: RunFolder) -> tuple[dict[str, Any], list[str]]:
    if not run.has("importance"):
        return {}, []
    table = run.load("importance").table
    cols = [c for c in IMPORTANCE_COLUMNS if c in table.columns]
    out: dict[str, Any] = {}
    for tid, g in table.groupby("trace_id", sort=False):
        out[str(tid)] = {int(r["step"]): r for r in g.to_dict(orient="records")}
    return out, cols


def _tokens(tw: Any, text: str, max_tokens: int) -> dict[str, Any] | None:
    if tw is None or tw.text != text:
        return None
    n = int(tw.n_tokens)
    m = min(n, max_tokens)
    return {
        "offsets": tw.offsets[:m].astype(int).tolist(),
        "ids": tw.input_ids[:m].astype(int).tolist(),
        "plan": tw.planning_mask[:m].astype(int).tolist(),
        "weight": [_num(w, 4) for w in tw.weight[:m]],
        "n": n,
        "shown": m,
        "planning_share": _num(tw.planning_share, 3),
    }


def _matrices(run: RunFolder, tid: str, max_sentences: int) -> dict[str, Any]:
    if not run.has("matrices"):
        return {}
    mats = run.load("matrices")
    out: dict[str, Any] = {}
    sup = mats.get(f"{tid}/suppression")
    if sup is not None:
        out["suppression"] = np.asarray(sup, np.float64)[:max_sentences, :max_sentences]
    vert, heads = mats.get(f"{tid}/vertical"), mats.get(f"{tid}/heads")
    if vert is not None and heads is not None:
        heads = np.asarray(heads, int).reshape(-1, 2)
        v = np.asarray(vert, np.float64)
        out["receiver"] = v[heads[:, 0], heads[:, 1], :max_sentences]
        out["receiver_heads"] = [f"L{a}.H{b}" for a, b in heads.tolist()]
    return out


def collect_traces(
    run: RunFolder, cfg: ReportConfig, nodes: NodeData | None
) -> tuple[list[TraceData], dict[str, Any]]:
    """The first ``cfg.max_traces`` traces of the store with everything joined onto them.

    Returns
    -------
    traces : list of TraceData
    info : dict
        ``n_traces`` (in the store), ``shown``, ``importance`` (columns present), ``tags``
        (seen), ``unmatched`` (rows of labels / importance / weights that did not join).
    """
    store = run.load("store")
    steps = store.steps
    tr = store.traces.set_index("trace_id", drop=False)
    labels = _labels_by_trace(run)
    imp, imp_cols = _importance_by_trace(run)
    weights = {tw.id: tw for tw in run.load("weights")} if run.has("weights") else {}
    order = list(dict.fromkeys(steps["trace_id"].astype(str)))
    row_of = np.arange(len(steps))
    unmatched = {"labels": 0, "importance": 0, "weights": 0}
    out: list[TraceData] = []
    for tid in order[: cfg.max_traces]:
        mask = (steps["trace_id"].astype(str) == tid).to_numpy()
        st = steps[mask]
        rows = row_of[mask]
        text = str(tr.loc[tid, "text"]) if tid in tr.index else ""
        fields = {}
        for k in ("model", "checkpoint", "correct", "answer"):
            if tid in tr.index and k in tr.columns:
                v = tr.loc[tid, k]
                fields[k] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
        fields = {k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in fields.items()}
        lab, ti = labels.get(tid, {}), imp.get(tid, {})
        sents: list[dict[str, Any]] = []
        for s, row in zip(st.to_dict(orient="records"), rows, strict=True):
            a, b = int(s["char_start"]), int(s["char_end"])
            d: dict[str, Any] = {"i": int(s["step"]), "s": a, "e": b}
            lr = lab.get((a, b))
            if lr is not None:
                d["tag"] = str(lr.get("tag") or "unknown")
                d["plan"] = bool(lr.get("planning"))
                d["ps"] = _num(lr.get("score"), 3)
            ir = ti.get(int(s["step"]))
            if ir is not None and str(ir.get("text")) == text[a:b]:
                d["imp"] = {IMPORTANCE_COLUMNS[c][0]: _num(ir.get(c)) for c in imp_cols}
            if nodes is not None:
                d["node"] = int(nodes.nodes[row])
                d["rev"] = bool(nodes.revisit[row])
            sents.append(d)
        unmatched["labels"] += len(lab) - sum("tag" in d for d in sents) if lab else 0
        unmatched["importance"] += len(ti) - sum("imp" in d for d in sents) if ti else 0
        td = TraceData(id=tid, text=text, fields=fields, sentences=sents)
        td.tokens = _tokens(weights.get(tid), text, cfg.max_tokens)
        if tid in weights and td.tokens is None:
            unmatched["weights"] += 1
            td.notes.append("weights.parquet holds this trace with another text: not shown")
        if ti and len(ti) < len(sents):
            td.notes.append(
                f"importance covers the first {len(ti)} of {len(sents)} sentences "
                "(the importance stage truncates traces to its max_tokens)"
            )
        td.matrices = _matrices(run, tid, cfg.max_sentences)
        out.append(td)
    tags = sorted({d["tag"] for t in out for d in t.sentences if "tag" in d})
    info = {
        "n_traces": len(order),
        "shown": len(out),
        "importance": [IMPORTANCE_COLUMNS[c] for c in imp_cols],
        "tags": tags,
        "unmatched": unmatched,
    }
    return out, info
