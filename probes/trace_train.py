"""Train a whole-trace probe from a store: context, sequence or ensemble models.

:func:`probes.train.train_probe` sweeps one block at a time with a per-step estimator. The
models of :mod:`probes.context`, :mod:`probes.sequence` and :mod:`probes.ensemble` read
several blocks side by side and a step's neighbours, so they are trained differently:

1. the rows of the store are put in trace order, steps in order (the models read a trace
   as a sequence); a trace with any step lacking a target is left out whole, and named;
2. the features are the states of every (layer, pool) block side by side, layers outer,
   then with ``rules`` the rule tagger's 8 tag probabilities of each sentence
   (:func:`probes.ensemble.rule_features`, from the store's ``text`` column);
3. grouped cross-validation by ``group_by``: ``"problem"`` (the default when the store
   has the column) keeps both traces of a problem on one side of every fold, which is
   what held-out problems need; ``"trace_id"`` groups by trace only;
4. the model is refitted on every row and saved with its :class:`~probes.ProbeConfig`
   (``features`` records the blocks), the CV metrics with ``<metric>_std`` and
   ``<metric>_ci95`` (bootstrap over folds), and ``cv.json`` (per-fold metrics).

``mechgraph probe STORE --estimator stacked --layers 19 --pools mean,first,last --out DIR``
runs it; ``mechgraph label --method probe:DIR`` then labels new traces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError

__all__ = ["TRACE_ESTIMATORS", "TraceProbeResult", "trace_order", "train_trace_probe"]

#: estimators that read whole traces (name in a probe artifact -> class)
TRACE_ESTIMATORS = ("context", "bigru", "stacked")


def trace_order(trace_ids: Sequence[Any], steps: Sequence[int]) -> np.ndarray:
    """Row order putting each trace's rows together, traces in order of first appearance.

    Examples
    --------
    >>> trace_order(["b", "a", "b", "a"], [1, 0, 0, 1]).tolist()
    [2, 0, 1, 3]
    """
    tids = np.asarray(trace_ids)
    first: dict[Any, int] = {}
    for i, t in enumerate(tids.tolist()):
        first.setdefault(t, i)
    rank = np.array([first[t] for t in tids.tolist()])
    return np.lexsort((np.asarray(steps), rank))


@dataclass
class TraceProbeResult:
    """What :func:`train_trace_probe` measured (the CV) and on what."""

    estimator: str
    task: str
    blocks: list[tuple[int, str]]
    rules: bool
    group_by: str
    n_splits: int
    n_steps: int
    n_traces: int
    n_groups: int
    metrics: dict[str, float]
    intervals: dict[str, list[float]]
    fold_metrics: list[dict[str, float]]
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Pooled metrics, ``<metric>_std`` and ``<metric>_ci95`` over folds."""
        out: dict[str, Any] = dict(self.metrics)
        for k, (lo, hi) in self.intervals.items():
            vals = [m[k] for m in self.fold_metrics if m.get(k) == m.get(k)]
            out[f"{k}_std"] = float(np.std(vals)) if vals else float("nan")
            out[f"{k}_ci95"] = [lo, hi]
        return out

    def format(self, digits: int = 3) -> str:
        """A few aligned lines: the set-up, then each metric with its fold interval."""
        blocks = ", ".join(f"{la}:{po}" for la, po in self.blocks)
        lines = [
            f"{self.task} {self.estimator} probe on {blocks}{' + rules' if self.rules else ''}: "
            f"{self.n_splits}-fold CV grouped by {self.group_by} ({self.n_groups} groups, "
            f"{self.n_traces} traces, {self.n_steps} steps)",
            f"{'metric':>18}  {'pooled':>7}  fold mean, 95% interval",
        ]
        for k, v in self.metrics.items():
            lo, hi = self.intervals.get(k, [float("nan")] * 2)
            vals = [m[k] for m in self.fold_metrics if m.get(k) == m.get(k)]
            mean = float(np.mean(vals)) if vals else float("nan")
            lines.append(
                f"{k:>18}  {v:7.{digits}f}  {mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
            )
        if self.dropped:
            lines.append(f"left out {len(self.dropped)} traces with unlabelled steps")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "task": self.task,
            "blocks": [list(b) for b in self.blocks],
            "rules": self.rules,
            "group_by": self.group_by,
            "n_splits": self.n_splits,
            "n_steps": self.n_steps,
            "n_traces": self.n_traces,
            "n_groups": self.n_groups,
            "metrics": self.metrics,
            "intervals": self.intervals,
            "fold_metrics": self.fold_metrics,
            "dropped": self.dropped,
        }


