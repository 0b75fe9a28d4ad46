"""Context features of a step: its neighbours, the steps before it, its place in the trace.

A sentence's function is often clearer from around it: "So," opens a consolidation or a
plan depending on what came before, a plan is followed by its first computation, and
where a sentence sits in the trace (setup at the start, final answer at the end) carries
information of its own. :func:`context_features` adds, to each step's own features,

* the features of the ``window`` steps before and after it (edges repeat the first / last
  step, so a trace's border adds no made-up state);
* the mean of the ``prev_k`` steps before it (``prev_k = 0``: off);
* its relative position ``i / (n - 1)`` in the trace, that squared, and two flags for
  the first and last step.

All of it uses only the unlabelled features of the step's own trace, so it is computed
before any split and cannot leak labels across folds. :class:`ContextProbe` is
:class:`~probes.estimators.LinearProbe` on those features, with an optional Platt map
fitted on grouped out-of-fold scores (calibrated probabilities), and optionally a PCA of
the standardised step features first (``n_components``: wide inputs, several layers and
pools side by side, train in seconds instead of minutes). Rows of one trace must
be consecutive and in step order; ``groups`` gives the trace of each row (None: all rows
are one trace, as when :mod:`probes.labeller` labels one trace at a time).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GroupKFold
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from probes.calibration import apply_platt, fit_platt
from probes.estimators import LinearProbe

__all__ = ["ContextProbe", "context_features", "trace_slices"]

N_POSITION = 4


def trace_slices(groups: Any, n: int) -> list[slice]:
    """The row range of each trace: ``groups`` must hold each trace's rows together.

    Examples
    --------
    >>> trace_slices(["a", "a", "b"], 3)
    [slice(0, 2, None), slice(2, 3, None)]
    >>> trace_slices(None, 4)
    [slice(0, 4, None)]
    """
    if groups is None:
        return [slice(0, n)]
    g = np.asarray(groups)
    if g.shape != (n,):
        raise ValueError(f"groups has shape {g.shape}, expected ({n},)")
    if n == 0:
        return []
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], n]
    if len(set(g[starts].tolist())) != len(starts):
        raise ValueError("the rows of each trace (group) must be consecutive")
    return [slice(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def context_features(
    X: Any,
    groups: Any = None,
    *,
    window: int = 1,
    prev_k: int = 0,
    position: bool = True,
) -> np.ndarray:
    """Each step's features with its neighbours', the previous steps' mean and position.

    Parameters
    ----------
    X : array of shape (n_steps, d)
        Step features, each trace's rows consecutive and in step order.
    groups : array of shape (n_steps,), optional
        Trace of each row (None: one trace).
    window : int
        Neighbours on each side (0: none).
    prev_k : int
        Mean of up to ``prev_k`` steps before (the first step: its own features).
    position : bool
        Append relative position, its square, first-step and last-step flags.

    Returns
    -------
    ndarray of shape (n_steps, d * (1 + 2 * window + (prev_k > 0)) + 4 * position)
        Blocks in the order: own, ``-1 .. -window``, ``+1 .. +window``, previous mean,
        position.

    Examples
    --------
    >>> X = np.arange(6.0).reshape(3, 2)
    >>> context_features(X, window=1, position=False)[1]
    array([2., 3., 0., 1., 4., 5.])
    >>> context_features(X, ["a", "a", "b"], window=0)[:, -4:]
    array([[0., 0., 1., 0.],
           [1., 1., 0., 1.],
           [0., 0., 1., 1.]])
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if window < 0 or prev_k < 0:
        raise ValueError("window and prev_k must be >= 0")
    n, d = X.shape
    n_blocks = 1 + 2 * window + (prev_k > 0)
    out = np.empty((n, d * n_blocks + N_POSITION * bool(position)))
    for sl in trace_slices(groups, n):
        T = X[sl]
        m = len(T)
        idx = np.arange(m)
        blocks = [T]
        blocks += [T[np.clip(idx - k, 0, m - 1)] for k in range(1, window + 1)]
        blocks += [T[np.clip(idx + k, 0, m - 1)] for k in range(1, window + 1)]
        if prev_k > 0:
            cs = np.vstack([np.zeros((1, d)), np.cumsum(T, axis=0)])
            lo = np.maximum(idx - prev_k, 0)
            cnt = idx - lo
            prev = (cs[idx] - cs[lo]) / np.maximum(cnt, 1)[:, None]
            prev[cnt == 0] = T[cnt == 0]
            blocks.append(prev)
        if position:
            r = idx / max(m - 1, 1)
            blocks.append(np.column_stack([r, r**2, idx == 0, idx == m - 1]).astype(float))
        out[sl] = np.hstack(blocks)
    return out


