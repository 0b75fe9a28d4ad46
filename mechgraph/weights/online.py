"""Planning masks and weights computed online, on a trainer's freshly generated batch.

Shared by the adapters: the trainer holds token ids (B, T) and a response mask; each row's
response tokens are decoded with the trainer's tokenizer (their char offsets recovered,
:func:`~mechgraph.weights.tokens.decode_with_offsets`), planning is found on that text,
and the result is scattered back onto the (B, T) grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mechgraph.align import token_mask
from mechgraph.errors import ConfigError
from mechgraph.weights.sources import PlanningSource, planning_source
from mechgraph.weights.tokens import TokenWeights, check_same_text, decode_with_offsets
from mechgraph.weights.transforms import AdvantageConfig, _numpy

__all__ = [
    "BatchTokens",
    "WeightFn",
    "adapter_sources",
    "batch_tokens",
    "check_sources",
    "rows_to_grid",
]

WeightFn = Callable[[str, np.ndarray], Sequence[float] | np.ndarray]
"""``(text, offsets) -> (n_tokens,)`` weights of one completion's tokens."""


@dataclass
class BatchTokens:
    """What the adapters know about a batch of completions, on the (B, T) grid.

    Attributes
    ----------
    texts : list of str
        Decoded completion texts (skip_special_tokens=True).
    offsets : list of (n_i, 2) int64
        Char offsets of each row's response tokens in its text.
    planning : (B, T) bool
        False outside the response mask.
    weights : (B, T) float32
        1.0 on response tokens without a weight function, 0 outside the response mask.
    """

    texts: list[str]
    offsets: list[np.ndarray]
    planning: np.ndarray
    weights: np.ndarray

    def planning_share(self, response_mask: Any) -> float:
        """Share of response tokens that are planning tokens."""
        m = _numpy(response_mask).astype(bool)
        return float(self.planning[m].mean()) if m.any() else 0.0


def batch_tokens(
    tokenizer: Any,
    ids: Any,
    response_mask: Any,
    *,
    planning: PlanningSource | str | Callable | None = None,
    weights: WeightFn | None = None,
    texts: Sequence[str] | None = None,
    row_ids: Sequence[str] | None = None,
) -> BatchTokens:
    """Decode a batch's response tokens and put planning / weights on the (B, T) grid.

    Parameters
    ----------
    tokenizer : fast tokenizer
        The trainer's.
    ids : (B, T) int tensor or array
    response_mask : (B, T)
        Response tokens (may be non-contiguous, e.g. multi-turn actions; their
        concatenation is the completion).
    planning : PlanningSource, spec or callable, optional
    weights : callable ``(text, offsets) -> (n,)``, optional
    texts : list of str, optional
        The completion texts the trainer holds; each must equal the decoded text, else
        :class:`~mechgraph.weights.tokens.TextMismatchError`.
    row_ids : list of str, optional
        Named in errors.

    Examples
    --------
    >>> from mechgraph.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> ids = tok("But wait, 4")["input_ids"]  # 5 tokens, then one pad
    >>> bt = batch_tokens(tok, [ids + [0]], [[1] * 5 + [0]], planning=["but wait"])
    >>> bt.texts, bt.planning.astype(int).tolist()
    (['But wait, 4'], [[1, 1, 0, 0, 0, 0]])
    """
    grid = _numpy(ids)
    M = _numpy(response_mask).astype(bool)
    if grid.ndim != 2 or grid.shape != M.shape:
        raise ConfigError(f"ids {grid.shape} and response_mask {M.shape} must both be (B, T)")
    B = grid.shape[0]
    if texts is not None and len(texts) != B:
        raise ConfigError(f"{len(texts)} texts for {B} rows")
    out_texts, offs = [], []
    for i in range(B):
        text, off = decode_with_offsets(tokenizer, grid[i][M[i]])
        if texts is not None:
            check_same_text(text, texts[i], trace_id=row_ids[i] if row_ids else f"row {i}")
        out_texts.append(text)
        offs.append(off)
    plan = np.zeros(grid.shape, dtype=bool)
    if planning is not None:
        src = planning_source(planning)
        for i, spans in enumerate(src.batch(out_texts)):
            plan[i, M[i]] = token_mask(out_texts[i], offs[i], spans)
    w = M.astype(np.float32)
    if weights is not None:
        for i in range(B):
            v = np.asarray(weights(out_texts[i], offs[i]), dtype=np.float32).reshape(-1)
            if len(v) != len(offs[i]):
                raise ConfigError(f"weight function gave {len(v)} values for {len(offs[i])} tokens")
            w[i, M[i]] = v
    return BatchTokens(out_texts, offs, plan, w)


def rows_to_grid(
    rows: Sequence[TokenWeights],
    tokenizer: Any,
    ids: Any,
    response_mask: Any,
) -> BatchTokens:
    """Put precomputed :class:`TokenWeights` (e.g. read from Parquet) on a trainer's (B, T) grid.

    Each row's response tokens are decoded; the decoded text must equal the row's analysed
    text (:class:`~mechgraph.weights.tokens.TextMismatchError` otherwise), and the mask and
    weights move to the trainer's ids through char offsets when the ids differ.

    Examples
    --------
    >>> bt = rows_to_grid(read_weights("w.parquet"), tok, responses, response_mask)  # doctest: +SKIP
    """
    grid = _numpy(ids)
    M = _numpy(response_mask).astype(bool)
    if len(rows) != grid.shape[0]:
        raise ConfigError(f"{len(rows)} weight rows for a batch of {grid.shape[0]}")
    plan = np.zeros(grid.shape, dtype=bool)
    w = np.zeros(grid.shape, dtype=np.float32)
    texts, offs = [], []
    for i, row in enumerate(rows):
        held = grid[i][M[i]]
        text, off = decode_with_offsets(tokenizer, held)
        moved = row.for_trainer(text, held, tokenizer)
        plan[i, M[i]] = moved.planning_mask
        w[i, M[i]] = moved.weight
        texts.append(text)
        offs.append(off)
    return BatchTokens(texts, offs, plan, w)


def check_sources(config: AdvantageConfig, planning: Any, weights: Any) -> None:
    """Refuse a transform whose input (planning or weights) was not given."""
    if config.needs_planning and planning is None:
        raise ConfigError(f"transform {config.transform!r} needs a planning source")
    if config.needs_weights and weights is None:
        raise ConfigError(f"transform {config.transform!r} needs a weight function")


def adapter_sources(
    config: AdvantageConfig | None, planning: Any, weight_fn: WeightFn | None
) -> tuple[AdvantageConfig, PlanningSource | None]:
    """An adapter's transform (default HICRA) and planning source, checked with :func:`check_sources`."""
    cfg = config or AdvantageConfig()
    check_sources(cfg, planning, weight_fn)
    return cfg, planning_source(planning) if planning is not None else None
