"""scikit-learn estimators for probing step states.

* :class:`LinearProbe`: standardise, then logistic regression (a classifier).
* :class:`RidgeProbe`: standardise, then ridge regression (e.g. importance scores).
* :class:`DiffMeansProbe`: the difference-of-means direction (the steering vector of
  Venhoff et al. 2025, "Understanding reasoning in thinking language models via steering
  vectors"): ``mean(X[y == c]) - mean(X[y != c])`` per class, a projection on it, and a
  threshold / softmax calibrated on the training projections.

All follow the scikit-learn contract: ``__init__`` only stores parameters, ``fit``
returns ``self``, fitted attributes end in ``_``, :func:`sklearn.base.clone` works.
Fitted weights are plain arrays (:meth:`tensors` / ``from_tensors``) so that
:mod:`probes.artifacts` saves them in safetensors, never pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mechgraph.errors import ConfigError

__all__ = [
    "ESTIMATORS",
    "DiffMeansProbe",
    "LinearProbe",
    "RidgeProbe",
    "estimator_class",
    "make_estimator",
]


def _standardise(X: np.ndarray, on: bool, w=None) -> tuple[np.ndarray, np.ndarray]:
    """(weighted) mean and std of each feature; zeros and ones when ``on`` is False."""
    w = np.ones(len(X)) if w is None else np.asarray(w, dtype=np.float64)
    if w.shape != (len(X),) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(
            "Sample weights must be non-negative, one per sample, and contain at least "
            "one non-zero number."
        )
    if not on:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    mean = np.average(X, axis=0, weights=w)
    scale = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=w))
    return mean, np.where(scale > 1e-12, scale, 1.0)


class _ScoresToClassesMixin:
    """``predict_proba`` and ``predict`` from ``decision_function`` (sigmoid / softmax)."""

    def predict_proba(self, X):
        d = self.decision_function(X)
        if d.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-np.clip(d, -500, 500)))
            return np.column_stack([1 - p, p])
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        d = self.decision_function(X)
        idx = (d > 0).astype(int) if d.ndim == 1 else d.argmax(axis=1)
        return self.classes_[idx]


class _TensorMixin:
    """Export / import the fitted state as a dict of arrays (for safetensors)."""

    _tensor_attrs: tuple[str, ...] = ()

    def tensors(self) -> dict[str, np.ndarray]:
        """Fitted arrays by name (``classes_`` is kept in the config, not here)."""
        check_is_fitted(self)
        return {a: np.asarray(getattr(self, a)) for a in self._tensor_attrs}

    @classmethod
    def from_tensors(
        cls, params: dict[str, Any], tensors: dict[str, np.ndarray], classes: list | None = None
    ):
        """A fitted estimator from its parameters and :meth:`tensors`."""
        est = cls(**params)
        for a in cls._tensor_attrs:
            if a not in tensors:
                raise KeyError(f"{cls.__name__}: tensor {a!r} missing from the artifact")
            setattr(est, a, np.asarray(tensors[a]))
        est.n_features_in_ = int(np.asarray(tensors[cls._tensor_attrs[0]]).shape[-1])
        if classes is not None:
            est.classes_ = np.asarray(classes)
        return est


class LinearProbe(_ScoresToClassesMixin, _TensorMixin, ClassifierMixin, BaseEstimator):
    """Standardise the features, then logistic regression.

    Parameters
    ----------
    C : float
        Inverse L2 strength of the logistic regression.
    class_weight : {"balanced", None}
        ``"balanced"`` reweights rare classes (planning is about a fifth of the steps).
    standardize : bool
        Centre and scale each feature on the training data first.
    max_iter : int
        Iterations of the solver.

    Attributes
    ----------
    classes_ : ndarray
    coef_ : ndarray of shape (n_classes or 1, n_features)
        Weights in the *original* feature space (``scale_`` folded in).
    intercept_ : ndarray
    mean_, scale_ : ndarray of shape (n_features,)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)); y = (X[:, 0] > 0).astype(int)
    >>> LinearProbe().fit(X, y).score(X, y) > 0.95
    True
    """

    _tensor_attrs = ("coef_", "intercept_", "mean_", "scale_")

    def __init__(
        self,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        standardize: bool = True,
        max_iter: int = 2000,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.standardize = standardize
        self.max_iter = max_iter

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("LinearProbe needs samples of at least 2 classes; got 1 class")
        self.mean_, self.scale_ = _standardise(X, self.standardize, sample_weight)
        lr = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter)
        lr.fit((X - self.mean_) / self.scale_, y, sample_weight=sample_weight)
        self.coef_ = lr.coef_ / self.scale_
        self.intercept_ = lr.intercept_ - self.coef_ @ self.mean_
        self.n_iter_ = lr.n_iter_
        return self

    def decision_function(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        d = X @ self.coef_.T + self.intercept_
        return d.ravel() if d.shape[1] == 1 else d


class RidgeProbe(_TensorMixin, RegressorMixin, BaseEstimator):
    """Standardise the features, then ridge regression (for importance scores).

    Parameters
    ----------
    alpha : float
        L2 strength (on standardised features).
    standardize : bool

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
        Weights in the original feature space.
    intercept_ : float
    mean_, scale_ : ndarray

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 3)); y = 2 * X[:, 1] + 0.1
    >>> RidgeProbe(alpha=1e-3).fit(X, y).score(X, y) > 0.99
    True
    """

    _tensor_attrs = ("coef_", "intercept_", "mean_", "scale_")

    def __init__(self, alpha: float = 10.0, standardize: bool = True) -> None:
        self.alpha = alpha
        self.standardize = standardize

    def fit(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self.mean_, self.scale_ = _standardise(X, self.standardize, sample_weight)
        r = Ridge(alpha=self.alpha).fit((X - self.mean_) / self.scale_, y, sample_weight)
        self.coef_ = np.asarray(r.coef_, dtype=np.float64) / self.scale_
        self.intercept_ = np.asarray(r.intercept_ - self.coef_ @ self.mean_, dtype=np.float64)
        return self

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.coef_.T + self.intercept_


class DiffMeansProbe(_ScoresToClassesMixin, _TensorMixin, ClassifierMixin, BaseEstimator):
    """Difference-of-means direction(s), as steering vectors and as a classifier.

    For each class ``c`` the vector is ``mean(X[y == c]) - mean(X[y != c])`` (binary:
    one vector, positive class minus negative class). A sample's score on a class is its
    projection on the unit direction; the classifier calibrates a logistic link
    ``sigmoid(a * (proj - t))`` per direction on the training projections (binary), or a
    softmax over the per-class calibrated scores (multi-class).

    Parameters
    ----------
    reference : {"rest", "all"}
        Subtract the mean of the other samples (``"rest"``) or of all samples
        (``"all"``, the form of Venhoff et al.).

    Attributes
    ----------
    classes_ : ndarray
    vectors_ : ndarray of shape (n_directions, n_features)
        Raw difference-of-means vectors (the steering vectors, in activation units).
    directions_ : ndarray of shape (n_directions, n_features)
        Unit-norm versions.
    thresholds_, slopes_ : ndarray of shape (n_directions,)
        Logistic calibration of the projections.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 8)); y = (rng.random(300) < 0.3).astype(int)
    >>> X[y == 1] += 2.0
    >>> p = DiffMeansProbe().fit(X, y)
    >>> p.score(X, y) > 0.9, p.vectors_.shape
    (True, (1, 8))
    """

    _tensor_attrs = ("vectors_", "directions_", "thresholds_", "slopes_")

    def __init__(self, reference: str = "rest") -> None:
        self.reference = reference

    def fit(self, X, y):
        if self.reference not in ("rest", "all"):
            raise ValueError(f"reference must be 'rest' or 'all', got {self.reference!r}")
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("DiffMeansProbe needs samples of at least 2 classes; got 1 class")
        pos = self.classes_[1:] if len(self.classes_) == 2 else self.classes_
        vecs, thr, slope = [], [], []
        for c in pos:
            m = y == c
            ref = X[~m].mean(axis=0) if self.reference == "rest" else X.mean(axis=0)
            v = X[m].mean(axis=0) - ref
            n = np.linalg.norm(v)
            u = v / n if n > 0 else v
            proj = X @ u
            lr = LogisticRegression(class_weight="balanced", C=1e4, max_iter=1000)
            s = proj.std() or 1.0
            lr.fit(((proj - proj.mean()) / s)[:, None], m.astype(int))
            a = float(lr.coef_[0, 0]) / s
            b = float(lr.intercept_[0])
            t = proj.mean() - b / a if a != 0 else proj.mean()
            vecs.append(v)
            thr.append(t)
            slope.append(a)
        self.vectors_ = np.asarray(vecs)
        norms = np.linalg.norm(self.vectors_, axis=1, keepdims=True)
        self.directions_ = self.vectors_ / np.where(norms > 0, norms, 1.0)
        self.thresholds_ = np.asarray(thr)
        self.slopes_ = np.asarray(slope)
        return self

    def project(self, X):
        """Projections on the unit directions: ``(n_samples, n_directions)``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.directions_.T

    def decision_function(self, X):
        check_is_fitted(self)
        d = self.slopes_ * (self.project(X) - self.thresholds_)
        return d[:, 0] if len(self.classes_) == 2 else d


ESTIMATORS: dict[str, type] = {
    "logistic": LinearProbe,
    "diffmeans": DiffMeansProbe,
    "ridge": RidgeProbe,
}


def estimator_class(name: str) -> type:
    """The estimator class of a name; :class:`~mechgraph.errors.ConfigError` if unknown."""
    if name not in ESTIMATORS:
        raise ConfigError(f"unknown estimator {name!r}; use one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[name]


def make_estimator(name: str, **params: Any):
    """An estimator by name: ``logistic``, ``diffmeans`` or ``ridge``.

    Examples
    --------
    >>> make_estimator("logistic", C=0.1).get_params()["C"]
    0.1
    """
    return estimator_class(name)(**params)
