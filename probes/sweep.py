"""Layer sweeps with cross-validation grouped by trace.

Steps of one trace are correlated (same problem, same wording), so a probe is only
judged on traces it never saw: folds come from :class:`sklearn.model_selection.GroupKFold`
with the trace id as group, and every fold is checked to share no trace between train
and test. Metrics are computed on the pooled out-of-fold predictions (every step is
predicted once, by a probe that did not see its trace), with the spread over folds.

Metrics by task:

* ``binary``: F1 (positive class), AUROC, accuracy, balanced accuracy, Brier score;
* ``multiclass``: macro F1, accuracy, macro one-vs-rest AUROC;
* ``regression``: Spearman rho, Pearson r, R^2.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import GroupKFold

from mechgraph.errors import ConfigError
from probes.calibration import brier_score
from probes.estimators import estimator_class, make_estimator

__all__ = [
    "CVResult",
    "SweepConfig",
    "SweepResult",
    "cross_validate_probe",
    "grouped_folds",
    "infer_task",
    "layer_sweep",
    "probe_metrics",
]

TASKS = ("binary", "multiclass", "regression")
PRIMARY = {"binary": "auroc", "multiclass": "macro_f1", "regression": "spearman"}


@dataclass
class SweepConfig:
    """Settings of a layer sweep (saved with the probe artifact).

    Parameters
    ----------
    estimator : {"logistic", "diffmeans", "ridge"}
    params : dict
        Estimator parameters (e.g. ``{"C": 0.1}``).
    n_splits : int
        Folds of the grouped cross-validation (at most the number of traces).
    task : {"auto", "binary", "multiclass", "regression"}
        ``auto``: regression for a float target with many values, else by class count.

    Examples
    --------
    >>> SweepConfig(estimator="diffmeans", n_splits=4).n_splits
    4
    """

    estimator: str = "logistic"
    params: dict[str, Any] = field(default_factory=dict)
    n_splits: int = 5
    task: str = "auto"

    def __post_init__(self) -> None:
        estimator_class(self.estimator)
        if self.n_splits < 2:
            raise ConfigError(f"n_splits must be >= 2, got {self.n_splits}")
        if self.task not in ("auto", *TASKS):
            raise ConfigError(f"task must be auto or one of {TASKS}, got {self.task!r}")
        if self.task == "regression" and self.estimator != "ridge":
            raise ConfigError("a regression target needs estimator='ridge'")
        if self.task in ("binary", "multiclass") and self.estimator == "ridge":
            raise ConfigError("estimator='ridge' is for regression targets")
        try:
            make_estimator(self.estimator, **self.params)
        except TypeError as e:
            raise ConfigError(f"invalid parameters for {self.estimator!r}: {e}") from None


def infer_task(y: np.ndarray) -> str:
    """``binary``, ``multiclass`` or ``regression`` from the values of ``y``.

    Examples
    --------
    >>> infer_task(np.array([0, 1, 1])), infer_task(np.array([0.1, 0.5, 0.7, 0.2]))
    ('binary', 'regression')
    """
    y = np.asarray(y)
    if y.dtype.kind == "f" and not np.all(np.equal(np.mod(y[np.isfinite(y)], 1), 0)):
        return "regression"
    n = len(np.unique(y))
    if n < 2:
        raise ConfigError("the target has a single value; nothing to probe")
    return "binary" if n == 2 else "multiclass"


def grouped_folds(groups: Sequence[Any], n_splits: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """GroupKFold folds; raises if a group would appear on both sides of a fold.

    Examples
    --------
    >>> g = ["a", "a", "b", "b", "c"]
    >>> sorted(sorted({g[i] for i in te}) for _, te in grouped_folds(g, 3))
    [['a'], ['b'], ['c']]
    """
    g = np.asarray(groups)
    n_groups = len(np.unique(g))
    if n_groups < n_splits:
        raise ConfigError(
            f"{n_splits} folds need at least {n_splits} traces; the data has {n_groups}"
        )
    folds = list(GroupKFold(n_splits=n_splits).split(np.zeros(len(g)), groups=g))
    for k, (tr, te) in enumerate(folds):
        leak = set(g[tr].tolist()) & set(g[te].tolist())
        if leak:  # a guard: GroupKFold never does this
            raise RuntimeError(f"fold {k}: traces in both train and test: {sorted(leak)[:5]}")
    return folds


def probe_metrics(task: str, y: np.ndarray, pred: np.ndarray, score: np.ndarray | None):
    """Metrics of one set of predictions (see the module docstring)."""
    out: dict[str, float] = {}
    if task == "regression":
        from scipy.stats import pearsonr, spearmanr

        const = np.std(pred) == 0 or np.std(y) == 0
        out["spearman"] = math.nan if const else float(spearmanr(y, pred).statistic)
        out["pearson"] = math.nan if const else float(pearsonr(y, pred).statistic)
        out["r2"] = float(r2_score(y, pred))
        return out
    if task == "binary":
        out["f1"] = float(f1_score(y, pred, zero_division=0))
        out["auroc"] = (
            float(roc_auc_score(y, score))
            if score is not None and len(np.unique(y)) == 2
            else math.nan
        )
        out["accuracy"] = float(accuracy_score(y, pred))
        out["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
        out["brier"] = (
            brier_score(y == y.max(), score) if score is not None and len(y) else math.nan
        )
        return out
    out["macro_f1"] = float(f1_score(y, pred, average="macro", zero_division=0))
    out["accuracy"] = float(accuracy_score(y, pred))
    try:
        out["auroc"] = float(roc_auc_score(y, score, multi_class="ovr", average="macro"))
    except (ValueError, TypeError):
        out["auroc"] = math.nan
    return out


@dataclass
class CVResult:
    """Out-of-fold predictions and metrics of one grouped cross-validation."""

    task: str
    metrics: dict[str, float]
    fold_metrics: list[dict[str, float]]
    pred: np.ndarray
    score: np.ndarray | None

    def summary(self) -> dict[str, float]:
        """Pooled metrics plus ``<metric>_std`` over folds."""
        out = dict(self.metrics)
        for k in self.metrics:
            vals = [m[k] for m in self.fold_metrics if not math.isnan(m.get(k, math.nan))]
            out[f"{k}_std"] = float(np.std(vals)) if vals else math.nan
        return out

    def intervals(self, confidence: float = 0.95, seed: int = 0) -> dict[str, list[float]]:
        """``{metric: [low, high]}``: percentile bootstrap interval of the fold mean.

        ``scipy.stats.bootstrap`` over the folds (2,000 resamples); NaN folds (a test
        fold with one class has no AUROC) are left out, and a metric with fewer than 3
        folds, or no spread, gets the plain mean at both ends.

        Examples
        --------
        >>> r = CVResult("binary", {}, [{"f1": v} for v in (0.6, 0.7, 0.8, 0.7)], None, None)
        >>> lo, hi = r.intervals()["f1"]; bool(lo < 0.7 < hi)
        True
        """
        from scipy.stats import bootstrap

        out = {}
        for k in self.fold_metrics[0] if self.fold_metrics else ():
            v = np.array([m[k] for m in self.fold_metrics], dtype=float)
            v = v[~np.isnan(v)]
            if len(v) < 3 or np.ptp(v) == 0:
                mid = float(v.mean()) if len(v) else math.nan
                out[k] = [mid, mid]
                continue
            ci = bootstrap(
                (v,), np.mean, confidence_level=confidence, n_resamples=2000,
                method="percentile", random_state=seed,
            ).confidence_interval  # fmt: skip
            out[k] = [float(ci.low), float(ci.high)]
        return out


def _takes_groups(est: Any) -> bool:
    import inspect

    return "groups" in inspect.signature(est.fit).parameters


def _scores(est: Any, X: np.ndarray, task: str, **g: Any) -> np.ndarray | None:
    if task == "regression" or not hasattr(est, "predict_proba"):
        return None
    p = est.predict_proba(X, **g)
    return p[:, 1] if task == "binary" else p


def cross_validate_probe(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    groups: Sequence[Any],
    n_splits: int = 5,
    task: str = "auto",
    traces: Sequence[Any] | None = None,
) -> CVResult:
    """Grouped cross-validation of one estimator on one feature matrix.

    Folds hold whole ``groups``. ``traces`` (the trace of each row; rows of a trace
    consecutive and in step order) is passed as ``groups`` to the fit and predictions of
    estimators that read whole traces (:class:`~probes.context.ContextProbe`,
    :class:`~probes.sequence.BiGRUTagger`, :class:`~probes.ensemble.StackedEnsemble`),
    so that folds can be coarser than traces (e.g. both traces of a problem).

    Examples
    --------
    >>> from probes.estimators import LinearProbe
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(120, 4)); y = (X[:, 0] > 0).astype(int)
    >>> groups = np.repeat(np.arange(12), 10)
    >>> cross_validate_probe(LinearProbe(), X, y, groups, 4).metrics["auroc"] > 0.95
    True
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if len(X) != len(y) or len(y) != len(groups):
        raise ConfigError(f"X, y and groups differ in length: {len(X)}, {len(y)}, {len(groups)}")
    tr_ids = None
    if traces is not None and _takes_groups(estimator):
        tr_ids = np.asarray(traces)
        if len(tr_ids) != len(y):
            raise ConfigError(f"traces has {len(tr_ids)} rows, y has {len(y)}")
        split = pd.Series(np.asarray(groups)).groupby(tr_ids).nunique()
        if (split > 1).any():
            raise ConfigError(
                f"trace {split.index[split > 1][0]!r} spans several CV groups; "
                "a fold must hold whole traces"
            )
    task = infer_task(y) if task == "auto" else task
    pred = np.empty(len(y), dtype=np.float64 if task == "regression" else y.dtype)
    classes = np.unique(y)
    score = None
    if task == "binary":
        score = np.zeros(len(y))
    elif task == "multiclass":
        score = np.zeros((len(y), len(classes)))
    folds_m = []
    for tr, te in grouped_folds(groups, n_splits):
        if task != "regression" and len(np.unique(y[tr])) < 2:
            raise ConfigError("a training fold has a single class; use fewer folds")
        g_tr = {} if tr_ids is None else {"groups": tr_ids[tr]}
        g_te = {} if tr_ids is None else {"groups": tr_ids[te]}
        est = clone(estimator).fit(X[tr], y[tr], **g_tr)
        pred[te] = est.predict(X[te], **g_te)
        s = _scores(est, X[te], task, **g_te)
        if task == "multiclass" and s is not None:
            full = np.zeros((len(te), len(classes)))
            full[:, np.searchsorted(classes, est.classes_)] = s
            s = full
        if score is not None and s is not None:
            score[te] = s
        with warnings.catch_warnings():  # a test fold may hold a single class
            warnings.simplefilter("ignore", UserWarning)
            folds_m.append(probe_metrics(task, y[te], pred[te], s))
    return CVResult(task, probe_metrics(task, y, pred, score), folds_m, pred, score)


