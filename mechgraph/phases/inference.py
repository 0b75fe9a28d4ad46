"""What the phase table says: change points, the two-phase test, the topology link.

* :func:`table_change_points` runs :func:`~mechgraph.phases.changepoints.change_points` on
  every metric of a :class:`~mechgraph.phases.PhaseResult`, with that metric's bootstrap
  replicates (one set of draws for all metrics).
* :func:`two_phase_test` asks HICRA's question: does an execution-side metric change
  first and a planning-side metric later? It reports both first change points with their
  intervals and, over the shared bootstrap draws, the probability that the execution
  change precedes the planning change; its verdict can be "no".
* :func:`topology_link` relates planning-side metrics to topology metrics across
  checkpoints: Spearman's rho with a block-permutation p-value (neighbouring checkpoints
  are correlated, so blocks of checkpoints move together) and a bootstrap interval, and the
  topology before vs after the planning metric's first change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.phases.changepoints import ChangeConfig, ChangeResult, change_points

__all__ = [
    "EXEC_METRICS",
    "PLAN_METRICS",
    "block_permutation_pvalue",
    "table_change_points",
    "topology_link",
    "two_phase_test",
]

#: Execution-side metrics, in the order the two-phase test looks for them.
EXEC_METRICS = (
    "entropy_exec",
    "ppl_rel_exec",
    "log/phases/entropy_exec",
    "log/token_entropy",
    "log/entropy",
    "reader/entropy_exec",
)
#: Planning-side metrics, in the order the two-phase test looks for them.
PLAN_METRICS = ("semantic_entropy_rarefied", "planning_share")


def _series(result: Any, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    table = result.table
    if metric not in table.columns:
        have = [c for c in table.columns if not c.endswith(("_lo", "_hi"))]
        raise ConfigError(f"no metric {metric!r} in the phase table; have {have}")
    y = table[metric].to_numpy(dtype=float)
    reps = result.replicates.get(metric)
    return result.x, y, reps


def metric_change_points(
    result: Any, metric: str, config: ChangeConfig | None = None
) -> ChangeResult:
    """Change points of one metric of a phase result (checkpoints where it is NaN dropped)."""
    x, y, reps = _series(result, metric)
    ok = np.isfinite(y)
    if reps is not None:
        reps = reps[:, ok]
    try:
        return change_points(y[ok], x[ok], replicates=reps, config=config)
    except ConfigError as e:
        if config is None or config.n_changes is None:
            raise
        # a forced number of changes that this series cannot hold (constant, too short)
        res = change_points(
            y[ok], x[ok], replicates=reps, config=replace(config, n_changes=None, max_changes=0)
        )
        res.note = f"{e}; no change placed"
        return res


def table_change_points(
    result: Any,
    config: ChangeConfig | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, ChangeResult]:
    """Change points of every metric (or of ``metrics``) of a phase result.

    Metrics with fewer than two finite values are skipped.

    Examples
    --------
    >>> from mechgraph.phases.table import phase_table
    >>> from mechgraph.traces import Trace
    >>> traces = [Trace(f"{c}/{i}", "So 4.", checkpoint=str(c), correct=(c >= 400) == (i % 10 != 0))
    ...           for c in range(50, 801, 50) for i in range(20)]  # accuracy 0.1, then 0.9
    >>> res = phase_table(traces, n_boot=200)
    >>> cps = table_change_points(res, metrics=["accuracy"])
    >>> cps["accuracy"].changes
    [{'index': 7, 'x': 400.0, 'lo': 400.0, 'hi': 400.0, 'support': 1.0}]
    """
    if metrics is None:
        cols = set(result.table.columns)
        metrics = [
            c
            for c in result.table.columns
            if c in result.replicates
            or (c.startswith("log/") and not (c.endswith(("_lo", "_hi")) and c[:-3] in cols))
        ]
    out = {}
    for m in metrics:
        y = result.table[m].to_numpy(dtype=float)
        if np.isfinite(y).sum() >= 2:
            out[m] = metric_change_points(result, m, config)
    return out


def _pick(result: Any, wanted: str, candidates: Sequence[str]) -> str | None:
    if wanted != "auto":
        _series(result, wanted)  # raises when absent
        return wanted
    for c in candidates:
        if c in result.table.columns and np.isfinite(result.table[c].to_numpy(float)).sum() >= 2:
            return c
    return None


def _first(cp: ChangeResult) -> dict[str, Any] | None:
    return dict(cp.changes[0]) if cp.n_changes else None


def two_phase_test(
    result: Any,
    cps: dict[str, ChangeResult] | None = None,
    *,
    exec_metric: str = "auto",
    plan_metric: str = "auto",
    config: ChangeConfig | None = None,
) -> dict[str, Any]:
    """Does the execution side change first and the planning side later?

    Parameters
    ----------
    result : PhaseResult
    cps : dict, optional
        Change points already computed (:func:`table_change_points`).
    exec_metric, plan_metric : str
        ``auto`` takes the first present of :data:`EXEC_METRICS` /
        :data:`PLAN_METRICS`.
    config : ChangeConfig, optional

    Returns
    -------
    dict
        ``exec_metric``, ``plan_metric``, ``exec_change`` and ``plan_change`` (their first
        change points with intervals, or None), ``p_exec_first`` / ``p_plan_first``
        (share of bootstrap replicates in which both change and the execution / planning
        change comes strictly first), ``p_both`` (share in which both change),
        ``verdict`` (``"yes"``, ``"no"`` or ``"undetermined"``) and ``reason``.

    Notes
    -----
    ``yes``: both metrics change and ``p_exec_first >= level``. ``no``: a metric shows no
    change, or the planning change comes first with ``p_plan_first >= level``.
    Otherwise ``undetermined``. With no execution-side metric available (no ``--models``,
    no logged token entropy) the test is not run (``verdict = "unavailable"``).
    """
    cfg = config or ChangeConfig()
    ex = _pick(result, exec_metric, EXEC_METRICS)
    pl = _pick(result, plan_metric, PLAN_METRICS)
    out: dict[str, Any] = {"exec_metric": ex, "plan_metric": pl, "level": cfg.level}
    if ex is None or pl is None:
        side = "execution" if ex is None else "planning"
        out.update(
            verdict="unavailable",
            reason=f"no {side}-side metric in the table (execution needs --models with the "
            "checkpoints' weights, or --logs with a token-entropy column)",
        )
        return out
    cps = cps or {}
    ce = cps.get(ex) or metric_change_points(result, ex, cfg)
    cq = cps.get(pl) or metric_change_points(result, pl, cfg)
    out["exec_change"], out["plan_change"] = _first(ce), _first(cq)
    fe, fp = ce.replicate_first, cq.replicate_first
    if fe is not None and fp is not None and len(fe) == len(fp):
        both = np.isfinite(fe) & np.isfinite(fp)
        out["p_both"] = float(both.mean())
        out["p_exec_first"] = float((both & (fe < fp)).mean())
        out["p_plan_first"] = float((both & (fp < fe)).mean())
    else:
        out["p_both"] = out["p_exec_first"] = out["p_plan_first"] = None
    pe, pp = out["p_exec_first"], out["p_plan_first"]
    if not ce.n_changes or not cq.n_changes:
        none = [m for m, c in ((ex, ce), (pl, cq)) if not c.n_changes]
        why = "; ".join(f"{m}: {c.note}" for m, c in ((ex, ce), (pl, cq)) if c.note)
        out.update(
            verdict="no",
            reason=f"no change detected in {' and '.join(none)}" + (f" ({why})" if why else ""),
        )
    elif pe is not None and pe >= cfg.level:
        out.update(verdict="yes", reason=f"{ex} changes before {pl} in {pe:.0%} of replicates")
    elif pp is not None and pp >= cfg.level:
        out.update(verdict="no", reason=f"{pl} changes before {ex} in {pp:.0%} of replicates")
    else:
        out.update(
            verdict="undetermined",
            reason=f"order of the first changes not resolved (P[{ex} first] = "
            f"{pe if pe is None else round(pe, 3)})",
        )
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def block_permutation_pvalue(
    a: np.ndarray,
    b: np.ndarray,
    *,
    block: int | None = None,
    n_perm: int = 4999,
    seed: int = 0,
) -> tuple[float, int]:
    """Two-sided p-value of Spearman's rho under permutations of blocks of ``b``.

    ``b`` is cut into consecutive blocks of ``block`` checkpoints (default
    ``max(2, round(n ** (1/3)))``) whose order is permuted, keeping each block's inside
    order, so that the autocorrelation of neighbouring checkpoints survives in the null.

    Returns
    -------
    p : float
        ``(1 + #{|rho_perm| >= |rho|}) / (1 + n_perm)``.
    block : int

    Examples
    --------
    >>> x = np.arange(20.0)
    >>> p, L = block_permutation_pvalue(x, x + np.sin(x), n_perm=999)
    >>> p < 0.05, L
    (True, 3)
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a)
    if n != len(b) or n < 4:
        raise ConfigError(f"need two series of the same length >= 4, got {len(a)} and {len(b)}")
    L = block or max(2, round(n ** (1 / 3)))
    obs = _spearman(a, b)
    if math.isnan(obs):
        return math.nan, L
    from scipy.stats import rankdata

    ra = rankdata(a)
    rb = rankdata(b)
    blocks = [np.arange(i, min(i + L, n)) for i in range(0, n, L)]
    rng = np.random.default_rng(seed)
    za = (ra - ra.mean()) / ra.std()
    zb = (rb - rb.mean()) / rb.std()
    perms = np.empty((n_perm, n), dtype=np.int64)
    for i in range(n_perm):
        perms[i] = np.concatenate([blocks[j] for j in rng.permutation(len(blocks))])
    rho = (za[None, :] * zb[perms]).mean(1)
    return float((1 + np.sum(np.abs(rho) >= abs(obs) - 1e-12)) / (1 + n_perm)), L


