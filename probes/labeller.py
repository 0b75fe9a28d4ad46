"""``mechgraph label --method probe:PATH``: label steps with a saved probe.

The probe reads pooled states of one model: one layer and pool, or several side by side
(``ProbeConfig.features``, plus the rule tagger's probabilities for ensembles). For new traces those states
are extracted first, with the model, layer, hook and pool recorded in the artifact
(:func:`extract_states`, the one place that calls :func:`mechgraph.extract`).

:class:`ProbeLabeller` is the ``probe`` entry point of the ``mechgraph.labellers`` group
(``pyproject.toml``): :func:`mechgraph.labels.get_labeller` calls it as the factory of
``probe:PATH`` (``ProbeLabeller(PATH, **kw)``) without :mod:`mechgraph.labels` importing
this package.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.labels.base import Labeller, StepLabel
from mechgraph.labels.tagger import PLANNING_TAGS
from mechgraph.traces import Trace
from probes.artifacts import ProbeConfig, load_probe

__all__ = ["ProbeLabeller", "extract_states"]


def extract_states(
    traces: Sequence[Trace],
    config: ProbeConfig,
    *,
    model: Any = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> list[np.ndarray]:
    """Pooled states of every step of every trace, as the probe was trained on.

    Runs :func:`mechgraph.extract` into a temporary store with the artifact's layers,
    hook and pools and the traces' own steps (segmenter ``given``); several blocks
    (``config.features``) are put side by side in :attr:`ProbeConfig.blocks` order.

    Returns
    -------
    list of (n_steps, d_model * n_blocks) arrays, one per trace, in step order.
    """
    from mechgraph.extract import extract
    from mechgraph.models import load_model

    if model is None:
        model = load_model(config.model_id or "default", dtype=dtype, device=device)
    fp = getattr(model, "fingerprint", None)
    if config.fingerprint and fp and fp != config.fingerprint:
        raise ConfigError(
            f"the probe was trained on states of model {config.model_id!r} with weights "
            f"fingerprint {config.fingerprint}; the model loaded has {fp}"
        )
    with tempfile.TemporaryDirectory(prefix="mechgraph-probe-") as tmp:
        store = extract(
            list(traces),
            Path(tmp) / "store",
            model=model,
            layers=tuple(dict.fromkeys(la for la, _ in config.blocks)),
            hooks=(config.hook,),
            pools=tuple(dict.fromkeys(po for _, po in config.blocks)),
            segmenter="given",
            progress=False,
        )
        steps = store.steps
        tids, step_no = steps["trace_id"].to_numpy(), steps["step"].to_numpy()
        X = np.hstack([store.states(la, pool=po, hook=config.hook) for la, po in config.blocks])
        out = []
        for t in traces:
            idx = np.flatnonzero(tids == t.id)
            idx = idx[np.argsort(step_no[idx], kind="stable")]
            if len(idx) != len(t.steps or []):
                raise ConfigError(
                    f"trace {t.id!r}: extraction gave {len(idx)} steps for {len(t.steps or [])}"
                )
            out.append(np.asarray(X[idx], dtype=np.float32))
    return out


class ProbeLabeller(Labeller):
    """Label steps with a probe artifact (planning or tag probes).

    Parameters
    ----------
    path : path
        Artifact folder written by ``probes.train``.
    model : LoadedModel, optional
        The model to extract states with (default: load the one recorded).
    device : str

    Examples
    --------
    >>> lab = ProbeLabeller("runs/probe-planning")  # doctest: +SKIP
    >>> lab.label_traces(traces)[0][0]  # doctest: +SKIP
    StepLabel(tag='planning', planning=True, score=0.83)
    """

    name = "probe"

    def __init__(
        self, path: str | os.PathLike[str], *, model: Any = None, device: str | None = None
    ) -> None:
        self.estimator, self.config = load_probe(path)
        if self.config.classes is None:
            raise ConfigError(
                f"{path}: a regression probe ({self.config.target}) gives no planning label; "
                "use a planning or tag probe"
            )
        self.model = model
        self.device = device or "cpu"

    def label_from_states(self, X: np.ndarray) -> list[StepLabel]:
        """Labels of steps from their states (``(n_steps, d_model)``)."""
        cfg = self.config
        proba = self.estimator.predict_proba(np.asarray(X, dtype=np.float64))
        classes = list(self.estimator.classes_)
        if cfg.target == "planning":
            p = proba[:, classes.index(cfg.planning_class)]
            t = float(getattr(self.estimator, "threshold_", 0.5))
            return [StepLabel("planning" if v >= t else "other", v >= t, float(v)) for v in p]
        plan_cols = [k for k, c in enumerate(classes) if c in PLANNING_TAGS]
        out = []
        for row in proba:
            tag = str(classes[int(np.argmax(row))])
            out.append(StepLabel(tag, tag in PLANNING_TAGS, float(row[plan_cols].sum())))
        return out

    def label_traces(self, traces: Sequence[Trace]) -> list[list[StepLabel]]:
        states = extract_states(traces, self.config, model=self.model, device=self.device)
        if self.config.features.get("rules"):
            from probes.ensemble import rule_features

            states = [
                np.hstack([X, rule_features([s.text for s in t.steps or []])])
                for X, t in zip(states, traces, strict=True)
            ]
        return [self.label_from_states(X) for X in states]

    def label_trace(self, trace: Trace) -> list[StepLabel]:
        return self.label_traces([trace])[0]
