"""Traces and steps, and loaders for JSONL, Thought Anchors folders and HF datasets.

A :class:`Trace` is a prompt plus a reasoning text; its :class:`Step` objects are exact
char spans into the text (``trace.text[step.start:step.end] == step.text``, always).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mechgraph.errors import TraceError
from mechgraph.segment import get_segmenter, locate_steps

__all__ = ["Step", "Trace", "load_traces", "segment_traces"]

TRACE_FIELDS = ("prompt", "answer", "correct", "model", "checkpoint")
THINK = "<think>"


@dataclass(frozen=True)
class Step:
    """One step of a trace: an exact char span into the trace text.

    Attributes
    ----------
    start, end : int
        Char offsets into ``Trace.text``.
    text : str
        ``trace.text[start:end]``.
    label : str or None
        A tag (e.g. Thought Anchors' function tag), when known.
    meta : dict
        Extra per-step fields (scalars), e.g. importance scores from a data set.
    """

    start: int
    end: int
    text: str
    label: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class Trace:
    """A reasoning trace: prompt, reasoning text, optional fields and steps.

    Parameters
    ----------
    id : str
        Unique id.
    text : str
        The reasoning text (what is segmented and analysed).
    prompt : str
        Text the model saw before ``text`` (fed to the model, never segmented).
    answer, correct, model, checkpoint
        Optional trace fields, carried into the store.
    steps : list of Step or None
        Filled by a segmenter, or given.
    meta : dict
        Any other scalar fields of the trace.

    Examples
    --------
    >>> t = Trace(id="t0", text="Let x = 2. Then x + 1 = 3.")
    >>> segment_traces([t], "sentences")[0].steps[1].text
    'Then x + 1 = 3.'
    """

    id: str
    text: str
    prompt: str = ""
    answer: str | None = None
    correct: bool | None = None
    model: str | None = None
    checkpoint: str | None = None
    steps: list[Step] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise TraceError(f"trace id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.text, str) or not self.text.strip():
            raise TraceError(f"trace {self.id!r}: text is empty or white space only")
        if not isinstance(self.prompt, str):
            raise TraceError(f"trace {self.id!r}: prompt must be a string")
        if self.steps is not None:
            self.check_steps()

    def check_steps(self) -> None:
        """Raise :class:`TraceError` unless the steps are ordered exact spans."""
        prev = 0
        for k, s in enumerate(self.steps or []):
            if not (prev <= s.start < s.end <= len(self.text)):
                raise TraceError(
                    f"trace {self.id!r}: step {k} span [{s.start}, {s.end}] is empty, "
                    "out of order or outside the text"
                )
            if self.text[s.start : s.end] != s.text:
                raise TraceError(f"trace {self.id!r}: step {k} text does not match its span")
            prev = s.end

    def fields(self) -> dict[str, Any]:
        """The trace-level fields (``trace_id``, prompt, answer, ...) as a dict."""
        return {"trace_id": self.id, **{k: getattr(self, k) for k in TRACE_FIELDS}, **self.meta}


def _steps_from_spans(
    trace: Trace, spans: Sequence[tuple[int, int]], labels=None, metas=None
) -> list[Step]:
    if labels is not None and len(labels) != len(spans):
        raise TraceError(
            f"trace {trace.id!r}: {len(labels)} labels for {len(spans)} steps; give one per step"
        )
    return [
        Step(
            a,
            b,
            trace.text[a:b],
            None if labels is None or labels[k] is None else str(labels[k]),
            metas[k] if metas is not None else {},
        )
        for k, (a, b) in enumerate(spans)
    ]


def segment_traces(traces: Iterable[Trace], method: str = "sentences") -> list[Trace]:
    """Fill ``trace.steps`` with a segmenter (``given`` keeps the steps the traces carry).

    Raises
    ------
    TraceError
        A trace has no steps (``given`` without steps, or a segmenter that finds none).

    Examples
    --------
    >>> ts = segment_traces([Trace(id="a", text="One line here\\nTwo lines here")], "lines")
    >>> [s.text for s in ts[0].steps]
    ['One line here', 'Two lines here']
    """
    out = []
    if method == "given":
        for t in traces:
            if not t.steps:
                raise TraceError(f"trace {t.id!r}: segmenter 'given' but the trace has no steps")
            out.append(t)
        return out
    fn = get_segmenter(method)
    for t in traces:
        spans = fn(t.text)
        if not spans:
            raise TraceError(f"trace {t.id!r}: segmenter {method!r} found no step")
        t.steps = _steps_from_spans(t, spans)
        out.append(t)
    return out


# ---------------------------------------------------------------- loaders


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | bool) or (isinstance(v, float))


def trace_from_record(rec: Mapping[str, Any], where: str) -> Trace:
    """Build a trace from a JSON-like record (the JSONL schema of DESIGN.md)."""
    if not isinstance(rec, Mapping):
        raise TraceError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if "id" not in rec or "text" not in rec:
        raise TraceError(f"{where}: fields 'id' and 'text' are required")
    tid = str(rec["id"])
    if not isinstance(rec["text"], str):
        raise TraceError(f"{where}: trace {tid!r}: 'text' must be a string")
    correct = rec.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise TraceError(f"{where}: trace {tid!r}: 'correct' must be true, false or null")
    meta = {
        k: v
        for k, v in rec.items()
        if k not in ("id", "text", "steps", "labels", *TRACE_FIELDS) and _scalar(v)
    }
    try:
        trace = Trace(
            id=tid,
            text=rec["text"],
            prompt=rec.get("prompt") or "",
            answer=None if rec.get("answer") is None else str(rec["answer"]),
            correct=correct,
            model=rec.get("model"),
            checkpoint=None if rec.get("checkpoint") is None else str(rec["checkpoint"]),
            meta=meta,
        )
        steps, labels = rec.get("steps"), rec.get("labels")
        if steps is not None:
            if not isinstance(steps, list) or not steps:
                raise TraceError(f"trace {tid!r}: 'steps' must be a non-empty list")
            spans = locate_steps(trace.text, steps, tid)
            trace.steps = _steps_from_spans(trace, spans, labels)
        elif labels is not None:
            raise TraceError(f"trace {tid!r}: 'labels' given without 'steps'")
    except TraceError as e:
        raise TraceError(f"{where}: {e}") from None
    return trace


def _read_jsonl(path: Path) -> list[Trace]:
    from mechgraph.io import read_jsonl

    return [trace_from_record(rec, f"{path}:{n}") for n, rec in read_jsonl(path, TraceError)]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise TraceError(f"{path}: not UTF-8 (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise TraceError(f"{path}: invalid JSON: {e.msg} (line {e.lineno})") from None


def _ta_trace(folder: Path, tid: str) -> Trace:
    base = _read_json(folder / "base_solution.json")
    full = base.get("full_cot")
    if not isinstance(full, str) or THINK not in full:
        raise TraceError(
            f"trace {tid!r} ({folder}): base_solution.json has no full_cot with {THINK}"
        )
    cut = full.index(THINK) + len(THINK)
    meta: dict[str, Any] = {}
    pfile = folder / "problem.json"
    if pfile.exists():
        prob = _read_json(pfile)
        for k in ("problem", "level", "type", "gt_answer", "gt_solution"):
            if isinstance(prob.get(k), str):
                meta[k] = prob[k]
    ans = base.get("answer")
    trace = Trace(
        id=tid,
        text=full[cut:],
        prompt=full[:cut],
        answer=None if ans is None else str(ans),
        correct=base.get("is_correct"),
        meta=meta,
    )
    cfile = folder / "chunks_labeled.json"
    if cfile.exists():
        chunks = _read_json(cfile)
        chunks = sorted(chunks, key=lambda c: c.get("chunk_idx", 0))
        spans = locate_steps(trace.text, [c["chunk"] for c in chunks], tid)
        labels = [(c.get("function_tags") or [None])[0] for c in chunks]
        metas = [
            {
                k: (float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)
                for k, v in c.items()
                if k not in ("chunk", "chunk_idx", "function_tags", "depends_on")
                and _scalar(v)
                and not (isinstance(v, float) and math.isnan(v))
            }
            for c in chunks
        ]
        trace.steps = _steps_from_spans(trace, spans, labels, metas)
    return trace


def _is_ta_folder(p: Path) -> bool:
    return (p / "base_solution.json").is_file()


def _load_dataset(ds: Any, columns: Mapping[str, str] | None) -> list[Trace]:
    columns = dict(columns or {})
    traces = []
    for i, row in enumerate(ds):
        rec = {ours: row[theirs] for ours, theirs in columns.items()}
        rec.update({k: v for k, v in row.items() if k not in columns.values() and k not in rec})
        if "id" not in rec:
            rec["id"] = str(i)
        traces.append(trace_from_record(rec, f"dataset row {i}"))
    return traces


def load_traces(source: Any, *, columns: Mapping[str, str] | None = None) -> list[Trace]:
    """Load traces from a file, a folder or a Hugging Face dataset.

    Parameters
    ----------
    source : str, Path or datasets.Dataset
        * a ``.jsonl`` file, one trace a line: ``id``, ``text`` required; ``prompt``,
          ``answer``, ``correct``, ``model``, ``checkpoint``, ``steps`` (strings found in
          order, or ``[start, end]`` spans), ``labels`` (one per step) optional;
        * a Thought Anchors problem folder (``base_solution.json`` and
          ``chunks_labeled.json``): prompt = ``full_cot`` up to and including
          ``<think>``, text = the rest, steps = the labelled chunks;
        * a folder holding such folders (at any depth; ids are relative paths);
        * a ``datasets.Dataset`` (or any iterable of dict rows).
    columns : dict, optional
        For datasets: our field name -> the dataset's column name, e.g.
        ``{"id": "idx", "text": "completion"}``.

    Returns
    -------
    list of Trace
        In file order (folders sorted by path).

    Raises
    ------
    TraceError
        Naming the file and line (or the trace): invalid JSON, non-UTF-8 bytes,
        missing fields, empty text, a step not found, duplicate ids.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl"
    >>> _ = p.write_text(json.dumps({"id": "a", "text": "Let x = 1. So x = 1."}) + "\\n")
    >>> [t.id for t in load_traces(p)]
    ['a']
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise TraceError(f"{path}: no such file or folder")
        if path.is_file():
            traces = _read_jsonl(path)
        elif _is_ta_folder(path):
            traces = [_ta_trace(path, path.name)]
        else:
            folders = sorted(p.parent for p in path.rglob("base_solution.json"))
            if not folders:
                raise TraceError(f"{path}: no base_solution.json below this folder")
            traces = [_ta_trace(f, f.relative_to(path).as_posix()) for f in folders]
    else:
        traces = _load_dataset(source, columns)
    seen: set[str] = set()
    for t in traces:
        if t.id in seen:
            raise TraceError(f"duplicate trace id {t.id!r} in {source}")
        seen.add(t.id)
    if not traces:
        raise TraceError(f"{source}: no traces")
    return traces
