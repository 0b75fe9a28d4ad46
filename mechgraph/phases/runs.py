"""The samples of an RL run: checkpoint order, per-checkpoint sample files, trainer logs.

A *run* is a list of :class:`~mechgraph.Trace` objects tagged with ``checkpoint``. Three
things get them into shape for :func:`mechgraph.phases.phase_table`:

* :func:`checkpoint_order` orders checkpoint labels numerically (``50 < 100``,
  ``step_950``, ``checkpoint-8``; natural sort), or as the user says.
* :func:`load_run` reads a folder of per-checkpoint sample files (one JSONL per checkpoint,
  as TRL / verl evaluation dumps look) with a column mapping, the checkpoint taken from a
  field or the file name, and a rule that keeps only the model's reasoning text.
* :func:`load_logs` reads trainer logs (TRL's ``trainer_state.json``, a JSONL of dicts or
  a CSV export from W&B) into per-step scalars named ``log/<key>``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError, TraceError
from mechgraph.io import read_jsonl
from mechgraph.specs import NO_ARG, parse_spec, required, spec_forms
from mechgraph.traces import Trace, trace_from_record

__all__ = [
    "CHECKPOINT_KINDS",
    "REASONING_KINDS",
    "REASONING_RULES",
    "checkpoint_order",
    "checkpoint_value",
    "load_logs",
    "load_run",
    "reasoning_text",
]

_NUM = re.compile(r"\d+(?:\.\d+)?")
#: Chat-template headers that open the assistant's turn (the last one found wins).
_ASSISTANT = re.compile(
    r"<\|im_start\|>assistant\s*\n"
    r"|<\|start_header_id\|>assistant<\|end_header_id\|>\s*"
    r"|<\|assistant\|>\s*"
    r"|(?:^|\n)assistant\s*\n"
    r"|<｜Assistant｜>"
)
#: Reasoning rules (:func:`reasoning_text`) and what each takes after its colon.
REASONING_KINDS = {
    "auto": NO_ARG,
    "chat": NO_ARG,
    "think": NO_ARG,
    "after": required("MARKER"),
    "none": NO_ARG,
}
REASONING_RULES = spec_forms(REASONING_KINDS)  # auto, chat, think, after:MARKER, none
#: Where :func:`load_run` reads each sample's checkpoint.
CHECKPOINT_KINDS = {"auto": NO_ARG, "file": NO_ARG, "field": required("NAME")}
_TEXT_COLS = ("text", "output", "completion", "response", "generation")
_CORRECT_COLS = ("correct", "is_correct", "{checkpoint}_correct")
_REWARD_COLS = ("reward", "score", "rewards")


# ---------------------------------------------------------------- checkpoints


def checkpoint_value(label: Any) -> float:
    """The number a checkpoint label holds (its last number), NaN when it holds none.

    Examples
    --------
    >>> checkpoint_value("step_0950"), checkpoint_value("checkpoint-8"), checkpoint_value(50)
    (950.0, 8.0, 50.0)
    >>> checkpoint_value("final")
    nan
    """
    if isinstance(label, int | float) and not isinstance(label, bool):
        return float(label)
    nums = _NUM.findall(str(label))
    return float(nums[-1]) if nums else math.nan


def _natural_key(label: str) -> tuple:
    parts = re.split(r"(\d+(?:\.\d+)?)", label)
    return tuple((0, float(p), "") if _NUM.fullmatch(p) else (1, 0.0, p) for p in parts if p)


def checkpoint_order(
    labels: Sequence[Any], order: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Order checkpoint labels and give each its position on the x axis.

    Parameters
    ----------
    labels : sequence
        The checkpoint labels found in the traces (repeats allowed).
    order : sequence of str, optional
        The order to use (``--order a,b,c``); must name every label exactly once.

    Returns
    -------
    ordered : list of str
        Distinct labels, in training order (natural sort: numbers compare as numbers).
    x : (n,) float array
        The labels' numbers when every label holds one and they increase in that order
        (training steps, say); else ranks 0, 1, 2, ...

    Raises
    ------
    ConfigError
        A label holds no number and no ``order`` is given; ``order`` misses or repeats a
        label, or names one that is absent; fewer than two checkpoints.

    Examples
    --------
    >>> checkpoint_order(["step_100", "step_50", "step_950", "step_50"])
    (['step_50', 'step_100', 'step_950'], array([ 50., 100., 950.]))
    >>> checkpoint_order(["base", "rl"], order=["base", "rl"])
    (['base', 'rl'], array([0., 1.]))
    """
    uniq = list(dict.fromkeys(str(c) for c in labels))
    if order is not None:
        order = [str(o).strip() for o in order if str(o).strip()]
        if len(set(order)) != len(order):
            raise ConfigError(f"--order names a checkpoint twice: {order}")
        missing, extra = set(uniq) - set(order), set(order) - set(uniq)
        if missing:
            raise ConfigError(f"--order leaves out checkpoints {sorted(missing)}")
        if extra:
            raise ConfigError(f"--order names checkpoints absent from the traces: {sorted(extra)}")
        ordered = order
    else:
        bad = [c for c in uniq if math.isnan(checkpoint_value(c))]
        if bad:
            raise ConfigError(
                f"checkpoints {bad[:3]} hold no number, so they cannot be ordered; "
                "give the order (--order a,b,c)"
            )
        ordered = sorted(uniq, key=_natural_key)
    if len(ordered) < 2:
        raise ConfigError(
            f"phases need at least two checkpoints; the traces hold only {ordered or 'none'}"
        )
    x = np.array([checkpoint_value(c) for c in ordered])
    if np.any(np.isnan(x)) or np.any(np.diff(x) <= 0):
        x = np.arange(len(ordered), dtype=float)
    return ordered, x


