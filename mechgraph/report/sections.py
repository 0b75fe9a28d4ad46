"""The six sections of the report, each from the artifacts that own its numbers.

Each builder returns the section's HTML and adds what the script needs to ``ctx.data``
(figure specs, why-empty messages). A section whose artifact is absent still has its
``id`` and says which artifact is missing and which stage did not write it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mechgraph.report import figures as F
from mechgraph.report.config import ReportConfig
from mechgraph.report.html import cards, details, empty, esc, fig_box, fmt, section, table
from mechgraph.report.phasefig import phases_figure
from mechgraph.report.run import ARTIFACTS, RunFolder
from mechgraph.report.traces import NodeData, TraceData

__all__ = ["Context", "graph", "matrices", "phases", "probe_sweep", "summary", "trace_viewer"]

_STAGES = ("extract", "label", "probe", "graph", "importance", "weights", "phases")


def spec(fig: Any) -> dict[str, Any] | None:
    """A figure as ``{"data", "layout"}`` JSON, without its template (the page has one)."""
    if fig is None:
        return None
    d = json.loads(fig.to_json())
    d["layout"].pop("template", None)
    return {"data": d["data"], "layout": d["layout"]}


@dataclass
class Context:
    """What the section builders share."""

    run: RunFolder
    config: ReportConfig
    traces: list[TraceData]
    info: dict[str, Any]
    nodes: NodeData | None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data.setdefault("figs", {})
        self.data.setdefault("why", {})
        self.data.setdefault("tfigs", {t.id: {} for t in self.traces})
        self.data.setdefault("tfigWhy", {t.id: {} for t in self.traces})


# --------------------------------------------------------------------------- summary


def _traces_source(run: RunFolder) -> tuple[str | None, str | None]:
    path = (run.run_record or {}).get("traces")
    for name in ("labels", "weights", "importance"):
        for inp in (run.records.get(name) or {}).get("inputs", []):
            if path is None or inp.get("path") == path:
                return inp.get("path"), inp.get("sha256")
    return path, None


def summary(ctx: Context) -> str:
    run = ctx.run
    parts: list[str] = []
    items: dict[str, Any] = {}
    if run.has("store"):
        store = run.load("store")
        man = store.manifest
        items["model"] = man.get("model_id", "?")
        items["weights fingerprint"] = man.get("fingerprint") or "—"
        items["model shape"] = (
            f"{man.get('n_layers', '?')} blocks, d_model {man.get('d_model', '?')}"
        )
        items["states kept"] = (
            f"blocks {', '.join(map(str, man.get('layers', [])))}; pools "
            f"{', '.join(man.get('pools', []))}; {man.get('dtype', '?')} on {man.get('device', '?')}"
        )
        tr = store.traces
        items["traces / steps"] = f"{len(tr)} traces, {len(store.steps)} steps"
        if "correct" in tr.columns and tr["correct"].notna().any():
            c = tr["correct"].dropna().astype(bool)
            items["correct"] = f"{int(c.sum())} of {len(c)} ({100 * c.mean():.0f}%)"
        for k in ("model", "checkpoint"):
            if k in tr.columns and tr[k].notna().any():
                vals = sorted(map(str, tr[k].dropna().unique()))
                items[f"{k}s"] = ", ".join(vals[:8]) + (
                    f" … ({len(vals)})" if len(vals) > 8 else ""
                )
    else:
        parts.append(empty(run.why_missing("store")))
    path, sha = _traces_source(run)
    if path:
        items["data"] = path
        items["data sha256"] = (sha or "—")[:16]
    rr = run.run_record or {}
    if rr.get("finished"):
        items["run finished"] = rr["finished"]
    parts.insert(0, cards(items))
    rows, total = [], 0.0
    for stage in _STAGES:
        for a in (a for a in ARTIFACTS if a.stage == stage):
            rec = run.records.get(a.name) or {}
            t = run.timing(a.name)
            status = run.stage_status(stage)
            if a.name in ("nodespace", "matrices"):
                status = "(written by the same stage)"
            if isinstance(t.get("seconds"), int | float) and a.name not in (
                "nodespace",
                "matrices",
            ):
                total += float(t["seconds"])
            rows.append(
                [
                    stage,
                    a.path,
                    "present" if run.has(a.name) else "missing",
                    status or ("—" if run.has(a.name) else run.why_missing(a.name)),
                    t.get("seconds"),
                    t.get("finished") or "—",
                    rec.get("mechgraph_version") or "—",
                ]
            )
    parts.append("<h3>Stages</h3>")
    parts.append(
        '<div class="scroll">'
        + table(
            ["stage", "artifact", "on disk", "last run", "time (s)", "finished", "mechgraph"],
            rows,
            left=4,
            wrap=(3,),
        )
        + "</div>"
    )
    parts.append(
        f'<p class="note">Total stage time recorded: {fmt(total, 3)} s (each artifact record '
        "keeps the time of the run that wrote it).</p>"
    )
    versions = rr.get("versions") or {}
    if versions:
        parts.append("<h3>Versions</h3>")
        parts.append(table(["package", "version"], sorted(versions.items())))
    parts.append("<h3>Configuration</h3>")
    if rr.get("config"):
        parts.append(details("run config (run.json)", rr["config"]))
    for a in ARTIFACTS:
        rec = run.records.get(a.name)
        if rec:
            parts.append(details(f"record of {a.path}", rec))
    parts.append(details("report config (ReportConfig)", ctx.config.to_dict()))
    notes = [
        f"{n} {k} row(s) did not match a store step"
        for k, n in ctx.info.get("unmatched", {}).items()
        if n
    ]
    if notes:
        parts.append(f'<p class="note">{esc("; ".join(notes))}.</p>')
    return section(
        "summary",
        "Summary",
        "What was run: model, data, per-stage timings, versions and configs, all read from "
        "the artifact records of this run folder.",
        "".join(parts),
    )


# ---------------------------------------------------------------------------- viewer


def trace_viewer(ctx: Context) -> str:
    run = ctx.run
    lead = (
        "Pick a trace: each sentence is coloured by its tag (underlined: planning) or by a "
        "score; hover a sentence for its tag, planning score, importance scores and node. "
        "The token view shows which tokens get HICRA's planning boost."
    )
    if not ctx.traces:
        why = run.why_missing("store") if not run.has("store") else "the store holds no trace"
        return section("trace-viewer", "Trace viewer", lead, empty(why))
    modes = [("tag", "tag (underlined: planning)"), ("ps", "planning score")]
    modes += [(f"imp:{k}", f"importance: {label}") for k, label in ctx.info["importance"]]
    ctx.data["modeLabels"] = dict(modes)
    ctx.data["imp"] = [[k, label] for k, label in ctx.info["importance"]]
    ctx.data["tags"] = F.TAG_COLOURS
    ctx.data["why"]["tokens"] = (
        run.why_missing("weights")
        if not run.has("weights")
        else "weights.parquet holds no tokens for this trace"
    )
    opts = "".join(f'<option value="{esc(t.id)}">{esc(t.id)}</option>' for t in ctx.traces)
    mopts = "".join(f'<option value="{esc(k)}">{esc(v)}</option>' for k, v in modes)
    notes = []
    n_all = ctx.info["n_traces"]
    if n_all > len(ctx.traces):
        notes.append(
            f"{len(ctx.traces)} of {n_all} traces are embedded (ReportConfig.max_traces); "
            "the corpus table lists all."
        )
    for name in ("labels", "importance", "weights", "nodespace"):
        if not run.has(name):
            notes.append(run.why_missing(name))
    body = (
        '<div class="controls">'
        f'<label for="trace-select">trace</label><select id="trace-select">{opts}</select>'
        f'<label for="colour-by">colour by</label><select id="colour-by">{mopts}</select>'
        '<label><input type="checkbox" id="token-view"> token weights (HICRA)</label>'
        "</div>"
        + "".join(empty(n) for n in notes)
        + '<div id="trace-meta"></div><div id="legend"></div>'
        '<div id="trace-text" class="textbox"></div>'
        '<div id="token-pane" hidden><p class="note" id="token-note"></p>'
        '<p class="why" id="token-why" hidden></p><div id="token-text" class="textbox"></div></div>'
        '<p class="note" id="trace-notes"></p>'
    )
    return section("trace-viewer", "Trace viewer", lead, body)


# -------------------------------------------------------------------------- matrices


def matrices(ctx: Context) -> str:
    run = ctx.run
    lead = (
        "The selected trace's attention-suppression matrix and its receiver heads' vertical "
        "scores (importance stage); pick the trace in the viewer above."
    )
    if not run.has("importance"):
        return section(
            "matrices", "Importance matrices", lead, empty(run.why_missing("importance"))
        )
    methods = (run.records.get("importance") or {}).get("config", {}).get("methods") or []
    why = ctx.data["why"]
    base = run.why_missing("matrices") if not run.has("matrices") else None
    why["suppression"] = base or (
        "the importance stage ran without suppression (methods: " + ", ".join(methods) + ")"
    )
    why["receiver"] = base or (
        "the importance stage ran without receivers (methods: " + ", ".join(methods) + ")"
    )
    why["scores"] = "no importance score for this trace"
    cols = ctx.info["importance"]
    for t in ctx.traces:
        f, m, w = ctx.data["tfigs"][t.id], t.matrices, ctx.data["tfigWhy"][t.id]
        n_imp = sum("imp" in s for s in t.sentences)
        blank = (
            f"this trace's matrix holds no value: {n_imp} sentence(s) fit in the importance "
            "stage's max_tokens (a score needs a later sentence)"
        )
        if "suppression" in m:
            if np.isfinite(m["suppression"]).any():
                f["suppression"] = spec(F.suppression_figure(m["suppression"], t.id))
            else:
                w["suppression"] = blank
        if "receiver" in m:
            if np.isfinite(m["receiver"]).any():
                f["receiver"] = spec(F.receiver_figure(m["receiver"], m["receiver_heads"], t.id))
            else:
                w["receiver"] = blank
        if n_imp and cols:
            f["scores"] = spec(F.scores_figure(t.id, t.sentences, cols))
            if f["scores"] is None:
                w["scores"] = blank.replace("matrix", "importance table")
        n_mat = max((np.shape(m[k])[-1] for k in ("suppression", "receiver") if k in m), default=0)
        n_imp = sum("imp" in s for s in t.sentences)
        if 0 < n_mat < n_imp:
            t.notes.append(
                f"The matrices show the first {n_mat} of {n_imp} scored sentences "
                "(ReportConfig.max_sentences)."
            )
    body = (
        '<div class="grid2">'
        + fig_box("suppression", per_trace=True)
        + fig_box("receiver", per_trace=True)
        + "</div>"
        + fig_box("scores", per_trace=True)
        + '<p class="note">Rows and columns are sentence indices (0 = first) of the '
        "selected trace; a trace is scored up to the importance stage's <code>max_tokens</code>. "
        "The per-head sentence x sentence attention is not kept (it is layers x heads x S²); "
        "the receiver panel shows what is: each receiver head's vertical score.</p>"
    )
    return section("matrices", "Importance matrices", lead, body)


# ----------------------------------------------------------------------------- graph


def _corpus_table(ctx: Context, tbl: Any) -> str:
    metrics = [m for m in ctx.config.metrics if m in tbl.columns]
    nulls = [ctx.config.null] + [n for n in ("shuffle", "walk") if n != ctx.config.null]
    nulls = [n for n in nulls if any(f"{m}_z_{n}" in tbl.columns for m in metrics)]
    fields = [
        c for c in ("model", "checkpoint", "correct") if c in tbl.columns and tbl[c].notna().any()
    ]
    header = ["trace", *fields, "steps", "nodes"]
    for m in metrics:
        header += [m] + [f"z ({n})" for n in nulls if f"{m}_z_{n}" in tbl.columns]
    rows, attrs = [], []
    shown = {t.id for t in ctx.traces}
    for r in tbl.to_dict(orient="records"):
        row = [r["trace_id"], *[r.get(c) for c in fields], r.get("n_steps"), r.get("n_nodes")]
        for m in metrics:
            row += [r.get(m)] + [r.get(f"{m}_z_{n}") for n in nulls if f"{m}_z_{n}" in tbl.columns]
        rows.append([_round(v) for v in row])
        tid = str(r["trace_id"])
        attrs.append(f'data-trace="{esc(tid)}"' + (' class="pick"' if tid in shown else ""))
    return (
        '<div class="scroll">'
        + table(header, rows, left=1 + len(fields), row_attrs=attrs, id="corpus-table")
        + "</div>"
    )


def _round(v: Any) -> Any:
    if isinstance(v, float | np.floating) and np.isfinite(v):
        return float(f"{float(v):.3g}")
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v.item() if hasattr(v, "item") else v


def graph(ctx: Context) -> str:
    run = ctx.run
    lead = (
        "Reasoning graphs (Topology of Reasoning): each step is the nearest node of the "
        "graph stage's node space; the selected trace's graph and trajectory, then every "
        "trace's metrics with their null z-scores and their distributions."
    )
    if not run.has("graph"):
        return section("graph", "Reasoning graphs", lead, empty(run.why_missing("graph")))
    art = run.load("graph")
    tbl, meta = art.table, art.meta
    parts = []
    nd = ctx.nodes
    why = ctx.data["why"]
    if nd is None:
        miss = [n for n in ("store", "nodespace") if not run.has(n)]
        why["trace-graph"] = why["trajectory"] = (
            run.why_missing(miss[0]) if miss else "the node space could not be applied"
        )
    else:
        steps = run.load("store").steps["trace_id"].astype(str).to_numpy()
        for t in ctx.traces:
            rows = np.flatnonzero(steps == t.id)
            if not len(rows):
                continue
            path, rev = nd.nodes[rows], nd.revisit[rows]
            f = ctx.data["tfigs"][t.id]
            f["trace-graph"] = spec(F.trace_graph_figure(path, rev, nd.centers_xy, t.id))
            f["trajectory"] = spec(
                F.trajectory_figure(nd.xy[rows], rev, path, nd.centers_xy, t.id, nd.explained)
            )
        parts.append(
            f'<p class="note">Node space: K = {nd.k} nodes on block {nd.layer} '
            f"({nd.hook}, {nd.pool} pool).</p>"
        )
    parts.append(
        '<div class="grid2">'
        + fig_box("trace-graph", per_trace=True)
        + fig_box("trajectory", per_trace=True)
        + "</div>"
    )
    parts.append("<h3>Corpus</h3>")
    parts.append(
        '<p class="note">One row per trace (graph.parquet); z: (metric - null mean) / null '
        "s.d. under the shuffled-order and random-walk nulls. Click a row to view the trace.</p>"
    )
    parts.append(_corpus_table(ctx, tbl))
    nulls = [n for n in ("shuffle", "walk") if any(c.endswith(f"_z_{n}") for c in tbl.columns)]
    z = F.zscore_figure(tbl, list(ctx.config.metrics), nulls)
    ctx.data["figs"]["zscores"] = spec(z)
    why["zscores"] = "the graph stage ran without null models (n_null = 0)"
    parts.append(fig_box("zscores"))
    parts.append("<h3>Distributions</h3>")
    for by in ("model", "checkpoint", "correct"):
        key = f"dist-{by}"
        ctx.data["figs"][key] = spec(F.distribution_figure(tbl, list(ctx.config.metrics), by))
        why[key] = f"the traces carry no {by}"
        parts.append(fig_box(key))
    for a in meta.get("aha") or []:
        if a.get("odds_ratio") is not None:
            parts.append(
                f'<p class="note">Aha test ({esc(a.get("group"))}, {esc(a.get("marker_source"))} '
                f"markers): odds ratio of a revisit at a reconsideration step "
                f"{fmt(a.get('odds_ratio'), 3)} [{fmt(a.get('ci_low'), 3)}, "
                f"{fmt(a.get('ci_high'), 3)}], Fisher p = {fmt(a.get('p_fisher'), 2)}, over "
                f"{esc(a.get('n_eligible'))} eligible steps of {esc(a.get('n_traces'))} traces.</p>"
            )
    return section("graph", "Reasoning graphs", lead, "".join(parts))


# ----------------------------------------------------------------------------- probe


def probe_sweep(ctx: Context) -> str:
    run = ctx.run
    lead = "The probe stage's layer sweep: grouped cross-validation (traces as groups) per block."
    if not run.has("probe"):
        return section("probe-sweep", "Probe sweep", lead, empty(run.why_missing("probe")))
    _, pcfg = run.load("probe")
    sweep = dict(pcfg.sweep or {})
    if not sweep.get("table"):
        if any(k.endswith("_ci95") for k in pcfg.metrics):
            return _trace_probe(pcfg)
        return section(
            "probe-sweep",
            "Probe sweep",
            lead,
            empty("probe/ holds no layer sweep (trained on one layer)"),
        )
    sweep.setdefault("target", pcfg.target)
    ctx.data["figs"]["probe"] = spec(F.probe_sweep_figure(sweep))
    cols = [c for c in sweep["table"][0] if c != "layer" and not c.endswith("_std")]
    rows = []
    for r in sweep["table"]:
        rows.append(
            [r["layer"]] + [f"{fmt(r.get(c), 3)} ± {fmt(r.get(f'{c}_std'), 2)}" for c in cols]
        )
    body = (
        fig_box("probe")
        + table(["block", *[f"{c} (± s.d.)" for c in cols]], rows)
        + f'<p class="note">Saved probe: {esc(pcfg.estimator)} on block {esc(pcfg.layer)} '
        f"({esc(pcfg.hook)}, {esc(pcfg.pool)} pool), target {esc(pcfg.target)}. The probe "
        "artifact stores each metric pooled over out-of-fold predictions and its s.d. over "
        "folds, not a bootstrap interval: the bars show ±1 s.d.</p>"
    )
    return section("probe-sweep", "Probe sweep", lead, body)


def _trace_probe(pcfg: Any) -> str:
    """A whole-trace probe (``mechgraph probe --estimator context|bigru|stacked``): its CV."""
    m, src = pcfg.metrics, pcfg.source
    blocks = ", ".join(f"{la}:{po}" for la, po in pcfg.blocks)
    rules = " + rule features" if pcfg.features.get("rules") else ""
    lead = (
        f"The probe stage's {esc(pcfg.estimator)} probe on blocks {esc(blocks)}{rules}: "
        f"grouped cross-validation, folds grouped by {esc(src.get('group_by', '?'))} "
        f"({esc(src.get('n_groups', '?'))} groups, {esc(src.get('n_traces', '?'))} traces, "
        f"{esc(src.get('n_steps', '?'))} steps)."
    )
    rows = [
        [k, fmt(m.get(k), 3), f"[{fmt(lo, 3)}, {fmt(hi, 3)}]", fmt(m.get(f"{k}_std"), 3)]
        for k, (lo, hi) in ((k[: -len("_ci95")], v) for k, v in m.items() if k.endswith("_ci95"))
    ]
    body = table(["metric", "pooled", "fold mean: 95% interval", "s.d. over folds"], rows) + (
        f'<p class="note">Target {esc(pcfg.target)}. Pooled: on all out-of-fold predictions; '
        "the interval is a percentile bootstrap of the mean over folds.</p>"
    )
    return section("probe-sweep", "Probe", lead, body)


# ---------------------------------------------------------------------------- phases


def phases(ctx: Context) -> str:
    run = ctx.run
    lead = (
        "Metrics across RL checkpoints (HICRA-style panels) with bootstrap bands, change "
        "points and their intervals, and the two-phase test (phases stage)."
    )
    if not run.has("phases"):
        return section(
            "phases", "Phases across checkpoints", lead, empty(run.why_missing("phases"))
        )
    art = run.load("phases")
    meta = art.meta
    cps = meta.get("change_points") or {}
    ctx.data["figs"]["phases"] = spec(phases_figure(art.table, cps))
    parts = [fig_box("phases")]
    two = meta.get("two_phase") or {}
    if two:
        parts.append(
            f"<p><b>Two-phase test</b>: {esc(two.get('verdict', '?'))}"
            + (f" — {esc(two.get('reason'))}" if two.get("reason") else "")
            + "</p>"
        )
    rows = [
        [m, c.get("checkpoint"), c.get("x"), c.get("lo"), c.get("hi"), c.get("support")]
        for m, lst in cps.items()
        for c in lst
    ]
    if rows:
        parts.append("<h3>Change points</h3>")
        parts.append(table(["metric", "checkpoint", "x", "low", "high", "support"], rows, left=2))
    else:
        parts.append('<p class="note">No change point found in any metric.</p>')
    if meta.get("topology_link"):
        parts.append(details("topology link", meta["topology_link"]))
    return section("phases", "Phases across checkpoints", lead, "".join(parts))
