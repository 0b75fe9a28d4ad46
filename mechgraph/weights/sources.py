"""Where per-token planning masks and weights come from.

Planning sources find planning on the *text*, as char spans (never on tokens), through
:mod:`mechgraph.labels`:

``sg`` / ``sg:hicra`` / ``sg:PATH``
    Strategic-gram matches (HICRA): the tokens inside a match are planning tokens. Bare
    ``sg`` uses the list shipped with :mod:`mechgraph.labels`; ``sg:hicra`` HICRA's
    published list (shipped too); ``sg:PATH`` any list.
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

Weight sources give a value per token: per-step scores (e.g. Thought Anchors'
counterfactual importance) spread to the tokens of each step, or token entropy under a
model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mechgraph.align import token_anchors, tokenize_with_offsets
from mechgraph.errors import ConfigError, TraceError
from mechgraph.specs import NO_ARG, optional, parse_spec, required
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
        from mechgraph.labels import get_labeller, labeller_kinds

        # sg (gram matches as spans) and none are read here; every other kind (rules,
        # probe:PATH, registered kinds) is a sentence labeller from the one resolver.
        kinds = {"sg": PLANNING_KINDS["sg"], **labeller_kinds(), "none": NO_ARG}
        parsed = parse_spec(spec, kinds, "planning source")
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


def token_entropy(logits: Any) -> Any:
    """Entropy (nats) of the softmax over the last axis.

    Examples
    --------
    >>> import torch
    >>> round(float(token_entropy(torch.zeros(4))), 4)  # log 4
    1.3863
    """
    import torch

    x = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(np.asarray(logits))
    logp = torch.log_softmax(x.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def completion_entropy(
    model: Any, tokenizer: Any, prompt: str, text: str, *, device: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entropy of the model's next-token distribution at each token of a completion.

    ``prompt + text`` is tokenised together; the completion's tokens are those anchored in
    ``text``. Entry ``t`` is the entropy of the distribution the token was drawn from
    (the logits one position earlier); the first token of a text with no prompt and no
    BOS has none (NaN).

    Parameters
    ----------
    model : transformers causal LM
    tokenizer : fast tokenizer
    prompt, text : str
    device : str, optional
        Defaults to the model's.

    Returns
    -------
    ids : (T,) int64
        Token ids of ``text``'s tokens.
    offsets : (T, 2) int64
        Their char offsets into ``text``.
    entropy : (T,) float32

    Examples
    --------
    >>> ids, off, h = completion_entropy(lm.hf, lm.tokenizer, "Q: 2+2?", " 4")  # doctest: +SKIP
    """
    import torch

    full = prompt + text
    ids, off = tokenize_with_offsets(tokenizer, full)
    bos = getattr(tokenizer, "bos_token_id", None)
    lead = [bos] if bos is not None and (not len(ids) or ids[0] != bos) else []
    anchors = token_anchors(full, off)
    mine = anchors >= len(prompt)
    dev = device or next(model.parameters()).device
    x = torch.as_tensor([*lead, *ids.tolist()], device=dev)[None]
    with torch.inference_mode():
        logits = model(input_ids=x).logits[0]
    h = token_entropy(logits).cpu().numpy()
    # position p predicts token p + 1
    pred = np.concatenate([[np.nan] * (1 - len(lead)), h[: len(ids) - 1 + len(lead)]])
    out_off = off[mine] - len(prompt)
    return ids[mine], np.clip(out_off, 0, None), pred[mine].astype(np.float32)
