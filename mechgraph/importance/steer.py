"""Do planning sentences steer? Suppress the top-k scored sentences vs k random ones.

Hiding a set of sentences masks all of their keys in every head (see
:mod:`mechgraph.importance.suppression`); its downstream effect is a mean per-token
``KL(base || suppressed)`` of the next-token distributions. The score array (a planning
probe, a label indicator...) is passed in, so this module does not depend on any tagger.

Where the KL is measured
------------------------
``eval_from=None`` (the original test)
    Over the tokens after the *first* hidden sentence, hidden tokens excluded. These
    tokens differ from one set to the next: a set that starts late is averaged over
    fewer, nearer tokens.
``eval_from=s`` (recommended)
    Over one fixed window, the tokens of sentences ``s, s+1, ...`` to the end; only the
    sentences before ``s`` can be hidden. Every set, the top one and all its controls,
    is then measured on exactly the same tokens, so their KLs compare directly.

Controls
--------
``control="uniform"``
    ``n_random`` k-sets drawn uniformly from the eligible sentences (the original test).
``control="position"``
    Position-matched k-sets (:func:`position_matched_sets`): each top sentence is paired
    with a different non-top sentence within ``radius`` sentences of it, so a control
    sits where the top set sits (planning sentences cluster early in a trace; uniform
    sets include sentences nearer the measured tokens, and nearness alone raises KL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mechgraph.errors import ConfigError
from mechgraph.importance._common import PreparedTrace, as_prepared
from mechgraph.importance.suppression import _base_forward, _kl_batch, _masked_forward
from mechgraph.traces import Trace

__all__ = ["CONTROLS", "SteerResult", "position_matched_sets", "set_kl", "steer_test"]

CONTROLS = ("uniform", "position")
_STRICT_TRIES = 200


@dataclass
class SteerResult:
    """Effect of suppressing the top-k scored sentences vs random k-sets.

    Attributes
    ----------
    top_kl : float
        Mean downstream KL with the top-k sentences hidden.
    random_kl : ndarray (n_random,)
        The same with each control k-set hidden.
    effect : float
        ``top_kl - mean(random_kl)``.
    ci : (float, float)
        Bootstrap 95% CI of ``effect`` (resampling the random draws of this trace only).
    top : list of int
        The hidden top-k sentences (indices into the prepared trace's steps).
    random_sets : ndarray (n_random, k) of int
        The control k-sets, each sorted.
    control : str
        ``"uniform"`` or ``"position"``.
    window : (int, int) or None
        Token span ``[a, b)`` the KL is averaged over (``eval_from`` given), else None.
    position_offset : float
        Mean over draws and ranks of ``sorted(control) - sorted(top)`` in sentences
        (> 0: the controls sit later than the top set).
    """

    top_kl: float
    random_kl: np.ndarray
    effect: float
    ci: tuple[float, float]
    top: list[int] = field(default_factory=list)
    random_sets: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    control: str = "uniform"
    window: tuple[int, int] | None = None
    position_offset: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (lists and floats)."""
        return {
            "top_kl": self.top_kl,
            "random_kl": np.asarray(self.random_kl, dtype=float).tolist(),
            "random_kl_mean": float(np.mean(self.random_kl)) if len(self.random_kl) else None,
            "effect": self.effect,
            "ci": list(self.ci),
            "top": [int(j) for j in self.top],
            "random_sets": np.asarray(self.random_sets, dtype=int).tolist(),
            "control": self.control,
            "window": None if self.window is None else list(self.window),
            "position_offset": self.position_offset,
        }


def _draw_matched(
    top: np.ndarray, n_eligible: int, radius: int, rng: np.random.Generator, widen: bool
) -> list[int] | None:
    """One matched set; None when a window runs out of candidates and ``widen`` is False."""
    taken = set(top.tolist())
    out: list[int] = []
    for j in rng.permutation(top):
        r = radius
        while True:
            lo, hi = max(0, j - r), min(n_eligible, j + r + 1)
            cand = [i for i in range(lo, hi) if i not in taken]
            if cand or r >= n_eligible:
                break
            if not widen:
                return None
            r += 1
        if not cand:  # cannot happen while n_eligible >= 2k (checked by the caller)
            return None
        pick = int(rng.choice(cand))
        taken.add(pick)
        out.append(pick)
    return sorted(out)


def position_matched_sets(
    top: Sequence[int],
    n_eligible: int,
    n_sets: int,
    *,
    radius: int = 2,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Random k-sets placed where ``top`` is: each member within ``radius`` sentences of one.

    Rule: the members of ``top`` are taken in a random order; each is paired with a
    sentence drawn uniformly from the eligible sentences ``0 .. n_eligible - 1`` within
    ``+-radius`` (sentence index) of it that are neither in ``top`` nor already drawn.
    A draw in which some member finds no candidate is redrawn (up to 200 times); only
    then are that member's window widened one sentence at a time. Hence, unless widened,
    ``abs(sorted(set) - sorted(top)) <= radius`` rank by rank (in one dimension a
    matching within ``radius`` exists iff the sorted one is within ``radius``). Near the
    ends of the eligible range the windows are one-sided, so controls of early top
    sentences shift later on average; :attr:`SteerResult.position_offset` reports it.

    Parameters
    ----------
    top : sequence of int
        The k distinct sentences to match.
    n_eligible : int
        Sentences ``0 .. n_eligible - 1`` may be drawn; needs ``n_eligible >= 2k``.
    n_sets : int
        Sets to draw.
    radius : int
        Half-width of the matching window, in sentences (>= 1).
    rng : Generator, int or None

    Returns
    -------
    ndarray (n_sets, k) of int, each row sorted.

    Examples
    --------
    >>> s = position_matched_sets([2, 5], 10, 3, radius=1, rng=0)
    >>> s.shape, bool((abs(s - [2, 5]) <= 1).all())
    ((3, 2), True)
    """
    top_a = np.asarray(sorted(int(j) for j in top), dtype=np.int64)
    k = len(top_a)
    if k == 0 or len(set(top_a.tolist())) != k:
        raise ConfigError(f"top must be distinct sentence indices, got {list(top)}")
    if top_a[0] < 0 or top_a[-1] >= n_eligible:
        raise ConfigError(f"top {top_a.tolist()} is outside the eligible 0..{n_eligible - 1}")
    if n_eligible < 2 * k:
        raise ConfigError(
            f"position matching needs at least 2k = {2 * k} eligible sentences, got {n_eligible}"
        )
    if radius < 1:
        raise ConfigError(f"radius must be >= 1, got {radius}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out = np.zeros((n_sets, k), dtype=np.int64)
    for n in range(n_sets):
        got = None
        for _ in range(_STRICT_TRIES):
            got = _draw_matched(top_a, n_eligible, radius, gen, widen=False)
            if got is not None:
                break
        if got is None:
            got = _draw_matched(top_a, n_eligible, radius, gen, widen=True)
        out[n] = got
    return out


def _check_sets(p: PreparedTrace, sets: Sequence[Sequence[int]], n_eligible: int) -> None:
    for s in sets:
        bad = [j for j in s if not 0 <= int(j) < n_eligible]
        if bad:
            raise ConfigError(
                f"trace {p.trace.id!r}: sentences {bad} cannot be hidden (eligible: "
                f"0..{n_eligible - 1} of {p.n_steps})"
            )


def _eval_start(p: PreparedTrace, eval_from: int) -> int:
    s = eval_from + p.n_steps if eval_from < 0 else eval_from
    if not 1 <= s <= p.n_steps - 1:
        raise ConfigError(
            f"trace {p.trace.id!r}: eval_from={eval_from} must leave sentences on both sides "
            f"(1..{p.n_steps - 1}, or negative from the end) of {p.n_steps}"
        )
    return s


def _row_metric(kl: np.ndarray, off: int, spans: list[tuple[int, int]], eval_tok: int | None):
    """Mean of a per-token KL row (covering tokens ``off..``) under the chosen rule."""
    if eval_tok is not None:
        return float(kl[eval_tok - off :].mean())
    n = off + len(kl)
    keep = np.arange(n) >= min(b for _, b in spans)
    for a, b in spans:
        keep[a:b] = False
    keep = keep[off:]
    return float(kl[keep].mean()) if keep.any() else 0.0


@torch.no_grad()
def set_kl(
    lm: Any,
    p: PreparedTrace,
    sets: Sequence[Sequence[int]],
    *,
    eval_from: int | None = None,
    batch_size: int = 4,
    kl_chunk: int = 256,
) -> np.ndarray:
    """Mean downstream KL for each set of hidden sentences (one base run, batched rows).

    The base sequence runs once with a KV cache; the sets, sorted by their first hidden
    token, run ``batch_size`` at a time from the batch's first hidden token on (nothing
    before it changes), each row with its own mask. An empty set hides nothing (KL 0, up
    to float error); it still runs, from the measured window on.

    Parameters
    ----------
    lm : LoadedModel
    p : PreparedTrace
    sets : sequence of sequences of int
        Sentence indices to hide together, one set per output.
    eval_from : int, optional
        Measure over the tokens of sentences ``eval_from ..`` (negative: from the end);
        sets may only hide sentences before it. None: tokens after the set's first hidden
        sentence, hidden tokens excluded (then the last sentence may not be hidden).
    batch_size, kl_chunk : int

    Returns
    -------
    ndarray (len(sets),)

    Examples
    --------
    >>> p = prepare(trace, lm.tokenizer, max_tokens=512)  # doctest: +SKIP
    >>> set_kl(lm, p, [[2, 5], [3, 4]], eval_from=-4)  # doctest: +SKIP
    array([0.031, 0.027])
    """
    if batch_size < 1 or kl_chunk < 1:
        raise ConfigError("batch_size and kl_chunk must be >= 1")
    s0 = None if eval_from is None else _eval_start(p, eval_from)
    n_elig = p.n_steps - 1 if s0 is None else s0
    _check_sets(p, sets, n_elig)
    if eval_from is None and any(len(s) == 0 for s in sets):
        raise ConfigError(f"trace {p.trace.id!r}: an empty set needs eval_from")
    hf = lm.hf
    head = hf.get_output_embeddings()
    T = p.spans[-1][1]
    eval_tok = None if s0 is None else p.spans[s0][0]
    x, hb, cache = _base_forward(hf, p.ids[:T])
    span_sets = [[p.spans[int(j)] for j in sorted(set(s))] for s in sets]
    starts = [min((a for a, _ in sp), default=eval_tok) for sp in span_sets]
    order = np.argsort(starts, kind="stable")
    out = np.zeros(len(sets))
    for c in range(0, len(order), batch_size):
        rows = [int(r) for r in order[c : c + batch_size]]
        start = min(starts[r] for r in rows)
        b0 = (
            eval_tok if eval_tok is not None else min(min(b for _, b in span_sets[r]) for r in rows)
        )
        h = _masked_forward(hf, x, cache, start, [span_sets[r] for r in rows], hb.dtype)
        kl = _kl_batch(head, hb, h, start, b0, kl_chunk)  # (B, T - b0)
        for i, r in enumerate(rows):
            out[r] = _row_metric(kl[i], b0, span_sets[r], eval_tok)
    return out


def _uniform_sets(rng: np.random.Generator, n_eligible: int, k: int, n: int) -> np.ndarray:
    sets = [sorted(rng.choice(n_eligible, k, replace=False).tolist()) for _ in range(n)]
    return np.asarray(sets, dtype=np.int64).reshape(n, k)


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
    control: str = "uniform",
    radius: int = 2,
    eval_from: int | None = None,
    batch_size: int = 4,
) -> SteerResult:
    """Suppress the ``k`` highest-scored sentences vs ``n_random`` control k-sets.

    Parameters
    ----------
    lm : LoadedModel
    trace : Trace (with steps) or PreparedTrace
    scores : array (n_steps,)
        One score per sentence (extra trailing scores are ignored); higher = hide first.
    k : int
        Sentences hidden together.
    n_random : int
        Control k-sets.
    n_boot : int
        Bootstrap resamples of the control KLs for :attr:`SteerResult.ci`.
    seed : int
        Seeds the control draws and the bootstrap (same seed, same result).
    max_tokens : int, optional
        Truncate a :class:`Trace` to the whole sentences within this many tokens.
    control : {"uniform", "position"}
        Uniform k-sets of the eligible sentences, or position-matched ones
        (:func:`position_matched_sets` with ``radius``; needs ``2k`` eligible sentences).
    radius : int
        Matching half-width in sentences (``control="position"`` only).
    eval_from : int, optional
        Measure every set's KL over the same tokens: sentences ``eval_from ..`` to the
        end (negative: from the end); only earlier sentences are eligible. None: the
        original rule (tokens after the first hidden sentence; every sentence but the
        last eligible), which compares KLs over different tokens.
    batch_size : int
        Masked rows run together (see :func:`set_kl`).

    Returns
    -------
    SteerResult

    Examples
    --------
    >>> r = steer_test(lm, trace, planning_scores, k=3)  # doctest: +SKIP
    >>> r.effect, r.ci  # doctest: +SKIP
    >>> r = steer_test(lm, p, planning_scores, control="position", eval_from=-5)  # doctest: +SKIP
    """
    if control not in CONTROLS:
        raise ConfigError(f"control must be one of {CONTROLS}, got {control!r}")
    if n_random < 1 or n_boot < 1:
        raise ConfigError(f"n_random and n_boot must be >= 1, got {n_random} and {n_boot}")
    p = as_prepared(trace, lm.tokenizer, max_tokens)
    scores = np.asarray(scores, dtype=np.float64)[: p.n_steps]
    if len(scores) != p.n_steps:
        raise ConfigError(f"need one score per sentence ({p.n_steps}), got {len(scores)}")
    elig = p.n_steps - 1 if eval_from is None else _eval_start(p, eval_from)
    if not np.isfinite(scores[:elig]).all():
        raise ConfigError(f"trace {p.trace.id!r}: the scores of eligible sentences must be finite")
    if not 1 <= k <= elig - 1:
        raise ConfigError(f"k must be in [1, {elig - 1}] for {p.n_steps} sentences, got {k}")
    if control == "position" and elig < 2 * k:
        raise ConfigError(
            f"trace {p.trace.id!r}: position matching needs 2k = {2 * k} eligible sentences, "
            f"got {elig}"
        )
    top = [int(j) for j in np.argsort(-scores[:elig], kind="stable")[:k]]
    rng = np.random.default_rng(seed)
    if control == "uniform":
        sets = _uniform_sets(rng, elig, k, n_random)
    else:
        sets = position_matched_sets(top, elig, n_random, radius=radius, rng=rng)
    kls = set_kl(lm, p, [top, *sets.tolist()], eval_from=eval_from, batch_size=batch_size)
    top_kl, rand = float(kls[0]), kls[1:]
    boots = rng.choice(rand, (n_boot, len(rand)), replace=True).mean(1)
    effect = top_kl - float(rand.mean())
    lo, hi = np.percentile(top_kl - boots, [2.5, 97.5])
    window = None if eval_from is None else (p.spans[elig][0], p.spans[-1][1])
    offset = float((sets - np.sort(top)).mean()) if len(sets) else float("nan")
    return SteerResult(
        top_kl, rand, effect, (float(lo), float(hi)), top, sets, control, window, offset
    )
