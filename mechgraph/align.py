"""Char spans <-> token spans, through a tokenizer's offset mapping.

The rule, used everywhere in mechgraph (steps, planning masks, trainer weights):

* A token's **anchor** is the first non-white-space character it covers; a token made
  only of white space is anchored at its first character; a token that covers no
  character (BOS and other special tokens, offset ``(0, 0)``) has no anchor.
* A token belongs to the span that contains its anchor, and to no span otherwise.

So a BPE token with a leading space (``" The"``) belongs to the step that starts at
``T``; a token ``".\\n\\n"`` belongs to the step that ends with ``.``; white-space tokens
between two steps belong to neither. Every token belongs to at most one step, and the
tokens of a step are contiguous. A step can own no token when a single token covers the
start of two steps (e.g. steps ``"1"`` and ``"2"`` inside token ``"12"``): that is an
:class:`~mechgraph.errors.AlignmentError` unless the caller asks to merge such a step
into its neighbour (see :func:`align_spans`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mechgraph.errors import AlignmentError, ConfigError, TraceError
from mechgraph.traces import Step, Trace

__all__ = [
    "align_spans",
    "empty_spans",
    "prepare_trace",
    "token_anchors",
    "token_mask",
    "tokenize_traces",
    "tokenize_with_offsets",
]


_SPACE_TABLE = np.array([chr(c).isspace() for c in range(0x3001)], dtype=bool)


def _is_space(text: str) -> np.ndarray:
    """``[c.isspace() for c in text]``, vectorised (every white space is below U+3001)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return _SPACE_TABLE[np.minimum(codes, 0x3000)] & (codes < 0x3001)


def _encoded(text: str, ids, offsets) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if len(ids) != len(off):
        raise AlignmentError("the tokenizer returned a different number of ids and offsets")
    if off.size and (off.min() < 0 or off.max() > len(text)):
        raise AlignmentError("the tokenizer's offsets fall outside the text")
    return ids, off


def tokenize_with_offsets(
    tokenizer: Any, text: str | Sequence[str], add_special_tokens: bool = False
):
    """``(input_ids, offsets)`` int64 arrays of ``text`` from a fast tokenizer.

    A list of texts is tokenised in one batched call and gives a list of pairs; when the
    tokenizer's Rust backend has no truncation or padding set, the batch goes to it directly
    (the same ids and offsets, without the Python wrapper's per-token list building).

    Raises
    ------
    ConfigError
        The tokenizer has no offset mapping (a slow tokenizer).

    Examples
    --------
    >>> from mechgraph.models import load_tokenizer
    >>> ids, off = tokenize_with_offsets(load_tokenizer(), "Hi there")
    >>> off.tolist()
    [[0, 2], [2, 8]]
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        not isinstance(text, str)
        and backend is not None
        and backend.truncation is None
        and backend.padding is None
    ):
        encs = backend.encode_batch(list(text), add_special_tokens=add_special_tokens)
        return [_encoded(t, e.ids, e.offsets) for t, e in zip(text, encs, strict=True)]
    try:
        enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
    except NotImplementedError as e:  # slow tokenizers have no offset mapping
        raise ConfigError(f"the tokenizer must be a fast tokenizer with offsets: {e}") from e
    if isinstance(text, str):
        return _encoded(text, enc["input_ids"], enc["offset_mapping"])
    return [
        _encoded(t, i, o)
        for t, i, o in zip(text, enc["input_ids"], enc["offset_mapping"], strict=True)
    ]


def token_anchors(text: str, offsets: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Anchor character of each token (-1 for tokens that cover no character).

    Parameters
    ----------
    text : str
        The string the offsets index into.
    offsets : (T, 2) array-like
        ``(start, end)`` char offsets of each token.

    Examples
    --------
    >>> token_anchors("a b", [(0, 0), (0, 1), (1, 3)]).tolist()
    [-1, 0, 2]
    """
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    n = len(text)
    if off.size and (off.min() < 0 or off.max() > n):
        raise AlignmentError(f"token offsets fall outside the text (length {n})")
    ws = _is_space(text)
    # nxt[i] = first index >= i that is not white space (n if none)
    idx = np.where(~ws, np.arange(n), n)
    nxt = np.minimum.accumulate(idx[::-1])[::-1] if n else idx
    nxt = np.append(nxt, n)
    a, b = off[:, 0], off[:, 1]
    anchor = np.where(nxt[a] < b, nxt[a], a)
    return np.where(b > a, anchor, -1)