def topology_link(
    result: Any,
    cps: dict[str, ChangeResult] | None = None,
    *,
    plan_metrics: Sequence[str] | None = None,
    topo_metrics: Sequence[str] | None = None,
    n_perm: int = 4999,
    block: int | None = None,
    seed: int = 0,
    config: ChangeConfig | None = None,
) -> list[dict[str, Any]]:
    """Association across checkpoints of planning-side and topology metrics.

    For each pair: ``rho`` (Spearman over the checkpoints' point values), its bootstrap
    interval (``rho_lo`` / ``rho_hi``, the same draws for both series), ``p_block``
    (:func:`block_permutation_pvalue`), and, when the planning metric has a change point,
    the topology metric's mean before and from that change (``before``, ``after``,
    ``diff`` with ``diff_lo`` / ``diff_hi`` from the replicates).

    Returns
    -------
    list of dict
        Empty when the table has no ``topo/`` column.
    """
    cfg = config or ChangeConfig()
    table = result.table
    plans = [m for m in (plan_metrics or PLAN_METRICS) if m in table.columns]
    topos = list(topo_metrics or [c for c in result.replicates if c.startswith("topo/")])
    cps = cps or {}
    a_lo, a_hi = (1 - cfg.level) / 2, (1 + cfg.level) / 2
    rows = []
    for p in plans:
        cp = cps.get(p) or metric_change_points(result, p, cfg)
        for t in topos:
            ya, yb = table[p].to_numpy(float), table[t].to_numpy(float)
            ok = np.isfinite(ya) & np.isfinite(yb)
            row: dict[str, Any] = {
                "plan_metric": p,
                "topo_metric": t,
                "n_checkpoints": int(ok.sum()),
            }
            if ok.sum() < 4:
                rows.append({**row, "rho": None, "note": "fewer than 4 checkpoints with both"})
                continue
            row["rho"] = _spearman(ya[ok], yb[ok])
            ra, rb = result.replicates.get(p), result.replicates.get(t)
            if ra is not None and rb is not None:
                rr = np.array([_spearman(u[ok], v[ok]) for u, v in zip(ra, rb, strict=True)])
                rr = rr[np.isfinite(rr)]
                if len(rr) >= 2:
                    row["rho_lo"], row["rho_hi"] = (float(q) for q in np.quantile(rr, [a_lo, a_hi]))
            row["p_block"], row["block"] = block_permutation_pvalue(
                ya[ok], yb[ok], block=block, n_perm=n_perm, seed=seed
            )
            if cp.n_changes:
                c = cp.changes[0]
                after = result.x >= c["x"]
                sel_b, sel_a = ok & ~after, ok & after
                if sel_b.any() and sel_a.any():
                    row.update(
                        change_at=c["x"],
                        before=float(yb[sel_b].mean()),
                        after=float(yb[sel_a].mean()),
                    )
                    row["diff"] = row["after"] - row["before"]
                    if rb is not None:
                        d = rb[:, sel_a].mean(1) - rb[:, sel_b].mean(1)
                        d = d[np.isfinite(d)]
                        if len(d) >= 2:
                            row["diff_lo"], row["diff_hi"] = (
                                float(q) for q in np.quantile(d, [a_lo, a_hi])
                            )
            rows.append(row)
    return rows
