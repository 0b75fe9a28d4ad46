"""Shared helpers of the importance methods: token spans of a trace's sentences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mechgraph.errors import TraceError
from mechgraph.extract import prepare_trace
from mechgraph.traces import Step, Trace

__all__ = ["PreparedTrace", "as_prepared", "prepare", "span_matrix"]


@dataclass
class PreparedTrace:
    """A trace tokenised once (``prompt + text``) with each step's token span.

    Attributes
    ----------
    trace : Trace
    ids : ndarray of int64
    steps : list of Step
    spans : list of (int, int)
        ``[a, b)`` token span of each step into ``ids``.
    """

    trace: Trace
    ids: np.ndarray
    steps: list[Step]
    spans: list[tuple[int, int]]

    @property
    def n_steps(self) -> int:
        return len(self.spans)


def prepare(
    trace: Trace, tokenizer: Any, *, max_tokens: int | None = None, on_empty_step: str = "merge"
) -> PreparedTrace:
    """Tokenise a trace and align its steps (via :func:`mechgraph.extract.prepare_trace`).

    With ``max_tokens``, the trace is cut after the last step that ends within that many
    tokens (a long trace is truncated to whole sentences, never mid-sentence).

    Examples
    --------
    >>> from mechgraph.models import load_tokenizer
    >>> trace = Trace("t", "So 2 + 2 = 4.", steps=[Step(0, 13, "So 2 + 2 = 4.")])
    >>> p = prepare(trace, load_tokenizer(), max_tokens=1024)
    >>> p.spans  # token span of each step
    [(0, 10)]
    """
    ids, steps, spans = prepare_trace(trace, tokenizer, on_empty_step)
    if max_tokens is not None:
        keep = [k for k, (_, b) in enumerate(spans) if b <= max_tokens]
        if not keep:
            raise TraceError(
                f"trace {trace.id!r}: no whole step fits in max_tokens={max_tokens} "
                f"(the first step ends at token {spans[0][1]})"
            )
        n = keep[-1] + 1
        steps, spans = steps[:n], spans[:n]
        ids = ids[: spans[-1][1]]
    return PreparedTrace(trace, np.asarray(ids, dtype=np.int64), list(steps), list(spans))


def as_prepared(
    trace: Trace | PreparedTrace, tokenizer: Any, max_tokens: int | None = None
) -> PreparedTrace:
    """``trace`` itself if already prepared, else :func:`prepare` it (with ``max_tokens``)."""
    if isinstance(trace, PreparedTrace):
        return trace
    return prepare(trace, tokenizer, max_tokens=max_tokens)


def span_matrix(spans: list[tuple[int, int]], n_tokens: int) -> np.ndarray:
    """One-hot ``(n_tokens, n_spans)`` float32 matrix: token t belongs to span s.

    Examples
    --------
    >>> span_matrix([(0, 2), (2, 3)], 4).tolist()
    [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    """
    m = np.zeros((n_tokens, len(spans)), dtype=np.float32)
    for s, (a, b) in enumerate(spans):
        m[a:b, s] = 1.0
    return m