# ---------------------------------------------------------------- reasoning text


def reasoning_text(full: str, rule: str = "auto") -> tuple[str, str]:
    """Split a sample into ``(prompt, reasoning)`` by a rule.

    Rules: ``chat`` keeps what follows the last assistant header of a chat template
    (``<|im_start|>assistant``, Llama-3's header, a bare ``assistant`` line as in decoded
    Qwen dumps, DeepSeek's ``<｜Assistant｜>``); ``think`` keeps what lies between
    ``<think>`` and ``</think>`` (to the end when the trace was cut); ``after:MARKER``
    keeps what follows the last ``MARKER``; ``none`` keeps everything; ``auto`` is
    ``chat`` when a header is found, else ``none``.

    Examples
    --------
    >>> reasoning_text("system\\nBe brief.\\nuser\\n2+2?\\nassistant\\n<think>4</think>")
    ('system\\nBe brief.\\nuser\\n2+2?\\nassistant\\n', '<think>4</think>')
    >>> reasoning_text("Q: 2+2? <think>so 4</think> 4", "think")
    ('Q: 2+2? <think>', 'so 4')
    """
    spec = parse_spec(rule, REASONING_KINDS, "reasoning rule")
    kind, arg = spec.kind, spec.arg
    if kind in ("auto", "chat"):
        last = None
        for last in _ASSISTANT.finditer(full):  # noqa: B007
            pass
        if last is None:
            if kind == "chat":
                raise TraceError("no assistant header of a chat template found (rule 'chat')")
            return "", full
        return full[: last.end()], full[last.end() :]
    if kind == "think":
        a = full.find("<think>")
        if a < 0:
            raise TraceError("no <think> found (rule 'think')")
        a += len("<think>")
        b = full.find("</think>", a)
        return full[:a], full[a : b if b >= 0 else len(full)]
    if kind == "after":
        a = full.rfind(arg)
        if a < 0:
            raise TraceError(f"marker {arg!r} not found (rule 'after:')")
        return full[: a + len(arg)], full[a + len(arg) :]
    return "", full  # none


# ---------------------------------------------------------------- run folders


def _pick(rec: Mapping[str, Any], names: Sequence[str], ckpt: str) -> str | None:
    for n in names:
        n = n.replace("{checkpoint}", ckpt)
        if n in rec:
            return n
    return None


