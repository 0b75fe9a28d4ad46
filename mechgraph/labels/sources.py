"""Planning sources: char spans of planning in texts, from any labeller or gram list.

Planning is found on the *text*, as char spans (never on tokens), through
:mod:`mechgraph.labels`:

``sg`` / ``sg:hicra`` / ``sg:PATH``
    Strategic-gram matches (HICRA). Bare ``sg`` uses the list shipped with
    :mod:`mechgraph.labels`; ``sg:hicra`` HICRA's published list; ``sg:PATH`` any list.
``rules``
    Whole sentences tagged ``plan_generation`` / ``uncertainty_management`` by the rule
    tagger.
``probe:PATH``
    Whole sentences a trained probe calls planning (needs the model it was trained on).
``KIND[:ARG]``
    Any labeller kind registered with :func:`mechgraph.labels.register_labeller` (or a
    ``mechgraph.labellers`` entry point): its planning sentences.
``none``
    No planning token.
a callable
    ``text -> list[(start, end)]`` char spans.

Later stages (weights, phases) map the spans to their tokenizer's tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mechgraph.errors import ConfigError
from mechgraph.specs import NO_ARG, optional, parse_spec, required
from mechgraph.traces import Trace

__all__ = ["PLANNING_KINDS", "PlanningSource", "parse_planning", "planning_source"]

Span = tuple[int, int]

#: The kinds of a planning-source string and what each takes after its colon; labeller
#: kinds registered later (:func:`mechgraph.labels.labeller_kinds`) are accepted too.
PLANNING_KINDS = {
    "sg": optional("PATH", "hicra"),
    "rules": NO_ARG,
    "probe": required("PATH"),
    "none": NO_ARG,
}


class PlanningSource:
    """Char spans of planning in completion texts.

    Parameters
    ----------
    spec : str, callable, Labeller, list of str, StrategicGrams or GramMatcher
        ``sg``, ``sg:PATH``, ``rules``, ``probe:PATH``, ``none``; a callable
        ``text -> list[(start, end)]``; a :class:`mechgraph.labels.Labeller` (its planning
        sentences); or strategic grams themselves.
    segmenter : str
        Splits texts into sentences for the sentence-level sources (``rules``, probes).
    **labeller_kw
        Passed to :func:`mechgraph.labels.get_labeller` (e.g. ``device`` for probes).

    Examples
    --------
    >>> src = PlanningSource(["but wait"])
    >>> src("So x = 2. But wait, x = 3.")
    [(10, 18)]
    >>> PlanningSource("rules")("Let me try another approach. So 2 + 2 = 4.")
    [(0, 28)]
    """

    def __init__(
        self,
        spec: str | Callable[[str], Sequence[Span]] | Sequence[str],
        *,
        segmenter: str = "sentences",
        **labeller_kw: Any,
    ) -> None:
        self.segmenter = segmenter
        self._fn: Callable[[str], Sequence[Span]] | None = None
        self._matcher = None
        self._labeller = None
        from mechgraph.labels import Labeller

        if isinstance(spec, Labeller):  # any sentence labeller (rules, probe, external)
            self.name = getattr(spec, "name", type(spec).__name__)
            self._labeller = spec
            return
        if callable(spec):
            self.name = getattr(spec, "__name__", "callable")
            self._fn = spec
            return
        if not isinstance(spec, str) and (hasattr(spec, "matcher") or hasattr(spec, "find")):
            # StrategicGrams / GramMatcher
            self.name = "sg:" + type(spec).__name__
            self._matcher = spec.matcher() if hasattr(spec, "matcher") else spec
            return
        if not isinstance(spec, str):  # a list of grams
            from mechgraph.labels import GramMatcher

            self.name = "sg:list"
            self._matcher = GramMatcher(spec)
            return
        self.name = spec
        from mechgraph.labels import get_labeller

        # sg (gram matches as spans) and none are read here; every other kind (rules,
        # probe:PATH, registered kinds) is a sentence labeller from the one resolver.
        parsed = parse_planning(spec)
        if parsed.kind == "sg":
            from mechgraph.labels import grams_path, load_grams

            self._matcher = load_grams(grams_path(parsed.arg)).matcher()
        elif parsed.kind != "none":
            self._labeller = get_labeller(parsed, what="planning source", **labeller_kw)

    def __call__(self, text: str) -> list[Span]:
        """Merged char spans of planning in ``text``."""
        return self.batch([text])[0]

    def batch(self, texts: Sequence[str]) -> list[list[Span]]:
        """Spans for many texts (sentence labellers run on all of them at once)."""
        from mechgraph.labels import gram_spans, merge_spans

        if self._matcher is not None:
            return [gram_spans(t, self._matcher) for t in texts]
        if self._fn is not None:
            out = []
            for t in texts:
                spans = merge_spans(self._fn(t))
                if spans and (spans[0][0] < 0 or spans[-1][1] > len(t)):
                    raise ConfigError(f"planning source {self.name!r} gave spans outside the text")
                out.append(spans)
            return out
        if self._labeller is None:
            return [[] for _ in texts]
        return self._sentence_spans(texts)

    def trace_spans(self, traces: Sequence[Trace]) -> list[list[Span]]:
        """Spans for traces; sentence-level sources use the traces' own steps when all have some."""
        if self._labeller is not None and all(t.steps for t in traces):
            from mechgraph.labels import planning_spans

            labels = self._labeller.label_traces(list(traces))
            return [planning_spans(t, lab) for t, lab in zip(traces, labels, strict=True)]
        return self.batch([t.text for t in traces])

    def _sentence_spans(self, texts: Sequence[str]) -> list[list[Span]]:
        from mechgraph.labels import planning_spans
        from mechgraph.segment import get_segmenter
        from mechgraph.traces import Step

        seg = get_segmenter(self.segmenter)
        traces, where = [], []
        for i, t in enumerate(texts):
            spans = seg(t) if t.strip() else []
            if not spans:
                continue
            tr = Trace(id=f"completion-{i}", text=t)
            tr.steps = [Step(a, b, t[a:b]) for a, b in spans]
            traces.append(tr)
            where.append(i)
        out: list[list[Span]] = [[] for _ in texts]
        if traces:
            for i, tr, labels in zip(
                where, traces, self._labeller.label_traces(traces), strict=True
            ):
                out[i] = planning_spans(tr, labels)
        return out

    def __repr__(self) -> str:
        return f"PlanningSource({self.name!r})"


def planning_source(spec: Any, **kw: Any) -> PlanningSource:
    """A :class:`PlanningSource` from a spec (returned as is when it already is one).

    Examples
    --------
    >>> planning_source("none")("Let me try.")
    []
    """
    return spec if isinstance(spec, PlanningSource) else PlanningSource(spec, **kw)


def parse_planning(spec: Any) -> Any:
    """Parse a planning-source string: ``sg[:PATH|hicra]``, ``none`` or any labeller kind.

    The labeller kinds are those :func:`mechgraph.labels.labeller_kinds` knows (``rules``,
    ``probe:PATH`` and any registered one), so every stage that takes a planning source
    accepts the same strings.

    Examples
    --------
    >>> parse_planning("sg:hicra").arg, parse_planning("rules").kind
    ('hicra', 'rules')
    """
    from mechgraph.labels import labeller_kinds

    kinds = {"sg": PLANNING_KINDS["sg"], **labeller_kinds(), "none": NO_ARG}
    return parse_spec(spec, kinds, "planning source")
