"""``mechgraph label``: label the steps of traces, write one JSON line per trace."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from mechgraph.errors import MechgraphError
from mechgraph.io import write_jsonl_atomic
from mechgraph.traces import load_traces, segment_traces

__all__ = ["label_command", "run_label", "write_jsonl_atomic", "write_label_record"]


def run_label(
    input: str | os.PathLike[str],
    method: str = "rules",
    out: str | os.PathLike[str] = "labels.jsonl",
    *,
    grams: str | os.PathLike[str] | None = None,
    segmenter: str = "sentences",
    device: str | None = None,
) -> Path:
    """Label traces from a file or folder and write ``out`` (JSONL).

    Traces that carry ``steps`` keep exactly those steps, in order; the others are
    segmented with ``segmenter`` (Thought Anchors' sentence splitter by default).

    Returns
    -------
    Path
        ``out``, with its record ``OUT.artifact.json`` beside it (kind "labels": method,
        grams, segmenter; the traces and the grams file as inputs).

    Raises
    ------
    ConfigError
        Before any work, where ``out`` is an input, does not end in ``.jsonl``, is a
        folder, or cannot be written.

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

    check_output(out, [input, grams, path_of(method)], suffixes=(".jsonl",))
    traces = load_traces(input)
    todo = [t for t in traces if not t.steps]
    if todo:
        segment_traces(todo, segmenter)
    kw = {"device": device} if device and method.startswith("probe") else {}
    labeller = get_labeller(method, grams=grams, **kw)
    # label counts are checked by Labeller.label_traces (and extract_states for probes)
    path = write_jsonl_atomic(out, label_records(traces, labeller.label_traces(traces)))
    write_label_record(path, method, input, grams=grams, segmenter=segmenter)
    return path


def write_label_record(
    out: str | os.PathLike[str],
    method: str,
    input: str | os.PathLike[str],
    *,
    grams: str | os.PathLike[str] | None = None,
    segmenter: str = "sentences",
) -> Any:
    """Write the record ``OUT.artifact.json`` of a label file (kind "labels").

    ``config``: method, grams, segmenter; ``inputs``: the traces and the grams file (and
    a ``probe:PATH`` / ``sg:PATH`` file or folder named by the method).
    """
    from mechgraph.artifacts import write_info
    from mechgraph.cli import path_of

    config = {
        "method": method,
        "grams": None if grams is None else os.fspath(grams),
        "segmenter": segmenter,
    }
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
) -> None:
    """Label the steps of traces: tag, planning flag and score per step.

    Each output line is {"id", "steps": [{start, end, text, tag, planning, score}]}.
    """
    try:
        path = run_label(input, method, out, grams=grams, segmenter=segmenter, device=device)
    except MechgraphError as e:
        from mechgraph.cli import error_line

        typer.echo(error_line(e), err=True)
        raise typer.Exit(1) from None
    n = sum(1 for _ in path.open(encoding="utf-8"))
    typer.echo(f"labelled {n} traces with {method} -> {path}")
