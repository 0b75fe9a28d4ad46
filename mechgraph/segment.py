"""Segment a trace's text into steps: exact char spans.

Every segmenter returns a list of ``(start, end)`` spans into the text, in order and
non-overlapping, each covering a non-empty stripped piece (``text[start:end]`` has no
leading or trailing white space). Methods:

``sentences``
    Thought Anchors' splitter: a boundary after the first newline of ``\\n\\n`` and after
    ``.``, ``?`` or ``!`` followed by a space or newline; only the part before
    ``</think>`` is split; pieces shorter than 10 characters merge into the next one (the
    last into the one before). Where Thought Anchors joins merged pieces with one space,
    our step keeps the original text between them (the span is exact), so the two agree
    after collapsing white space.
``sentences-all``
    The same splitter over the whole text, ``</think>`` and what follows included (RL
    samples in the ``<think>...</think><answer>...</answer>`` format do much of their work
    in the answer).
``lines``
    Topology of Reasoning: every non-empty line longer than 5 characters (stripped).
``paragraphs``
    Blocks separated by one or more blank lines.
``regex:PATTERN``
    Each match of ``PATTERN`` is a step (stripped; empty matches dropped).
``given``
    Steps supplied with the trace (strings found in order, or spans); see
    :func:`locate_steps`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from mechgraph.errors import ConfigError, TraceError
from mechgraph.specs import NO_ARG, parse_spec, required

__all__ = ["SEGMENTERS", "get_segmenter", "locate_steps", "segment_text"]

Span = tuple[int, int]

_MIN_CHUNK = 10
# A boundary falls after the matched character: the first newline of "\n\n", the "\r" of
# "\r\n\r\n", or ".", "?", "!" followed by a space or a newline (inside the split region).
_BOUNDARY = re.compile(r"\n(?=\n)|\r(?=\n\r\n)|[.?!](?=[ \n])")


def _strip_span(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def sentence_spans(text: str, *, until_think_end: bool = True) -> list[Span]:
    """Thought Anchors' sentence chunks of ``text`` as exact spans.

    Parameters
    ----------
    text : str
        The reasoning text (everything after ``<think>``). Only the part before the
        first ``</think>`` is split, unless ``until_think_end`` is False.

    Returns
    -------
    list of (int, int)

    Examples
    --------
    >>> t = "Okay. So x = 2.\\n\\nThen y is 3! Is it done now?"
    >>> [t[a:b] for a, b in sentence_spans(t)]
    ['Okay. So x = 2.', 'Then y is 3!', 'Is it done now?']
    """
    stop = text.find("</think>") if until_think_end else -1
    n = len(text) if stop < 0 else stop
    pieces: list[Span] = []
    cur = 0
    for m in _BOUNDARY.finditer(text, 0, n):
        span = _strip_span(text, cur, m.start() + 1)
        if span is not None:
            pieces.append(span)
            cur = m.start() + 1
    tail = _strip_span(text, cur, n)
    if tail is not None:
        pieces.append(tail)
    # Merge pieces under 10 characters; lengths are those of Thought Anchors' joined
    # strings (pieces joined by one space), spans stay exact.
    chunks = [[a, b, b - a] for a, b in pieces]
    i = 0
    while i < len(chunks):
        if chunks[i][2] < _MIN_CHUNK:
            if i == len(chunks) - 1:
                if i > 0:
                    prev = chunks[i - 1]
                    prev[1], prev[2] = chunks[i][1], prev[2] + 1 + chunks[i][2]
                    chunks.pop(i)
            else:
                nxt = chunks[i + 1]
                nxt[0], nxt[2] = chunks[i][0], chunks[i][2] + 1 + nxt[2]
                chunks.pop(i)
            if i == 0 and len(chunks) == 1:
                break
            if i == len(chunks):
                break
        else:
            i += 1
    return [(a, b) for a, b, _ in chunks]


def line_spans(text: str, min_chars: int = 5) -> list[Span]:
    """Non-empty lines longer than ``min_chars`` characters (Topology of Reasoning).

    Examples
    --------
    >>> t = "First line here\\nok\\n\\n  Second one  "
    >>> [t[a:b] for a, b in line_spans(t)]
    ['First line here', 'Second one']
    """
    spans = []
    for m in re.finditer(r"[^\n]+", text):
        span = _strip_span(text, m.start(), m.end())
        if span is not None and span[1] - span[0] > min_chars:
            spans.append(span)
    return spans


def paragraph_spans(text: str) -> list[Span]:
    """Blocks separated by blank lines.

    Examples
    --------
    >>> t = "a b\\nc\\n\\n\\nd e"
    >>> [t[a:b] for a, b in paragraph_spans(t)]
    ['a b\\nc', 'd e']
    """
    spans = []
    for m in re.finditer(r"(?:[^\n]|\n(?![ \t\r]*\n))+", text):
        span = _strip_span(text, m.start(), m.end())
        if span is not None:
            spans.append(span)
    return spans


def regex_spans(text: str, pattern: str | re.Pattern[str]) -> list[Span]:
    """Each non-empty (stripped) match of ``pattern`` is a step.

    Examples
    --------
    >>> t = "Step 1: add. Step 2: sum."
    >>> [t[a:b] for a, b in regex_spans(t, r"Step \\d+:[^S]*")]
    ['Step 1: add.', 'Step 2: sum.']
    """
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    spans = []
    for m in rx.finditer(text):
        span = _strip_span(text, m.start(), m.end())
        if span is not None:
            spans.append(span)
    return spans


def locate_steps(text: str, steps: Sequence[object], trace_id: str = "?") -> list[Span]:
    """Find given steps in ``text``, in order.

    Each item is either a ``[start, end]`` span or a string. A string is searched from
    the end of the previous step: first exactly, then allowing any run of white space
    where the string has white space (Thought Anchors joins merged pieces with one
    space). The step is then the matched text, so ``text[start:end]`` stays exact.

    Raises
    ------
    TraceError
        A string is not found after the previous step, or a span is out of range,
        empty or overlaps the previous one.

    Examples
    --------
    >>> locate_steps("Hi there.\\n\\nBye now.", ["Hi there.", "Bye now."])
    [(0, 9), (11, 19)]
    """
    spans: list[Span] = []
    cursor = 0
    for k, item in enumerate(steps):
        if isinstance(item, str):
            needle = item.strip()
            if not needle:
                raise TraceError(f"trace {trace_id!r}: step {k} is empty")
            pos = text.find(needle, cursor)
            if pos >= 0:
                span: Span = (pos, pos + len(needle))
            else:
                words = needle.split()
                rx = re.compile(r"\s+".join(re.escape(w) for w in words))
                m = rx.search(text, cursor)
                if m is None:
                    raise TraceError(
                        f"trace {trace_id!r}: step {k} not found in the text after "
                        f"char {cursor}: {needle[:60]!r}"
                    )
                span = (m.start(), m.end())
        elif isinstance(item, Sequence) and len(item) == 2:
            a, b = int(item[0]), int(item[1])  # type: ignore[index]
            if not (0 <= a < b <= len(text)):
                raise TraceError(
                    f"trace {trace_id!r}: step {k} span [{a}, {b}] is empty or outside "
                    f"the text (length {len(text)})"
                )
            if a < cursor:
                raise TraceError(
                    f"trace {trace_id!r}: step {k} span [{a}, {b}] overlaps or precedes "
                    f"the previous step (ends at {cursor})"
                )
            span = (a, b)
        else:
            raise TraceError(
                f"trace {trace_id!r}: step {k} must be a string or a [start, end] span, "
                f"got {type(item).__name__}"
            )
        spans.append(span)
        cursor = span[1]
    return spans


SEGMENTERS: dict[str, Callable[[str], list[Span]]] = {
    "sentences": sentence_spans,
    "sentences-all": lambda text: sentence_spans(text, until_think_end=False),
    "lines": line_spans,
    "paragraphs": paragraph_spans,
}


def get_segmenter(method: str) -> Callable[[str], list[Span]]:
    """Return the span function for a method name (``given`` excepted).

    Examples
    --------
    >>> get_segmenter("regex:\\\\d+")("a 12 b 3")
    [(2, 4), (7, 8)]
    """
    kinds = {**dict.fromkeys(SEGMENTERS, NO_ARG), "given": NO_ARG, "regex": required("PATTERN")}
    spec = parse_spec(method, kinds, "segmenter")
    if spec.kind == "given":
        raise ConfigError(
            "segmenter 'given' has no span function: it keeps the steps each trace carries"
        )
    if spec.kind in SEGMENTERS:
        return SEGMENTERS[spec.kind]
    try:
        rx = re.compile(spec.arg)
    except re.error as e:
        raise ConfigError(f"segmenter {method!r}: invalid regular expression: {e}") from e
    return lambda text: regex_spans(text, rx)


def segment_text(text: str, method: str = "sentences") -> list[Span]:
    """Spans of ``text`` by a method name (not ``given``).

    Examples
    --------
    >>> segment_text("One line here\\nTwo lines here", "lines")
    [(0, 13), (14, 28)]
    """
    return get_segmenter(method)(text)
