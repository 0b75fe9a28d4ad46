"""What every labeller returns, and the labeller interface.

A *labeller* turns the steps of a trace into :class:`StepLabel` objects (a tag, the
planning flag and a score). Three come with mechgraph (rules, strategic grams, probes);
any callable can be plugged in (:mod:`mechgraph.labels.external`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mechgraph.errors import TraceError
from mechgraph.traces import Trace

__all__ = ["Labeller", "SentenceLabeller", "StepLabel"]


@dataclass(frozen=True)
class StepLabel:
    """The label of one step.

    Attributes
    ----------
    tag : str or None
        A function tag (e.g. ``plan_generation``); None when the method gives none
        (strategic grams only say planning or not).
    planning : bool
        Whether the step is a planning step.
    score : float
        Planning score in [0, 1] (higher = more likely planning); its meaning depends on
        the method: the planning probability for ``rules`` and ``probe``, the share of
        the step's characters inside strategic-gram matches for ``sg``.

    Examples
    --------
    >>> StepLabel("plan_generation", True, 0.9).as_dict()
    {'tag': 'plan_generation', 'planning': True, 'score': 0.9}
    """

    tag: str | None
    planning: bool
    score: float

    def __post_init__(self) -> None:
        if not isinstance(self.planning, bool):
            object.__setattr__(self, "planning", bool(self.planning))
        s = float(self.score)
        if math.isnan(s):
            raise ValueError("StepLabel.score is NaN")
        object.__setattr__(self, "score", s)

    def as_dict(self) -> dict[str, object]:
        """``{"tag", "planning", "score"}`` as plain JSON-ready values."""
        return {"tag": self.tag, "planning": self.planning, "score": round(self.score, 6)}


class Labeller:
    """Base class: label whole traces (``label_traces``) or one trace (``label_trace``).

    Subclasses implement :meth:`label_trace` (or :meth:`label_traces` when batching many
    traces is cheaper, as for probes that run a model).
    """

    name: str = "labeller"

    def label_trace(self, trace: Trace) -> list[StepLabel]:
        """One :class:`StepLabel` per step of ``trace`` (steps must be set)."""
        raise NotImplementedError

    def label_traces(self, traces: Sequence[Trace]) -> list[list[StepLabel]]:
        """Label each trace; errors name the trace."""
        out = []
        for t in traces:
            if not t.steps:
                raise TraceError(f"trace {t.id!r}: no steps to label (segment it first)")
            labels = self.label_trace(t)
            if len(labels) != len(t.steps):
                raise TraceError(
                    f"trace {t.id!r}: labeller {self.name!r} returned {len(labels)} labels "
                    f"for {len(t.steps)} steps"
                )
            out.append(labels)
        return out


class SentenceLabeller(Labeller):
    """A labeller that only needs the step texts of one trace, in order."""

    def label_sentences(self, sentences: Sequence[str]) -> list[StepLabel]:
        """One label per sentence (the sentences of one trace, in order)."""
        raise NotImplementedError

    def label_trace(self, trace: Trace) -> list[StepLabel]:
        return self.label_sentences([s.text for s in trace.steps or []])
