"""Node space: k-means clusters of step states shared by every trace that is compared.

Topology of Reasoning fits one KMeans (K = 200) per model, so the nodes of two models are
unrelated and their graphs cannot be compared node for node.  A :class:`NodeSpace` is fitted
once, on the steps of one or more stores (or plain arrays), saved next to its config, and
reused to map any other store (another model, another checkpoint) into the same nodes.

Saved layout (a folder)::

    nodespace.json          config, K used, feature size, provenance (no pickle)
    artifact.json           the artifact record (mechgraph.artifacts): config + provenance
    nodespace.safetensors   centers, and the scaler / PCA arrays when used
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mechgraph.errors import ConfigError, StoreError
from mechgraph.io import atomic_dir, jsonable

__all__ = ["NodeSpace", "NodeSpaceConfig", "NodeSpaceWarning", "fallback_k"]

FORMAT = "mechgraph.nodespace"
FORMAT_VERSION = 1
_JSON = "nodespace.json"
_ARRAYS = "nodespace.safetensors"


class NodeSpaceWarning(UserWarning):
    """The corpus is too small for the K asked for; a smaller K was used."""


def fallback_k(n_steps: int, k: int, min_steps_per_node: int) -> int:
    """K actually used for a corpus of ``n_steps`` steps.

    ``k`` when ``n_steps >= k * min_steps_per_node``; otherwise
    ``max(2, n_steps // min_steps_per_node)`` (never more than ``k``).

    Examples
    --------
    >>> fallback_k(10_000, 200, 5), fallback_k(600, 200, 5), fallback_k(3, 200, 5)
    (200, 120, 2)
    """
    if n_steps >= k * min_steps_per_node:
        return k
    return min(k, max(2, n_steps // min_steps_per_node))


@dataclass
class NodeSpaceConfig:
    """How a node space is fitted.

    Parameters
    ----------
    k : int, default 200
        Number of nodes (Topology of Reasoning's K).
    method : {"auto", "kmeans", "minibatch"}
        ``"auto"`` uses ``sklearn.cluster.KMeans`` up to ``minibatch_threshold`` fitted
        steps and ``MiniBatchKMeans`` above.
    standardize : bool
        Scale every feature to zero mean and unit variance before clustering.
    pca_components : int or None
        Project onto this many principal components (after standardising) first.
    random_state : int
        Seed of the initialisation (and of the PCA / subsampling): same data and seed,
        same nodes.
    n_init : int
        k-means restarts (best inertia kept).
    max_iter : int
    minibatch_threshold : int
    batch_size : int
        MiniBatchKMeans batch size.
    min_steps_per_node : int
        When the corpus has fewer than ``k * min_steps_per_node`` steps, warn and use
        ``max(2, n_steps // min_steps_per_node)`` nodes instead (see :func:`fallback_k`).
    max_fit_steps : int or None
        Fit on a seeded random subsample of at most this many steps (every step is still
        mapped by :meth:`NodeSpace.predict`).
    """

    k: int = 200
    method: Literal["auto", "kmeans", "minibatch"] = "auto"
    standardize: bool = False
    pca_components: int | None = None
    random_state: int = 0
    n_init: int = 1
    max_iter: int = 300
    minibatch_threshold: int = 50_000
    batch_size: int = 4096
    min_steps_per_node: int = 5
    max_fit_steps: int | None = None

    def __post_init__(self) -> None:
        if int(self.k) < 2:
            raise ConfigError(f"k must be >= 2, got {self.k}")
        if self.method not in ("auto", "kmeans", "minibatch"):
            raise ConfigError(
                f"method must be 'auto', 'kmeans' or 'minibatch', got {self.method!r}"
            )
        if self.pca_components is not None and int(self.pca_components) < 1:
            raise ConfigError(f"pca_components must be >= 1 or None, got {self.pca_components}")
        for name in (
            "n_init",
            "max_iter",
            "minibatch_threshold",
            "batch_size",
            "min_steps_per_node",
        ):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_fit_steps is not None and int(self.max_fit_steps) < 2:
            raise ConfigError(f"max_fit_steps must be >= 2 or None, got {self.max_fit_steps}")


@dataclass
class NodeSpace:
    """K-means node space over step states.

    scikit-learn style: parameters in :attr:`config`, :meth:`fit` returns self, fitted
    attributes end in ``_``.  Fitted arrays are float64; :meth:`predict` is plain numpy,
    so a reloaded node space maps states exactly as the original.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (50, 4)), rng.normal(9, 1, (50, 4))]
    >>> ns = NodeSpace(NodeSpaceConfig(k=2)).fit(X)
    >>> ns.k_, len(set(ns.predict(X[:50])))
    (2, 1)
    """

    config: NodeSpaceConfig = field(default_factory=NodeSpaceConfig)
    meta: dict[str, Any] = field(default_factory=dict)
    centers_: np.ndarray | None = None
    scale_mean_: np.ndarray | None = None
    scale_std_: np.ndarray | None = None
    pca_mean_: np.ndarray | None = None
    pca_components_: np.ndarray | None = None
    n_features_in_: int | None = None
    n_fit_steps_: int | None = None

    # ------------------------------------------------------------------------------- fit
    @property
    def k_(self) -> int:
        """Number of nodes actually used (may be below ``config.k``, see fallback)."""
        self._check_fitted()
        return int(self.centers_.shape[0])

    def fit(self, X: np.ndarray, **meta: Any) -> NodeSpace:
        """Fit the nodes on step states ``X`` of shape (n_steps, d).

        Extra keyword arguments are recorded in :attr:`meta` (e.g. ``layer``, ``pool``,
        ``hook``, ``sources``) and saved with the node space.
        """
        cfg = self.config
        X = np.asarray(X)
        if X.ndim != 2:
            raise ConfigError(f"step states must be 2-D (n_steps, d), got shape {X.shape}")
        n = X.shape[0]
        if n < 2:
            raise ConfigError(f"a node space needs at least 2 steps, got {n}")
        if not np.all(np.isfinite(X)):
            raise ConfigError("step states contain NaN or inf")
        rng = np.random.default_rng(cfg.random_state)
        fit_idx = np.arange(n)
        if cfg.max_fit_steps is not None and n > cfg.max_fit_steps:
            fit_idx = np.sort(rng.choice(n, size=int(cfg.max_fit_steps), replace=False))
        n_fit = fit_idx.size
        k = fallback_k(n_fit, int(cfg.k), int(cfg.min_steps_per_node))
        if k != cfg.k:
            warnings.warn(
                f"{n_fit} steps are too few for k={cfg.k} (at least {cfg.min_steps_per_node} "
                f"steps per node wanted); using k={k} = max(2, n_steps // {cfg.min_steps_per_node})",
                NodeSpaceWarning,
                stacklevel=2,
            )
        # float64 unless that would need more than ~400 MB (then the states' float32)
        dtype = np.float64 if n_fit * X.shape[1] <= 50_000_000 else np.float32
        Xf = X[fit_idx].astype(dtype)
        self.n_features_in_ = X.shape[1]
        self.scale_mean_ = self.scale_std_ = self.pca_mean_ = self.pca_components_ = None
        if cfg.standardize:
            self.scale_mean_ = Xf.mean(axis=0, dtype=np.float64)
            std = Xf.std(axis=0, dtype=np.float64)
            self.scale_std_ = np.where(std > 0, std, 1.0)
            Xf = ((Xf - self.scale_mean_) / self.scale_std_).astype(dtype, copy=False)
        if cfg.pca_components is not None:
            from sklearn.decomposition import PCA

            n_comp = min(int(cfg.pca_components), Xf.shape[0], Xf.shape[1])
            pca = PCA(n_components=n_comp, random_state=cfg.random_state).fit(Xf)
            self.pca_mean_ = pca.mean_.astype(np.float64)
            self.pca_components_ = pca.components_.astype(np.float64)
            Xf = ((Xf - self.pca_mean_) @ self.pca_components_.T).astype(dtype, copy=False)
        method = cfg.method
        if method == "auto":
            method = "minibatch" if n_fit > cfg.minibatch_threshold else "kmeans"
        if method == "kmeans":
            from sklearn.cluster import KMeans

            km = KMeans(
                n_clusters=k,
                n_init=cfg.n_init,
                max_iter=cfg.max_iter,
                random_state=cfg.random_state,
            )
        else:
            from sklearn.cluster import MiniBatchKMeans

            km = MiniBatchKMeans(
                n_clusters=k,
                n_init=cfg.n_init,
                max_iter=cfg.max_iter,
                batch_size=cfg.batch_size,
                random_state=cfg.random_state,
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Nn]umber of distinct clusters.*")
            km.fit(Xf)
        self.centers_ = np.asarray(km.cluster_centers_, np.float64)
        self.n_fit_steps_ = int(n_fit)
        self.meta = {**self.meta, **meta, "method": method, "n_steps_seen": int(n)}
        return self

    # --------------------------------------------------------------------------- mapping
    def _check_fitted(self) -> None:
        if self.centers_ is None:
            raise ConfigError("this NodeSpace is not fitted: call fit() or NodeSpace.load()")

    def transform(self, X: np.ndarray) -> np.ndarray:
        """States in the clustering space (standardised / PCA-projected), float64."""
        self._check_fitted()
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"states have shape {X.shape}, the node space expects (n, {self.n_features_in_})"
                f" (fitted on {self.meta.get('hook', '?')} layer {self.meta.get('layer', '?')})"
            )
        Z = X.astype(np.float64)
        if self.scale_mean_ is not None:
            Z = (Z - self.scale_mean_) / self.scale_std_
        if self.pca_components_ is not None:
            Z = (Z - self.pca_mean_) @ self.pca_components_.T
        return Z

    def predict(self, X: np.ndarray, *, chunk: int = 8192) -> np.ndarray:
        """Node id (nearest center, L2) of every row of ``X``; int64 of shape (n,).

        Ties go to the lower node id.  O(n K d).
        """
        self._check_fitted()
        X = np.asarray(X)
        if X.ndim == 2 and X.shape[0] == 0:
            return np.zeros(0, np.int64)
        c = self.centers_
        c2 = np.einsum("ij,ij->i", c, c)
        out = np.empty(X.shape[0], np.int64)
        for lo in range(0, X.shape[0], chunk):
            Z = self.transform(X[lo : lo + chunk])
            out[lo : lo + chunk] = np.argmin(c2[None, :] - 2.0 * Z @ c.T, axis=1)
        return out

    def distances(self, X: np.ndarray) -> np.ndarray:
        """L2 distance of every row of ``X`` to every center, shape (n, K)."""
        Z = self.transform(X)
        d2 = (
            np.einsum("ij,ij->i", Z, Z)[:, None]
            - 2.0 * Z @ self.centers_.T
            + np.einsum("ij,ij->i", self.centers_, self.centers_)[None, :]
        )
        return np.sqrt(np.maximum(d2, 0.0))

    # ---------------------------------------------------------------------------- saving
    def save(
        self,
        path: str | os.PathLike[str],
        *,
        inputs: Sequence[str | os.PathLike[str]] = (),
    ) -> Path:
        """Write the node space to the folder ``path`` atomically (replacing it).

        The record ``artifact.json`` (:mod:`mechgraph.artifacts`) is part of the same
        commit: kind "nodespace", ``config`` the :class:`NodeSpaceConfig` fields plus
        ``provenance`` (K used, feature size, fitted steps, meta), and ``inputs`` (the
        stores it was fitted on, when given) with their hashes.
        """
        from safetensors.numpy import save_file

        from mechgraph.artifacts import write_info

        self._check_fitted()
        path = Path(path)
        tensors = {"centers": self.centers_}
        for name in ("scale_mean_", "scale_std_", "pca_mean_", "pca_components_"):
            arr = getattr(self, name)
            if arr is not None:
                tensors[name.rstrip("_")] = np.ascontiguousarray(arr, np.float64)
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": asdict(self.config),
            "k": self.k_,
            "n_features_in": self.n_features_in_,
            "n_fit_steps": self.n_fit_steps_,
            "meta": jsonable(self.meta),
        }
        with atomic_dir(path) as tmp:
            save_file(tensors, str(tmp / _ARRAYS))
            (tmp / _JSON).write_text(json.dumps(doc, indent=2, sort_keys=True))
            provenance = {k: doc[k] for k in ("k", "n_features_in", "n_fit_steps", "meta")}
            write_info(tmp, "nodespace", {**doc["config"], "provenance": provenance}, inputs)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NodeSpace:
        """Read a node space written by :meth:`save`."""
        from safetensors.numpy import load_file

        path = Path(path)
        jpath, apath = path / _JSON, path / _ARRAYS
        if not jpath.is_file() or not apath.is_file():
            raise StoreError(f"{path} is not a node space folder (needs {_JSON} and {_ARRAYS})")
        doc = json.loads(jpath.read_text())
        if doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
            raise StoreError(f"{jpath}: not a {FORMAT} v{FORMAT_VERSION} file")
        arrays = load_file(str(apath))
        ns = cls(config=NodeSpaceConfig(**doc["config"]), meta=doc.get("meta", {}))
        ns.centers_ = arrays["centers"]
        ns.scale_mean_ = arrays.get("scale_mean")
        ns.scale_std_ = arrays.get("scale_std")
        ns.pca_mean_ = arrays.get("pca_mean")
        ns.pca_components_ = arrays.get("pca_components")
        ns.n_features_in_ = int(doc["n_features_in"])
        ns.n_fit_steps_ = doc.get("n_fit_steps")
        if ns.centers_.shape[0] != doc["k"]:
            raise StoreError(f"{path}: {ns.centers_.shape[0]} centers but k={doc['k']} in {_JSON}")
        return ns


def stack_states(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate step-state matrices, checking that their widths agree."""
    widths = {np.asarray(a).shape[1] for a in arrays if np.asarray(a).ndim == 2}
    if len(widths) > 1:
        raise ConfigError(
            f"step states of different widths cannot share a node space: {sorted(widths)}"
        )
    return np.concatenate([np.asarray(a) for a in arrays], axis=0)
