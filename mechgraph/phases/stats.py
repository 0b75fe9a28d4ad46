"""Bootstrap of per-checkpoint metrics, semantic entropy and its rarefied version.

One set of bootstrap draws serves every metric, so that two metrics' replicates can be
compared draw by draw (the precedence test of :mod:`mechgraph.phases.inference` needs
that). A draw re-weights the samples of each checkpoint:

* **paired** (every checkpoint holds the same prompts): the prompts are drawn with
  replacement once per replicate and every checkpoint takes the samples of the drawn
  prompts, so a prompt's difficulty cancels between checkpoints;
* **independent**: each checkpoint's samples are drawn with replacement on their own.

A metric is ``sum(w * num) / sum(w * den)`` over a checkpoint's samples (a mean, a share, a
pooled rate); the semantic entropy is a function of the summed gram counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mechgraph.errors import ConfigError

__all__ = [
    "Draws",
    "draw_weights",
    "expected_distinct",
    "percentile_ci",
    "rarefied_entropy",
    "ratio_metric",
    "shannon_entropy",
]


@dataclass
class Draws:
    """Bootstrap weights of every checkpoint.

    Attributes
    ----------
    rows : list of (n_c,) int arrays
        The sample rows of each checkpoint.
    weights : list of (B, n_c) float arrays
        How often each sample is drawn in each replicate.
    paired : bool
        Whether prompts were drawn jointly across checkpoints.
    """

    rows: list[np.ndarray]
    weights: list[np.ndarray]
    paired: bool

    @property
    def n_boot(self) -> int:
        return self.weights[0].shape[0]


def draw_weights(
    checkpoint_of: np.ndarray,
    n_checkpoints: int,
    *,
    prompt_of: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> Draws:
    """Bootstrap weights, paired over prompts when ``prompt_of`` is given.

    Parameters
    ----------
    checkpoint_of : (n,) int array
        Checkpoint index (0 .. n_checkpoints - 1) of each sample.
    n_checkpoints : int
    prompt_of : (n,) int array, optional
        Prompt index of each sample: draw prompts jointly across checkpoints. Every
        checkpoint must hold every prompt.
    n_boot : int
    seed : int

    Examples
    --------
    >>> d = draw_weights(np.array([0, 0, 1, 1]), 2, prompt_of=np.array([0, 1, 0, 1]), n_boot=3)
    >>> bool((d.weights[0] == d.weights[1]).all())
    True
    """
    rng = np.random.default_rng(seed)
    rows = [np.flatnonzero(checkpoint_of == c) for c in range(n_checkpoints)]
    if prompt_of is None:
        weights = [
            rng.multinomial(len(r), np.full(len(r), 1.0 / len(r)), size=n_boot).astype(float)
            if len(r)
            else np.zeros((n_boot, 0))
            for r in rows
        ]
        return Draws(rows, weights, paired=False)
    n_prompts = int(prompt_of.max()) + 1
    drawn = rng.multinomial(n_prompts, np.full(n_prompts, 1.0 / n_prompts), size=n_boot)
    weights = []
    for r in rows:
        if len(np.unique(prompt_of[r])) != n_prompts:
            raise ConfigError("paired draws need every prompt at every checkpoint")
        weights.append(drawn[:, prompt_of[r]].astype(float))
    return Draws(rows, weights, paired=True)


def ratio_metric(draws: Draws, num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point values and replicates of ``sum(num) / sum(den)`` per checkpoint.

    Samples whose ``num`` is NaN count in neither sum (an unknown ``correct``, say).

    Returns
    -------
    point : (n_checkpoints,) array
    replicates : (B, n_checkpoints) array
        NaN where a replicate's denominator is 0.

    Examples
    --------
    >>> d = draw_weights(np.array([0, 0, 1, 1]), 2, n_boot=4)
    >>> ratio_metric(d, np.array([1.0, 0.0, 1.0, 1.0]), np.ones(4))[0].tolist()
    [0.5, 1.0]
    """
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    known = ~np.isnan(num)
    num, den = np.where(known, num, 0.0), np.where(known, den, 0.0)
    point = np.full(len(draws.rows), np.nan)
    reps = np.full((draws.n_boot, len(draws.rows)), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for c, (r, w) in enumerate(zip(draws.rows, draws.weights, strict=True)):
            d = den[r].sum()
            if d > 0:
                point[c] = num[r].sum() / d
            dw = w @ den[r]
            reps[:, c] = np.where(dw > 0, (w @ num[r]) / np.where(dw > 0, dw, 1), np.nan)
    return point, reps


def shannon_entropy(counts: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of count vectors along the last axis (0 for all-zero rows).

    Examples
    --------
    >>> round(float(shannon_entropy(np.array([1, 1, 1, 1]))), 4)  # log 4
    1.3863
    """
    c = np.asarray(counts, dtype=float)
    tot = c.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tot > 0, c / np.where(tot > 0, tot, 1), 0.0)
        h = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0.0)).sum(-1)
    return h


def expected_distinct(counts: np.ndarray, m: int) -> float:
    """Expected number of distinct grams among ``m`` occurrences drawn without replacement.

    Hurlbert's rarefaction: ``sum_i 1 - C(N - N_i, m) / C(N, m)``; exact.

    Examples
    --------
    >>> round(expected_distinct(np.array([5, 5]), 1), 9)
    1.0
    >>> expected_distinct(np.array([5, 5]), 10)
    2.0
    """
    from scipy.special import gammaln

    c = np.asarray(counts, dtype=float)
    c = c[c > 0]
    n = c.sum()
    if m >= n:
        return float(len(c))
    ok = n - c >= m
    logq = np.zeros_like(c)
    logq[ok] = (
        gammaln(n - c[ok] + 1) - gammaln(n - c[ok] - m + 1) - gammaln(n + 1) + gammaln(n - m + 1)
    )
    q = np.where(ok, np.exp(logq), 0.0)
    return float((1 - q).sum())


def rarefied_entropy(counts: np.ndarray, m: int, rng: np.random.Generator, draws: int) -> float:
    """Mean Shannon entropy of ``m`` occurrences drawn without replacement from ``counts``.

    Monte Carlo over ``draws`` multivariate-hypergeometric subsamples; when fewer than
    ``m`` occurrences exist, the entropy of all of them.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> rarefied_entropy(np.array([3, 0, 0]), 2, rng, 5)
    0.0
    """
    c = np.asarray(counts, dtype=np.int64)
    c = c[c > 0]
    if c.sum() <= m:
        return float(shannon_entropy(c))
    sub = rng.multivariate_hypergeometric(c, m, size=draws, method="marginals")
    return float(shannon_entropy(sub).mean())


def percentile_ci(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column (NaN where fewer than two finite replicates).

    Examples
    --------
    >>> lo, hi = percentile_ci(np.arange(101.0)[:, None])
    >>> round(float(lo[0]), 6), round(float(hi[0]), 6)
    (2.5, 97.5)
    """
    r = np.asarray(replicates, dtype=float)
    a = (1 - level) / 2
    ok = np.isfinite(r).sum(0) >= 2
    lo = np.full(r.shape[1], np.nan)
    hi = np.full(r.shape[1], np.nan)
    if ok.any():
        q = np.nanquantile(r[:, ok], [a, 1 - a], axis=0)
        lo[ok], hi[ok] = q[0], q[1]
    return lo, hi


def gram_totals(draws: Draws, grams, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Summed gram counts of checkpoint ``c``: the point ``(V,)`` and replicates ``(B, V)``."""
    sub = grams[draws.rows[c]]
    point = np.asarray(sub.sum(0)).ravel()
    reps = np.asarray((sub.T @ draws.weights[c].T).T)
    return point, reps


def semantic_entropy(
    draws: Draws,
    grams,
    *,
    rarefy: int | None = None,
    seed: int = 0,
    point_draws: int = 50,
    rep_draws: int = 4,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Raw and rarefied semantic entropy and distinct-gram counts per checkpoint.

    Parameters
    ----------
    draws : Draws
    grams : scipy.sparse matrix (n_samples, n_grams)
    rarefy : int, optional
        Occurrences per checkpoint for the rarefied values; default 3/4 of the smallest
        checkpoint's total (so that bootstrap replicates nearly always reach it).
    point_draws, rep_draws : int
        Subsamples averaged for the point value and for each replicate.

    Returns
    -------
    dict
        ``semantic_entropy``, ``n_distinct_grams``, ``semantic_entropy_rarefied``,
        ``n_distinct_grams_rarefied`` -> ``(point, replicates)``; plus ``"_m"``: the
        occurrence count used, and ``"_short"``: replicates that had fewer.
    """
    rng = np.random.default_rng(seed)
    k, b = len(draws.rows), draws.n_boot
    totals = [gram_totals(draws, grams, c) for c in range(k)]
    smallest = min(int(p.sum()) for p, _ in totals)
    m = int(rarefy) if rarefy else max(1, (3 * smallest) // 4)
    out = {name: (np.full(k, np.nan), np.full((b, k), np.nan)) for name in _SEM}
    short = 0
    for c, (p, reps) in enumerate(totals):
        out["semantic_entropy"][0][c] = shannon_entropy(p)
        out["semantic_entropy"][1][:, c] = shannon_entropy(reps)
        out["n_distinct_grams"][0][c] = np.count_nonzero(p)
        out["n_distinct_grams"][1][:, c] = np.count_nonzero(reps, axis=1)
        if smallest == 0:
            continue
        out["semantic_entropy_rarefied"][0][c] = rarefied_entropy(p, m, rng, point_draws)
        out["n_distinct_grams_rarefied"][0][c] = expected_distinct(p, m)
        for i in range(b):
            r = np.rint(reps[i]).astype(np.int64)
            short += int(r.sum() < m)
            out["semantic_entropy_rarefied"][1][i, c] = rarefied_entropy(r, m, rng, rep_draws)
            out["n_distinct_grams_rarefied"][1][i, c] = expected_distinct(r, m)
    out["_m"] = m  # type: ignore[assignment]
    out["_short"] = short  # type: ignore[assignment]
    return out


_SEM: Sequence[str] = (
    "semantic_entropy",
    "n_distinct_grams",
    "semantic_entropy_rarefied",
    "n_distinct_grams_rarefied",
)
