"""``mechgraph graph``: reasoning-graph metrics of one or more stores, one row per trace.

Registered on the main app as ``app.command("graph")(graph_command)``.  Writes, all
atomically (temp file + rename):

* ``OUT`` (Parquet): ``store``, ``trace_id``, the trace fields, every metric (and null /
  homology columns when asked), ``n_steps_full`` (steps before ``--match-steps``);
* ``OUT.json``: the :class:`GraphConfig`, the node space used, the stores, what step
  matching did, the aha table;
* ``OUT.artifact.json``: the record (:mod:`mechgraph.artifacts`): the GraphConfig and the
  stores' content hashes;
* the fitted node space (unless ``--nodes`` was given), by default ``OUT_STEM.nodespace/``,
  with its own record;
* with ``--plots DIR``: trajectory maps, a few trace graphs and metric comparisons, as PNG
  and HTML.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from mechgraph.errors import ConfigError
from mechgraph.io import write_atomic, write_text_atomic

__all__ = ["graph_command", "write_graph", "write_outputs"]


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    if x is pd.NA or x is pd.NaT:
        return None
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def write_outputs(
    result: Any,
    out: Path,
    *,
    nodespace_path: Path | None,
    stores: Sequence[str | os.PathLike[str]],
    inputs: Sequence[str | os.PathLike[str]] | None = None,
) -> None:
    """Write the table (Parquet), its JSON sidecar and its record, each atomically.

    The record ``OUT.artifact.json`` (written last): kind "graph-table", ``config``
    ``GraphConfig.to_dict()``, ``inputs`` (default: ``stores``) with their hashes.
    """
    from mechgraph.artifacts import write_info

    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise ConfigError(f"--out must end in .parquet, got {out}")
    table = result.table
    write_atomic(out, lambda tmp: table.to_parquet(tmp, index=False))
    aha = result.aha.astype(object).where(result.aha.notna(), None)
    doc = {
        "format": "mechgraph.graph-metrics",
        "version": 1,
        "config": result.config.to_dict(),
        "k_used": result.nodespace.k_,
        "nodespace": str(nodespace_path) if nodespace_path else None,
        "stores": [str(s) for s in stores],
        "n_traces": len(table),
        "matching": getattr(result, "matching", None),
        "aha": aha.to_dict(orient="records"),
    }
    sidecar = out.with_name(out.name + ".json")
    write_text_atomic(sidecar, json.dumps(doc, indent=2, default=_json_default, allow_nan=True))
    write_info(out, "graph-table", result.config.to_dict(), stores if inputs is None else inputs)


def write_graph(
    result: Any,
    out: str | os.PathLike[str],
    *,
    stores: Sequence[str | os.PathLike[str]] | None = None,
    nodespace_path: str | os.PathLike[str] | None = None,
    save_nodespace: bool = True,
) -> list[Path]:
    """Write what ``mechgraph graph`` writes for a :class:`~mechgraph.graphs.GraphResult`.

    The node space (when ``save_nodespace``; default folder ``OUT_STEM.nodespace``, with its
    record, the stores as inputs), then the table ``out`` (``.parquet``), its sidecar
    ``OUT.json`` and its record ``OUT.artifact.json`` (the stores as inputs, and the node
    space when it was reused: ``save_nodespace=False`` with a ``nodespace_path``).

    Parameters
    ----------
    result : GraphResult
    out : path
        The table; must end in ``.parquet``.
    stores : paths, optional
        The store folders analysed (default: ``result.stores`` that exist).
    nodespace_path : path, optional
        Where the node space is saved, or where the reused one lives.
    save_nodespace : bool

    Returns
    -------
    list of Path
        Every file and folder written.
    """
    from mechgraph.artifacts import info_path

    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise ConfigError(f"--out must end in .parquet, got {out}")
    if stores is None:
        stores = [s for s in getattr(result, "stores", []) if Path(s).exists()]
    stores = [Path(s) for s in stores]
    ns_path = Path(nodespace_path) if nodespace_path is not None else None
    written: list[Path] = []
    inputs: list[Path] = list(stores)
    if save_nodespace:
        ns_path = ns_path or out.with_name(out.stem + ".nodespace")
        result.nodespace.save(ns_path, inputs=stores)
        written.append(ns_path)
    elif ns_path is not None and ns_path.exists():
        inputs.append(ns_path)
    write_outputs(result, out, nodespace_path=ns_path, stores=stores, inputs=inputs)
    return [*written, out, out.with_name(out.name + ".json"), info_path(out)]


def write_plots(
    result: Any,
    plots: Path,
    *,
    method: str = "umap",
    n_graphs: int = 6,
    metrics: tuple[str, ...] = ("n_cycles", "revisits", "diameter_norm", "small_world_sigma"),
) -> list[Path]:
    """Trajectory maps, trace graphs and metric comparisons under ``plots``."""
    from mechgraph.graphs.plots import (
        embed_2d,
        plot_metric_comparison,
        plot_trace_graph,
        plot_trajectories,
    )

    plots.mkdir(parents=True, exist_ok=True)
    corpus, written = result.corpus, []
    steps = corpus.steps.assign(trace_id=corpus.steps["store"] + "/" + corpus.steps["trace_id"])
    xy = embed_2d(corpus.states, method)
    for color in ("label", "position", "store"):
        for ext in (".png", ".html"):
            p = plots / f"trajectories_{color}{ext}"
            plot_trajectories(corpus.states, steps, color_by=color, coords=xy, method=method, out=p)
            written.append(p)
    for b in range(min(n_graphs, corpus.n_traces)):
        lo, hi = corpus.offsets[b], corpus.offsets[b + 1]
        store, tid = corpus.keys.iloc[b]
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{store}_{tid}")
        for ext in (".png", ".html"):
            p = plots / "graphs" / f"{safe}{ext}"
            plot_trace_graph(
                result.nodes[lo:hi], corpus.states[lo:hi], out=p, title=f"{store} / {tid}"
            )
            written.append(p)
    by = result.config.group_by or "store"
    for m in metrics:
        for ext in (".png", ".html"):
            p = plots / f"compare_{m}{ext}"
            plot_metric_comparison(result.table, m, by=by, out=p)
            written.append(p)
    return written


def graph_command(
    stores: Annotated[
        list[Path], typer.Argument(help="Store folder(s), analysed in one node space.")
    ],
    layer: Annotated[int, typer.Option("--layer", help="Layer of the step states.")],
    k: Annotated[int, typer.Option("--k", help="Number of nodes (k-means clusters).")] = 200,
    nodes: Annotated[
        Path | None,
        typer.Option("--nodes", help="Reuse this node space folder instead of fitting one."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output table (.parquet).")] = Path(
        "metrics.parquet"
    ),
    plots: Annotated[
        Path | None, typer.Option("--plots", help="Write pictures (PNG + HTML) to this folder.")
    ] = None,
    pool: Annotated[str, typer.Option(help="Pooling of the step states.")] = "mean",
    hook: Annotated[str, typer.Option(help="Hook kind of the step states.")] = "resid_post",
    save_nodes: Annotated[
        Path | None,
        typer.Option(
            "--save-nodes", help="Where to save a fitted node space (default OUT_STEM.nodespace)."
        ),
    ] = None,
    n_null: Annotated[
        int, typer.Option("--n-null", help="Null draws per trace and model (0: none).")
    ] = 0,
    null_kinds: Annotated[str, typer.Option("--null-kinds", help="shuffle,walk")] = "shuffle,walk",
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by",
            help="Trace field splitting the corpus (walk nulls, aha table); 'none' for one corpus.",
        ),
    ] = "store",
    seed: Annotated[int, typer.Option(help="Seed of k-means and of the null baselines.")] = 0,
    cycle_length_bound: Annotated[
        int, typer.Option("--cycle-length-bound", help="Longest simple cycle counted.")
    ] = 10,
    self_loops: Annotated[
        bool, typer.Option("--self-loops/--no-self-loops", help="Keep u->u edges.")
    ] = False,
    sigma_baseline: Annotated[
        str, typer.Option("--sigma-baseline", help="analytic | sampled")
    ] = "analytic",
    standardize: Annotated[bool, typer.Option(help="Standardise states before k-means.")] = False,
    pca: Annotated[int | None, typer.Option(help="PCA components before k-means.")] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="k-means: auto (KMeans up to --minibatch-threshold fitted steps, then "
            "MiniBatchKMeans) | kmeans | minibatch.",
        ),
    ] = "auto",
    n_init: Annotated[int, typer.Option("--n-init", help="k-means restarts.")] = 1,
    max_iter: Annotated[int, typer.Option("--max-iter", help="k-means iterations.")] = 300,
    minibatch_threshold: Annotated[
        int,
        typer.Option("--minibatch-threshold", help="Fitted steps above which auto is minibatch."),
    ] = 50_000,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="MiniBatchKMeans batch size.")
    ] = 4096,
    min_steps_per_node: Annotated[
        int,
        typer.Option(
            "--min-steps-per-node",
            help="Fewer than k * N steps: warn and use max(2, steps // N) nodes.",
        ),
    ] = 5,
    max_fit_steps: Annotated[
        int | None,
        typer.Option(
            "--max-fit-steps", help="Fit k-means on a seeded subsample of at most N steps."
        ),
    ] = None,
    max_cycles: Annotated[
        int, typer.Option("--max-cycles", help="Stop counting cycles at N (n_cycles_capped).")
    ] = 1_000_000,
    distance_agg: Annotated[
        str, typer.Option("--distance-agg", help="Edge distance over its transitions: mean | min.")
    ] = "mean",
    sigma_clustering: Annotated[
        str,
        typer.Option("--sigma-clustering", help="Clustering in sigma: average | transitivity."),
    ] = "average",
    sigma_nrand: Annotated[
        int, typer.Option("--sigma-nrand", help="Random graphs of the sampled sigma baseline.")
    ] = 10,
    sigma_niter: Annotated[
        int,
        typer.Option("--sigma-niter", help="Rewiring rounds per edge of the sampled baseline."),
    ] = 100,
    aha_source: Annotated[
        str,
        typer.Option(
            "--aha-source", help="Reconsideration steps of the aha table: auto | labels | lexicon."
        ),
    ] = "auto",
    homology: Annotated[
        bool, typer.Option(help="Add persistent-homology columns (needs ripser).")
    ] = False,
    homology_null: Annotated[
        int, typer.Option("--homology-null", help="Null draws for the homology columns (slow).")
    ] = 0,
    plot_method: Annotated[str, typer.Option("--plot-method", help="umap | pca")] = "umap",
    match_steps: Annotated[
        str | None,
        typer.Option(
            "--match-steps",
            metavar="N|paired",
            help="N: keep the first N steps of every trace; 'paired': cut every trace of a "
            "prompt to its shortest trace across the groups (unpaired prompts dropped).",
        ),
    ] = None,
    pair_by: Annotated[
        str,
        typer.Option(
            "--pair-by",
            metavar="FIELD",
            help="Trace field identifying a prompt for --match-steps paired.",
        ),
    ] = "prompt",
) -> None:
    """Reasoning-graph topology of each trace: cycles, revisits, diameter, small-world index."""
    from mechgraph.graphs.corpus import GraphConfig, analyze_corpus
    from mechgraph.graphs.metrics import MetricOptions
    from mechgraph.graphs.nodespace import NodeSpace, NodeSpaceConfig

    if not stores:
        raise ConfigError("give at least one store folder")
    for s in stores:
        if not Path(s).exists():
            raise ConfigError(f"store {s} does not exist")
    from mechgraph.cli import check_output

    inputs = [*stores, nodes]
    check_output(out, inputs, suffixes=(".parquet",))
    check_output(out.with_name(out.name + ".json"), inputs, option="--out's sidecar")
    if nodes is None:
        ns_out = save_nodes or out.with_name(out.stem + ".nodespace")
        check_output(ns_out, inputs, kind="folder", replaces=True, option="--save-nodes")
    if plots is not None:
        check_output(plots, inputs, kind="folder", nested=False, option="--plots")
    cfg = GraphConfig(
        layer=layer,
        pool=pool,
        hook=hook,
        nodes=NodeSpaceConfig(
            k=k,
            method=method,
            standardize=standardize,
            pca_components=pca,
            random_state=seed,
            n_init=n_init,
            max_iter=max_iter,
            minibatch_threshold=minibatch_threshold,
            batch_size=batch_size,
            min_steps_per_node=min_steps_per_node,
            max_fit_steps=max_fit_steps,
        ),
        metrics=MetricOptions(
            self_loops=self_loops,
            cycle_length_bound=cycle_length_bound,
            max_cycles=max_cycles,
            distance_agg=distance_agg,
            sigma_baseline=sigma_baseline,
            sigma_clustering=sigma_clustering,
            sigma_nrand=sigma_nrand,
            sigma_niter=sigma_niter,
            seed=seed,
        ),
        n_null=n_null,
        null_kinds=tuple(x.strip() for x in null_kinds.split(",") if x.strip()),
        group_by=None if group_by.lower() == "none" else group_by,
        seed=seed,
        homology=homology,
        homology_null=homology_null,
        aha_source=aha_source,
        match_steps=match_steps,
        pair_by=pair_by,
    )
    ns = NodeSpace.load(nodes) if nodes is not None else None
    result = analyze_corpus([str(s) for s in stores], cfg, nodespace=ns)
    write_graph(
        result,
        out,
        stores=list(stores),
        nodespace_path=nodes if nodes is not None else save_nodes,
        save_nodespace=nodes is None,
    )
    t = result.table
    typer.echo(f"{len(t)} traces, {result.nodespace.k_} nodes -> {out}")
    m = result.matching
    if m is not None:
        line = (
            f"step-matched ({m['match_steps']}): {m['n_steps_kept']} of {m['n_steps']} steps "
            f"kept, {m['n_traces_cut']} traces cut"
        )
        if m["match_steps"] == "paired":
            line += (
                f"; {m['n_prompts']} {m['pair_by']} values shared by {m['n_groups']} groups, "
                f"{m['n_dropped_unpaired']} unpaired and {m['n_dropped_empty']} empty "
                "traces dropped"
            )
        typer.echo(line)
    by = cfg.group_by or "store"
    cols = [
        c
        for c in ("n_steps", "n_cycles", "revisits", "diameter_norm", "small_world_sigma")
        if c in t
    ]
    summary = (
        t.groupby(by, dropna=False)[cols].mean(numeric_only=True) if by in t else t[cols].mean()
    )
    typer.echo(summary.to_string())
    for _, r in result.aha.iterrows():
        typer.echo(
            f"aha [{r['group']}] returns at reconsideration ({r['marker_source']}): "
            f"OR {r['odds_ratio']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}], "
            f"Fisher p {r['p_fisher']:.3g}, {r['n_eligible']} steps"
        )
    if plots is not None:
        written = write_plots(result, plots, method=plot_method)
        typer.echo(f"{len(written)} pictures -> {plots}")
