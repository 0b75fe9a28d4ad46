"""Save and load fitted probes: weights in safetensors, everything else in JSON.

An artifact is a folder::

    PROBE/
      config.json          ProbeConfig: estimator, params, classes, target, and where the
                           features come from (model id + fingerprint, layer, hook, pool,
                           segmenter), plus the sweep that chose the layer
      weights.safetensors  the fitted arrays (coef_, intercept_, mean_, ... or vectors_)
      sweep.csv            (from probes.train) the layer sweep, one row per layer
      sweep.json           (from probes.train) the same sweep with its settings

No pickle: loading an artifact never runs code from it. The folder is written under a
temporary name and renamed into place, every file in it; files and folder get the usual
permissions (``0o666`` / ``0o777`` less the umask), so teammates can read a probe.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mechgraph.artifacts import write_info
from mechgraph.errors import ConfigError
from mechgraph.io import atomic_dir, atomic_path, jsonable, write_atomic, write_text_atomic
from probes.context import ContextProbe
from probes.ensemble import StackedEnsemble
from probes.estimators import ESTIMATORS, estimator_class
from probes.sequence import BiGRUTagger

__all__ = ["FORMAT", "SAVED", "ProbeConfig", "load_probe", "save_probe"]

FORMAT = "mechgraph.probe/1"
CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
TARGETS = ("planning", "tag", "importance")

#: every estimator an artifact can hold: the per-step ones of probes.estimators and the
#: context / sequence / ensemble models (these read whole traces: see ``features``)
SAVED: dict[str, type] = {
    **ESTIMATORS,
    "context": ContextProbe,
    "bigru": BiGRUTagger,
    "stacked": StackedEnsemble,
}


def _saved_class(name: str) -> type:
    if name in SAVED:
        return SAVED[name]
    return estimator_class(name)  # raises ConfigError naming the choices


_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass
class ProbeConfig:
    """What a probe is and which features it reads.

    Parameters
    ----------
    estimator : {"logistic", "diffmeans", "ridge", "context", "bigru", "stacked"}
    params : dict
        Estimator parameters.
    target : str
        ``planning``, ``tag`` or ``importance:COLUMN``.
    classes : list or None
        The classifier's classes (None for regression).
    layer : int
        Block whose states the probe reads.
    hook, pool : str
        Hook kind (``resid_post``) and pooling (``mean``) of the states.
    model_id : str
        Model that produced the states (``"default"`` for mechgraph's default model).
    fingerprint : str or None
        Weights fingerprint of that model (checked when states are re-extracted).
    d_model : int
        Feature dimension.
    segmenter : str or None
        Segmenter of the training store.
    metrics : dict
        Grouped-CV metrics at this layer.
    sweep : dict
        The whole layer sweep (:meth:`probes.sweep.SweepResult.to_dict`).
    source : dict
        Store path, label file, counts.
    features : dict
        Features of several blocks: ``{"layers": [...], "pools": [...], "rules": bool}``,
        the states of every (layer, pool) side by side (layers outer, pools inner), then
        with ``rules`` the 8 rule-tagger probabilities
        (:func:`probes.ensemble.rule_features`). Empty: the one ``layer`` and ``pool``.

    Examples
    --------
    >>> ProbeConfig("logistic", {}, "planning", [0, 1], 12, "resid_post", "mean",
    ...             "default", None, 576).layer
    12
    """

    estimator: str
    params: dict[str, Any]
    target: str
    classes: list[Any] | None
    layer: int
    hook: str
    pool: str
    model_id: str
    fingerprint: str | None
    d_model: int
    segmenter: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    features: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _saved_class(self.estimator)
        unknown = set(self.features) - {"layers", "pools", "rules"}
        if unknown:
            raise ConfigError(f"unknown feature settings {sorted(unknown)}")
        if self.target.split(":")[0] not in TARGETS:
            raise ConfigError(
                f"target must be planning, tag or importance[:COLUMN], not {self.target!r}"
            )
        if (self.classes is None) != (self.estimator == "ridge"):
            raise ConfigError("classes are required for classifiers and absent for ridge")
        if self.d_model < 1:
            raise ConfigError(f"d_model must be positive, got {self.d_model}")
        if self.format != FORMAT:
            raise ConfigError(f"probe format {self.format!r} is not {FORMAT!r}")

    @classmethod
    def for_store(
        cls,
        estimator: Any,
        store: Any,
        layer: int,
        target: str = "planning",
        *,
        hook: str = "resid_post",
        pool: str = "mean",
        **extra: Any,
    ) -> ProbeConfig:
        """The config of a probe fitted by hand on ``store.states(layer, pool, hook)``.

        The estimator name, its parameters and classes come from the fitted estimator;
        model id, weights fingerprint, feature size and segmenter from the store.

        Examples
        --------
        >>> est = LinearProbe().fit(store.states(19), y)  # doctest: +SKIP
        >>> save_probe(est, ProbeConfig.for_store(est, store, 19), "runs/probe")  # doctest: +SKIP
        """
        names = [k for k, c in SAVED.items() if type(estimator) is c]
        if not names:
            raise ConfigError(
                f"{type(estimator).__name__} is not a probes estimator "
                f"({', '.join(c.__name__ for c in SAVED.values())})"
            )
        feats = extra.get("features") or {}
        for la in [layer, *feats.get("layers", [])]:
            if la not in store.layers:
                raise ConfigError(f"store {store.path} has no layer {la} (it has {store.layers})")
        m = store.manifest
        classes = getattr(estimator, "classes_", None)
        return cls(
            estimator=names[0],
            params=estimator.get_params(),
            target=target,
            classes=None if classes is None else np.asarray(classes).tolist(),
            layer=int(layer),
            hook=hook,
            pool=pool,
            model_id=str(m["model_id"]),
            fingerprint=m.get("fingerprint"),
            d_model=int(m["d_model"]),
            segmenter=m.get("segmenter"),
            source={"store": str(store.path), **extra.pop("source", {})},
            **extra,
        )

    @property
    def blocks(self) -> list[tuple[int, str]]:
        """The (layer, pool) state blocks the probe reads, in column order.

        Examples
        --------
        >>> ProbeConfig("context", {}, "planning", [0, 1], 19, "resid_post", "mean",
        ...             "default", None, 576,
        ...             features={"layers": [15, 19], "pools": ["mean", "last"]}).blocks
        [(15, 'mean'), (15, 'last'), (19, 'mean'), (19, 'last')]
        """
        layers = self.features.get("layers") or [self.layer]
        pools = self.features.get("pools") or [self.pool]
        return [(int(la), str(po)) for la in layers for po in pools]

    @property
    def n_features(self) -> int:
        """Columns of the probe's input: ``d_model`` per block, plus the rule features."""
        from probes.ensemble import N_RULES

        return self.d_model * len(self.blocks) + N_RULES * bool(self.features.get("rules"))

    @property
    def planning_class(self) -> Any:
        """The class that means planning (planning target: the true one)."""
        if self.target != "planning" or not self.classes:
            return None
        return max(self.classes)


def save_probe(
    estimator: Any,
    config: ProbeConfig,
    path: str | os.PathLike[str],
    *,
    extra: Mapping[str, Callable[[Path], Any]] | None = None,
    inputs: Sequence[str | os.PathLike[str]] | None = None,
) -> Path:
    """Write a fitted probe and its config to the folder ``path`` (replaced if present).

    ``extra`` maps more file names to writers (``write(tmp_path)``), called inside the
    same atomic commit: the folder appears with all its files, or not at all. The record
    ``artifact.json`` (:mod:`mechgraph.artifacts`: kind "probe", the ProbeConfig, the
    ``inputs`` with their hashes) is part of the same commit; ``inputs`` defaults to the
    store and label file of ``config.source`` that exist.

    Examples
    --------
    >>> import tempfile
    >>> from probes.estimators import LinearProbe
    >>> X = np.random.default_rng(0).normal(size=(40, 3)); y = (X[:, 0] > 0).astype(int)
    >>> est = LinearProbe().fit(X, y)
    >>> cfg = ProbeConfig("logistic", est.get_params(), "planning", [0, 1], 0,
    ...                   "resid_post", "mean", "default", None, 3)
    >>> p = save_probe(est, cfg, tempfile.mkdtemp() + "/probe")
    >>> est2, cfg2 = load_probe(p)
    >>> bool(np.allclose(est2.predict_proba(X), est.predict_proba(X)))
    True
    """
    from safetensors.numpy import save_file

    cls = _saved_class(config.estimator)
    if not isinstance(estimator, cls):
        raise ConfigError(
            f"config says {config.estimator!r} but the estimator is a {type(estimator).__name__}"
        )
    tensors = {k: np.ascontiguousarray(np.atleast_1d(v)) for k, v in estimator.tensors().items()}
    path = Path(path)
    names = set(extra or ())
    if names & {CONFIG, WEIGHTS, "artifact.json"} or any(
        Path(n).name != n or n.startswith(".") for n in names
    ):
        raise ConfigError(f"extra files must be plain names other than {CONFIG}, {WEIGHTS}")
    with atomic_dir(path) as tmp:
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it 0o700
        with atomic_path(tmp / WEIGHTS) as w:
            save_file(tensors, str(w), metadata={"format": FORMAT})
        write_text_atomic(tmp / CONFIG, json.dumps(jsonable(asdict(config)), indent=1))
        for name, write in (extra or {}).items():
            write_atomic(tmp / name, write)
        if inputs is None:
            src = config.source or {}
            inputs = [src[k] for k in ("store", "labels") if src.get(k) and Path(src[k]).exists()]
        write_info(tmp, "probe", jsonable(asdict(config)), inputs)
    return path


def load_probe(path: str | os.PathLike[str]) -> tuple[Any, ProbeConfig]:
    """A fitted estimator and its :class:`ProbeConfig` from an artifact folder."""
    from safetensors.numpy import load_file

    path = Path(path)
    cfile, wfile = path / CONFIG, path / WEIGHTS
    if not cfile.is_file() or not wfile.is_file():
        raise ConfigError(f"{path}: not a probe artifact (needs {CONFIG} and {WEIGHTS})")
    try:
        raw = json.loads(cfile.read_text(encoding="utf-8"))
        config = ProbeConfig(**raw)
    except (json.JSONDecodeError, TypeError) as e:
        raise ConfigError(f"{cfile}: invalid probe config: {e}") from None
    tensors = load_file(str(wfile))
    cls = _saved_class(config.estimator)
    try:
        est = cls.from_tensors(config.params, tensors, config.classes)
    except KeyError as e:
        raise ConfigError(f"{wfile}: {e.args[0]}") from None
    if est.n_features_in_ != config.n_features:
        raise ConfigError(
            f"{path}: weights have {est.n_features_in_} features, config says {config.n_features}"
        )
    return est, config