def _estimator(name: str, params: Mapping[str, Any], rules: bool):
    from probes.artifacts import SAVED

    if name not in TRACE_ESTIMATORS:
        raise ConfigError(f"unknown trace estimator {name!r}; known: {', '.join(TRACE_ESTIMATORS)}")
    if name == "stacked" and not rules:
        raise ConfigError("the stacked ensemble reads the rule features: drop --no-rules")
    try:
        return SAVED[name](**dict(params))
    except TypeError as e:
        raise ConfigError(f"bad parameters for the {name} estimator: {e}") from None


def train_trace_probe(
    store: Any,
    target: str = "planning",
    *,
    estimator: str = "stacked",
    layers: Sequence[int] | None = None,
    pools: Sequence[str] = ("mean",),
    rules: bool | None = None,
    labels: str | os.PathLike[str] | None = None,
    params: Mapping[str, Any] | None = None,
    n_splits: int = 5,
    group_by: str = "auto",
    hook: str = "resid_post",
    out: str | os.PathLike[str] | None = None,
) -> TraceProbeResult:
    """Grouped-CV a whole-trace probe on a store, then fit it on all rows (and save it).

    Parameters
    ----------
    store : Store or path
    target : {"planning", "tag"}
        Binary planning flag or the 8-way tag.
    estimator : {"context", "bigru", "stacked"}
        :class:`~probes.context.ContextProbe`, :class:`~probes.sequence.BiGRUTagger` or
        :class:`~probes.ensemble.StackedEnsemble`.
    layers, pools : sequences
        The blocks read side by side (default: every layer of the store, if at most 4).
    rules : bool or None
        Add the rule tagger's tag probabilities (None: only for ``stacked``, which needs
        them).
    labels : path or None
        Label JSONL from ``mechgraph label`` (default: the store's ``label`` column).
    params : mapping
        Estimator parameters (e.g. ``{"window": 1, "C": 0.05}``).
    n_splits : int
        Folds (``GroupKFold``; every group of a fold is held out whole).
    group_by : str
        A column of ``store.steps`` to group folds by; ``"auto"``: ``problem`` when the
        store has it for every step, else ``trace_id``.
    out : path or None
        Artifact folder (replaced); also writes ``cv.json``.

    Returns
    -------
    TraceProbeResult

    Examples
    --------
    >>> res = train_trace_probe("runs/ta", estimator="bigru", layers=[15, 19],
    ...                         pools=["mean", "last"], out="runs/probe-bigru")  # doctest: +SKIP
    >>> print(res.format())  # doctest: +SKIP
    """
    from probes.sweep import cross_validate_probe, infer_task
    from probes.train import read_label_jsonl, targets

    if target not in ("planning", "tag"):
        raise ConfigError(
            f"whole-trace probes classify steps (planning or tag), not {target!r}; "
            "use --estimator ridge for importance"
        )
    rules = estimator == "stacked" if rules is None else bool(rules)
    est = _estimator(estimator, params or {}, rules)
    if out is not None:
        from mechgraph.cli import check_output

        where = store if isinstance(store, str | os.PathLike) else getattr(store, "path", None)
        check_output(out, [where, labels], kind="folder", replaces=True)
    if isinstance(store, str | os.PathLike):
        from mechgraph.store import open_store

        store = open_store(store)
    if layers is None:
        if len(store.layers) > 4:
            raise ConfigError(
                f"store {store.path} has {len(store.layers)} layers; choose the blocks to read "
                "side by side with --layers (e.g. 15,19)"
            )
        layers = store.layers
    layers = [int(la) for la in layers]
    for la in layers:
        if la not in store.layers:
            raise ConfigError(f"store {store.path} has no layer {la} (it has {store.layers})")
    for po in pools:
        if po not in store.pools:
            raise ConfigError(f"store {store.path} has no pool {po!r} (it has {store.pools})")
    steps = store.steps
    if rules and "text" not in steps:
        raise ConfigError(f"store {store.path} keeps no step text: the rule features need it")
    if group_by == "auto":
        group_by = (
            "problem" if "problem" in steps and steps["problem"].notna().all() else "trace_id"
        )
    if group_by not in steps:
        raise ConfigError(f"store {store.path} has no column {group_by!r} to group folds by")
    if steps[group_by].isna().any():
        raise ConfigError(f"column {group_by!r} of store {store.path} has missing values")

    lab = read_label_jsonl(labels) if labels is not None else None
    y, keep = targets(steps, target, lab)
    tids = steps["trace_id"].astype(str).to_numpy()
    incomplete = sorted(set(tids[~keep].tolist()))
    keep &= ~np.isin(tids, incomplete)
    if keep.sum() < 2:
        raise ConfigError(f"no trace of store {store.path} has a {target!r} target on every step")
    order = trace_order(tids, steps["step"].to_numpy())
    order = order[keep[order]]
    y = y[order]
    if y.dtype == object:
        y = y.astype(str)
    task = infer_task(y)
    blocks = [(int(la), str(po)) for la in layers for po in pools]
    cols = [np.asarray(store.states(la, pool=po, hook=hook))[order] for la, po in blocks]
    if rules:
        from probes.context import trace_slices
        from probes.ensemble import rule_features

        text = steps["text"].astype(str).to_numpy()[order]
        slices = trace_slices(tids[order], len(order))
        cols.append(np.vstack([rule_features(list(text[sl])) for sl in slices]))
    X = np.hstack(cols).astype(np.float64)
    groups = steps[group_by].astype(str).to_numpy()[order]
    cv = cross_validate_probe(est, X, y, groups, n_splits=n_splits, task=task, traces=tids[order])
    res = TraceProbeResult(
        estimator=estimator,
        task=task,
        blocks=blocks,
        rules=rules,
        group_by=group_by,
        n_splits=n_splits,
        n_steps=len(y),
        n_traces=len(np.unique(tids[order])),
        n_groups=len(np.unique(groups)),
        metrics=cv.metrics,
        intervals=cv.intervals(),
        fold_metrics=cv.fold_metrics,
        dropped=incomplete,
    )
    if out is not None:
        _save(est, res, store, target, X, y, tids[order], hook, labels, out)
    return res


def _save(est, res, store, target, X, y, traces, hook, labels, out) -> None:
    from sklearn.base import clone

    from mechgraph.io import jsonable
    from probes.artifacts import ProbeConfig, save_probe

    fitted = clone(est).fit(X, y, groups=traces)
    layers = list(dict.fromkeys(la for la, _ in res.blocks))
    pools = list(dict.fromkeys(po for _, po in res.blocks))
    cfg = ProbeConfig.for_store(
        fitted,
        store,
        layers[-1],
        target,
        hook=hook,
        pool=pools[0],
        metrics=jsonable(res.summary()),
        features={"layers": layers, "pools": pools, "rules": res.rules},
        source={
            "labels": None if labels is None else str(labels),
            "n_steps": res.n_steps,
            "n_traces": res.n_traces,
            "group_by": res.group_by,
            "n_groups": res.n_groups,
            "dropped_traces": res.dropped,
        },
    )
    text = json.dumps(jsonable(res.to_dict()), indent=1) + "\n"
    save_probe(
        fitted,
        cfg,
        out,
        extra={"cv.json": lambda p: Path(p).write_text(text, encoding="utf-8")},
        inputs=[
            p for p in (getattr(store, "path", None), labels) if p is not None and Path(p).exists()
        ],
    )
