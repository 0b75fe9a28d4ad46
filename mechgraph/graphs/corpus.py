"""From activation stores to one metrics table: node space, paths, metrics, nulls, aha.

The stores are duck-typed (see :class:`mechgraph.store.Store`): ``.steps`` (one row per step,
contiguous per trace, ordered by ``step``), ``.traces``, ``.states(layer, pool, hook)`` and
``.path``.  Several stores are analysed in one shared node space, so that their traces can
be compared node for node; a ``store`` column tells them apart.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError, StoreError
from mechgraph.graphs.aha import aha_table, reconsideration_mask
from mechgraph.graphs.metrics import MetricOptions
from mechgraph.graphs.nodespace import NodeSpace, NodeSpaceConfig, stack_states
from mechgraph.graphs.nulls import NULL_KINDS, null_zscores
from mechgraph.graphs.paths import _trace_of_step, offsets_from_ids, step_distances
from mechgraph.graphs.topology import metrics_table

__all__ = [
    "TRACE_FIELDS",
    "Corpus",
    "GraphConfig",
    "GraphResult",
    "analyze_corpus",
    "graph_table",
    "load_corpus",
]

#: Trace fields copied from the stores into the metrics table (when present).
TRACE_FIELDS: tuple[str, ...] = ("model", "checkpoint", "correct", "answer")


@dataclass
class GraphConfig:
    """Everything that determines a metrics table (saved next to it).

    Parameters
    ----------
    layer : int
        Layer of the step states.
    pool, hook : str
        Pooling and hook kind of the step states (store names).
    nodes : NodeSpaceConfig
        How the node space is fitted when none is given.
    metrics : MetricOptions
        Options of the topology metrics.
    n_null : int
        Draws per null model (0: no null baselines; else >= 2).
    null_kinds : tuple of str
        Null models (``"shuffle"``, ``"walk"``).
    group_by : str or None
        Trace column that splits the corpus (default ``"store"``): each group has its own
        transition matrix in the walk null and its own row in the aha table.
    seed : int
        Seed of the null baselines (and of the homology nulls).
    homology : bool
        Add persistent-homology columns (needs ripser).
    homology_null : int
        Null draws for the homology columns (0: none; each draw costs a ripser run per
        trace, seconds for a trace of a few hundred steps).
    aha_source : {"auto", "labels", "lexicon"}
        Where reconsideration steps come from (see :func:`reconsideration_mask`).
    match_steps : int, "paired" or None
        Step matching, applied to the corpus before anything is fitted or measured (see
        :func:`match_corpus`).  ``None``: every step.  An int N >= 2: every trace cut to
        its first N steps (shorter traces kept whole).  ``"paired"``: traces paired by
        ``pair_by`` across the ``group_by`` groups; every trace of a prompt is cut to the
        shortest step count among that prompt's traces in all groups, and traces whose
        prompt is missing from some group (or that have no steps) are dropped.
    pair_by : str
        Trace field (of the stores' ``.traces``) that identifies a prompt when
        ``match_steps="paired"`` (default ``"prompt"``; ``"trace_id"`` pairs traces of
        the same id, e.g. one input file run through several checkpoints).
    """

    layer: int
    pool: str = "mean"
    hook: str = "resid_post"
    nodes: NodeSpaceConfig = field(default_factory=NodeSpaceConfig)
    metrics: MetricOptions = field(default_factory=MetricOptions)
    n_null: int = 0
    null_kinds: tuple[str, ...] = NULL_KINDS
    group_by: str | None = "store"
    seed: int = 0
    homology: bool = False
    homology_null: int = 0
    aha_source: str = "auto"
    match_steps: int | str | None = None
    pair_by: str = "prompt"

    def __post_init__(self) -> None:
        if isinstance(self.nodes, dict):
            self.nodes = NodeSpaceConfig(**self.nodes)
        if isinstance(self.metrics, dict):
            self.metrics = MetricOptions(**self.metrics)
        self.null_kinds = tuple(self.null_kinds)
        for name in ("n_null", "homology_null"):
            v = getattr(self, name)
            if v != 0 and v < 2:
                raise ConfigError(f"{name} must be 0 or >= 2, got {v}")
        bad = [k for k in self.null_kinds if k not in NULL_KINDS]
        if bad or not self.null_kinds:
            raise ConfigError(
                f"null_kinds must be a non-empty subset of {NULL_KINDS}, got {self.null_kinds}"
            )
        if self.aha_source not in ("auto", "labels", "lexicon"):
            raise ConfigError(
                f"aha_source must be 'auto', 'labels' or 'lexicon', got {self.aha_source!r}"
            )
        if not isinstance(self.layer, int | np.integer):
            raise ConfigError(f"layer must be an int, got {self.layer!r}")
        ms = self.match_steps
        if isinstance(ms, str) and ms.strip().isdigit():
            ms = int(ms)
        if ms is not None and ms != "paired":
            if isinstance(ms, bool) or not isinstance(ms, int | np.integer) or ms < 2:
                raise ConfigError(f"match_steps must be an int >= 2, 'paired' or None, got {ms!r}")
            ms = int(ms)
        self.match_steps = ms
        if not isinstance(self.pair_by, str) or not self.pair_by:
            raise ConfigError(f"pair_by must be a trace field name, got {self.pair_by!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["null_kinds"] = list(self.null_kinds)
        return d


@dataclass
class Corpus:
    """Steps and states of one or more stores, stacked in store order.

    ``steps`` has a ``store`` column; ``offsets`` splits the rows into traces, whose
    ``(store, trace_id)`` are in ``keys``; ``traces`` lists every trace (with or without
    steps) with the :data:`TRACE_FIELDS` present (and ``pair_key`` when loaded with
    ``pair_by``).  ``n_steps_full`` is the step count of each trace of ``keys`` before
    any step matching (equal to ``np.diff(offsets)`` when none was applied).
    """

    steps: pd.DataFrame
    states: np.ndarray
    traces: pd.DataFrame
    offsets: np.ndarray
    keys: pd.DataFrame
    n_steps_full: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.n_steps_full is None:
            self.n_steps_full = np.diff(np.asarray(self.offsets, np.int64))

    @property
    def n_traces(self) -> int:
        return len(self.keys)


@dataclass
class GraphResult:
    """What :func:`analyze_corpus` returns."""

    table: pd.DataFrame
    nodespace: NodeSpace
    corpus: Corpus
    nodes: np.ndarray
    aha: pd.DataFrame
    config: GraphConfig
    matching: dict[str, Any] | None = None
    """What step matching did (see :func:`match_corpus`), or None without it."""
    stores: list[str] = field(default_factory=list)
    """The store folders analysed (those given as paths or with a ``path``)."""

    def save(
        self,
        out: str | os.PathLike[str],
        *,
        stores: Sequence[str | os.PathLike[str]] | None = None,
        nodespace_path: str | os.PathLike[str] | None = None,
        save_nodespace: bool = True,
    ) -> list[Path]:
        """Write the table, its sidecar, its record and the node space, as ``mechgraph graph``.

        See :func:`mechgraph.graphs.cli.write_graph` (``stores`` defaults to
        :attr:`stores`).

        Examples
        --------
        >>> res = analyze_corpus(["runs/s"], GraphConfig(layer=15))  # doctest: +SKIP
        >>> res.save("runs/metrics.parquet")  # doctest: +SKIP
        """
        from mechgraph.graphs.cli import write_graph

        return write_graph(
            self,
            out,
            stores=stores,
            nodespace_path=nodespace_path,
            save_nodespace=save_nodespace,
        )


def _open(store: Any) -> Any:
    if isinstance(store, str | os.PathLike):
        from mechgraph.store import open_store

        return open_store(store)
    return store


def _store_names(stores: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for i, s in enumerate(stores):
        base = Path(str(getattr(s, "path", f"store{i}"))).name or f"store{i}"
        name, j = base, 1
        while name in names:
            j += 1
            name = f"{base}#{j}"
        names.append(name)
    return names


def _pair_keys(values: pd.Series) -> pd.Series:
    """Short stable hash of each value (None for a missing one): prompts without their text."""

    def h(v: Any) -> str | None:
        if v is None or (np.ndim(v) == 0 and pd.isna(v)):
            return None
        return hashlib.sha1(str(v).encode("utf-8")).hexdigest()[:12]

    return pd.Series([h(v) for v in values], index=values.index, dtype=object)


def load_corpus(
    stores: Sequence[Any],
    layer: int,
    pool: str = "mean",
    hook: str = "resid_post",
    *,
    pair_by: str | None = None,
) -> Corpus:
    """Stack the steps and the ``(layer, pool, hook)`` states of several stores.

    Parameters
    ----------
    stores : sequence of Store or path
    layer, pool, hook
        Which states (see ``Store.states``).
    pair_by : str, optional
        A field of the stores' ``.traces`` (e.g. ``"prompt"``) carried into
        ``Corpus.traces`` as ``pair_key``, a 12-hex-digit hash of its value (never the
        text; None for a missing value).

    Returns
    -------
    Corpus

    Raises
    ------
    StoreError
        When a store's states and steps disagree in length, or a trace's steps are not
        contiguous and ordered.
    ConfigError
        When the stores hold no step at all, their state widths differ, or a store lacks
        the ``pair_by`` field.
    """
    if isinstance(stores, str | os.PathLike) or hasattr(stores, "steps"):
        stores = [stores]
    stores = [_open(s) for s in stores]
    if not stores:
        raise ConfigError("no store given")
    names = _store_names(stores)
    step_frames, state_arrays, trace_frames = [], [], []
    lacking: list[str] = []
    for name, s in zip(names, stores, strict=True):
        steps = s.steps
        st = np.asarray(s.states(layer, pool=pool, hook=hook))
        if st.shape[0] != len(steps):
            raise StoreError(f"store {name}: {st.shape[0]} state rows for {len(steps)} steps")
        if len(steps):
            off, _ = offsets_from_ids(steps["trace_id"].astype(str))
            if "step" in steps:
                step = steps["step"].to_numpy()
                inner = np.ones(len(steps), bool)
                inner[off[:-1]] = False
                if np.any(np.diff(step)[inner[1:]] <= 0):
                    raise StoreError(f"store {name}: steps of a trace are not ordered by 'step'")
        steps = steps.assign(store=name)
        step_frames.append(steps)
        state_arrays.append(st)
        tr = s.traces
        cols = ["trace_id", *[c for c in TRACE_FIELDS if c in tr.columns]]
        frame = tr[cols].assign(store=name) if len(tr) else pd.DataFrame(columns=[*cols, "store"])
        if pair_by is not None:
            if pair_by not in tr.columns:
                lacking.append(name)
            elif len(tr):
                frame["pair_key"] = _pair_keys(tr[pair_by]).to_numpy()
            else:
                frame["pair_key"] = pd.Series([], dtype=object)
        trace_frames.append(frame)
    if lacking:
        raise ConfigError(
            f"cannot pair traces by {pair_by!r}: no such trace field in store(s) "
            f"{', '.join(lacking)} (pick another with pair_by / --pair-by)"
        )
    steps = pd.concat(step_frames, ignore_index=True)
    if len(steps) == 0:
        raise ConfigError(f"the store(s) {', '.join(names)} hold no steps: nothing to analyse")
    steps["trace_id"] = steps["trace_id"].astype(str)
    states = stack_states([a for a in state_arrays if a.shape[0]])
    key = steps["store"].astype(str) + "\x1f" + steps["trace_id"]
    offsets, run_keys = offsets_from_ids(key)
    keys = pd.DataFrame([k.split("\x1f", 1) for k in run_keys], columns=["store", "trace_id"])
    traces = pd.concat(trace_frames, ignore_index=True)
    traces["trace_id"] = traces["trace_id"].astype(str)
    return Corpus(steps=steps, states=states, traces=traces, offsets=offsets, keys=keys)


def _groups(corpus: Corpus, group_by: str | None) -> np.ndarray | None:
    if group_by is None:
        return None
    if group_by == "store":
        return corpus.keys["store"].to_numpy(dtype=object)
    if group_by not in corpus.traces.columns:
        raise ConfigError(
            f"group_by={group_by!r} is not a trace field; have {list(corpus.traces.columns)}"
        )
    m = corpus.keys.merge(
        corpus.traces[["store", "trace_id", group_by]].drop_duplicates(["store", "trace_id"]),
        on=["store", "trace_id"],
        how="left",
    )
    return m[group_by].astype(str).to_numpy(dtype=object)


def _aha(corpus: Corpus, nodes: np.ndarray, groups: np.ndarray | None, source: str) -> pd.DataFrame:
    """Aha table per group; each group picks its marker source (labels or lexicon) itself."""
    steps = corpus.steps
    seg = _trace_of_step(corpus.offsets)
    per_trace = np.array(["all"] * corpus.n_traces, dtype=object) if groups is None else groups
    step_group = per_trace[seg]
    markers = np.zeros(len(steps), bool)
    sources = {}
    for g in pd.unique(pd.Series(per_trace)):
        sel = step_group == g
        markers[sel], sources[g] = reconsideration_mask(
            steps["text"][sel] if "text" in steps else None,
            steps["label"][sel] if "label" in steps else None,
            source=source,
        )
    aha = aha_table(nodes, corpus.offsets, markers, groups=per_trace)
    aha.insert(1, "marker_source", aha["group"].map(sources))
    return aha


def analyze_corpus(
    stores: Sequence[Any],
    config: GraphConfig,
    *,
    nodespace: NodeSpace | None = None,
) -> GraphResult:
    """Fit (or reuse) the node space, then compute the per-trace table and the aha test.

    Parameters
    ----------
    stores : sequence of Store or path
    config : GraphConfig
    nodespace : NodeSpace, optional
        A fitted node space to map the stores into (its layer, when recorded, must match).

    Returns
    -------
    GraphResult
        ``table``: one row per trace: ``store``, ``trace_id``, the trace fields, every
        metric of :data:`mechgraph.graphs.METRIC_COLUMNS` (and null / homology columns when
        asked).  Traces without steps get ``n_steps = 0`` and missing metrics.
        ``n_steps_full`` (next to ``n_steps``) is the step count before step matching;
        with ``match_steps="paired"`` only the paired traces are rows, with their
        ``pair_key`` (a hash of the ``pair_by`` value), and ``matching`` counts the rest.
    """
    paired = config.match_steps == "paired"
    corpus = load_corpus(
        stores, config.layer, config.pool, config.hook, pair_by=config.pair_by if paired else None
    )
    matching = None
    if config.match_steps is not None:
        groups = _groups(corpus, config.group_by) if paired else None
        from mechgraph.graphs.matching import match_corpus

        corpus, matching = match_corpus(
            corpus, config.match_steps, groups=groups, pair_by=config.pair_by
        )
    if nodespace is None:
        nodespace = NodeSpace(config.nodes).fit(
            corpus.states,
            layer=config.layer,
            pool=config.pool,
            hook=config.hook,
            sources=sorted(set(corpus.keys["store"])),
        )
    else:
        for name in ("layer", "pool", "hook"):
            have = nodespace.meta.get(name)
            if have is not None and have != getattr(config, name):
                raise ConfigError(
                    f"the node space was fitted on {name}={have!r}, not {getattr(config, name)!r}"
                )
    nodes = nodespace.predict(corpus.states)
    dists = step_distances(corpus.states, corpus.offsets)
    table = metrics_table(nodes, corpus.offsets, distances=dists, options=config.metrics)
    groups = _groups(corpus, config.group_by)
    table.insert(0, "n_steps_full", corpus.n_steps_full)
    parts = [corpus.keys, table]
    if config.n_null:
        parts.append(
            null_zscores(
                nodes,
                corpus.offsets,
                vectors=corpus.states,
                n_null=config.n_null,
                kinds=config.null_kinds,
                groups=groups,
                seed=config.seed,
                options=config.metrics,
            )
        )
    if config.homology:
        from mechgraph.graphs.homology import homology_table

        parts.append(
            homology_table(
                corpus.states,
                corpus.offsets,
                nodes=nodes,
                n_null=config.homology_null,
                kinds=config.null_kinds,
                groups=groups,
                seed=config.seed,
            )
        )
    per_trace = pd.concat([p.reset_index(drop=True) for p in parts], axis=1)
    traces = corpus.traces.drop_duplicates(["store", "trace_id"])
    full = traces.merge(per_trace, on=["store", "trace_id"], how="left", sort=False)
    known = pd.MultiIndex.from_frame(traces[["store", "trace_id"]])
    orphan = ~pd.MultiIndex.from_frame(per_trace[["store", "trace_id"]]).isin(known)
    if orphan.any():  # steps of a trace missing from .traces: keep them, fields unknown
        full = pd.concat([full, per_trace[orphan]], ignore_index=True)
    for c in ("n_steps", "n_steps_full"):
        full[c] = full[c].fillna(0).astype("Int64")
    lead = ["store", "trace_id", *[c for c in (*TRACE_FIELDS, "pair_key") if c in full.columns]]
    rest = [c for c in full.columns if c not in lead and c != "n_steps_full"]
    at = rest.index("n_steps") + 1
    full = full[lead + rest[:at] + ["n_steps_full"] + rest[at:]]
    aha = _aha(corpus, nodes, groups, config.aha_source)
    corpus.steps["node"] = nodes
    return GraphResult(
        table=full,
        nodespace=nodespace,
        corpus=corpus,
        nodes=nodes,
        aha=aha,
        config=config,
        matching=matching,
        stores=_store_paths(stores),
    )


def _store_paths(stores: Sequence[Any]) -> list[str]:
    out = []
    for s in stores:
        p = s if isinstance(s, str | os.PathLike) else getattr(s, "path", None)
        if p is not None:
            out.append(os.fspath(p))
    return out


def graph_table(
    stores: Sequence[Any],
    layer: int,
    *,
    nodespace: NodeSpace | None = None,
    k: int = 200,
    pool: str = "mean",
    hook: str = "resid_post",
    n_null: int = 0,
    seed: int = 0,
    match_steps: int | str | None = None,
    pair_by: str = "prompt",
    **metric_options: Any,
) -> pd.DataFrame:
    """One row of topology metrics per trace of the given stores (a shortcut).

    Parameters
    ----------
    stores : sequence of Store or path
    layer : int
    nodespace : NodeSpace, optional
        Reuse these nodes; otherwise a K-means node space with ``k`` nodes is fitted on
        all the stores together.
    k : int, default 200
    pool, hook : str
    n_null : int, default 0
        Null draws per model (z-score columns when >= 2).
    seed : int
    match_steps : int, "paired" or None
        Step matching before anything is fitted (see :class:`GraphConfig`): the first N
        steps of each trace, or ``"paired"`` across the stores by ``pair_by``.
    pair_by : str, default "prompt"
    **metric_options
        Fields of :class:`mechgraph.graphs.MetricOptions`.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> table = graph_table(["runs/a", "runs/b"], layer=12)  # doctest: +SKIP
    >>> table.groupby("model")["n_cycles"].mean()  # doctest: +SKIP
    """
    cfg = GraphConfig(
        layer=layer,
        pool=pool,
        hook=hook,
        nodes=NodeSpaceConfig(k=k),
        metrics=MetricOptions(**metric_options),
        n_null=n_null,
        seed=seed,
        match_steps=match_steps,
        pair_by=pair_by,
    )
    return analyze_corpus(stores, cfg, nodespace=nodespace).table
