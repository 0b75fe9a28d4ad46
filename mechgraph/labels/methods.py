"""Labelling methods by name, and labelling traces into JSON-ready records.

Methods (the ``--method`` of ``mechgraph label``):

``rules``
    :class:`~mechgraph.labels.tagger.RuleLabeller`: the eight Thought Anchors functions.
``sg`` / ``sg:hicra`` / ``sg:PATH``
    :class:`~mechgraph.labels.grams.GramLabeller` with the strategic grams in ``PATH``
    (ours, HICRA's JSON, a JSON list or a text file); bare ``sg`` uses the list shipped
    with mechgraph (:data:`DEFAULT_GRAMS`, mined from the correct traces of the Thought
    Anchors data with :func:`~mechgraph.labels.grams.mine_strategic_grams`); ``sg:hicra``
    the 249 grams HICRA published (:data:`HICRA_GRAMS`, arXiv 2509.03646, appendix A).
``probe:PATH``
    A probe artifact saved by ``probes`` (needs the model it was trained on).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mechgraph.errors import ConfigError
from mechgraph.labels.base import Labeller, StepLabel
from mechgraph.specs import NO_ARG, optional, parse_spec, required, spec_forms
from mechgraph.traces import Trace

__all__ = [
    "DEFAULT_GRAMS",
    "HICRA_GRAMS",
    "METHODS",
    "METHOD_KINDS",
    "get_labeller",
    "grams_path",
    "label_records",
    "label_table",
    "label_traces",
]

DEFAULT_GRAMS = Path(__file__).parent / "data" / "strategic_grams.json"
#: HICRA's published strategic grams (Wang et al. 2025, arXiv 2509.03646, appendix A).
HICRA_GRAMS = Path(__file__).parent / "data" / "hicra_grams.json"
#: The kinds of ``--method`` and what each takes after its colon (:mod:`mechgraph.specs`).
METHOD_KINDS = {"rules": NO_ARG, "sg": optional("PATH", "hicra"), "probe": required("PATH")}
METHODS = spec_forms(METHOD_KINDS)  # ("rules", "sg", "sg:hicra", "sg:PATH", "probe:PATH")


def grams_path(arg: str | os.PathLike[str] | None) -> Path:
    """The gram list a ``sg:ARG`` spec names: the shipped list, ``hicra``, or a path.

    Examples
    --------
    >>> grams_path("hicra").name, grams_path(None).name
    ('hicra_grams.json', 'strategic_grams.json')
    """
    if not arg:
        return DEFAULT_GRAMS
    return HICRA_GRAMS if str(arg).lower() == "hicra" else Path(arg)


def get_labeller(
    method: str, *, grams: str | os.PathLike[str] | None = None, **kw: Any
) -> Labeller:
    """A labeller from its name.

    Parameters
    ----------
    method : str
        ``rules``, ``sg``, ``sg:PATH`` or ``probe:PATH``.
    grams : path, optional
        Strategic-gram list for ``sg`` (same as ``sg:PATH``).
    **kw
        Passed to the labeller (e.g. ``device`` for probes).

    Examples
    --------
    >>> get_labeller("rules").name
    'rules'
    """
    spec = parse_spec(str(method), METHOD_KINDS, "labelling method")
    if spec.kind == "rules":
        from mechgraph.labels.tagger import RuleLabeller

        return RuleLabeller(**kw)
    if spec.kind == "sg":
        from mechgraph.labels.grams import GramLabeller, load_grams

        return GramLabeller(load_grams(grams_path(spec.arg or grams)))
    try:
        from probes.labeller import ProbeLabeller
    except ImportError as e:
        raise ConfigError(f"method 'probe:PATH' needs the probes package: {e}") from None
    return ProbeLabeller(spec.arg, **kw)


def label_traces(
    traces: Sequence[Trace], method: Any = "rules", **kw: Any
) -> list[list[StepLabel]]:
    """Label every step of every trace (the traces must have steps).

    Parameters
    ----------
    traces : sequence of Trace
    method : str, Labeller or callable
        See :func:`get_labeller`; a callable is an external labeller
        (:mod:`mechgraph.labels.external`).

    Examples
    --------
    >>> from mechgraph.traces import segment_traces
    >>> ts = segment_traces([Trace("a", "Let me try another approach. So 2 + 2 = 4.")])
    >>> [x.planning for x in label_traces(ts)[0]]
    [True, False]
    """
    from mechgraph.labels.external import as_labeller

    return as_labeller(method, **kw).label_traces(traces)


def label_records(traces: Sequence[Trace], labels: Sequence[Sequence[StepLabel]]) -> list[dict]:
    """Output records: ``{"id", "steps": [{start, end, text, tag, planning, score}]}``."""
    out = []
    for t, labs in zip(traces, labels, strict=True):
        steps = [
            {"start": s.start, "end": s.end, "text": s.text, **lab.as_dict()}
            for s, lab in zip(t.steps or [], labs, strict=True)
        ]
        out.append({"id": t.id, "steps": steps})
    return out


def label_table(traces: Sequence[Trace], labels: Sequence[Sequence[StepLabel]]) -> Any:
    """Labels as a DataFrame keyed like a store's steps: ``trace_id, step, tag, planning, score``.

    Join it onto :attr:`mechgraph.Store.steps` (same ``trace_id`` / ``step`` keys) to line
    labels up with state rows.

    Examples
    --------
    >>> labels = label_traces(traces, "rules")  # doctest: +SKIP
    >>> rows = store.steps.merge(label_table(traces, labels), on=["trace_id", "step"],
    ...                          how="left", validate="one_to_one")  # doctest: +SKIP
    >>> y = rows.planning.to_numpy(dtype=int)  # doctest: +SKIP
    """
    import pandas as pd

    rows = []
    for t, labs in zip(traces, labels, strict=True):
        if len(labs) != len(t.steps or []):
            raise ConfigError(f"trace {t.id!r}: {len(labs)} labels for {len(t.steps or [])} steps")
        rows += [{"trace_id": t.id, "step": k, **lab.as_dict()} for k, lab in enumerate(labs)]
    cols = ["trace_id", "step", "tag", "planning", "score"]
    return pd.DataFrame(rows, columns=cols)
