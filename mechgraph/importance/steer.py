"""Do planning sentences steer? Suppress the top-k scored sentences vs k random ones.

The downstream effect of hiding a set of sentences is the mean per-token
``KL(base || suppressed)`` over the tokens after the first hidden sentence (all of
its sentence's keys masked in every head, see :mod:`mechgraph.importance.suppression`).
The score array (a planning probe, a label indicator...) is passed in, so this module
does not depend on any tagger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.importance._common import PreparedTrace, prepare
from mechgraph.importance.suppression import masked_token_kl
from mechgraph.traces import Trace

__all__ = ["SteerResult", "steer_test"]


@dataclass
class SteerResult:
    """Effect of suppressing the top-k scored sentences vs random k-sets.

    Attributes
    ----------
    top_kl : float
        Mean downstream KL with the top-k sentences hidden.
    random_kl : ndarray (n_random,)
        The same with random k-sets (drawn from the same eligible sentences).
    effect : float
        ``top_kl - mean(random_kl)``.
    ci : (float, float)
        Bootstrap 95% CI of ``effect`` (resampling the random draws).
    """

    top_kl: float
    random_kl: np.ndarray
    effect: float
    ci: tuple[float, float]


def _downstream(lm: Any, p: PreparedTrace, chosen: list[int]) -> float:
    spans = [p.spans[j] for j in chosen]
    kl = masked_token_kl(lm, p.ids[: p.spans[-1][1]], spans)
    first_end = min(b for _, b in spans)
    masked = np.zeros(len(kl), dtype=bool)
    for a, b in spans:
        masked[a:b] = True
    keep = np.arange(len(kl)) >= first_end
    keep &= ~masked
    keep[: p.spans[0][0]] = False
    return float(kl[keep].mean()) if keep.any() else 0.0


def steer_test(
    lm: Any,
    trace: Trace | PreparedTrace,
    scores: np.ndarray,
    *,
    k: int = 3,
    n_random: int = 20,
    n_boot: int = 2000,
    seed: int = 0,
    max_tokens: int | None = None,
) -> SteerResult:
    """Suppress the ``k`` highest-scored sentences vs ``n_random`` random k-sets.

    The last sentence is never eligible (nothing follows it).

    Examples
    --------
    >>> r = steer_test(lm, trace, planning_scores, k=3)  # doctest: +SKIP
    >>> r.effect, r.ci  # doctest: +SKIP
    """
    p = (
        trace
        if isinstance(trace, PreparedTrace)
        else prepare(trace, lm.tokenizer, max_tokens=max_tokens)
    )
    scores = np.asarray(scores, dtype=np.float64)[: p.n_steps]
    if len(scores) != p.n_steps:
        raise ConfigError(f"need one score per sentence ({p.n_steps}), got {len(scores)}")
    elig = p.n_steps - 1
    if not 1 <= k <= elig - 1:
        raise ConfigError(f"k must be in [1, {elig - 1}] for {p.n_steps} sentences, got {k}")
    top = list(np.argsort(-scores[:elig], kind="stable")[:k])
    rng = np.random.default_rng(seed)
    top_kl = _downstream(lm, p, [int(j) for j in top])
    rand = np.array(
        [
            _downstream(lm, p, sorted(rng.choice(elig, k, replace=False).tolist()))
            for _ in range(n_random)
        ]
    )
    boots = rng.choice(rand, (n_boot, len(rand)), replace=True).mean(1)
    effect = top_kl - float(rand.mean())
    lo, hi = np.percentile(top_kl - boots, [2.5, 97.5])
    return SteerResult(top_kl, rand, effect, (float(lo), float(hi)))
