"""Probes on step states: estimators, grouped-CV layer sweeps, saved artifacts.

* :class:`LinearProbe` (standardise + logistic), :class:`RidgeProbe` (standardise +
  ridge, for importance), :class:`DiffMeansProbe` (difference-of-means direction, the
  steering vector of Venhoff et al.): scikit-learn estimators.
* :func:`layer_sweep`, :func:`cross_validate_probe`: cross-validation grouped by trace.
* :func:`save_probe`, :func:`load_probe`: safetensors + JSON artifacts.
* :func:`train_probe` / ``python -m probes.train`` / ``mechgraph probe``: train from a store.
"""

from probes.artifacts import ProbeConfig, load_probe, save_probe
from probes.estimators import DiffMeansProbe, LinearProbe, RidgeProbe, make_estimator
from probes.sweep import (
    CVResult,
    SweepConfig,
    SweepResult,
    cross_validate_probe,
    grouped_folds,
    layer_sweep,
)

__all__ = [
    "CVResult",
    "DiffMeansProbe",
    "LinearProbe",
    "ProbeConfig",
    "RidgeProbe",
    "SweepConfig",
    "SweepResult",
    "cross_validate_probe",
    "grouped_folds",
    "layer_sweep",
    "load_probe",
    "make_estimator",
    "probe_command",
    "save_probe",
    "train_probe",
]


def __getattr__(name: str):
    # probes.train is imported lazily so that `python -m probes.train` runs cleanly
    if name in ("probe_command", "train_probe"):
        from probes import train

        return getattr(train, name)
    raise AttributeError(f"module 'probes' has no attribute {name!r}")
