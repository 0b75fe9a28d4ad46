"""A cheaper resampling estimator: few rollouts everywhere, more where the ranking is unsure.

Rollouts are drawn with the same per-rollout seeds as
:func:`~mechgraph.importance.resampling.counterfactual_importance`, so an adaptive run is
an early-stopped full run: its rollouts at every position are the first ones the full
estimator (same seed) would draw, and the full run can reuse them.

How well any cheaper run can agree with the full one is bounded by how reproducible the
full ranking is itself (:func:`~mechgraph.importance.resampling.ranking_reliability`);
``benchmarks/bench_resampling.py`` measures both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mechgraph.configs import merge_config
from mechgraph.errors import ConfigError
from mechgraph.importance.answers import normalize_answer
from mechgraph.importance.generation import Embedder, Generator
from mechgraph.importance.resampling import (
    ResamplingConfig,
    ResamplingResult,
    Rollout,
    _check,
    _one,
    ranking_reliability,
    result_from_rollouts,
    sample_rollouts,
)
from mechgraph.traces import Trace

__all__ = ["adaptive_importance"]


def _accuracy_var(cur: list[Rollout], nxt: list[Rollout], thr: float, correct: str) -> float:
    """Variance of acc(dissimilar at i) - acc(at i + 1) with Jeffreys-smoothed rates.

    Never 0 at a finite sample (six correct rollouts out of six still leave doubt).
    """
    dis = [r.answer == correct for r in cur if r.similarity < thr]
    nd, nn = len(dis), len(nxt)
    pd = (sum(dis) + 0.5) / (nd + 1)
    pn = (sum(r.answer == correct for r in nxt) + 0.5) / (nn + 1)
    return pd * (1 - pd) / (nd + 1) + pn * (1 - pn) / (nn + 1)


def _kl_var(cur, nxt, cfg: ResamplingConfig, rng: np.random.Generator, n_boot: int) -> float:
    """Bootstrap variance of the KL importance; a floor when under 2 rollouts are dissimilar."""
    n_dis = sum(r.similarity < cfg.threshold for r in cur)
    if n_dis < 2:
        return 1.0 / (len(cur) + 1)
    vals = []
    for _ in range(n_boot):
        c = [cur[k] for k in rng.integers(0, len(cur), len(cur))]
        n = [nxt[k] for k in rng.integers(0, len(nxt), len(nxt))]
        vals.append(_one(c, n, cfg.threshold, cfg.alpha, None, cfg.use_similar)[0])
    return float(np.var(vals))


def _rank_priority(est: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Expected rank swaps each sentence is responsible for (normal errors)."""
    from scipy.stats import norm

    v = np.maximum(var, 1e-12)
    tot = v[:, None] + v[None, :]
    swap = norm.cdf(-np.abs(est[:, None] - est[None, :]) / np.sqrt(tot))
    np.fill_diagonal(swap, 0.0)
    return (swap * v[:, None] / tot).sum(1)


