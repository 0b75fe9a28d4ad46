"""Estimator contract of the probes (scikit-learn's check suite) and their behaviour."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from probes.estimators import DiffMeansProbe, LinearProbe, RidgeProbe


@parametrize_with_checks([LinearProbe(), RidgeProbe(), DiffMeansProbe()])
def test_sklearn_contract(estimator, check):
    check(estimator)