class ContextProbe(ClassifierMixin, BaseEstimator):
    """:class:`~probes.estimators.LinearProbe` on :func:`context_features`, optionally calibrated.

    Parameters
    ----------
    window, prev_k, position
        As in :func:`context_features`.
    C : float
        Inverse L2 strength of the logistic regression.
    class_weight : {"balanced", None}
    calibration : {"none", "sigmoid"}
        ``"sigmoid"`` (binary only): Platt-scale the decision scores with a map fitted on
        out-of-fold scores of ``calibration_splits`` folds grouped by trace (so the map
        sees scores of traces the probe did not see, as at test time). Balanced class
        weights push probabilities of the rare class up; the map undoes that.
    calibration_splits : int
    n_components : int or None
        Project the standardised step features on their first principal components
        (fitted on the training steps) before context is added; None: keep them all.
    max_iter : int

    Attributes
    ----------
    classes_ : ndarray
    probe_ : LinearProbe
        The logistic regression on the context features.
    pca_mean_, pca_scale_ : ndarray of shape (n_features,)
        Standardisation before the PCA (zeros and ones without PCA).
    components_ : ndarray of shape (n_components, n_features) or (0, n_features)
    platt_ : ndarray of shape (2,)
        ``(a, b)`` of ``p = sigmoid(a * score + b)``; ``(1, 0)`` when not calibrated.
    n_features_in_ : int
        Features of a step before context is added.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 4)); g = np.repeat(np.arange(10), 30)
    >>> y = (np.roll(X[:, 0], 1) > 0.5).astype(int)  # the label is in the step before
    >>> ContextProbe(window=1).fit(X, y, groups=g).score(X, y, groups=g) > 0.9
    True
    >>> LinearProbe().fit(X, y).score(X, y) < 0.7
    True
    """

    def __init__(
        self,
        window: int = 1,
        prev_k: int = 0,
        position: bool = True,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        calibration: str = "none",
        calibration_splits: int = 3,
        n_components: int | None = None,
        max_iter: int = 2000,
    ) -> None:
        self.window = window
        self.prev_k = prev_k
        self.position = position
        self.C = C
        self.class_weight = class_weight
        self.calibration = calibration
        self.calibration_splits = calibration_splits
        self.n_components = n_components
        self.max_iter = max_iter

    def _reduce(self, X: np.ndarray) -> np.ndarray:
        if len(self.components_) == 0:
            return X
        return ((X - self.pca_mean_) / self.pca_scale_) @ self.components_.T

    def _fit_reduce(self, X: np.ndarray) -> None:
        d = X.shape[1]
        self.pca_mean_, self.pca_scale_ = np.zeros(d), np.ones(d)
        self.components_ = np.zeros((0, d))
        if self.n_components is None or self.n_components >= min(X.shape):
            return
        from sklearn.utils.extmath import randomized_svd

        self.pca_mean_ = X.mean(axis=0)
        sd = X.std(axis=0)
        self.pca_scale_ = np.where(sd > 1e-12, sd, 1.0)
        Z = (X - self.pca_mean_) / self.pca_scale_
        _, _, vt = randomized_svd(Z, int(self.n_components), random_state=0)
        self.components_ = vt

    def _features(self, X, groups) -> np.ndarray:
        return context_features(
            self._reduce(X), groups, window=self.window, prev_k=self.prev_k, position=self.position
        )

    def _new_probe(self) -> LinearProbe:
        return LinearProbe(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter)

    def fit(self, X, y, groups=None):
        """Fit on steps ``X`` (each trace's rows consecutive, in order) and labels ``y``."""
        if self.calibration not in ("none", "sigmoid"):
            raise ValueError(f"calibration must be 'none' or 'sigmoid', not {self.calibration!r}")
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        self._fit_reduce(X)
        Z = self._features(X, groups)
        self.probe_ = self._new_probe().fit(Z, y)
        self.platt_ = np.array([1.0, 0.0])
        if self.calibration == "sigmoid":
            if len(self.classes_) != 2:
                raise ValueError("calibration='sigmoid' needs a binary target")
            g = np.zeros(len(y), dtype=int) if groups is None else np.asarray(groups)
            k = min(self.calibration_splits, len(np.unique(g)))
            if k < 2:
                raise ValueError("calibration needs at least 2 traces (groups)")
            oof = np.empty(len(y))
            for tr, te in GroupKFold(n_splits=k).split(Z, y, g):
                oof[te] = self._new_probe().fit(Z[tr], y[tr]).decision_function(Z[te])
            self.platt_ = fit_platt(oof, y == self.classes_[1])
        return self

    def decision_function(self, X, groups=None):
        """Uncalibrated scores (binary: shape ``(n,)``; else ``(n, n_classes)``)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.probe_.decision_function(self._features(X, groups))

    def predict_proba(self, X, groups=None):
        d = self.decision_function(X, groups)
        if d.ndim == 1:
            p = apply_platt(d, self.platt_)
            return np.column_stack([1 - p, p])
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X, groups=None):
        p = self.predict_proba(X, groups)
        if p.shape[1] == 2 and self.calibration == "none":
            return self.classes_[(self.decision_function(X, groups) > 0).astype(int)]
        return self.classes_[p.argmax(axis=1)]

    def score(self, X, y, sample_weight=None, groups=None):
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X, groups), sample_weight=sample_weight)

    # -- artifacts (safetensors): plain arrays only
    def tensors(self) -> dict[str, np.ndarray]:
        """Fitted arrays by name (for :func:`probes.artifacts.save_probe`)."""
        check_is_fitted(self)
        out = {f"probe.{k}": v for k, v in self.probe_.tensors().items()}
        out["platt_"] = np.asarray(self.platt_)
        out.update(
            pca_mean_=self.pca_mean_, pca_scale_=self.pca_scale_, components_=self.components_
        )
        out["n_features_in_"] = np.asarray([self.n_features_in_])
        return out

    @classmethod
    def from_tensors(
        cls, params: dict[str, Any], tensors: dict[str, np.ndarray], classes: list | None = None
    ) -> ContextProbe:
        """A fitted probe from its parameters and :meth:`tensors`."""
        est = cls(**params)
        inner = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("probe.")}
        for key in ("platt_", "n_features_in_", "pca_mean_", "pca_scale_", "components_"):
            if key not in tensors:
                raise KeyError(f"{cls.__name__}: tensor {key!r} missing from the artifact")
        est.probe_ = LinearProbe.from_tensors(est._new_probe().get_params(), inner, classes)
        est.platt_ = np.asarray(tensors["platt_"], dtype=np.float64)
        est.n_features_in_ = int(np.asarray(tensors["n_features_in_"]).ravel()[0])
        for key in ("pca_mean_", "pca_scale_"):
            setattr(est, key, np.asarray(tensors[key], dtype=np.float64))
        est.components_ = np.asarray(tensors["components_"], dtype=np.float64).reshape(
            -1, est.n_features_in_
        )
        est.classes_ = est.probe_.classes_
        return est
