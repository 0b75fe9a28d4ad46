"""Token-level planning masks: match on the text, then map char spans to tokens.

Planning is found on the *text* (strategic-gram matches, or whole planning sentences),
as char spans; the spans become a token mask through the tokenizer's offset mapping of
the full text, with the anchor rule of :mod:`mechgraph.align` (a token belongs to the
span holding its first non-space character). A phrase is never tokenised on its own:
``" Let's"`` inside a text and ``"let's"`` alone are different tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mechgraph.align import token_mask, tokenize_with_offsets
from mechgraph.errors import AlignmentError
from mechgraph.labels.base import StepLabel
from mechgraph.labels.grams import GramMatcher, StrategicGrams
from mechgraph.traces import Trace

__all__ = [
    "gram_spans",
    "merge_spans",
    "planning_spans",
    "planning_token_mask",
    "spans_token_mask",
    "tokenize_with_offsets",
]

Span = tuple[int, int]


def merge_spans(spans: Iterable[Sequence[int]]) -> list[Span]:
    """Sort spans and merge the overlapping or touching ones; drop empty ones.

    Examples
    --------
    >>> merge_spans([(5, 8), (0, 2), (2, 3), (7, 9), (4, 4)])
    [(0, 3), (5, 9)]
    """
    out: list[list[int]] = []
    for a, b in sorted((int(s[0]), int(s[1])) for s in spans):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def gram_spans(text: str, grams: StrategicGrams | GramMatcher | Iterable[str]) -> list[Span]:
    """Char spans of the strategic-gram matches in ``text`` (merged).

    Examples
    --------
    >>> gram_spans("So. But wait, let me think.", ["but wait", "let me think"])
    [(4, 12), (14, 26)]
    """
    if isinstance(grams, StrategicGrams):
        grams = grams.matcher()
    elif not isinstance(grams, GramMatcher):
        grams = GramMatcher(grams)
    return merge_spans(grams.find(text))


def planning_spans(trace: Trace, labels: Sequence[StepLabel | bool]) -> list[Span]:
    """Char spans of the planning steps of a trace (into ``trace.text``, merged).

    ``labels`` is one :class:`StepLabel` (or a bool) per step.

    Examples
    --------
    >>> from mechgraph.traces import segment_traces
    >>> t = segment_traces([Trace("t", "Let me plan. Then 2 + 2 = 4.")])[0]
    >>> planning_spans(t, [True, False])
    [(0, 12)]
    """
    steps = trace.steps or []
    if len(labels) != len(steps):
        raise AlignmentError(f"trace {trace.id!r}: {len(labels)} labels for {len(steps)} steps")
    keep = [
        (s.start, s.end)
        for s, lab in zip(steps, labels, strict=True)
        if (lab.planning if isinstance(lab, StepLabel) else bool(lab))
    ]
    return merge_spans(keep)


def spans_token_mask(
    text: str, offsets: Sequence[Sequence[int]] | np.ndarray, spans: Iterable[Sequence[int]]
) -> np.ndarray:
    """Boolean mask of the tokens (by offset mapping of ``text``) anchored in ``spans``.

    Spans may overlap or be unsorted; they are merged first.

    Examples
    --------
    >>> spans_token_mask("ab cd ef", [(0, 2), (2, 5), (5, 8)], [(3, 5), (0, 1)]).tolist()
    [True, True, False]
    """
    return token_mask(text, offsets, merge_spans(spans))


def planning_token_mask(
    tokenizer: Any,
    text: str,
    spans: Iterable[Sequence[int]],
    *,
    prefix: str = "",
    add_special_tokens: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise ``prefix + text`` and mark the tokens anchored in ``spans`` of ``text``.

    Parameters
    ----------
    tokenizer : transformers fast tokenizer
        The tokenizer whose tokens the mask indexes (the trainer's).
    text : str
        The text the spans index into (e.g. a completion).
    spans : iterable of (int, int)
        Char spans into ``text`` (e.g. :func:`gram_spans` or :func:`planning_spans`).
    prefix : str
        Text before ``text`` in the model input (e.g. the prompt); never masked.
    add_special_tokens : bool
        Passed to the tokenizer (special tokens are never masked).

    Returns
    -------
    input_ids : (T,) int64 array
    mask : (T,) bool array

    Examples
    --------
    >>> from mechgraph.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> text = "So x = 2. But wait, let me check."
    >>> ids, m = planning_token_mask(tok, text, gram_spans(text, ["but wait"]))
    >>> tok.decode(ids[m])
    ' But wait'
    """
    shift = len(prefix)
    full = prefix + text
    moved = []
    for s in spans:
        a, b = int(s[0]), int(s[1])
        if not 0 <= a <= b <= len(text):
            raise AlignmentError(f"span ({a}, {b}) falls outside the text (length {len(text)})")
        moved.append((a + shift, b + shift))
    ids, off = tokenize_with_offsets(tokenizer, full, add_special_tokens)
    return ids, spans_token_mask(full, off, moved)