def _run_files(source: Any, pattern: str) -> list[Path]:
    if isinstance(source, str | os.PathLike):
        source = [source]
    files: list[Path] = []
    for s in source:
        p = Path(s)
        if p.is_dir():
            found = sorted(p.glob(pattern))
            if not found:
                raise ConfigError(f"{p}: no file matches {pattern!r}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"{p}: no such file or folder")
    return files


def load_run(
    source: Any,
    *,
    columns: Mapping[str, str] | None = None,
    checkpoint: str = "auto",
    reasoning: str = "auto",
    pattern: str = "*.jsonl",
) -> list[Trace]:
    """Load the samples of a run: one JSONL per checkpoint (or any JSONL with a checkpoint).

    Parameters
    ----------
    source : path or list of paths
        Files, or folders whose files matching ``pattern`` are read (sorted by name).
    columns : dict, optional
        Our field -> the file's column: ``text``, ``correct``, ``reward``, ``answer``,
        ``id``, ``prompt``. A column name may hold ``{checkpoint}``, replaced by the
        record's checkpoint (the shared GRPO dumps keep correctness in ``50_correct``,
        ``100_correct`` ...: ``{"correct": "{checkpoint}_correct"}``). Unmapped fields are
        found by name: text in ``text``, ``output``, ``completion``, ``response`` or
        ``generation``; correctness in ``correct``, ``is_correct`` or
        ``{checkpoint}_correct``; reward in ``reward``, ``score`` or ``rewards``.
    checkpoint : str
        ``auto`` (a ``checkpoint`` field, else ``step``, else the file name), ``file`` (the
        file name without suffix, e.g. ``step_0050``), or ``field:NAME``.
    reasoning : str
        What of the text is the model's reasoning (see :func:`reasoning_text`); the rest
        (system and user turns) becomes the trace's ``prompt``, which also pairs samples
        of the same problem across checkpoints.
    pattern : str
        Glob for files inside folders.

    Returns
    -------
    list of Trace
        Ids ``<checkpoint>/<n>`` (or the mapped ``id`` column), ``checkpoint`` set, other
        scalar columns kept in ``meta``.

    Raises
    ------
    TraceError
        Naming the file and line: invalid JSON, no text column, a reasoning rule that
        does not apply, a non-boolean correctness, an empty reasoning text.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for step in (50, 100):
    ...     rec = {"step": step, "output": "user\\nWhat is 2+2?\\nassistant\\nSo 4.",
    ...            f"{step}_correct": True}
    ...     _ = (d / f"step_{step:04d}.jsonl").write_text(json.dumps(rec) + "\\n")
    >>> run = load_run(d)
    >>> [(t.id, t.checkpoint, t.text, t.correct) for t in run]
    [('50/0', '50', 'So 4.', True), ('100/0', '100', 'So 4.', True)]
    """
    columns = dict(columns or {})
    ckpt = parse_spec(checkpoint, CHECKPOINT_KINDS, "checkpoint source")
    kind, field_name = ckpt.kind, ckpt.arg
    parse_spec(reasoning, REASONING_KINDS, "reasoning rule")  # checked before any file is read
    traces: list[Trace] = []
    per_ckpt: dict[str, int] = {}
    for path in _run_files(source, pattern):
        for lineno, rec in read_jsonl(path, TraceError):
            where = f"{path}:{lineno}"
            if not isinstance(rec, dict):
                raise TraceError(f"{where}: expected a JSON object")
            traces.append(
                _run_record(rec, where, path, per_ckpt, columns, kind, field_name, reasoning)
            )
    if not traces:
        raise TraceError(f"{source}: no samples")
    seen: set[str] = set()
    for t in traces:
        if t.id in seen:
            raise TraceError(f"duplicate sample id {t.id!r} in {source}")
        seen.add(t.id)
    return traces


def _run_record(rec, where, path, per_ckpt, columns, kind, field_name, reasoning) -> Trace:
    if kind == "file":
        ckpt = path.stem
    elif kind == "field":
        if field_name not in rec:
            raise TraceError(f"{where}: no checkpoint field {field_name!r}")
        ckpt = str(rec[field_name])
    else:
        raw = rec.get("checkpoint", rec.get("step"))
        ckpt = path.stem if raw is None else str(raw)
    text_col = columns.get("text") or _pick(rec, _TEXT_COLS, ckpt)
    if text_col is None or text_col.replace("{checkpoint}", ckpt) not in rec:
        raise TraceError(
            f"{where}: no text column (looked for {columns.get('text') or _TEXT_COLS}); "
            "map it: columns={'text': NAME}"
        )
    full = rec[text_col.replace("{checkpoint}", ckpt)]
    if not isinstance(full, str):
        raise TraceError(f"{where}: column {text_col!r} is not a string")
    try:
        prompt, text = reasoning_text(full, reasoning)
    except TraceError as e:
        raise TraceError(f"{where}: {e}") from None
    if "prompt" in columns:
        prompt = str(rec.get(columns["prompt"]) or "") + prompt
    out: dict[str, Any] = {"text": text, "prompt": prompt, "checkpoint": ckpt}
    for ours, names in (("correct", _CORRECT_COLS), ("reward", _REWARD_COLS)):
        col = columns.get(ours)
        col = col.replace("{checkpoint}", ckpt) if col else _pick(rec, names, ckpt)
        if col is not None and rec.get(col) is not None:
            out[ours] = rec[col]
    answer_col = columns.get("answer") or ("pred_answer" if "pred_answer" in rec else None)
    if answer_col is not None:
        out["answer"] = rec.get(answer_col)
    n = per_ckpt[ckpt] = per_ckpt.get(ckpt, -1) + 1
    out["id"] = str(rec[columns["id"]]) if "id" in columns else f"{ckpt}/{n}"
    used = {text_col, answer_col, *columns.values()}
    for k, v in rec.items():
        if k not in used and k not in out and not k.startswith(f"{ckpt}_"):
            out[k] = v
    if "reward" in out:
        r = out.pop("reward")
        if isinstance(r, list):
            r = float(np.mean(r)) if r else None
        if r is not None and (isinstance(r, bool) or not isinstance(r, int | float)):
            raise TraceError(f"{where}: reward must be a number, got {r!r}")
        out["reward"] = None if r is None else float(r)
    return trace_from_record(out, where)


# ---------------------------------------------------------------- trainer logs


def _log_records(path: Path) -> list[dict[str, Any]]:
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(raw.splitlines()))
        out = []
        for r in rows:
            rec = {}
            for k, v in r.items():
                try:
                    rec[k] = float(v) if v not in ("", None) else math.nan
                except ValueError:
                    rec[k] = v
            out.append(rec)
        return out
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("log_history"), list):
        return [r for r in obj["log_history"] if isinstance(r, dict)]
    if isinstance(obj, list):
        return [r for r in obj if isinstance(r, dict)]
    return [rec for _, rec in read_jsonl(path, ConfigError) if isinstance(rec, dict)]