@dataclass
class SweepResult:
    """A layer sweep: one row of metrics per layer."""

    table: pd.DataFrame
    task: str
    config: SweepConfig
    n_steps: int
    n_traces: int
    results: dict[int, CVResult] = field(default_factory=dict, repr=False)

    @property
    def primary(self) -> str:
        """The metric that picks the best layer (AUROC, macro F1 or Spearman)."""
        return PRIMARY[self.task]

    @property
    def best_layer(self) -> int:
        col = self.table[self.primary].fillna(-np.inf)
        return int(self.table.loc[col.idxmax(), "layer"])

    def format(self, digits: int = 3) -> str:
        """The table as aligned text (what ``probes.train`` prints)."""
        cols = [
            "layer",
            *[c for c in self.table.columns if c != "layer" and not c.endswith("_std")],
        ]
        lines = [
            f"{self.task} probe ({self.config.estimator}), grouped {self.config.n_splits}-fold CV "
            f"over {self.n_traces} groups (traces), {self.n_steps} steps"
        ]
        lines.append("  ".join(f"{c:>10}" for c in cols))
        for _, row in self.table.iterrows():
            cells = []
            for c in cols:
                v = row[c]
                if c == "layer":
                    cells.append(f"{int(v):>10d}")
                else:
                    sd = row.get(f"{c}_std", math.nan)
                    txt = f"{v:.{digits}f}" + ("" if math.isnan(sd) else f"±{sd:.2f}")
                    cells.append(f"{txt:>10}")
            lines.append("  ".join(cells) + ("  *" if int(row["layer"]) == self.best_layer else ""))
        lines.append(f"* best layer by {self.primary}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "config": asdict(self.config),
            "n_steps": self.n_steps,
            "n_traces": self.n_traces,
            "best_layer": self.best_layer,
            "primary": self.primary,
            "table": self.table.replace({np.nan: None}).to_dict(orient="records"),
        }


