"""Two-phase test, topology link and block permutations on planted series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mechgraph.errors import ConfigError
from mechgraph.phases import (
    ChangeConfig,
    PhaseConfig,
    PhaseResult,
    block_permutation_pvalue,
    table_change_points,
    topology_link,
    two_phase_test,
)


def knee(x, at, before, after):
    """Flat at ``before`` slope then ``after`` slope from ``at``, continuous."""
    return np.where(x < at, before * (x - at), after * (x - at))


def planted(series: dict[str, np.ndarray], se=0.02, n_boot=200, seed=0) -> PhaseResult:
    """A phase result whose replicates are the series plus sampling noise of size ``se``."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(series.values())))
    x = np.arange(1, n + 1) * 50.0
    table = pd.DataFrame(
        {"checkpoint": [str(int(v)) for v in x], "checkpoint_value": x, "n_traces": 100}
    )
    reps = {}
    for name, mean in series.items():
        y = mean + rng.normal(0, se, n)
        table[name] = y
        reps[name] = y + rng.normal(0, se, (n_boot, n))
        table[f"{name}_lo"] = np.quantile(reps[name], 0.025, axis=0)
        table[f"{name}_hi"] = np.quantile(reps[name], 0.975, axis=0)
    return PhaseResult(table, reps, pd.DataFrame(), PhaseConfig(), {"paired": True})


X = np.arange(1, 31) * 50.0


def test_execution_first_then_planning_says_yes():
    res = planted(
        {
            "entropy_exec": knee(X, 450, -0.004, 0.0),  # falls, then flat from 450
            "semantic_entropy_rarefied": knee(X, 1100, 0.0, 0.003),  # flat, rises from 1100
        }
    )
    out = two_phase_test(res)
    assert out["exec_metric"] == "entropy_exec"
    assert out["plan_metric"] == "semantic_entropy_rarefied"
    assert out["verdict"] == "yes", out
    assert out["exec_change"]["x"] == pytest.approx(450, abs=100)
    assert out["plan_change"]["x"] == pytest.approx(1100, abs=100)
    assert out["p_exec_first"] >= 0.95


def test_reversed_order_says_no():
    res = planted(
        {
            "entropy_exec": knee(X, 1100, -0.004, 0.0),
            "semantic_entropy_rarefied": knee(X, 450, 0.0, 0.003),
        }
    )
    out = two_phase_test(res)
    assert out["verdict"] == "no" and out["p_plan_first"] >= 0.95


def test_no_change_says_no():
    res = planted({"entropy_exec": knee(X, 450, -0.004, 0.0), "planning_share": 0.1 + 0 * X})
    out = two_phase_test(res, plan_metric="planning_share")
    assert out["verdict"] == "no" and "no change detected in planning_share" in out["reason"]


def test_unavailable_without_an_execution_metric():
    res = planted({"semantic_entropy_rarefied": 0 * X})
    out = two_phase_test(res)
    assert out["verdict"] == "unavailable" and "--models" in out["reason"]
    with pytest.raises(ConfigError, match="no metric 'nope'"):
        two_phase_test(res, exec_metric="nope")


def test_constant_metric_is_reported_not_an_error():
    res = planted({"entropy_exec": knee(X, 450, -0.004, 0.0), "planning_share": 0 * X}, se=0)
    cps = table_change_points(res, ChangeConfig())
    assert cps["planning_share"].n_changes == 0 and "constant" in cps["planning_share"].note


def test_logged_metric_without_replicates_gets_change_points():
    res = planted({"accuracy": 0 * X})
    res.table["log/token_entropy"] = np.where(X < 700, 1.0, 0.5) + np.random.default_rng(1).normal(
        0, 0.01, len(X)
    )
    cps = table_change_points(res, ChangeConfig(model="mean"))
    (c,) = cps["log/token_entropy"].changes
    assert c["x"] == 700


def test_block_permutation_detects_relation_and_keeps_level():
    rng = np.random.default_rng(0)
    x = np.arange(40.0)
    p, L = block_permutation_pvalue(x, x + rng.normal(0, 3, 40), n_perm=999)
    assert p < 0.01 and L == 3
    # two independent random walks: correlated-looking, but the block test holds its level
    hits = 0
    for s in range(40):
        r = np.random.default_rng(100 + s)
        a, b = np.cumsum(r.normal(size=19)), r.normal(size=19)
        hits += block_permutation_pvalue(a, b, n_perm=199, seed=s)[0] < 0.05
    assert hits <= 6
    with pytest.raises(ConfigError, match="same length"):
        block_permutation_pvalue(x[:3], x[:3])


def test_topology_link_rows():
    plan = knee(X, 800, 0.0, 0.003)
    res = planted(
        {
            "semantic_entropy_rarefied": plan,
            "topo/loop_count": 2 * plan,
            "topo/diameter_norm": 0 * X,
        }
    )
    rows = topology_link(res, n_perm=499)
    by = {r["topo_metric"]: r for r in rows}
    loop = by["topo/loop_count"]
    assert loop["rho"] > 0.8 and loop["p_block"] < 0.05 and loop["rho_lo"] <= loop["rho"]
    assert loop["change_at"] == pytest.approx(800, abs=100)
    assert loop["diff"] > 0 and loop["diff_lo"] > 0
    flat = by["topo/diameter_norm"]
    assert abs(flat["rho"]) < 0.6 and flat["p_block"] > 0.01