def load_logs(path: str | os.PathLike[str], step_key: str | None = None) -> Any:
    """Per-step scalars of a trainer log, averaged per step, as ``log/<key>`` columns.

    Parameters
    ----------
    path : path
        TRL's ``trainer_state.json`` (its ``log_history``), a JSON list or JSONL of
        dicts, or a CSV (a W&B export).
    step_key : str, optional
        The column holding the training step; default ``step``, then ``global_step``
        (W&B exports call it ``_step`` or ``trainer/global_step``: name it).

    Returns
    -------
    pandas.DataFrame
        Indexed by step (float), one column per numeric key, NaN ignored in the means.

    Raises
    ------
    ConfigError
        No such file, no step column, or no numeric column.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "trainer_state.json"
    >>> hist = [{"step": 1, "loss": 1.0}, {"step": 1, "loss": 3.0}, {"step": 2, "loss": 0.5}]
    >>> _ = p.write_text(json.dumps({"log_history": hist}))
    >>> load_logs(p)["log/loss"].tolist()
    [2.0, 0.5]
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--logs {path}: no such file")
    recs = _log_records(path)
    if not recs:
        raise ConfigError(f"--logs {path}: no log records")
    frame = pd.DataFrame.from_records(recs)
    keys = [step_key] if step_key else ["step", "global_step"]
    key = next((k for k in keys if k in frame.columns), None)
    if key is None:
        raise ConfigError(
            f"--logs {path}: no step column {' or '.join(map(repr, keys))}; "
            f"columns are {sorted(map(str, frame.columns))[:12]} (set --log-step)"
        )
    steps = pd.to_numeric(frame[key], errors="coerce")
    num = frame.drop(columns=[key]).apply(pd.to_numeric, errors="coerce")
    num = num[steps.notna().to_numpy()]
    num = num.loc[:, num.notna().any()]
    if num.empty:
        raise ConfigError(f"--logs {path}: no numeric column besides {key!r}")
    out = num.groupby(steps[steps.notna()].astype(float).to_numpy()).mean()
    out.columns = [f"log/{c}" for c in out.columns]
    out.index.name = key
    out.attrs["step_key"] = key
    return out
