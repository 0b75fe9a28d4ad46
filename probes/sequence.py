"""A light sequence model over the sentences of a trace: a small bidirectional GRU.

Each step's features are standardised, projected to ``proj`` dimensions (with dropout),
read by a one-layer bidirectional GRU over the trace, and mapped to class scores per
step. A trace is one sequence: the model sees the whole trace on both sides of a step,
which a window of neighbours (:mod:`probes.context`) only approximates. It trains with
Adam on the class-weighted cross-entropy in a few seconds to a minute on a CPU (torch,
imported on first use). Rows of one trace must be consecutive and in step order;
``groups`` gives each row's trace (None: one trace).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from probes.context import trace_slices
from probes.estimators import _standardise

__all__ = ["BiGRUTagger"]


def _module(d_in: int, proj: int, hidden: int, n_out: int, dropout: float):
    import torch
    from torch import nn

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(dropout)
            self.proj = nn.Linear(d_in, proj)
            self.gru = nn.GRU(proj, hidden, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * hidden + proj, n_out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (1, T, d_in)
            h = torch.tanh(self.proj(self.drop(x)))
            s, _ = self.gru(self.drop(h))
            return self.out(torch.cat([self.drop(s), h], dim=-1))[0]

    return _Net()


class BiGRUTagger(ClassifierMixin, BaseEstimator):
    """Bidirectional GRU over a trace's steps (binary or multi-class).

    Parameters
    ----------
    proj : int
        Size of the linear projection of the step features.
    hidden : int
        GRU units per direction.
    epochs : int
        Passes over all traces (one Adam step per trace).
    lr, weight_decay : float
        Adam's learning rate and (decoupled) weight decay.
    dropout : float
        On the input, the projection and the GRU outputs.
    class_weight : {"balanced", None}
    seed : int

    Attributes
    ----------
    classes_ : ndarray
    mean_, scale_ : ndarray of shape (n_features,)
    state_ : dict of ndarray
        The network's weights.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 3)); g = np.repeat(np.arange(8), 50)
    >>> y = (np.roll(X[:, 0], 2) > 0.3).astype(int)  # the label is two steps back
    >>> m = BiGRUTagger(epochs=40, dropout=0.0).fit(X, y, groups=g)
    >>> m.score(X, y, groups=g) > 0.8
    True
    """

    def __init__(
        self,
        proj: int = 64,
        hidden: int = 32,
        epochs: int = 60,
        lr: float = 3e-3,
        weight_decay: float = 1e-2,
        dropout: float = 0.3,
        class_weight: str | None = "balanced",
        seed: int = 0,
    ) -> None:
        self.proj = proj
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.class_weight = class_weight
        self.seed = seed

    def _net(self, d_in: int):
        return _module(d_in, self.proj, self.hidden, len(self.classes_), self.dropout)

    def fit(self, X, y, groups=None):
        """Fit on steps ``X`` (each trace's rows consecutive, in order) and labels ``y``."""
        import torch

        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("BiGRUTagger needs samples of at least 2 classes; got 1 class")
        self.mean_, self.scale_ = _standardise(X, True)
        Z = ((X - self.mean_) / self.scale_).astype(np.float32)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        net = self._net(X.shape[1])
        counts = np.bincount(yi, minlength=len(self.classes_)).astype(np.float64)
        w = (
            len(yi) / (len(counts) * np.maximum(counts, 1))
            if self.class_weight == "balanced"
            else np.ones(len(counts))
        )
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(w, dtype=torch.float32))
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        seqs = [
            (torch.from_numpy(Z[s])[None], torch.from_numpy(yi[s]).long())
            for s in trace_slices(groups, len(Z))
        ]
        net.train()
        for _ in range(self.epochs):
            for k in rng.permutation(len(seqs)):
                xb, yb = seqs[k]
                opt.zero_grad()
                loss_fn(net(xb), yb).backward()
                opt.step()
        self.state_ = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
        return self

    def _logits(self, X, groups) -> np.ndarray:
        import torch

        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        Z = ((X - self.mean_) / self.scale_).astype(np.float32)
        net = self._net(X.shape[1])
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.state_.items()})
        net.eval()
        out = np.empty((len(Z), len(self.classes_)))
        with torch.no_grad():
            for s in trace_slices(groups, len(Z)):
                out[s] = net(torch.from_numpy(Z[s])[None]).numpy()
        return out

    def decision_function(self, X, groups=None):
        """Class scores; binary: the logit difference, shape ``(n,)``."""
        d = self._logits(X, groups)
        return d[:, 1] - d[:, 0] if d.shape[1] == 2 else d

    def predict_proba(self, X, groups=None):
        d = self._logits(X, groups)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X, groups=None):
        return self.classes_[self._logits(X, groups).argmax(axis=1)]

    def score(self, X, y, sample_weight=None, groups=None):
        from sklearn.metrics import accuracy_score

        return accuracy_score(y, self.predict(X, groups), sample_weight=sample_weight)

    def tensors(self) -> dict[str, np.ndarray]:
        """Fitted arrays by name (for :func:`probes.artifacts.save_probe`)."""
        check_is_fitted(self)
        out = {f"net.{k}": np.asarray(v) for k, v in self.state_.items()}
        out.update(mean_=self.mean_, scale_=self.scale_)
        return out

    @classmethod
    def from_tensors(
        cls, params: dict[str, Any], tensors: dict[str, np.ndarray], classes: list | None = None
    ) -> BiGRUTagger:
        """A fitted tagger from its parameters and :meth:`tensors`."""
        est = cls(**params)
        for key in ("mean_", "scale_"):
            if key not in tensors:
                raise KeyError(f"{cls.__name__}: tensor {key!r} missing from the artifact")
        if classes is None:
            raise KeyError(f"{cls.__name__}: the artifact gives no classes")
        est.classes_ = np.asarray(classes)
        est.mean_ = np.asarray(tensors["mean_"], dtype=np.float64)
        est.scale_ = np.asarray(tensors["scale_"], dtype=np.float64)
        est.state_ = {k[4:]: np.asarray(v) for k, v in tensors.items() if k.startswith("net.")}
        est.n_features_in_ = len(est.mean_)
        return est
