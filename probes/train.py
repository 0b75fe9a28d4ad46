"""Train probes on a store: ``python -m probes.train STORE ...`` (and ``mechgraph probe``).

Targets:

``planning``
    Binary: the step's tag is plan_generation or uncertainty_management. Tags come from
    the store's ``label`` column (e.g. Thought Anchors' labels) or from a label JSONL
    written by ``mechgraph label`` (its ``planning`` field).
``tag``
    Multi-class: the tag itself.
``importance[:COLUMN]``
    Regression on a per-step number of the store (default
    ``counterfactual_importance_kl``), with Spearman as the headline metric.

The sweep runs grouped cross-validation at each layer; the best layer's probe is then
fitted on all steps and saved to ``OUT`` (safetensors + config JSON, with the sweep).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pandas as pd
import typer

from mechgraph.errors import ConfigError, MechgraphError, TraceError
from mechgraph.io import jsonable
from mechgraph.labels.tagger import PLANNING_TAGS

if TYPE_CHECKING:
    from probes.sweep import SweepResult

__all__ = ["main", "parse_layers", "probe_command", "read_label_jsonl", "targets", "train_probe"]

DEFAULT_IMPORTANCE = "counterfactual_importance_kl"


def parse_layers(spec: str | Sequence[int] | None, available: Sequence[int]) -> list[int]:
    """Layers from ``"all"``, ``"3,7,11"``, ``"0-29"`` or ``"0-29:4"`` (step 4).

    Examples
    --------
    >>> parse_layers("0-10:5", range(30)), parse_layers("all", [3, 9])
    ([0, 5, 10], [3, 9])
    """
    avail = [int(x) for x in available]
    if spec is None or spec == "all" or spec == "":
        return avail
    if not isinstance(spec, str):
        out = [int(x) for x in spec]
    else:
        out = []
        for part in spec.split(","):
            part = part.strip()
            rng, _, step = part.partition(":")
            if "-" in rng.lstrip("-"):
                a, b = rng.split("-", 1) if not rng.startswith("-") else (rng, rng)
                out += list(range(int(a), int(b) + 1, int(step or 1)))
            elif part:
                out.append(int(rng))
    missing = [x for x in out if x not in avail]
    if missing:
        raise ConfigError(f"layers {missing} are not in the store; it has {avail}")
    return out


def read_label_jsonl(path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """``id -> steps`` from a ``mechgraph label`` output file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"label file {path}: no such file")
    out: dict[str, list[dict[str, Any]]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            out[str(rec["id"])] = list(rec["steps"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise TraceError(f"{path}:{n}: not a label record ({e})") from None
    return out


def _trace_labels(tid: str, df: pd.DataFrame, labels: dict[str, list[dict]], field: str) -> list:
    """The ``field`` of each labelled step of one trace, checked against the store's spans."""
    recs = labels.get(str(tid))
    if recs is None:
        raise TraceError(f"trace {tid!r}: not in the label file")
    if len(recs) != len(df):
        raise TraceError(
            f"trace {tid!r}: {len(recs)} labelled steps for {len(df)} steps in the store"
        )
    for (a, b), r in zip(df[["char_start", "char_end"]].to_numpy(), recs, strict=True):
        if (int(r["start"]), int(r["end"])) != (int(a), int(b)):
            raise TraceError(
                f"trace {tid!r}: labelled step [{r['start']}, {r['end']}] is not the store's "
                f"step [{a}, {b}]; label the same steps (segmenter 'given')"
            )
    return [r.get(field) for r in recs]


def targets(
    steps: pd.DataFrame, target: str, labels: dict[str, list[dict]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(y, keep)``: the target of every step and the mask of steps that have one.

    Examples
    --------
    >>> df = pd.DataFrame({"trace_id": ["a", "a"], "label": ["plan_generation", None]})
    >>> y, keep = targets(df, "planning"); y.tolist(), keep.tolist()
    ([1, 0], [True, False])
    """
    from mechgraph.specs import NO_ARG, optional, parse_spec

    spec = parse_spec(
        target,
        {"planning": NO_ARG, "tag": NO_ARG, "importance": optional("COLUMN")},
        "probe target",
    )
    kind, col = spec.kind, spec.arg or ""
    if kind in ("planning", "tag"):
        if labels is not None:
            field = "tag" if kind == "tag" else "planning"
            by_index: dict[Any, Any] = {}
            for tid, df in steps.groupby("trace_id", sort=False):
                by_index.update(zip(df.index, _trace_labels(tid, df, labels, field), strict=True))
            raw = [by_index[i] for i in steps.index]
        else:
            if "label" not in steps:
                raise ConfigError("the store has no 'label' column; give a label file (--labels)")
            raw = steps["label"].tolist()
            if kind == "planning":
                raw = [None if v is None or v != v else v in PLANNING_TAGS for v in raw]
        keep = np.array([v is not None and v == v for v in raw])
        if kind == "planning":
            y = np.array([int(bool(v)) if k else 0 for v, k in zip(raw, keep, strict=True)])
        else:
            y = np.array(
                [str(v) if k else "" for v, k in zip(raw, keep, strict=True)], dtype=object
            )
        return y, keep
    # importance (parse_spec has refused every other kind)
    col = col or DEFAULT_IMPORTANCE
    if col not in steps:
        num = [c for c in steps.columns if pd.api.types.is_numeric_dtype(steps[c])]
        raise ConfigError(f"the store has no column {col!r}; numeric columns: {num}")
    y = pd.to_numeric(steps[col], errors="coerce").to_numpy(dtype=np.float64)
    return y, np.isfinite(y)


def train_probe(
    store: Any,
    target: str = "planning",
    *,
    layers: str | Sequence[int] | None = None,
    labels: str | os.PathLike[str] | None = None,
    estimator: str = "logistic",
    params: dict[str, Any] | None = None,
    n_splits: int = 5,
    task: str = "auto",
    pool: str = "mean",
    hook: str = "resid_post",
    out: str | os.PathLike[str] | None = None,
) -> SweepResult:
    """Sweep layers with grouped CV, then fit the best layer on all steps and save it.

    Parameters
    ----------
    store : Store or path
        An activation store (:func:`mechgraph.open_store`).
    target : str
        ``planning``, ``tag`` or ``importance[:COLUMN]``.
    layers : str or sequence of int
        See :func:`parse_layers` (default: every layer of the store).
    labels : path, optional
        Label JSONL from ``mechgraph label`` (default: the store's ``label`` column).
    estimator : {"logistic", "diffmeans", "ridge"}
        ``ridge`` for importance; the others for planning / tag.
    params : dict, optional
        Estimator parameters.
    n_splits : int
        Grouped CV folds.
    task : {"auto", "binary", "multiclass", "regression"}
        See :class:`~probes.sweep.SweepConfig` (``auto``: from the target's values).
    pool, hook : str
        Which states of the store to read.
    out : path, optional
        Artifact folder for the best layer's probe, with ``sweep.json`` and ``sweep.csv``
        and the record ``artifact.json`` (the ProbeConfig; the store and the label file as
        inputs), all in one atomic commit. Refused before any work where it is, holds or
        sits in the store or the label file.

    Returns
    -------
    SweepResult

    Examples
    --------
    >>> res = train_probe("runs/ta", "planning", layers="0-29:4", out="probes/planning")  # doctest: +SKIP
    >>> print(res.format())  # doctest: +SKIP
    """
    if out is not None:
        from mechgraph.cli import check_output

        where = store if isinstance(store, str | os.PathLike) else getattr(store, "path", None)
        check_output(out, [where, labels], kind="folder", replaces=True)
    from probes.artifacts import ProbeConfig, save_probe
    from probes.estimators import make_estimator
    from probes.sweep import SweepConfig, layer_sweep

    if target.startswith("importance") and estimator == "logistic":
        estimator = "ridge"
    cfg = SweepConfig(estimator=estimator, params=dict(params or {}), n_splits=n_splits, task=task)
    if isinstance(store, str | os.PathLike):
        from mechgraph.store import open_store

        store = open_store(store)
    steps = store.steps
    lab = read_label_jsonl(labels) if labels is not None else None
    y, keep = targets(steps, target, lab)
    if keep.sum() < 2:
        raise ConfigError(f"no step of the store has a {target!r} target")
    groups = steps["trace_id"].astype(str).to_numpy()[keep]
    y = y[keep]
    if y.dtype == object:
        y = y.astype(str)
    layer_list = parse_layers(layers, store.layers)
    cache: dict[int, np.ndarray] = {}

    def get(layer: int) -> np.ndarray:
        if layer not in cache:
            cache.clear()
            cache[layer] = np.asarray(store.states(layer, pool=pool, hook=hook))[keep]
        return cache[layer]

    res = layer_sweep(get, y, groups, layer_list, cfg)
    if out is not None:
        best = res.best_layer
        est = make_estimator(cfg.estimator, **cfg.params).fit(get(best), y)
        pcfg = ProbeConfig.for_store(
            est,
            store,
            best,
            target
            if not target.startswith("importance") or ":" in target
            else f"importance:{DEFAULT_IMPORTANCE}",
            hook=hook,
            pool=pool,
            metrics=res.table.loc[res.table["layer"] == best].iloc[0].to_dict(),
            sweep=res.to_dict(),
            source={
                "labels": None if labels is None else str(labels),
                "n_steps": len(y),
                "n_traces": len(np.unique(groups)),
            },
        )
        sweep = json.dumps(jsonable(res.to_dict()), indent=1)
        save_probe(
            est,
            pcfg,
            out,
            extra={
                "sweep.csv": lambda p: res.table.to_csv(p, index=False),
                "sweep.json": lambda p: p.write_text(sweep + "\n", encoding="utf-8"),
            },
            inputs=[
                p
                for p in (getattr(store, "path", None), labels)
                if p is not None and Path(p).exists()
            ],
        )
    return res


def probe_command(
    store: Annotated[Path, typer.Argument(help="Activation store folder.")],
    target: Annotated[str, typer.Option(help="planning | tag | importance[:COLUMN]")] = "planning",
    labels: Annotated[
        Path | None,
        typer.Option(help="Label JSONL from `mechgraph label` (default: store labels)."),
    ] = None,
    layers: Annotated[str, typer.Option(help="all | 3,7,11 | 0-29 | 0-29:4")] = "all",
    estimator: Annotated[
        str,
        typer.Option(
            help="logistic | diffmeans | ridge (a layer sweep), or context | bigru | stacked "
            "(whole-trace models on --layers x --pools side by side)"
        ),
    ] = "logistic",
    c: Annotated[float | None, typer.Option("--C", help="Logistic inverse regularisation.")] = None,
    alpha: Annotated[float | None, typer.Option(help="Ridge regularisation.")] = None,
    n_splits: Annotated[int, typer.Option(help="Grouped CV folds.")] = 5,
    task: Annotated[
        str,
        typer.Option(help="auto (from the target's values) | binary | multiclass | regression"),
    ] = "auto",
    pool: Annotated[str, typer.Option(help="Pooling of the states.")] = "mean",
    pools: Annotated[
        str | None,
        typer.Option(help="Whole-trace models: pools side by side, e.g. mean,first,last."),
    ] = None,
    rules: Annotated[
        bool | None,
        typer.Option(
            "--rules/--no-rules",
            help="Whole-trace models: add the rule tagger's tag probabilities "
            "(default: only for stacked).",
        ),
    ] = None,
    group_by: Annotated[
        str,
        typer.Option(
            help="Whole-trace models: store column grouping the CV folds "
            "(auto: problem if present, else trace_id)."
        ),
    ] = "auto",
    param: Annotated[
        list[str] | None,
        typer.Option(help="Estimator parameter KEY=VALUE (repeatable), e.g. window=1."),
    ] = None,
    hook: Annotated[str, typer.Option(help="Hook kind of the states.")] = "resid_post",
    out: Annotated[Path | None, typer.Option(help="Artifact folder for the best probe.")] = None,
) -> None:
    """Train probes on a store: a grouped-CV layer sweep (or a whole-trace model), then save it."""
    from mechgraph.cli import _words
    from probes.trace_train import TRACE_ESTIMATORS, train_trace_probe

    try:
        params = _params(param or [])
        if c is not None:
            params["C"] = c
        if alpha is not None:
            params["alpha"] = alpha
        if estimator in TRACE_ESTIMATORS:
            store_ = _open(store)
            res_t = train_trace_probe(
                store_,
                target,
                estimator=estimator,
                layers=None if layers == "all" else parse_layers(layers, store_.layers),
                pools=_words(pools) if pools else (pool,),
                rules=rules,
                labels=labels,
                params=params,
                n_splits=n_splits,
                group_by=group_by,
                hook=hook,
                out=out,
            )
            typer.echo(res_t.format())
            if out is not None:
                typer.echo(f"saved the {estimator} probe to {out}")
            return
        res = train_probe(
            store,
            target,
            layers=layers,
            labels=labels,
            estimator=estimator,
            params=params,
            n_splits=n_splits,
            task=task,
            pool=pool,
            hook=hook,
            out=out,
        )
    except (MechgraphError, ValueError, OSError) as e:
        from mechgraph.cli import error_line

        typer.echo(error_line(e), err=True)
        raise typer.Exit(1) from None
    typer.echo(res.format())
    if out is not None:
        typer.echo(f"saved the layer-{res.best_layer} probe to {out}")


def _params(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict; values parse as JSON where they can.

    Examples
    --------
    >>> _params(["window=1", "C=0.05", "calibration=sigmoid", "n_components=null"])
    {'window': 1, 'C': 0.05, 'calibration': 'sigmoid', 'n_components': None}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param takes KEY=VALUE, not {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _open(store: Any) -> Any:
    from mechgraph.store import open_store

    return open_store(store)


def main() -> None:
    """Entry point of ``python -m probes.train`` (user errors: one line, exit 1)."""
    typer.run(probe_command)


if __name__ == "__main__":
    main()
