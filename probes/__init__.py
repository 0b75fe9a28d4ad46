"""Probes on step states: estimators, grouped-CV layer sweeps, saved artifacts.

* :class:`LinearProbe` (standardise + logistic), :class:`RidgeProbe` (standardise +
  ridge, for importance), :class:`DiffMeansProbe` (difference-of-means direction, the
  steering vector of Venhoff et al.): scikit-learn estimators.
* :func:`layer_sweep`, :func:`cross_validate_probe`: cross-validation grouped by trace.
* :func:`save_probe`, :func:`load_probe`: safetensors + JSON artifacts.
* :func:`train_probe` / ``python -m probes.train`` / ``mechgraph probe``: train from a store.
* :class:`ContextProbe`, :func:`context_features` (neighbours, previous steps, position),
  :class:`BiGRUTagger` (a sequence model over a trace), :class:`StackedEnsemble` with
  :func:`rule_features` (probe + rule tagger), and :mod:`probes.calibration` (Platt maps,
  Brier score, reliability curves, thresholds for a target precision).
"""

from importlib import import_module

# Everything loads on first use, so that `import probes` is light (scikit-learn, pandas,
# torch when used), and `python -m probes.train` must not
# find probes.train already imported.
_LAZY = {
    "probes.estimators": ("DiffMeansProbe", "LinearProbe", "RidgeProbe", "make_estimator"),
    "probes.artifacts": ("ProbeConfig", "load_probe", "save_probe"),
    "probes.sweep": (
        "CVResult",
        "SweepConfig",
        "SweepResult",
        "cross_validate_probe",
        "grouped_folds",
        "layer_sweep",
    ),
    "probes.train": ("probe_command", "train_probe"),
    "probes.context": ("ContextProbe", "context_features"),
    "probes.sequence": ("BiGRUTagger",),
    "probes.ensemble": ("StackedEnsemble", "rule_features"),
    "probes.calibration": ("brier_score", "reliability_curve", "threshold_for_precision"),
}
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}

__all__ = [
    "BiGRUTagger",
    "CVResult",
    "ContextProbe",
    "DiffMeansProbe",
    "LinearProbe",
    "ProbeConfig",
    "RidgeProbe",
    "StackedEnsemble",
    "SweepConfig",
    "SweepResult",
    "brier_score",
    "context_features",
    "cross_validate_probe",
    "grouped_folds",
    "layer_sweep",
    "load_probe",
    "make_estimator",
    "probe_command",
    "reliability_curve",
    "rule_features",
    "save_probe",
    "threshold_for_precision",
    "train_probe",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'probes' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    if name not in ("probe_command", "train_probe"):
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
