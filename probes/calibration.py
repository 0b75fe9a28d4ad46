"""Calibration of planning probabilities: Platt maps, Brier score, reliability, thresholds.

* :func:`fit_platt` / :func:`apply_platt`: ``p = sigmoid(a * score + b)`` fitted by
  logistic regression on held-out scores (the map scikit-learn's
  :class:`~sklearn.calibration.CalibratedClassifierCV` fits with ``method="sigmoid"``,
  kept as two numbers so that an artifact stays plain arrays).
* :func:`brier_score`, :func:`reliability_curve`: how far probabilities are from
  frequencies (the data of a reliability diagram).
* :func:`threshold_for_precision`: the lowest threshold whose precision reaches a target,
  chosen on training (or inner out-of-fold) predictions, then applied to test ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_curve

__all__ = [
    "apply_platt",
    "brier_score",
    "fit_platt",
    "reliability_curve",
    "threshold_for_precision",
]


def fit_platt(scores: Any, y: Any) -> np.ndarray:
    """``(a, b)`` of the Platt map ``p = sigmoid(a * score + b)`` (unregularised).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = rng.normal(size=2000); y = rng.random(2000) < 1 / (1 + np.exp(-2 * s))
    >>> a, b = fit_platt(s, y)
    >>> bool(abs(a - 2) < 0.4 and abs(b) < 0.2)
    True
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        return np.array([0.0, float(np.log((y.mean() + 1e-6) / (1 - y.mean() + 1e-6)))])
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(s, y)
    return np.array([float(lr.coef_[0, 0]), float(lr.intercept_[0])])


def apply_platt(scores: Any, ab: Any) -> np.ndarray:
    """Probabilities from scores with a Platt map ``(a, b)``.

    Examples
    --------
    >>> apply_platt([0.0, 100.0], [1.0, 0.0]).tolist()
    [0.5, 1.0]
    """
    a, b = np.asarray(ab, dtype=np.float64)[:2]
    z = a * np.asarray(scores, dtype=np.float64) + b
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def brier_score(y: Any, p: Any) -> float:
    """Mean squared error of probabilities ``p`` against 0/1 outcomes ``y``.

    Examples
    --------
    >>> brier_score([0, 1], [0.0, 0.5])
    0.125
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def reliability_curve(y: Any, p: Any, n_bins: int = 10) -> dict[str, list[float]]:
    """Reliability-diagram data on equal-width bins of ``p``: empty bins left out.

    Returns
    -------
    dict
        ``bin_lower``, ``bin_upper``, ``mean_predicted``, ``fraction_positive``, ``count``
        (one entry per non-empty bin) and ``ece`` (expected calibration error: the
        count-weighted mean gap between the last two).

    Examples
    --------
    >>> r = reliability_curve([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2)
    >>> r["fraction_positive"], r["count"]
    ([0.0, 1.0], [2, 2])
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    out: dict[str, Any] = {k: [] for k in ("bin_lower", "bin_upper", "mean_predicted")}
    out.update(fraction_positive=[], count=[])
    ece = 0.0
    for k in range(n_bins):
        m = b == k
        if not m.any():
            continue
        mp, fp = float(p[m].mean()), float(y[m].mean())
        out["bin_lower"].append(float(edges[k]))
        out["bin_upper"].append(float(edges[k + 1]))
        out["mean_predicted"].append(mp)
        out["fraction_positive"].append(fp)
        out["count"].append(int(m.sum()))
        ece += m.sum() * abs(mp - fp)
    out["ece"] = float(ece / max(len(p), 1))
    return out


def threshold_for_precision(y: Any, p: Any, target: float = 0.8) -> float:
    """Lowest threshold at which the precision of ``p >= t`` reaches ``target``.

    Choose it on data the test steps are not in (training or inner out-of-fold
    predictions). When no threshold reaches the target, the one of highest precision.

    Examples
    --------
    >>> threshold_for_precision([0, 0, 1, 1, 0, 1], [0.1, 0.2, 0.6, 0.7, 0.65, 0.9], 1.0)
    0.7
    """
    prec, _, thr = precision_recall_curve(np.asarray(y).astype(int), np.asarray(p, dtype=float))
    prec = prec[:-1]
    ok = np.flatnonzero(prec >= target)
    k = int(ok[0]) if len(ok) else int(np.argmax(prec))
    return float(thr[k])
