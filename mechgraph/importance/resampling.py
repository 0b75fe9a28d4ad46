"""Resampling counterfactual importance (Thought Anchors).

For sentence i, ``n`` rollouts are sampled from the prefix ``prompt + sentences < i``.
A rollout's first new sentence is compared with the original sentence i by cosine
similarity of sentence embeddings (all-MiniLM-L6-v2); those below ``threshold`` (0.8)
are *dissimilar*. Rollouts from ``i + 1`` (which keep sentence i) are the reference:

- accuracy importance = acc(dissimilar from i) - acc(from i + 1)  (Thought Anchors' sign)
- KL importance = KL(P_dissimilar || P_next) over the answer distribution, additively
  smoothed (``alpha = 1``: Laplace) over the union of answers seen.

Both are 0 when no rollout from i is dissimilar. Generation and embedding are pluggable
(:class:`Generator`; :class:`Embedder` is :class:`mechgraph.labels.Embedder`, any
``list[str] -> (n, d)`` callable such as :func:`mechgraph.labels.minilm_embedder`, or an
object with ``encode`` such as :class:`MiniLMEmbedder`); :class:`HFGenerator` uses plain
HF ``generate``.
:func:`ranking_reliability` says how reproducible a run's ranking is;
:func:`mechgraph.importance.adaptive.adaptive_importance` is the cheaper sequential estimator.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mechgraph.configs import merge_config
from mechgraph.errors import ConfigError, TraceError
from mechgraph.importance.answers import ANSWER_MODES, extract_answer, normalize_answer
from mechgraph.importance.generation import (
    Generator,
    HFGenerator,
    MiniLMEmbedder,
    rollout_seeds,
)
from mechgraph.labels.grams import Embedder, as_embedder
from mechgraph.segment import segment_text
from mechgraph.traces import Trace

__all__ = [
    "Embedder",
    "Generator",
    "HFGenerator",
    "MiniLMEmbedder",
    "RankReliability",
    "ResamplingConfig",
    "ResamplingResult",
    "Rollout",
    "answer_kl",
    "counterfactual_importance",
    "first_sentence",
    "importance_from_rollouts",
    "ranking_reliability",
    "result_from_rollouts",
    "sample_rollouts",
]


@dataclass
class ResamplingConfig:
    """Options of :func:`counterfactual_importance`.

    Parameters
    ----------
    n_rollouts : int
        Rollouts per position (100 in Thought Anchors).
    threshold : float
        Cosine below which a resampled sentence is dissimilar (0.8).
    alpha : float
        Additive smoothing of answer counts (1 = Laplace).
    seed : int
        Rollout ``k`` at position ``i`` uses its own stream ``(seed, i, k)``
        (:func:`~mechgraph.importance.generation.rollout_seeds`): runs with the same seed
        share their first rollouts, so a cheaper run is a prefix of a fuller one.
    use_similar : bool
        Add the similar rollouts from i to the reference distribution (their option).
    answer : str
        How a rollout's final answer is found: ``"boxed"`` (Thought Anchors),
        ``"boxed_or_stated"`` or ``"boxed_or_last_number"``
        (:func:`~mechgraph.importance.answers.extract_answer`).
    """

    n_rollouts: int = 100
    threshold: float = 0.8
    alpha: float = 1.0
    seed: int = 0
    use_similar: bool = False
    answer: str = "boxed"

    def __post_init__(self) -> None:
        if self.answer not in ANSWER_MODES:
            raise ConfigError(f"answer must be one of {ANSWER_MODES}, not {self.answer!r}")
        if self.n_rollouts < 1:
            raise ConfigError(f"n_rollouts must be >= 1, got {self.n_rollouts}")
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be a cosine in [-1, 1], got {self.threshold}")
        if self.alpha <= 0:
            raise ConfigError(f"alpha must be > 0 (proper smoothing), got {self.alpha}")


@dataclass
class Rollout:
    """One resampled continuation: its first sentence, answer and similarity."""

    sentence: str
    answer: str
    similarity: float


@dataclass
class ResamplingResult:
    """Per-sentence counterfactual importance and the rollouts behind it.

    Attributes
    ----------
    kl, accuracy, different_fraction : ndarray (S,)
        ``accuracy`` is NaN without a reference answer.
    rollouts : list of list of Rollout
        ``S + 1`` positions (the last: after the final sentence), in seed order.
    n_total : int
        Rollouts generated.
    config : ResamplingConfig
    correct : str or None
        The normalised reference answer used for ``accuracy``.
    """

    kl: np.ndarray
    accuracy: np.ndarray
    different_fraction: np.ndarray
    rollouts: list[list[Rollout]] = field(repr=False)
    n_total: int = 0
    config: ResamplingConfig = field(default_factory=ResamplingConfig)
    correct: str | None = None

    @property
    def n_per_position(self) -> np.ndarray:
        """Rollouts at each of the ``S + 1`` positions."""
        return np.array([len(r) for r in self.rollouts])


def first_sentence(text: str) -> str:
    """The first sentence of a continuation (Thought Anchors' splitter), stripped.

    Examples
    --------
    >>> first_sentence("  We try x = 2. Then y = 3.")
    'We try x = 2.'
    """
    spans = segment_text(text, "sentences")
    if not spans:
        return text.strip()
    a, b = spans[0]
    return text[a:b].strip()


def answer_kl(p_answers: Sequence[str], q_answers: Sequence[str], alpha: float = 1.0) -> float:
    """KL(P || Q) of two answer samples, additively smoothed over the answers seen.

    Empty answers ('' = none found) are dropped; 0.0 when either side is empty.

    Examples
    --------
    >>> answer_kl(["1", "1"], ["1", "1"])
    0.0
    >>> round(answer_kl(["1", "1", "1"], ["2", "2", "2"]), 3)
    0.832
    """
    p = Counter(a for a in p_answers if a)
    q = Counter(a for a in q_answers if a)
    np_, nq = sum(p.values()), sum(q.values())
    if not np_ or not nq:
        return 0.0
    support = sorted(set(p) | set(q))  # a fixed order: the float sum must not depend on hashing
    V = len(support)
    kl = 0.0
    for a in support:
        pa = (p[a] + alpha) / (np_ + alpha * V)
        qa = (q[a] + alpha) / (nq + alpha * V)
        kl += pa * math.log(pa / qa)
    return max(0.0, kl)


def _position_prefix(trace: Trace, i: int) -> str:
    steps = trace.steps or []
    cut = steps[i].start if i < len(steps) else steps[-1].end
    return trace.prompt + trace.text[:cut]


def sample_rollouts(
    trace: Trace,
    i: int,
    n: int,
    generator: Generator,
    embedder: Embedder,
    *,
    seed: int = 0,
    start: int = 0,
    answer: str = "boxed",
) -> list[Rollout]:
    """Rollouts ``start .. start + n - 1`` resampled at position i.

    ``i == len(steps)`` is the position after the last step. Rollout ``k`` is drawn with
    its own seed (:func:`~mechgraph.importance.generation.rollout_seeds`), so the same
    ``(seed, i, k)`` always gives the same rollout.

    Examples
    --------
    >>> rs = sample_rollouts(trace, 3, 10, HFGenerator(lm), MiniLMEmbedder())  # doctest: +SKIP
    """
    steps = trace.steps or []
    if not 0 <= i <= len(steps):
        raise TraceError(f"trace {trace.id!r}: no position {i} (it has {len(steps)} steps)")
    if n <= 0:
        return []
    texts = generator.sample(_position_prefix(trace, i), rollout_seeds(seed, i, start, n))
    if len(texts) != n:
        raise ConfigError(f"generator returned {len(texts)} continuations for {n} seeds")
    firsts = [first_sentence(t) for t in texts]
    answers = [normalize_answer(extract_answer(t, answer)) for t in texts]
    if i < len(steps):
        emb = as_embedder(embedder)([steps[i].text.strip(), *firsts]).astype(np.float64)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        sims = emb[1:] @ emb[0]
    else:
        sims = np.full(len(texts), np.nan)
    return [Rollout(f, a, float(s)) for f, a, s in zip(firsts, answers, sims, strict=True)]


def _one(
    cur: Sequence[Rollout],
    nxt: Sequence[Rollout],
    thr: float,
    alpha: float,
    correct: str | None,
    use_similar: bool,
) -> tuple[float, float, float]:
    dis = [r for r in cur if r.similarity < thr]
    frac = len(dis) / len(cur) if cur else 0.0
    if not dis or not nxt:
        return 0.0, (0.0 if correct is not None else math.nan), frac
    ref = list(nxt) + ([r for r in cur if r.similarity >= thr] if use_similar else [])
    kl = answer_kl([r.answer for r in dis], [r.answer for r in ref], alpha)
    if correct is None:
        return kl, math.nan, frac
    acc = np.mean([r.answer == correct for r in dis]) - np.mean([r.answer == correct for r in nxt])
    return kl, float(acc), frac


def importance_from_rollouts(
    rollouts: Sequence[Sequence[Rollout]],
    *,
    threshold: float = 0.8,
    alpha: float = 1.0,
    correct: str | None = None,
    use_similar: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kl, accuracy, different_fraction) per sentence from ``S + 1`` positions' rollouts.

    Examples
    --------
    >>> r = [[Rollout("x", "1", 0.1)], [Rollout("y", "2", 0.9)]]
    >>> [round(float(v[0]), 3) for v in importance_from_rollouts(r, correct="1")]
    [0.231, 1.0, 1.0]
    """
    corr = None if correct is None else normalize_answer(correct)
    out = [
        _one(rollouts[i], rollouts[i + 1], threshold, alpha, corr, use_similar)
        for i in range(len(rollouts) - 1)
    ]
    arr = np.array(out, dtype=np.float64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _check(trace: Trace) -> None:
    if not trace.steps:
        raise TraceError(f"trace {trace.id!r}: has no steps (segment it first)")


def counterfactual_importance(
    trace: Trace,
    generator: Generator,
    embedder: Embedder,
    config: ResamplingConfig | None = None,
    *,
    correct: str | None = None,
    **options: Any,
) -> ResamplingResult:
    """Counterfactual importance of every sentence, ``n_rollouts`` per position.

    Parameters
    ----------
    trace : Trace with steps
    generator : Generator
    embedder : Embedder
        Any ``list[str] -> (n, d)`` callable (:class:`mechgraph.labels.Embedder`), or an
        object with ``encode`` (:class:`MiniLMEmbedder`).
    config : ResamplingConfig, optional
    correct : str, optional
        The reference answer (default ``trace.answer``); without one, accuracy is NaN.

    Examples
    --------
    >>> r = counterfactual_importance(trace, HFGenerator(lm), MiniLMEmbedder(), n_rollouts=10)  # doctest: +SKIP
    >>> r.kl.shape  # doctest: +SKIP
    """
    cfg = merge_config(ResamplingConfig, config, **options)
    _check(trace)
    correct = correct if correct is not None else trace.answer
    S = len(trace.steps or [])
    rolls = [
        sample_rollouts(
            trace, i, cfg.n_rollouts, generator, embedder, seed=cfg.seed, answer=cfg.answer
        )
        for i in range(S + 1)
    ]
    return result_from_rollouts(rolls, cfg, correct)


def result_from_rollouts(
    rolls: list[list[Rollout]], config: ResamplingConfig, correct: str | None
) -> ResamplingResult:
    """A :class:`ResamplingResult` from the rollouts of every position.

    Examples
    --------
    >>> r = result_from_rollouts([[Rollout("x", "1", 0.1)], [Rollout("y", "1", 1.0)]],
    ...                          ResamplingConfig(), "1")
    >>> float(r.accuracy[0]), r.n_total
    (0.0, 2)
    """
    corr = None if correct is None else normalize_answer(correct)
    kl, acc, frac = importance_from_rollouts(
        rolls,
        threshold=config.threshold,
        alpha=config.alpha,
        correct=corr,
        use_similar=config.use_similar,
    )
    n = sum(len(r) for r in rolls)
    return ResamplingResult(kl, acc, frac, rolls, n, config, corr)


@dataclass
class RankReliability:
    """How reproducible a resampling run's sentence ranking is.

    Attributes
    ----------
    split_half : float
        Spearman between the rankings from the even and the odd rollouts of every position.
    full : float
        Spearman-Brown estimate of the Spearman between this run and an independent run of
        the same size: ``2 r / (1 + r)`` with ``r = split_half``.
    n_per_position : float
        Mean rollouts per position of this run.
    rollouts_for_target : float
        Rollouts per position at which the Spearman-Brown prophecy reaches ``target``
        (inf when the split-half correlation is not positive).
    target : float
    """

    split_half: float
    full: float
    n_per_position: float
    rollouts_for_target: float
    target: float


def ranking_reliability(
    result: ResamplingResult, metric: str = "accuracy", target: float = 0.9
) -> RankReliability:
    """Split-half reliability of a run's ranking, at no extra rollouts.

    The rollouts of every position are split by seed parity into two half-size runs;
    their Spearman ``r`` is stepped up by the Spearman-Brown formula. Ranks of
    sentences with near-zero importance are mostly noise, and this says how much: it
    predicts what two independent full runs would agree on (checked against real
    reruns in ``benchmarks/bench_resampling.py``).

    Examples
    --------
    >>> rel = ranking_reliability(counterfactual_importance(trace, gen, emb))  # doctest: +SKIP
    >>> rel.full, rel.rollouts_for_target  # doctest: +SKIP
    """
    from scipy.stats import spearmanr

    if metric not in ("kl", "accuracy"):
        raise ConfigError(f"metric must be 'kl' or 'accuracy', not {metric!r}")
    if metric == "accuracy" and result.correct is None:
        raise ConfigError("metric='accuracy' needs a run with a reference answer")
    if not 0 < target < 1:
        raise ConfigError(f"target must be in (0, 1), got {target}")
    halves = [
        getattr(
            result_from_rollouts(
                [r[part::2] for r in result.rollouts], result.config, result.correct
            ),
            metric,
        )
        for part in (0, 1)
    ]
    with warnings.catch_warnings():  # constant halves (nothing varies): reliability 0
        warnings.simplefilter("ignore")
        r = spearmanr(halves[0], halves[1]).statistic
    r = 0.0 if not np.isfinite(r) else float(r)
    full = 2 * r / (1 + r) if r > -1 else -1.0
    n = float(result.n_per_position.mean())
    if full > 0:
        need = n * target * (1 - full) / (full * (1 - target))
    else:
        need = math.inf
    return RankReliability(r, full, n, need, target)
