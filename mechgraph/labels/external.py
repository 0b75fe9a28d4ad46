"""Plug in any labeller: a function over the sentences of a trace, or over one sentence.

Users with an LLM at hand (or any classifier) wrap it with :func:`as_labeller`::

    def my_llm(sentences: list[str]) -> list[str]:
        ...  # one tag per sentence
    labeller = as_labeller(my_llm)

The function may return, per sentence, a tag (``str``), a :class:`StepLabel`, a
``(tag, score)`` pair or a dict with ``tag`` and optional ``planning`` / ``score``.
Unless given, ``planning`` is ``tag in planning_tags`` and ``score`` is 1.0 or 0.0.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from mechgraph.errors import ConfigError, TraceError
from mechgraph.labels.base import Labeller, SentenceLabeller, StepLabel
from mechgraph.labels.tagger import PLANNING_TAGS

__all__ = ["CallableLabeller", "as_labeller"]


class CallableLabeller(SentenceLabeller):
    """Wrap a callable as a labeller.

    Parameters
    ----------
    fn : callable
        ``list[str] -> list[result]`` (``per_sentence=False``) or ``str -> result``
        (``per_sentence=True``); a result is described in the module docstring.
    per_sentence : bool or None
        None: guess from the parameter annotation (``str`` means per sentence), else
        call with the list.
    planning_tags : collection of str
        Tags that count as planning (default plan_generation, uncertainty_management).
    name : str
        Named in errors.

    Examples
    --------
    >>> lab = CallableLabeller(lambda s: "plan_generation" if "try" in s else "other",
    ...                        per_sentence=True)
    >>> [x.planning for x in lab.label_sentences(["Let me try.", "x = 1."])]
    [True, False]
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        per_sentence: bool | None = None,
        planning_tags: Collection[str] = PLANNING_TAGS,
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"an external labeller must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.per_sentence = _guess_per_sentence(fn) if per_sentence is None else per_sentence
        self.planning_tags = frozenset(planning_tags)
        self.name = name or getattr(fn, "__name__", "external")

    def label_sentences(self, sentences: Sequence[str]) -> list[StepLabel]:
        sents = list(sentences)
        try:
            raw = [self.fn(s) for s in sents] if self.per_sentence else self.fn(sents)
        except Exception as e:  # the plug-in's own failure: say whose
            raise TraceError(f"external labeller {self.name!r} failed: {e!r}") from e
        if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
            raise TraceError(
                f"external labeller {self.name!r} must return a list (one item per "
                f"sentence), got {type(raw).__name__}"
            )
        if len(raw) != len(sents):
            raise TraceError(
                f"external labeller {self.name!r} returned {len(raw)} labels for "
                f"{len(sents)} sentences"
            )
        return [self._coerce(r, k) for k, r in enumerate(raw)]

    def label_trace(self, trace):  # type: ignore[override]
        try:
            return super().label_trace(trace)
        except TraceError as e:
            raise TraceError(f"trace {trace.id!r}: {e}") from e

    def _coerce(self, r: Any, k: int) -> StepLabel:
        if isinstance(r, StepLabel):
            return r
        score = None
        planning = None
        if isinstance(r, Mapping):
            if "tag" not in r:
                raise TraceError(f"external labeller {self.name!r}: item {k} has no 'tag'")
            tag, score, planning = r["tag"], r.get("score"), r.get("planning")
        elif isinstance(r, tuple) and len(r) == 2:
            tag, score = r
        else:
            tag = r
        if tag is not None and not isinstance(tag, str):
            raise TraceError(
                f"external labeller {self.name!r}: item {k} tag must be a string, "
                f"got {type(tag).__name__}"
            )
        if planning is None:
            planning = tag in self.planning_tags
        if score is None:
            score = 1.0 if planning else 0.0
        return StepLabel(tag, bool(planning), float(score))


def _guess_per_sentence(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params:
        return False
    ann = params[0].annotation
    return ann is str or ann == "str"


def as_labeller(obj: Any, **kwargs: Any) -> Labeller:
    """A :class:`Labeller` from a labeller, a method name or a callable.

    Parameters
    ----------
    obj : Labeller, str, Spec or callable
        A labeller is returned as is; a string (or parsed :class:`~mechgraph.specs.Spec`)
        is a method (``rules``, ``sg``, ``sg:PATH``, ``probe:PATH`` or a registered kind),
        resolved by :func:`mechgraph.labels.get_labeller`, the one resolver of labeller
        specs; a callable is wrapped in :class:`CallableLabeller` (``kwargs`` go to it).

    Examples
    --------
    >>> def tags(sentences: list[str]) -> list[str]:
    ...     return ["self_checking" for _ in sentences]
    >>> as_labeller(tags).label_sentences(["Let me verify."])[0]
    StepLabel(tag='self_checking', planning=False, score=0.0)
    """
    if isinstance(obj, Labeller):
        return obj
    from mechgraph.specs import Spec

    if isinstance(obj, str | Spec):
        from mechgraph.labels.methods import get_labeller

        return get_labeller(obj, **kwargs)
    return CallableLabeller(obj, **kwargs)
