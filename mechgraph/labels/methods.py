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

Kinds of later stages are not imported from here: ``probe`` is an entry point of the
``mechgraph.labellers`` group (declared by the ``probes`` package in ``pyproject.toml``),
loaded only when used; :func:`register_labeller` adds a kind in-process.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mechgraph.errors import ConfigError
from mechgraph.labels.base import Labeller, StepLabel
from mechgraph.specs import NO_ARG, ArgRule, Spec, optional, parse_spec, required, spec_forms
from mechgraph.traces import Trace

__all__ = [
    "DEFAULT_GRAMS",
    "ENTRY_POINT_GROUP",
    "HICRA_GRAMS",
    "LabellerFactory",
    "get_labeller",
    "grams_path",
    "label_records",
    "label_table",
    "label_traces",
    "labeller_kinds",
    "register_labeller",
]

DEFAULT_GRAMS = Path(__file__).parent / "data" / "strategic_grams.json"
#: HICRA's published strategic grams (Wang et al. 2025, arXiv 2509.03646, appendix A).
HICRA_GRAMS = Path(__file__).parent / "data" / "hicra_grams.json"
#: Entry-point group of labeller kinds from later stages or other packages
#: (``probe = "probes.labeller:ProbeLabeller"``); each names a factory ``(arg, **kw)``.
ENTRY_POINT_GROUP = "mechgraph.labellers"
#: ``factory(arg, **kw) -> Labeller``; ``arg`` is the text after the kind's colon, or None.
LabellerFactory = Callable[..., Labeller]
# METHOD_KINDS / METHODS (the kinds of ``--method``, what each takes after its colon, and
# their forms: rules, sg, sg:hicra, sg:PATH, probe:PATH) are computed on access, see
# labeller_kinds() and the module __getattr__ below.


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


def _rules(arg: str | None, **kw: Any) -> Labeller:
    from mechgraph.labels.tagger import RuleLabeller

    return RuleLabeller(**kw)


def _grams(arg: str | None, *, grams: str | os.PathLike[str] | None = None, **kw: Any) -> Labeller:
    from mechgraph.labels.grams import GramLabeller, load_grams

    return GramLabeller(load_grams(grams_path(arg or grams)))


#: Built-in kinds: (what each takes after its colon, factory ``(arg, **kw) -> Labeller``).
_BUILTIN: dict[str, tuple[ArgRule, LabellerFactory]] = {
    "rules": (NO_ARG, _rules),
    "sg": (optional("PATH", "hicra"), _grams),
}
#: Kinds registered in this process (:func:`register_labeller`); they win over entry points.
_USER: dict[str, tuple[ArgRule, LabellerFactory]] = {}
#: What an entry-point kind takes after its colon (the plug-in is loaded only when used).
ENTRY_POINT_ARG = required("PATH")


@functools.cache
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name.strip().lower(): ep for ep in sorted(eps, key=lambda ep: ep.name)}


def labeller_kinds() -> dict[str, ArgRule]:
    """Every labeller kind known now and what it takes after its colon.

    Built-in kinds first (``rules``, ``sg``), then the ``mechgraph.labellers`` entry points
    (``probe`` from the ``probes`` package), then kinds from :func:`register_labeller`.

    Examples
    --------
    >>> list(labeller_kinds())[:3]
    ['rules', 'sg', 'probe']
    """
    kinds = {k: rule for k, (rule, _) in _BUILTIN.items()}
    kinds |= {k: ENTRY_POINT_ARG for k in _entry_points() if k not in kinds}
    kinds |= {k: rule for k, (rule, _) in _USER.items()}
    return kinds


def register_labeller(
    kind: str, factory: LabellerFactory, *, arg: ArgRule = optional("ARG")
) -> None:
    """Add a labeller kind, usable wherever a labelling method or planning source is read.

    Parameters
    ----------
    kind : str
        The name before the colon (case-insensitive, no colon); a built-in kind (``rules``,
        ``sg``) cannot be replaced, an entry-point kind (``probe``) can.
    factory : callable
        ``factory(arg, **kw) -> Labeller``: ``arg`` is the text after the colon (None when
        absent), ``kw`` the options of :func:`get_labeller` (e.g. ``device``).
    arg : ArgRule
        What the kind takes after its colon (default: an optional argument).

    Examples
    --------
    >>> from mechgraph.labels.external import CallableLabeller
    >>> def shout(arg, **kw):
    ...     return CallableLabeller(lambda s: "plan_generation" if s.isupper() else "other",
    ...                             per_sentence=True)
    >>> register_labeller("shout", shout)  # doctest: +SKIP
    >>> get_labeller("shout").label_sentences(["LET ME TRY."])[0].planning  # doctest: +SKIP
    True
    """
    key = str(kind).strip().lower()
    if not key or ":" in key:
        raise ConfigError(f"a labeller kind must be a non-empty name without ':', got {kind!r}")
    if key in _BUILTIN:
        raise ConfigError(f"labeller kind {key!r} is built in and cannot be replaced")
    if not callable(factory):
        raise ConfigError(f"the factory of labeller kind {key!r} must be callable")
    if not isinstance(arg, ArgRule):
        raise ConfigError(f"arg of labeller kind {key!r} must be an ArgRule (mechgraph.specs)")
    _USER[key] = (arg, factory)


def _factory(kind: str) -> LabellerFactory:
    if kind in _BUILTIN:
        return _BUILTIN[kind][1]
    if kind in _USER:
        return _USER[kind][1]
    ep = _entry_points()[kind]
    try:
        return ep.load()
    except ImportError as e:  # e.g. probe:PATH without the probes package
        raise ConfigError(
            f"labelling method '{kind}:{ENTRY_POINT_ARG.metavar}' needs {ep.value!r}, "
            f"which could not be imported: {e}"
        ) from None


def get_labeller(
    method: str | Spec,
    *,
    grams: str | os.PathLike[str] | None = None,
    what: str = "labelling method",
    **kw: Any,
) -> Labeller:
    """A labeller from its name: the one resolver of labeller specs.

    :func:`~mechgraph.labels.as_labeller` and
    :class:`~mechgraph.labels.sources.PlanningSource` resolve strings through it. Kinds
    of later stages (``probe:PATH``) come from the ``mechgraph.labellers`` entry points or
    :func:`register_labeller`; this module imports none of them.

    Parameters
    ----------
    method : str or Spec
        ``rules``, ``sg``, ``sg:PATH``, ``probe:PATH`` or a registered ``KIND[:ARG]``.
    grams : path, optional
        Strategic-gram list for ``sg`` (same as ``sg:PATH``).
    what : str
        What the spec is, for error messages.
    **kw
        Passed to the labeller's factory (e.g. ``device`` for probes).

    Examples
    --------
    >>> get_labeller("rules").name
    'rules'
    """
    text = str(method) if isinstance(method, Spec) else method
    spec = parse_spec(text, labeller_kinds(), what)
    if spec.kind == "sg":
        kw["grams"] = grams
    return _factory(spec.kind)(spec.arg, **kw)


def __getattr__(name: str) -> Any:
    # live: entry points and registered kinds count
    if name == "METHOD_KINDS":
        return labeller_kinds()
    if name == "METHODS":
        return spec_forms(labeller_kinds())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
