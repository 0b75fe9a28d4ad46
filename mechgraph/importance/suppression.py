"""Attention suppression (Thought Anchors): how much later tokens depend on sentence j.

The keys of sentence j are masked in every head of every layer (a float additive 4-D
mask, causal part included); ``KL(base || suppressed)`` of the next-token distribution
at each later token is averaged per sentence i into ``matrix[i, j]`` (NaN for
``i <= j``).

Prefix reuse
------------
Masking j changes nothing before j's first token, so the base sequence is run once
with a KV cache; for a batch of consecutive sentences the cache is cut at the batch's
first start, repeated over the batch, and only the tokens from there on are run, each
row with its own mask. The whole matrix costs ``T + sum_batches B x (T - start)`` token
forwards instead of ``S x T`` (:func:`suppression_matrix_naive`, kept as the reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mechgraph.configs import merge_config
from mechgraph.errors import ConfigError
from mechgraph.importance._common import PreparedTrace, as_prepared
from mechgraph.models import LoadedModel
from mechgraph.traces import Trace

__all__ = [
    "SuppressionConfig",
    "SuppressionResult",
    "additive_mask",
    "masked_token_kl",
    "suppression_matrix",
    "suppression_matrix_naive",
]


@dataclass
class SuppressionConfig:
    """Options of :func:`suppression_matrix`.

    Parameters
    ----------
    batch_size : int
        Suppressed sentences run together (one cache copy each).
    kl_chunk : int
        Token rows per vocabulary-sized KL computation.
    max_tokens : int or None
        Truncate a trace to the whole steps within this many tokens.
    """

    batch_size: int = 4
    kl_chunk: int = 256
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.kl_chunk < 1:
            raise ConfigError("batch_size and kl_chunk must be >= 1")
        if self.max_tokens is not None and self.max_tokens < 2:
            raise ConfigError(f"max_tokens must be >= 2, got {self.max_tokens}")


@dataclass
class SuppressionResult:
    """Output of :func:`suppression_matrix`.

    Attributes
    ----------
    matrix : ndarray (S, S)
        ``matrix[i, j]``: mean token KL in sentence i when sentence j is suppressed;
        NaN for ``i <= j``.
    token_forwards : int
        Tokens run through the model (the cost measure).
    """

    matrix: np.ndarray
    token_forwards: int

    def scores(self) -> np.ndarray:
        """Per-sentence effect: mean of column j over later sentences (NaN for the last)."""
        with np.errstate(all="ignore"):
            m = self.matrix
            cnt = np.isfinite(m).sum(0)
            tot = np.nansum(m, axis=0)
            return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def additive_mask(
    n_keys: int,
    q_start: int,
    masked: Sequence[Sequence[tuple[int, int]]],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Float 4-D mask ``(B, 1, n_keys - q_start, n_keys)``: 0 allowed, finfo.min masked.

    Row b masks the causal future and the key spans ``masked[b]`` (a query always keeps
    its own key, so no row is empty; a masked query's output never reaches later tokens,
    whose keys to it are masked).

    Examples
    --------
    >>> m = additive_mask(3, 0, [[(1, 2)]])
    >>> (m[0, 0] == 0).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 0, 1]]
    """
    qpos = torch.arange(q_start, n_keys)[:, None]
    kpos = torch.arange(n_keys)[None, :]
    rows = []
    for spans in masked:
        allowed = kpos <= qpos
        for a, b in spans:
            allowed &= ~((kpos >= a) & (kpos < b)) | (kpos == qpos)
        rows.append(allowed)
    allowed = torch.stack(rows)[:, None]
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


def _per_sentence(kl: np.ndarray, spans: Sequence[tuple[int, int]], j: int, off: int) -> np.ndarray:
    row = np.full(len(spans), np.nan)
    for i in range(j + 1, len(spans)):
        a, b = spans[i]
        row[i] = kl[a - off : b - off].mean()
    return row


@torch.no_grad()
def masked_token_kl(
    lm: LoadedModel, ids: np.ndarray, masked: Sequence[tuple[int, int]], *, kl_chunk: int = 256
) -> np.ndarray:
    """Per-token KL(base || masked) when the key spans ``masked`` are hidden everywhere.

    One full forward each for the base and the masked sequence. Entry t compares the
    next-token distributions at position t.

    Examples
    --------
    >>> kl = masked_token_kl(lm, ids, [(10, 20)])  # doctest: +SKIP
    >>> kl[:20].max()  # doctest: +SKIP
    0.0
    """
    hf = lm.hf
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long, device=hf.device)[None]
    T = x.shape[1]
    hb = hf.model(input_ids=x, use_cache=False).last_hidden_state[0]
    mask = additive_mask(T, 0, [list(masked)], dtype=hb.dtype).to(hf.device)
    hs = hf.model(input_ids=x, attention_mask=mask, use_cache=False).last_hidden_state[0]
    return _kl_batch(hf.get_output_embeddings(), hb, hs[None], 0, 0, kl_chunk)[0].astype(np.float32)


