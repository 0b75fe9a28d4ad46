"""Aha moments: do the walk's returns to earlier nodes coincide with reconsideration?

A *return* is a step whose node was visited earlier in the trace but not at the step just
before (:func:`mechgraph.graphs.revisit_mask`).  A *reconsideration* step is one whose
label is an uncertainty / backtracking tag (Thought Anchors' ``uncertainty_management``
or ``self_checking``) when the corpus has labels, and otherwise one whose text matches
the documented lexicon :data:`RECONSIDERATION_LEXICON`.

The test is a 2 x 2 table over *eligible* steps, those that move to another node at
position >= 2 of their trace (only they can be returns; staying on a node is neither):

==================  ==========  ==============
                    return      new node
==================  ==========  ==============
reconsideration     a           b
other               c           d
==================  ==========  ==============

reported as the odds ratio ``(a d) / (b c)`` with a Woolf (log) confidence interval
(Haldane-Anscombe correction, +0.5 to every cell, when a cell is 0) and Fisher's exact
p-value, per group (model, store...).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError
from mechgraph.graphs.paths import _as_path, _trace_of_step, revisit_mask

__all__ = [
    "RECONSIDERATION_LEXICON",
    "RECONSIDERATION_TAGS",
    "aha_table",
    "odds_ratio_ci",
    "reconsideration_mask",
]

#: Thought Anchors tags that mark uncertainty management / backtracking.
RECONSIDERATION_TAGS: tuple[str, ...] = ("uncertainty_management", "self_checking")

#: Phrases that mark reconsideration.  Interjections (first group) count only at the start
#: of a step (after leading punctuation / markdown, optionally after "but", "oh", "and",
#: "so"); the longer phrases (second group) count anywhere in the step.  Case-insensitive.
RECONSIDERATION_LEXICON: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("wait", "hmm", "hold on", "actually", "oops", "alternatively", "no,", "oh,", "hang on"),
    (
        "let me re-check",
        "let me recheck",
        "let me check",
        "let me double-check",
        "let me double check",
        "let me verify",
        "let me reconsider",
        "let me re-examine",
        "let me re-evaluate",
        "let me think again",
        "let me go back",
        "double-check",
        "on second thought",
        "i made a mistake",
        "that doesn't seem right",
        "that can't be right",
        "that's not right",
        "is that right",
        "did i make a mistake",
        "i think i messed up",
    ),
)


def _lexicon_regex(lexicon: tuple[Sequence[str], Sequence[str]]) -> re.Pattern[str]:
    starts, anywhere = lexicon
    alt_s = "|".join(re.escape(x) for x in sorted(starts, key=len, reverse=True))
    alt_a = "|".join(re.escape(x) for x in sorted(anywhere, key=len, reverse=True))
    lead = r"^[\s\W_]*(?:(?:but|oh|and|so|okay|ok)[\s,]+)?"
    parts = []
    if alt_s:
        parts.append(rf"{lead}(?:{alt_s})(?![a-z])")
    if alt_a:
        parts.append(rf"(?<![a-z])(?:{alt_a})(?![a-z])")
    return re.compile("|".join(parts) if parts else r"(?!x)x", re.IGNORECASE)


def reconsideration_mask(
    texts: Sequence[str] | pd.Series | None = None,
    labels: Sequence | pd.Series | None = None,
    *,
    source: str = "auto",
    tags: Sequence[str] = RECONSIDERATION_TAGS,
    lexicon: tuple[Sequence[str], Sequence[str]] = RECONSIDERATION_LEXICON,
) -> tuple[np.ndarray, str]:
    """Which steps mark reconsideration.

    Parameters
    ----------
    texts : sequence of str, optional
        Step texts (for the lexicon).
    labels : sequence of str or None, optional
        Step labels; a label may hold several tags separated by ``,``, ``;`` or ``|``.
    source : {"auto", "labels", "lexicon"}
        ``"auto"``: labels when any step has one, else the lexicon.
    tags, lexicon
        What counts (defaults :data:`RECONSIDERATION_TAGS`, :data:`RECONSIDERATION_LEXICON`).

    Returns
    -------
    mask : ndarray of bool
    source : str
        ``"labels"`` or ``"lexicon"``, the source actually used.

    Examples
    --------
    >>> reconsideration_mask(["Wait, that is wrong.", "So x = 2.", "Let me double-check."])
    (array([ True, False,  True]), 'lexicon')
    """
    if source not in ("auto", "labels", "lexicon"):
        raise ConfigError(f"source must be 'auto', 'labels' or 'lexicon', got {source!r}")
    lab = None if labels is None else pd.Series(list(labels), dtype=object)
    has_labels = lab is not None and lab.notna().any()
    if source == "labels" or (source == "auto" and has_labels):
        if lab is None:
            raise ConfigError("source='labels' but no labels were given")
        tagset = {t.lower() for t in tags}

        def marks(x: object) -> bool:
            if x is None or (isinstance(x, float) and np.isnan(x)):
                return False
            parts = x if isinstance(x, list | tuple) else re.split(r"[,;|]", str(x))
            return any(str(p).strip().lower() in tagset for p in parts)

        return np.fromiter((marks(x) for x in lab), bool, count=len(lab)), "labels"
    if texts is None:
        raise ConfigError("no labels and no texts: cannot find reconsideration steps")
    rx = _lexicon_regex(lexicon)
    return np.fromiter((bool(rx.search(str(t))) for t in texts), bool, count=len(texts)), "lexicon"


def odds_ratio_ci(
    a: float, b: float, c: float, d: float, *, alpha: float = 0.05
) -> tuple[float, float, float, bool]:
    """Odds ratio ``(a d) / (b c)`` of a 2 x 2 table with a Woolf confidence interval.

    When a cell is 0, 0.5 is added to every cell (Haldane-Anscombe correction).

    Returns
    -------
    odds_ratio, ci_low, ci_high : float
        NaN when a row or column of the table is empty.
    corrected : bool
        Whether the correction was applied.

    Examples
    --------
    >>> tuple(round(x, 3) for x in odds_ratio_ci(10, 5, 5, 10)[:3])
    (4.0, 0.876, 18.256)
    """
    if min(a + b, c + d, a + c, b + d) <= 0:
        return float("nan"), float("nan"), float("nan"), False
    corrected = min(a, b, c, d) == 0
    if corrected:
        a, b, c, d = a + 0.5, b + 0.5, c + 0.5, d + 0.5
    log_or = np.log(a * d / (b * c))
    se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    from scipy.special import ndtri

    zq = ndtri(1 - alpha / 2)
    return (
        float(np.exp(log_or)),
        float(np.exp(log_or - zq * se)),
        float(np.exp(log_or + zq * se)),
        corrected,
    )


def aha_table(
    nodes: Sequence[int] | np.ndarray,
    offsets: np.ndarray,
    markers: np.ndarray,
    *,
    groups: Sequence | np.ndarray | None = None,
    lag: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Odds ratio of returns at reconsideration steps, per group of traces.

    Parameters
    ----------
    nodes : array-like of int, shape (N,)
    offsets : ndarray, shape (n_traces + 1,)
    markers : ndarray of bool, shape (N,)
        Reconsideration steps (:func:`reconsideration_mask`).
    groups : array-like, shape (n_traces,), optional
        One label per trace; one row per group (default: a single ``"all"`` group).
    lag : int, default 0
        Pair the marker of step t with the return status of step t + lag (same trace).
    alpha : float
        1 - confidence level of the interval.

    Returns
    -------
    pandas.DataFrame
        ``group, n_traces, n_eligible, a, b, c, d, odds_ratio, ci_low, ci_high,
        corrected, p_fisher``.

    Examples
    --------
    >>> t = aha_table([0, 1, 2, 1, 3, 1], np.array([0, 6]),
    ...               np.array([0, 0, 0, 1, 0, 1], bool))
    >>> t[["a", "b", "c", "d"]].values.tolist()
    [[2, 0, 0, 2]]
    """
    p = _as_path(nodes)
    offsets = np.asarray(offsets, np.int64)
    markers = np.asarray(markers, bool)
    if markers.shape != p.shape:
        raise ConfigError(f"got {markers.size} markers for {p.size} steps")
    if lag < 0:
        raise ConfigError(f"lag must be >= 0, got {lag}")
    B, N = offsets.size - 1, p.size
    seg = _trace_of_step(offsets)
    pos = np.arange(N) - offsets[:-1][seg]
    ret = revisit_mask(p, offsets)
    moved = np.zeros(N, bool)
    moved[1:] = p[1:] != p[:-1]
    eligible = moved & (pos >= 2)
    # pair marker at t - lag with the outcome at t
    idx = np.arange(N)
    src = idx - lag
    ok = eligible & (src >= 0)
    ok[ok] = seg[src[ok]] == seg[ok]
    mk = np.zeros(N, bool)
    mk[ok] = markers[src[ok]]
    gl = np.array(["all"] * B, dtype=object) if groups is None else np.asarray(groups, dtype=object)
    if gl.size != B:
        raise ConfigError(f"got {gl.size} group labels for {B} traces")
    from scipy.stats import fisher_exact

    rows = []
    step_group = gl[seg] if N else np.array([], dtype=object)
    for g in pd.unique(pd.Series(gl)):
        sel = ok & (step_group == g)
        a = int(np.sum(sel & mk & ret))
        b = int(np.sum(sel & mk & ~ret))
        c = int(np.sum(sel & ~mk & ret))
        d = int(np.sum(sel & ~mk & ~ret))
        or_, lo, hi, corr = odds_ratio_ci(a, b, c, d, alpha=alpha)
        p_f = float(fisher_exact([[a, b], [c, d]])[1]) if sel.any() else float("nan")
        rows.append(
            {
                "group": g,
                "n_traces": int(np.sum(gl == g)),
                "n_eligible": int(sel.sum()),
                "a": a,
                "b": b,
                "c": c,
                "d": d,
                "odds_ratio": or_,
                "ci_low": lo,
                "ci_high": hi,
                "corrected": corr,
                "p_fisher": p_f,
            }
        )
    return pd.DataFrame(rows)