def layer_sweep(
    states: Mapping[int, np.ndarray] | Callable[[int], np.ndarray],
    y: np.ndarray,
    groups: Sequence[Any],
    layers: Sequence[int] | None = None,
    config: SweepConfig | None = None,
) -> SweepResult:
    """Grouped cross-validation of a probe at every layer.

    Parameters
    ----------
    states : mapping layer -> (n_steps, d) array, or a function ``layer -> array``
        E.g. ``store.states`` (reads one layer at a time).
    y : (n_steps,) array
        Target per step (bool/int/str classes, or floats for regression).
    groups : (n_steps,) sequence
        Trace id of each step.
    layers : sequence of int, optional
        Default: the keys of ``states``.
    config : SweepConfig, optional

    Returns
    -------
    SweepResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200); g = np.repeat(np.arange(20), 10)
    >>> states = {0: rng.normal(size=(200, 6)), 1: rng.normal(size=(200, 6)) + y[:, None]}
    >>> res = layer_sweep(states, y, g, config=SweepConfig(n_splits=4))
    >>> res.best_layer
    1
    """
    cfg = config or SweepConfig()
    y = np.asarray(y)
    if layers is None:
        if callable(states):
            raise ConfigError("give the layers to sweep")
        layers = sorted(states)
    get = states if callable(states) else states.__getitem__
    task = infer_task(y) if cfg.task == "auto" else cfg.task
    if task == "regression" and cfg.estimator != "ridge":
        raise ConfigError(f"the target is continuous; use estimator='ridge', not {cfg.estimator!r}")
    if task != "regression" and cfg.estimator == "ridge":
        raise ConfigError("estimator='ridge' needs a continuous target")
    est = make_estimator(cfg.estimator, **cfg.params)
    rows, results = [], {}
    for layer in layers:
        X = np.asarray(get(layer), dtype=np.float32)
        if X.shape[0] != len(y):
            raise ConfigError(f"layer {layer}: {X.shape[0]} rows of states for {len(y)} targets")
        res = cross_validate_probe(est, X, y, groups, cfg.n_splits, task)
        results[int(layer)] = res
        rows.append({"layer": int(layer), **res.summary()})
    table = pd.DataFrame(rows)
    return SweepResult(table, task, cfg, len(y), len(np.unique(np.asarray(groups))), results)
