"""Where per-token planning masks and weights come from.

Planning sources (:class:`PlanningSource`: ``sg``, ``sg:hicra``, ``sg:PATH``, ``rules``,
``probe:PATH``, registered labeller kinds, ``none`` or a callable) find planning on the
*text*, as char spans; they are defined in :mod:`mechgraph.labels.sources` and re-exported
here. The tokens inside the spans are the planning tokens.

Weight sources give a value per token: per-step scores (e.g. Thought Anchors'
counterfactual importance) spread to the tokens of each step, or token entropy under a
model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mechgraph.align import token_anchors
from mechgraph.errors import ConfigError, TraceError
from mechgraph.labels.sources import PLANNING_KINDS, PlanningSource, planning_source
from mechgraph.logits import completion_entropy, token_entropy
from mechgraph.traces import Trace

__all__ = [
    "PLANNING_KINDS",
    "PlanningSource",
    "completion_entropy",
    "planning_source",
    "spread_to_tokens",
    "step_scores",
    "token_entropy",
]

Span = tuple[int, int]


def spread_to_tokens(
    text: str,
    offsets: Sequence[Sequence[int]] | np.ndarray,
    spans: Sequence[Span],
    values: Sequence[float],
    *,
    fill: float = 1.0,
) -> np.ndarray:
    """Give each token the value of the span (step) holding its anchor.

    Parameters
    ----------
    text : str
    offsets : (T, 2)
        Char offsets of the tokens in ``text``.
    spans : list of (int, int)
        Sorted, non-overlapping char spans (e.g. the steps of a trace).
    values : list of float
        One value per span (e.g. sentence importance).
    fill : float
        Value of the tokens in no span.

    Returns
    -------
    (T,) float32

    Examples
    --------
    >>> spread_to_tokens("Hi. Yo.", [(0, 2), (2, 3), (3, 6), (6, 7)], [(0, 3), (4, 7)], [0.5, 2.0]).tolist()
    [0.5, 0.5, 2.0, 2.0]
    """
    if len(values) != len(spans):
        raise ConfigError(f"{len(values)} values for {len(spans)} spans")
    anchors = token_anchors(text, offsets)
    out = np.full(len(anchors), fill, dtype=np.float64)
    if len(spans):
        sp = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        if np.any(sp[1:, 0] < sp[:-1, 1]):
            raise ConfigError("spans must be sorted and non-overlapping")
        k = np.searchsorted(sp[:, 0], anchors, side="right") - 1
        ok = (anchors >= 0) & (k >= 0)
        ok &= anchors < sp[np.clip(k, 0, None), 1]
        vals = np.asarray(values, dtype=np.float64)
        out[ok] = vals[k[ok]]
    return out.astype(np.float32)


def step_scores(trace: Trace, field: str) -> tuple[list[Span], list[float]]:
    """Char spans of a trace's steps and the per-step score ``field`` from their meta.

    Thought Anchors data carries e.g. ``counterfactual_importance_kl`` and
    ``resampling_importance_accuracy`` on each step. Steps without the field score 0.

    Raises
    ------
    TraceError
        The trace has no steps, or no step carries ``field``.

    Examples
    --------
    >>> from mechgraph.traces import Step
    >>> t = Trace("t", "A b. C d.", steps=[Step(0, 4, "A b.", meta={"imp": 0.3}),
    ...                                      Step(5, 9, "C d.", meta={"imp": 0.1})])
    >>> step_scores(t, "imp")
    ([(0, 4), (5, 9)], [0.3, 0.1])
    """
    if not trace.steps:
        raise TraceError(f"trace {trace.id!r}: no steps to read {field!r} from")
    vals = [s.meta.get(field) for s in trace.steps]
    if all(v is None for v in vals):
        have = sorted({k for s in trace.steps for k in s.meta})
        raise TraceError(f"trace {trace.id!r}: no step has {field!r} (fields: {have})")
    out = []
    for v in vals:
        x = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0
        out.append(0.0 if np.isnan(x) else x)
    return [(s.start, s.end) for s in trace.steps], out
