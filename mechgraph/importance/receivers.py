"""Receiver heads (Thought Anchors): heads whose attention converges on a few sentences.

For every (layer, head) the token attention pattern is averaged into a sentence x
sentence matrix ``M[i, j]`` (mean over the token pairs of sentence i's queries and
sentence j's keys, causally masked pairs counting as zero). The *vertical score* of
sentence j is the mean of ``M[i, j]`` over sentences ``i >= j + proximity_ignore``
(NaN when there is none). Heads are ranked by the (Fisher) kurtosis of their vertical
scores over sentences; the top ``top_k`` are the receiver heads, and a sentence's
receiver score is its mean vertical score over them.

Memory
------
The pattern is never stored. A custom attention function (registered with
transformers' ``AttentionInterface``) sees each layer's post-RoPE queries and keys,
computes softmax(q k^T) in query chunks of ``query_chunk`` rows (with the causal mask)
and folds each chunk straight into the ``(heads, S, S)`` sentence sums, then runs the
model's normal SDPA attention. Peak extra memory is ``heads x query_chunk x T`` floats
plus ``layers x heads x S^2`` for the result. Supports softmax attention of the HF
decoder families (Llama, Qwen2/3, Mistral, SmolLM...); sliding windows, soft-capping
and attention sinks are not modelled.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import kurtosis

from mechgraph.configs import merge_config
from mechgraph.errors import ConfigError
from mechgraph.importance._common import PreparedTrace, as_prepared, span_matrix
from mechgraph.models import LoadedModel
from mechgraph.traces import Trace

__all__ = [
    "ReceiverConfig",
    "ReceiverResult",
    "head_kurtosis",
    "receiver_scores",
    "sentence_attention",
    "sentence_matrix_from_pattern",
    "top_heads",
    "vertical_scores",
]

_IMPL = "mechgraph_sentence_attn"
_STATE = threading.local()


@dataclass
class ReceiverConfig:
    """Options of :func:`receiver_scores`.

    Parameters
    ----------
    top_k : int
        Number of receiver heads (20 in Thought Anchors).
    proximity_ignore : int
        A sentence's vertical score uses sentences at least this many later (4).
    query_chunk : int
        Query rows per attention chunk (memory ``heads x query_chunk x T``).
    max_tokens : int or None
        Truncate a trace to the whole steps within this many tokens.
    """

    top_k: int = 20
    proximity_ignore: int = 4
    query_chunk: int = 256
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        if self.proximity_ignore < 1:
            raise ConfigError(f"proximity_ignore must be >= 1, got {self.proximity_ignore}")
        if self.query_chunk < 1:
            raise ConfigError(f"query_chunk must be >= 1, got {self.query_chunk}")
        if self.max_tokens is not None and self.max_tokens < 2:
            raise ConfigError(f"max_tokens must be >= 2, got {self.max_tokens}")


@dataclass
class ReceiverResult:
    """Output of :func:`receiver_scores` for one trace.

    Attributes
    ----------
    sentence_attn : ndarray (n_layers, n_heads, S, S)
    vertical : ndarray (n_layers, n_heads, S)
        NaN for the last ``proximity_ignore`` sentences.
    kurtosis : ndarray (n_layers, n_heads)
    heads : ndarray (top_k, 2) of int
        (layer, head) of the receiver heads, best first.
    scores : ndarray (S,)
        Mean vertical score over the receiver heads (NaN where undefined).
    """

    sentence_attn: np.ndarray
    vertical: np.ndarray
    kurtosis: np.ndarray
    heads: np.ndarray
    scores: np.ndarray


def sentence_matrix_from_pattern(pattern: np.ndarray, spans: Sequence[tuple[int, int]]):
    """Average a token pattern ``(..., Tq, Tk)`` into ``(..., S, S)`` over span pairs.

    Examples
    --------
    >>> p = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]
    >>> sentence_matrix_from_pattern(p, [(0, 2), (2, 4)]).round(3).tolist()
    [[0.5, 0.0], [0.292, 0.208]]
    """
    pattern = np.asarray(pattern, dtype=np.float64)
    S = len(spans)
    out = np.zeros((*pattern.shape[:-2], S, S))
    for i, (a, b) in enumerate(spans):
        for j, (c, d) in enumerate(spans):
            out[..., i, j] = pattern[..., a:b, c:d].mean(axis=(-2, -1))
    return out


class _Collector:
    """Folds each layer's attention chunks into sentence sums."""

    def __init__(self, spans: Sequence[tuple[int, int]], n_tokens: int, chunk: int):
        self.m = torch.from_numpy(span_matrix(list(spans), n_tokens))
        counts = self.m.sum(0).double()
        self.norm = (counts[:, None] * counts[None, :]).clamp_min(1.0)
        self.q_lo = min(a for a, _ in spans)
        self.q_hi = max(b for _, b in spans)
        self.chunk = chunk
        self.out: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def add(self, layer: int, query: torch.Tensor, key: torch.Tensor, scaling: float) -> None:
        q = query[0].float()  # (Hq, T, D)
        k = key[0].float()  # (Hkv, T, D)
        if k.shape[0] != q.shape[0]:
            k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
        T = q.shape[1]
        m = self.m.to(q.device)
        acc = torch.zeros(q.shape[0], m.shape[1], m.shape[1], dtype=torch.float64)
        for c0 in range(self.q_lo, self.q_hi, self.chunk):
            c1 = min(c0 + self.chunk, self.q_hi)
            s = torch.matmul(q[:, c0:c1], k[:, :c1].transpose(-1, -2)) * scaling
            qpos = torch.arange(c0, c1, device=q.device)[:, None]
            kpos = torch.arange(c1, device=q.device)[None, :]
            s = s.masked_fill(kpos > qpos, float("-inf"))
            p = torch.softmax(s, dim=-1)  # (H, c, c1)
            pk = torch.matmul(p, m[:c1])  # (H, c, S)
            acc += torch.matmul(m[c0:c1].T, pk).double().cpu()
        assert T == m.shape[0]
        self.out[layer] = (acc / self.norm).float()


