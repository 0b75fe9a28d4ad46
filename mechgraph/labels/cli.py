"""``mechgraph label``: label the steps of traces, write one JSON line per trace."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from mechgraph.errors import ConfigError, MechgraphError
from mechgraph.io import write_jsonl_atomic
from mechgraph.traces import load_traces, segment_traces

__all__ = [
    "label_command",
    "read_tagger_config",
    "run_label",
    "write_jsonl_atomic",
    "write_label_record",
]


def read_tagger_config(spec: Any) -> Any:
    """A :class:`~mechgraph.labels.tagger.TaggerConfig` from ``--tagger-config``.

    ``spec``: a JSON object (text starting with ``{``), the path of a ``.json`` file holding
    one, a mapping, or a TaggerConfig; its keys are TaggerConfig fields (missing ones keep
    their defaults).  Anything else, an unknown field or an invalid value: ConfigError.

    Examples
    --------
    >>> read_tagger_config('{"temperature": 0.5, "setup_window": 2}').temperature
    0.5
    >>> read_tagger_config('{"temprature": 0.5}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mechgraph.errors.ConfigError: --tagger-config: unknown TaggerConfig field(s) ['temprature']; ...
    """
    from mechgraph.labels.tagger import TaggerConfig

    if isinstance(spec, TaggerConfig):
        return spec
    where = "--tagger-config"
    if isinstance(spec, str | os.PathLike) and not str(spec).lstrip().startswith("{"):
        path = Path(spec)
        if path.suffix.lower() != ".json" or not path.is_file():
            raise ConfigError(f"{where} {spec}: neither a JSON object nor a .json file")
        where, spec = f"{where} {path}", path.read_text(encoding="utf-8")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: a JSON object of TaggerConfig fields, got {spec!r}")
    known = [f.name for f in dataclasses.fields(TaggerConfig) if f.init]
    unknown = sorted(str(k) for k in spec if k not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown TaggerConfig field(s) {unknown}; known: {known}")
    try:
        return TaggerConfig(**spec)
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def run_label(
    input: str | os.PathLike[str],
    method: str = "rules",
    out: str | os.PathLike[str] = "labels.jsonl",
    *,
    grams: str | os.PathLike[str] | None = None,
    segmenter: str = "sentences",
    device: str | None = None,
    tagger_config: Any = None,
) -> Path:
    """Label traces from a file or folder and write ``out`` (JSONL).

    Traces that carry ``steps`` keep exactly those steps, in order; the others are
    segmented with ``segmenter`` (Thought Anchors' sentence splitter by default).
    ``tagger_config`` (``method="rules"`` only): the rule tagger's
    :class:`~mechgraph.labels.tagger.TaggerConfig`, as :func:`read_tagger_config` reads it
    (default: the default TaggerConfig).

    Returns
    -------
    Path
        ``out``, with its record ``OUT.artifact.json`` beside it (kind "labels": method,
        grams, segmenter, and the tagger config when one was given; the traces and the
        grams file as inputs).

    Raises
    ------
    ConfigError
        Before any work, where ``out`` is an input, does not end in ``.jsonl``, is a
        folder, or cannot be written; where ``tagger_config`` is invalid or given with a
        method other than ``rules``.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "in.jsonl").write_text(json.dumps({"id": "a", "text": "Let me try. 1 + 1 = 2."}))
    >>> p = run_label(d / "in.jsonl", "rules", d / "out.jsonl")
    >>> [s["planning"] for s in json.loads(p.read_text())["steps"]]
    [True, False]
    """
    from mechgraph.cli import check_output, path_of
    from mechgraph.labels.methods import get_labeller, label_records

    tagger = None
    if tagger_config is not None:
        if str(method).strip().lower() != "rules":
            raise ConfigError(f"--tagger-config is for --method rules, not {method!r}")
        tagger = read_tagger_config(tagger_config)
    check_output(out, [input, grams, path_of(method)], suffixes=(".jsonl",))
    traces = load_traces(input)
    todo = [t for t in traces if not t.steps]
    if todo:
        segment_traces(todo, segmenter)
    kw: dict[str, Any] = {"device": device} if device and method.startswith("probe") else {}
    if tagger is not None:
        kw["config"] = tagger
    labeller = get_labeller(method, grams=grams, **kw)
    # label counts are checked by Labeller.label_traces (and extract_states for probes)
    path = write_jsonl_atomic(out, label_records(traces, labeller.label_traces(traces)))
    write_label_record(path, method, input, grams=grams, segmenter=segmenter, tagger=tagger)
    return path


def write_label_record(
    out: str | os.PathLike[str],
    method: str,
    input: str | os.PathLike[str],
    *,
    grams: str | os.PathLike[str] | None = None,
    segmenter: str = "sentences",
    tagger: Any = None,
) -> Any:
    """Write the record ``OUT.artifact.json`` of a label file (kind "labels").

    ``config``: method, grams, segmenter (and ``tagger``, the TaggerConfig as a dict, when
    one was given); ``inputs``: the traces and the grams file (and
    a ``probe:PATH`` / ``sg:PATH`` file or folder named by the method).
    """
    from mechgraph.artifacts import write_info
    from mechgraph.cli import path_of

    config = {
        "method": method,
        "grams": None if grams is None else os.fspath(grams),
        "segmenter": segmenter,
    }
    if tagger is not None:
        config["tagger"] = dataclasses.asdict(tagger)
    extra = [p for p in (grams, path_of(method)) if p is not None and Path(p).exists()]
    return write_info(out, "labels", config, [input, *extra])


def label_command(
    input: Annotated[
        Path, typer.Argument(help="Traces: a JSONL file or a Thought Anchors folder.")
    ],
    method: Annotated[
        str, typer.Option("--method", "-m", help="rules | sg | sg:PATH | probe:PATH")
    ] = "rules",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output JSONL.")] = Path("labels.jsonl"),
    grams: Annotated[Path | None, typer.Option(help="Strategic-gram list for --method sg.")] = None,
    segmenter: Annotated[
        str, typer.Option(help="Segmenter for traces without steps.")
    ] = "sentences",
    device: Annotated[str | None, typer.Option(help="Device for probe:PATH.")] = None,
    tagger_config: Annotated[
        str | None,
        typer.Option(
            "--tagger-config",
            metavar="JSON_OR_PATH",
            help="Rule tagger settings for --method rules: a JSON object or a .json file of "
            "TaggerConfig fields (setup_window, final_window, temperature, check_window, "
            "check_bonus, priors).",
        ),
    ] = None,
) -> None:
    """Label the steps of traces: tag, planning flag and score per step.

    Each output line is {"id", "steps": [{start, end, text, tag, planning, score}]}.
    """
    try:
        path = run_label(
            input,
            method,
            out,
            grams=grams,
            segmenter=segmenter,
            device=device,
            tagger_config=tagger_config,
        )
    except MechgraphError as e:
        from mechgraph.cli import error_line

        typer.echo(error_line(e), err=True)
        raise typer.Exit(1) from None
    n = sum(1 for _ in path.open(encoding="utf-8"))
    typer.echo(f"labelled {n} traces with {method} -> {path}")
