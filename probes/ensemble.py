"""The probe and the rule tagger together: rule scores stacked on out-of-fold probe scores.

* :func:`rule_features`: the rule tagger's (:mod:`mechgraph.labels.tagger`) probability
  of each of the 8 tags for every sentence of a trace, as columns.
* :class:`StackedEnsemble`: a :class:`~probes.context.ContextProbe` on the states, then a
  small logistic regression (the *meta* model) on the probe's scores, the rule
  probabilities of the step and of its two neighbours. The meta model is fitted on
  *out-of-fold* probe scores (inner folds grouped by trace), so it learns how much to
  trust the probe on traces the probe has not seen, and it is fitted without class
  weights, so its probabilities are calibrated; the binary decision threshold is the one
  of best F1 on those out-of-fold meta inputs (or a target precision, see
  :func:`probes.calibration.threshold_for_precision`).

``X`` holds the state features then, in its last ``n_rules`` columns, the rule
features (``np.hstack([states, rule_features(sentences)])``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import GroupKFold
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from probes.calibration import threshold_for_precision
from probes.context import ContextProbe, context_features
from probes.estimators import LinearProbe

__all__ = ["N_RULES", "StackedEnsemble", "rule_features"]

N_RULES = 8


def rule_features(sentences: Sequence[str]) -> np.ndarray:
    """The rule tagger's probability of each tag (:data:`~mechgraph.labels.TAGS` order).

    Examples
    --------
    >>> f = rule_features(["Let me think about how to approach this.", "2 + 2 = 4."])
    >>> f.shape, bool(np.allclose(f.sum(axis=1), 1))
    ((2, 8), True)
    """
    from mechgraph.labels.tagger import TAGS, RuleTagger

    res = RuleTagger().tag(list(sentences))
    return np.array([[r.probs[t] for t in TAGS] for r in res], dtype=np.float64).reshape(
        len(res), len(TAGS)
    )


def _best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    prec, rec, thr = precision_recall_curve(y.astype(int), p)
    f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
    return float(thr[int(np.argmax(f1))])


class StackedEnsemble(ClassifierMixin, BaseEstimator):
    """Context probe on the states + rule probabilities, stacked by a logistic meta model.

    Parameters
    ----------
    n_rules : int
        Rule-feature columns at the end of ``X``.
    window, prev_k, position, C, n_components
        Of the :class:`~probes.context.ContextProbe` on the state columns.
    inner_splits : int
        Folds (grouped by trace) of the out-of-fold probe scores the meta model sees.
    C_meta : float
        Inverse L2 strength of the meta model.
    target_precision : float or None
        Binary: set the threshold to the lowest reaching this precision on the
        out-of-fold meta inputs (None: the threshold of best F1 there).

    Attributes
    ----------
    classes_ : ndarray
    base_ : ContextProbe
    meta_ : LinearProbe
    threshold_ : float
        Binary decision threshold on ``predict_proba[:, 1]``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> n = 400; g = np.repeat(np.arange(8), 50); y = (rng.random(n) < 0.3).astype(int)
    >>> S = rng.normal(size=(n, 5)); S[:, 0] += 1.5 * y          # a weak state signal
    >>> R = np.full((n, 8), 0.05); R[:, 1] += 0.5 * y * (rng.random(n) < 0.6)  # rules
    >>> m = StackedEnsemble(window=0).fit(np.hstack([S, R]), y, groups=g)
    >>> m.score(np.hstack([S, R]), y, groups=g) > 0.85
    True
    """

    def __init__(
        self,
        n_rules: int = N_RULES,
        window: int = 1,
        prev_k: int = 0,
        position: bool = True,
        C: float = 1.0,
        inner_splits: int = 3,
        C_meta: float = 1.0,
        target_precision: float | None = None,
        n_components: int | None = None,
    ) -> None:
        self.n_rules = n_rules
        self.window = window
        self.prev_k = prev_k
        self.position = position
        self.C = C
        self.inner_splits = inner_splits
        self.C_meta = C_meta
        self.target_precision = target_precision
        self.n_components = n_components

    def _base(self) -> ContextProbe:
        return ContextProbe(
            window=self.window,
            prev_k=self.prev_k,
            position=self.position,
            C=self.C,
            n_components=self.n_components,
        )

    def _meta_X(self, scores: np.ndarray, R: np.ndarray, groups) -> np.ndarray:
        s = scores.reshape(len(R), -1)
        return np.hstack([s, context_features(R, groups, window=1, position=False)])

    def _split(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not 0 < self.n_rules < X.shape[1]:
            raise ValueError(f"n_rules={self.n_rules} must be in 1..{X.shape[1] - 1}")
        return X[:, : -self.n_rules], X[:, -self.n_rules :]

    def fit(self, X, y, groups=None):
        """Fit on ``[states, rule features]`` rows (each trace consecutive, in order)."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        S, R = self._split(X)
        g = np.zeros(len(y), dtype=int) if groups is None else np.asarray(groups)
        k = min(self.inner_splits, len(np.unique(g)))
        if k < 2:
            raise ValueError("StackedEnsemble needs at least 2 traces (groups)")
        oof = None
        for tr, te in GroupKFold(n_splits=k).split(S, y, g):
            if len(np.unique(y[tr])) != len(self.classes_):
                raise ValueError("an inner fold lacks a class; use fewer inner_splits")
            d = self._base().fit(S[tr], y[tr], g[tr]).decision_function(S[te], g[te])
            if oof is None:
                oof = np.empty((len(y), *d.shape[1:]))
            oof[te] = d
        M = self._meta_X(oof, R, g)
        self.meta_ = LinearProbe(C=self.C_meta, class_weight=None).fit(M, y)
        self.base_ = self._base().fit(S, y, g)
        self.threshold_ = 0.5
        if len(self.classes_) == 2:
            p = self.meta_.predict_proba(M)[:, 1]
            pos = y == self.classes_[1]
            self.threshold_ = (
                _best_f1_threshold(pos, p)
                if self.target_precision is None
                else threshold_for_precision(pos, p, self.target_precision)
            )
        return self

    def predict_proba(self, X, groups=None):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        S, R = self._split(X)
        M = self._meta_X(self.base_.decision_function(S, groups), R, groups)
        return self.meta_.predict_proba(M)

    def decision_function(self, X, groups=None):
        """Binary: ``logit(p) - logit(threshold_)`` (positive means planning)."""
        p = self.predict_proba(X, groups)
        if p.shape[1] != 2:
            return np.log(np.clip(p, 1e-12, 1))
        q = np.clip(p[:, 1], 1e-12, 1 - 1e-12)
        t = np.clip(self.threshold_, 1e-12, 1 - 1e-12)
        return np.log(q / (1 - q)) - np.log(t / (1 - t))

    def predict(self, X, groups=None):
        p = self.predict_proba(X, groups)
        if p.shape[1] == 2:
            return self.classes_[(p[:, 1] >= self.threshold_).astype(int)]
        return self.classes_[p.argmax(axis=1)]

    def score(self, X, y, sample_weight=None, groups=None):
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X, groups), sample_weight=sample_weight)

    def tensors(self) -> dict[str, np.ndarray]:
        """Fitted arrays by name (for :func:`probes.artifacts.save_probe`)."""
        check_is_fitted(self)
        out = {f"base.{k}": v for k, v in self.base_.tensors().items()}
        out.update({f"meta.{k}": v for k, v in self.meta_.tensors().items()})
        out["threshold_"] = np.asarray([self.threshold_])
        return out

    @classmethod
    def from_tensors(
        cls, params: dict[str, Any], tensors: dict[str, np.ndarray], classes: list | None = None
    ) -> StackedEnsemble:
        """A fitted ensemble from its parameters and :meth:`tensors`."""
        est = cls(**params)
        if "threshold_" not in tensors:
            raise KeyError(f"{cls.__name__}: tensor 'threshold_' missing from the artifact")

        def sub(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        est.base_ = ContextProbe.from_tensors(est._base().get_params(), sub("base."), classes)
        est.meta_ = LinearProbe.from_tensors(
            LinearProbe(C=est.C_meta, class_weight=None).get_params(), sub("meta."), classes
        )
        est.threshold_ = float(np.asarray(tensors["threshold_"]).ravel()[0])
        est.classes_ = est.meta_.classes_
        est.n_features_in_ = est.base_.n_features_in_ + est.n_rules
        return est