def _attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    col: _Collector | None = getattr(_STATE, "collector", None)
    if col is not None:
        sc = scaling if scaling is not None else query.shape[-1] ** -0.5
        col.add(int(module.layer_idx), query, key, float(sc))
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, scaling=scaling, **kwargs
    )


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(_IMPL, _attention)
    AttentionMaskInterface.register(_IMPL, sdpa_mask)


@contextmanager
def _collecting(hf: Any, collector: _Collector):
    _register()
    old = hf.config._attn_implementation
    hf.set_attn_implementation(_IMPL)
    _STATE.collector = collector
    try:
        yield collector
    finally:
        _STATE.collector = None
        hf.set_attn_implementation(old)


@torch.no_grad()
def sentence_attention(
    lm: LoadedModel, ids: np.ndarray, spans: Sequence[tuple[int, int]], *, query_chunk: int = 256
) -> np.ndarray:
    """Sentence x sentence attention of every (layer, head), without storing patterns.

    Parameters
    ----------
    lm : LoadedModel
    ids : ndarray of int
        Token ids of one sequence.
    spans : list of (int, int)
        Token span of each sentence (non-empty, inside ``ids``).
    query_chunk : int

    Returns
    -------
    ndarray (n_layers, n_heads, S, S), float32

    Examples
    --------
    >>> m = sentence_attention(lm, p.ids, p.spans)  # doctest: +SKIP
    >>> m.shape  # doctest: +SKIP
    (30, 9, 41, 41)
    """
    if not spans or any(b <= a for a, b in spans):
        raise ConfigError("every sentence span must be non-empty")
    col = _Collector(spans, len(ids), query_chunk)
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long, device=lm.hf.device)[None]
    with _collecting(lm.hf, col):
        lm.hf.model(input_ids=x, use_cache=False)
    return torch.stack([col.out[layer] for layer in sorted(col.out)]).numpy()


def vertical_scores(mats: np.ndarray, proximity_ignore: int = 4) -> np.ndarray:
    """Mean attention each sentence receives from sentences >= ``proximity_ignore`` later.

    Examples
    --------
    >>> m = np.tril(np.ones((6, 6)))
    >>> vertical_scores(m, 4).tolist()
    [1.0, 1.0, nan, nan, nan, nan]
    """
    mats = np.asarray(mats, dtype=np.float64)
    S = mats.shape[-1]
    out = np.full(mats.shape[:-1], np.nan)
    for j in range(S - proximity_ignore):
        out[..., j] = mats[..., j + proximity_ignore :, j].mean(axis=-1)
    return out


def head_kurtosis(vertical: np.ndarray) -> np.ndarray:
    """Fisher kurtosis of each head's vertical scores over sentences (NaNs omitted).

    Examples
    --------
    >>> v = np.array([[0.1, 0.1, 0.1, 0.9, np.nan], [0.1, 0.3, 0.5, 0.7, np.nan]])
    >>> head_kurtosis(v).round(2).tolist()
    [-0.67, -1.36]
    """
    v = np.asarray(vertical, dtype=np.float64)
    flat = v.reshape(-1, v.shape[-1])
    out = np.full(flat.shape[0], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for n, r in enumerate(flat):
            r = r[np.isfinite(r)]
            if r.size > 3 and np.ptp(r) > 0:
                out[n] = kurtosis(r, fisher=True)
    return out.reshape(v.shape[:-1])


def top_heads(kurt: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` (layer, head) pairs of highest kurtosis (NaN last), best first.

    Examples
    --------
    >>> top_heads(np.array([[0.0, 3.0], [1.0, np.nan]]), 2).tolist()
    [[0, 1], [1, 0]]
    """
    flat = np.where(np.isfinite(kurt), kurt, -np.inf).ravel()
    order = np.argsort(-flat, kind="stable")[: min(k, flat.size)]
    return np.stack(np.unravel_index(order, kurt.shape), axis=1).astype(np.int64)


def receiver_scores(
    lm: LoadedModel,
    trace: Trace | PreparedTrace,
    config: ReceiverConfig | None = None,
    **options: Any,
) -> ReceiverResult:
    """Receiver heads of a trace and each sentence's receiver score.

    Parameters
    ----------
    lm : LoadedModel
    trace : Trace (with steps) or PreparedTrace
    config : ReceiverConfig, optional
    **options
        Fields of :class:`ReceiverConfig`.

    Returns
    -------
    ReceiverResult

    Examples
    --------
    >>> r = receiver_scores(load_model("default"), trace, top_k=20)  # doctest: +SKIP
    >>> r.scores.shape, r.heads[:2]  # doctest: +SKIP
    """
    cfg = merge_config(ReceiverConfig, config, **options)
    p = as_prepared(trace, lm.tokenizer, cfg.max_tokens)
    mats = sentence_attention(lm, p.ids, p.spans, query_chunk=cfg.query_chunk)
    vert = vertical_scores(mats, cfg.proximity_ignore)
    kurt = head_kurtosis(vert)
    heads = top_heads(kurt, cfg.top_k)
    sel = vert[heads[:, 0], heads[:, 1]]  # (k, S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = np.nanmean(sel, axis=0)
    return ReceiverResult(mats, vert, kurt, heads, scores)