@torch.no_grad()
def suppression_matrix_naive(
    lm: LoadedModel,
    trace: Trace | PreparedTrace,
    config: SuppressionConfig | None = None,
    **options: Any,
) -> SuppressionResult:
    """Reference: one full masked forward per sentence (for tests and benchmarks).

    Examples
    --------
    >>> suppression_matrix_naive(lm, trace).matrix.shape  # doctest: +SKIP
    """
    cfg = merge_config(SuppressionConfig, config, **options)
    p = as_prepared(trace, lm.tokenizer, cfg.max_tokens)
    hf = lm.hf
    T = p.spans[-1][1]
    x = torch.as_tensor(p.ids[:T], dtype=torch.long, device=hf.device)[None]
    hb = hf.model(input_ids=x, use_cache=False).last_hidden_state[0]
    mat = np.full((p.n_steps, p.n_steps), np.nan)
    for j, span in enumerate(p.spans[:-1]):
        mask = additive_mask(T, 0, [[span]], dtype=hb.dtype).to(hf.device)
        hs = hf.model(input_ids=x, attention_mask=mask, use_cache=False).last_hidden_state[0]
        b = span[1]
        kl = _kl_batch(hf.get_output_embeddings(), hb, hs[None], 0, b, cfg.kl_chunk)[0]
        mat[:, j] = _per_sentence(kl, p.spans, j, b)
    return SuppressionResult(mat, T * p.n_steps)


def _prefix_cache(cache: Any, start: int, batch: int) -> Any:
    from transformers import DynamicCache

    new = DynamicCache()
    for layer_idx, layer in enumerate(cache.layers):
        k = layer.keys[:, :, :start].expand(batch, -1, -1, -1).contiguous()
        v = layer.values[:, :, :start].expand(batch, -1, -1, -1).contiguous()
        new.update(k, v, layer_idx)
    return new


def _base_forward(hf: Any, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Run ``ids`` once with a KV cache: the input ``(1, T)``, final hidden states, cache."""
    x = torch.as_tensor(ids, dtype=torch.long, device=hf.device)[None]
    base = hf.model(input_ids=x, use_cache=True)
    cache = base["cache"] if "cache" in base else base.past_key_values
    return x, base.last_hidden_state[0], cache


def _masked_forward(
    hf: Any,
    x: torch.Tensor,
    cache: Any,
    start: int,
    masked: Sequence[Sequence[tuple[int, int]]],
    dtype: torch.dtype,
) -> torch.Tensor:
    """Final hidden states ``(B, T - start, d)`` of ``x[start:]``, row b hiding ``masked[b]``.

    The unchanged prefix ``[0, start)`` is taken from the base ``cache``, repeated over rows.
    """
    T, B = x.shape[1], len(masked)
    mask = additive_mask(T, start, masked, dtype=dtype)
    return hf.model(
        input_ids=x[:, start:].expand(B, -1),
        attention_mask=mask.to(hf.device),
        position_ids=torch.arange(start, T, device=hf.device)[None].expand(B, -1),
        cache=_prefix_cache(cache, start, B) if start > 0 else None,
        use_cache=True,
    ).last_hidden_state


@torch.no_grad()
def suppression_matrix(
    lm: LoadedModel,
    trace: Trace | PreparedTrace,
    config: SuppressionConfig | None = None,
    **options: Any,
) -> SuppressionResult:
    """Sentence x sentence attention-suppression KL matrix, reusing the unchanged prefix.

    Parameters
    ----------
    lm : LoadedModel
    trace : Trace (with steps) or PreparedTrace
    config : SuppressionConfig, optional
    **options
        Fields of :class:`SuppressionConfig`.

    Returns
    -------
    SuppressionResult

    Examples
    --------
    >>> r = suppression_matrix(load_model("default"), trace, batch_size=4)  # doctest: +SKIP
    >>> r.matrix.shape, r.scores()[:3]  # doctest: +SKIP
    """
    cfg = merge_config(SuppressionConfig, config, **options)
    p = as_prepared(trace, lm.tokenizer, cfg.max_tokens)
    hf = lm.hf
    head = hf.get_output_embeddings()
    T = p.spans[-1][1]
    x, hb, cache = _base_forward(hf, p.ids[:T])
    S = p.n_steps
    mat = np.full((S, S), np.nan)
    forwards = T
    js = list(range(S - 1))
    for c in range(0, len(js), cfg.batch_size):
        batch = js[c : c + cfg.batch_size]
        start = min(p.spans[j][0] for j in batch)
        out = _masked_forward(hf, x, cache, start, [[p.spans[j]] for j in batch], hb.dtype)
        forwards += len(batch) * (T - start)
        ends = [p.spans[j][1] for j in batch]
        kl = _kl_batch(head, hb, out, start, min(ends), cfg.kl_chunk)  # (B, T - b0)
        for r, (j, b) in enumerate(zip(batch, ends, strict=True)):
            mat[:, j] = _per_sentence(kl[r, b - min(ends) :], p.spans, j, b)
    return SuppressionResult(mat, forwards)


def _kl_batch(head: Any, hb: torch.Tensor, out: torch.Tensor, start: int, b0: int, chunk: int):
    """KL rows ``[b0, T)`` of every batch row; the base log-probs computed once per chunk."""
    T = hb.shape[0]
    res = np.zeros((out.shape[0], T - b0))
    for c in range(b0, T, chunk):
        e = min(c + chunk, T)
        lp = torch.log_softmax(head(hb[c:e]).float(), -1)
        p = lp.exp()
        for r in range(out.shape[0]):
            lq = torch.log_softmax(head(out[r, c - start : e - start]).float(), -1)
            res[r, c - b0 : e - b0] = (p * (lp - lq)).sum(-1).clamp_min(0.0).cpu().numpy()
    return res