def _owner(anchors: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    if len(spans) == 0:
        return np.full(len(anchors), -1, dtype=np.int64)
    sp = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    k = np.searchsorted(sp[:, 0], anchors, side="right") - 1
    ok = (anchors >= 0) & (k >= 0)
    ok &= anchors < sp[np.clip(k, 0, None), 1]
    return np.where(ok, k, -1)


def token_mask(
    text: str, offsets: Sequence[Sequence[int]] | np.ndarray, spans: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Boolean mask of the tokens whose anchor lies in any of ``spans``.

    ``spans`` must be sorted and non-overlapping (merge them first).

    Examples
    --------
    >>> token_mask("Let us plan. Then 2+2", [(0, 3), (3, 6), (6, 11), (11, 12), (12, 17)],
    ...            [(0, 12)]).tolist()
    [True, True, True, True, False]
    """
    return _owner(token_anchors(text, offsets), spans) >= 0


def align_spans(
    text: str,
    offsets: Sequence[Sequence[int]] | np.ndarray,
    spans: Sequence[tuple[int, int]],
    *,
    trace_id: str = "?",
) -> list[tuple[int, int]]:
    """Token span ``[tok_start, tok_end)`` of each char span.

    Parameters
    ----------
    text : str
        The string the offsets index into (prompt + trace text).
    offsets : (T, 2) array-like
        Tokenizer offset mapping of ``text``.
    spans : list of (int, int)
        Sorted, non-overlapping char spans into ``text``.
    trace_id : str
        Named in errors.

    Returns
    -------
    list of (int, int)
        One token span per char span; ``(-1, -1)`` for a span that owns no token.

    Examples
    --------
    >>> align_spans("Hi. Yo.", [(0, 2), (2, 3), (3, 6), (6, 7)], [(0, 3), (4, 7)])
    [(0, 2), (2, 4)]
    """
    owner = _owner(token_anchors(text, offsets), spans)
    tok = np.flatnonzero(owner >= 0)
    ks = owner[tok]
    start = np.full(len(spans), -1, dtype=np.int64)
    end = np.full(len(spans), -1, dtype=np.int64)
    # owners are non-decreasing along the tokens: first and last index of each run
    first = np.r_[True, ks[1:] != ks[:-1]] if ks.size else np.zeros(0, dtype=bool)
    last = np.r_[ks[1:] != ks[:-1], True] if ks.size else np.zeros(0, dtype=bool)
    start[ks[first]] = tok[first]
    end[ks[last]] = tok[last] + 1
    return list(zip(start.tolist(), end.tolist(), strict=True))


def empty_spans(tok_spans: Sequence[tuple[int, int]]) -> list[int]:
    """Indices of spans that own no token (``(-1, -1)``).

    Examples
    --------
    >>> empty_spans([(0, 2), (-1, -1), (2, 3)])
    [1]
    """
    return [k for k, (a, _) in enumerate(tok_spans) if a < 0]


def tokenize_traces(tok: Any, traces: Sequence[Trace]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ids and char offsets of ``prompt + text`` for each trace, in one batched call.

    The tokenizer's special tokens are added, except where the prompt already starts with
    the BOS string (no doubled BOS).
    """
    bos = getattr(tok, "bos_token", None)
    fulls = [t.prompt + t.text for t in traces]
    out: list[tuple[np.ndarray, np.ndarray]] = [None] * len(fulls)  # type: ignore[list-item]
    for add_special in (True, False):
        idx = [i for i, f in enumerate(fulls) if (not (bos and f.startswith(bos))) == add_special]
        if not idx:
            continue
        pairs = tokenize_with_offsets(tok, [fulls[i] for i in idx], add_special)
        for i, (ids, off) in zip(idx, pairs, strict=True):
            if len(ids) == 0:
                raise TraceError(f"trace {traces[i].id!r}: tokenises to no token")
            out[i] = (ids, off)
    return out


def prepare_trace(trace: Trace, tokenizer: Any, on_empty_step: str = "error", encoded=None):
    """Tokenise ``prompt + text`` and align the trace's steps to the ids.

    Returns
    -------
    ids : ndarray of int64
    steps : list of Step
        The steps (merged where a step owned no token and ``on_empty_step="merge"``).
    tok_spans : list of (int, int)
        ``[tok_start, tok_end)`` of each step into ``ids``.

    Examples
    --------
    >>> from mechgraph.models import load_tokenizer  # doctest: +SKIP
    >>> ids, steps, spans = prepare_trace(trace, load_tokenizer())  # doctest: +SKIP
    """
    if not trace.steps:
        raise TraceError(f"trace {trace.id!r}: has no steps (segment it first)")
    full = trace.prompt + trace.text
    ids, off = encoded if encoded is not None else tokenize_traces(tokenizer, [trace])[0]
    P = len(trace.prompt)
    steps = list(trace.steps)
    while True:
        spans = align_spans(full, off, [(s.start + P, s.end + P) for s in steps], trace_id=trace.id)
        empty = empty_spans(spans)
        if not empty:
            return ids, steps, spans
        k = empty[0]
        if on_empty_step == "error" or len(steps) == 1:
            raise AlignmentError(
                f"trace {trace.id!r}: step {k} ({steps[k].text[:40]!r}) owns no token: a "
                "token covering it starts in another step; pass on_empty_step='merge' "
                "(--on-empty-step merge) to merge it into its neighbour"
            )
        j = k - 1 if k > 0 else k + 1
        keep, lo, hi = (
            steps[j],
            min(steps[j].start, steps[k].start),
            max(steps[j].end, steps[k].end),
        )
        steps[min(j, k)] = Step(lo, hi, trace.text[lo:hi], keep.label, keep.meta)
        del steps[max(j, k)]