def adaptive_importance(
    trace: Trace,
    generator: Generator,
    embedder: Embedder,
    config: ResamplingConfig | None = None,
    *,
    correct: str | None = None,
    budget: float = 0.2,
    n_initial: int | None = None,
    batch: int = 2,
    se_tol: float = 0.02,
    metric: str = "accuracy",
    allocation: str = "rank",
    target_reliability: float | None = None,
    n_boot: int = 50,
    **options: Any,
) -> ResamplingResult:
    """Cheaper estimator: ``n_initial`` rollouts per position, then more where it matters.

    Until ``budget`` x the full estimator's rollouts (``n_rollouts x (S + 1)``) are spent,
    every sentence's standard error is below ``se_tol``, or (with ``target_reliability``)
    the ranking's predicted reproducibility
    (:func:`~mechgraph.importance.resampling.ranking_reliability`) reaches the target at
    two checks in a row, rollouts are added in rounds (a position never goes beyond ``n_rollouts``):

    - ``allocation="rank"`` (default): the tenth of sentences that cause the most expected
      rank swaps, ``sum_j P(swap i, j) * v_i / (v_i + v_j)`` under normal errors, get
      ``batch`` more rollouts at positions i and i + 1;
    - ``"se"``: the same with the variance ``v_i`` as priority;
    - ``"uniform"``: every position gets ``batch`` more (with ``target_reliability``:
      sequential stopping of a plain run).

    Variances: Jeffreys-smoothed binomial rates for ``metric="accuracy"``, a bootstrap for
    ``"kl"``. ``n_initial`` defaults to 80% of the budget per position (smaller starts
    measured worse, see ``benchmarks/bench_resampling.py``), and with
    ``target_reliability`` to ``max(10, n_rollouts / 10)``: the split-half estimate is
    noisy with few rollouts and can stop a run too early below that.

    Rollout ``k`` at position ``i`` is the one the full estimator with the same seed
    draws, so the result is an early-stopped full run. How close any cheaper run can get
    to the full ranking is bounded by the full ranking's own reproducibility; on Thought
    Anchors' profiles that bound is below 0.9 (see ``docs/importance.md``).

    Examples
    --------
    >>> r = adaptive_importance(trace, gen, emb, n_rollouts=100, budget=0.2)  # doctest: +SKIP
    >>> r.n_total <= 0.2 * 100 * (len(trace.steps) + 1)  # doctest: +SKIP
    True
    """
    cfg = merge_config(ResamplingConfig, config, **options)
    if metric not in ("kl", "accuracy"):
        raise ConfigError(f"metric must be 'kl' or 'accuracy', not {metric!r}")
    if allocation not in ("rank", "se", "uniform"):
        raise ConfigError(f"allocation must be 'rank', 'se' or 'uniform', not {allocation!r}")
    if n_initial is None:  # measured: small starts lose to uniform at a fixed budget
        n_initial = max(2, round(0.8 * budget * cfg.n_rollouts))
        if target_reliability is not None:  # sequential: start small, grow until reliable
            n_initial = max(10, round(0.1 * cfg.n_rollouts))
    if not 0 < budget <= 1 or n_initial < 1 or batch < 1:
        raise ConfigError("need 0 < budget <= 1, n_initial >= 1 and batch >= 1")
    if target_reliability is not None and not 0 < target_reliability < 1:
        raise ConfigError(f"target_reliability must be in (0, 1), got {target_reliability}")
    _check(trace)
    correct = correct if correct is not None else trace.answer
    corr = None if correct is None else normalize_answer(correct)
    if metric == "accuracy" and corr is None:
        raise ConfigError(f"trace {trace.id!r}: metric='accuracy' needs a reference answer")
    m = 0 if metric == "kl" else 1
    S = len(trace.steps or [])
    limit = int(budget * cfg.n_rollouts * (S + 1))
    rng = np.random.default_rng(cfg.seed)
    rolls: list[list[Rollout]] = [[] for _ in range(S + 1)]

    def more(i: int, n: int) -> int:
        n = min(n, cfg.n_rollouts - len(rolls[i]))
        rolls[i] += sample_rollouts(
            trace, i, n, generator, embedder, seed=cfg.seed, start=len(rolls[i]), answer=cfg.answer
        )
        return max(n, 0)

    def var(i: int) -> float:
        if len(rolls[i]) >= cfg.n_rollouts and len(rolls[i + 1]) >= cfg.n_rollouts:
            return 0.0  # as many rollouts as the full estimator: settled
        if metric == "accuracy":
            return _accuracy_var(rolls[i], rolls[i + 1], cfg.threshold, corr or "")
        return _kl_var(rolls[i], rolls[i + 1], cfg, rng, n_boot)

    def est(i: int) -> float:
        return _one(rolls[i], rolls[i + 1], cfg.threshold, cfg.alpha, corr, cfg.use_similar)[m]

    def spent() -> int:
        return sum(len(r) for r in rolls)

    for i in range(S + 1):
        more(i, n_initial)
    v = np.array([var(i) for i in range(S)])
    e = np.array([est(i) for i in range(S)]) if allocation == "rank" else None
    per_round = max(1, S // 10)
    tol = se_tol**2
    streak = 0  # the reliability target met at this many checks in a row (one can be luck)
    while (v > tol).any():
        if target_reliability is not None:
            res = result_from_rollouts(rolls, cfg, corr)
            ok = ranking_reliability(res, metric, target_reliability).full >= target_reliability
            streak = streak + 1 if ok else 0
            if streak >= 2:
                break
        if allocation == "uniform":
            room = [i for i in range(S + 1) if len(rolls[i]) < cfg.n_rollouts]
            if not room or spent() + batch * len(room) > limit:
                break
            for i in room:
                more(i, batch)
            v = np.array([var(i) for i in range(S)])
            continue
        if spent() + 2 * batch > limit:
            break
        prio = _rank_priority(e, v) if e is not None else v.copy()
        prio[v <= tol] = -np.inf
        grew = False
        for i in np.argsort(-prio)[:per_round]:
            if not math.isfinite(prio[i]) or spent() + 2 * batch > limit:
                break
            grew |= more(int(i), batch) + more(int(i) + 1, batch) > 0
            for k in {int(i) - 1, int(i), int(i) + 1} & set(range(S)):
                v[k] = var(k)
                if e is not None:
                    e[k] = est(k)
        if not grew:
            break
    return result_from_rollouts(rolls, cfg, corr)
