"""Write and read per-token weights: Parquet (default), JSONL, and (B, T) safetensors.

Parquet / JSONL: one row per completion.

=================  =================================  ============================================
column             Arrow type (JSON)                  meaning
=================  =================================  ============================================
``id``             string                             trace / completion id
``text``           string                             the analysed completion text
``input_ids``      list<int32>                        the trainer tokenizer's ids of ``text``
``offsets``        list<fixed_size_list<int32, 2>>    ``[start, end)`` char span of each token
                   (``[[s, e], ...]``)
``planning_mask``  list<bool>                         planning token (True) or not
``weight``         list<float32>                      per-token weight
``n_tokens``       int32                              ``len(input_ids)``
``prompt``         string                             trace fields, carried as they are
``answer``         string (nullable)
``correct``        bool (nullable)
``model``          string (nullable)
``checkpoint``     string (nullable)
``meta``           string (JSON object)               any other scalar trace fields
=================  =================================  ============================================

The :class:`~mechgraph.weights.build.WeightsConfig` is stored in the Parquet schema
metadata (key ``mechgraph.weights``) and, for every format, in ``FILE.config.json``
beside the file.

safetensors (right-padded to the longest completion, or ``length``):

=================  ===========  =========================================
tensor             dtype        shape
=================  ===========  =========================================
``input_ids``      int64        (B, T), ``pad_id`` on padding
``response_mask``  bool         (B, T), True on real tokens
``planning_mask``  bool         (B, T)
``weight``         float32      (B, T), 0 on padding
``offsets``        int32        (B, T, 2), 0 on padding
=================  ===========  =========================================

with string metadata ``ids`` (JSON list, row order), ``config`` and ``pad_id``.
Every file is written to a temporary name and renamed into place (``os.replace``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError, StoreError
from mechgraph.io import atomic_path, write_jsonl_atomic, write_text_atomic
from mechgraph.weights.build import WeightsConfig
from mechgraph.weights.tokens import TokenWeights

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "config_path",
    "pad_batch",
    "read_batch",
    "read_config",
    "read_weights",
    "weights_format",
    "write_weights",
]

FORMATS = ("parquet", "jsonl", "safetensors")
_META_KEY = b"mechgraph.weights"
_FIELDS = ("prompt", "answer", "correct", "model", "checkpoint")


SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".safetensors": "safetensors"}


def weights_format(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The format :func:`write_weights` writes to ``path``: the one its extension names.

    Raises
    ------
    ConfigError
        An extension other than ``.parquet``, ``.jsonl``, ``.safetensors``, an unknown
        ``fmt``, or a ``fmt`` that disagrees with the extension.

    Examples
    --------
    >>> weights_format("w.jsonl")
    'jsonl'
    >>> weights_format("w.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mechgraph.errors.ConfigError: w.csv: unknown extension '.csv' for weights; accepted: .parquet, ...
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    suf = path.suffix.lower()
    if suf not in SUFFIXES:
        got = repr(path.suffix) if path.suffix else "none"
        raise ConfigError(
            f"{path}: unknown extension {got} for weights; accepted: {', '.join(SUFFIXES)}"
        )
    if fmt is not None and SUFFIXES[suf] != fmt:
        raise ConfigError(f"{path}: format {fmt!r} but the extension says {SUFFIXES[suf]!r}")
    return SUFFIXES[suf]


def _format_of(path: Path, fmt: str | None) -> str:
    """The format of a weights file being read (lenient: ``.json`` is JSONL, else Parquet)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}; choose from {FORMATS}")
        return fmt
    suf = path.suffix.lower().lstrip(".")
    return {"jsonl": "jsonl", "json": "jsonl", "safetensors": "safetensors"}.get(suf, "parquet")


def config_path(path: str | os.PathLike[str]) -> Path:
    """Where the config of the weights file ``path`` is written: ``FILE.config.json``."""
    path = Path(path)
    return path.with_name(path.name + ".config.json")


def _split_fields(tw: TokenWeights) -> tuple[dict[str, Any], dict[str, Any]]:
    f = dict(tw.fields)
    f.pop("trace_id", None)
    known = {k: f.pop(k, None) for k in _FIELDS}
    known["prompt"] = known["prompt"] or ""
    meta = {k: v for k, v in f.items() if v is None or isinstance(v, str | int | float | bool)}
    return known, meta


def _record(tw: TokenWeights) -> dict[str, Any]:
    known, meta = _split_fields(tw)
    return {
        "id": tw.id,
        "text": tw.text,
        "input_ids": tw.input_ids.tolist(),
        "offsets": tw.offsets.tolist(),
        "planning_mask": tw.planning_mask.tolist(),
        "weight": tw.weight.tolist(),
        "n_tokens": tw.n_tokens,
        **known,
        "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False),
    }


def _arrow_table(rows: Sequence[TokenWeights], config: WeightsConfig | None) -> Any:
    import pyarrow as pa

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.string()),
            ("input_ids", pa.list_(pa.int32())),
            ("offsets", pa.list_(pa.list_(pa.int32(), 2))),
            ("planning_mask", pa.list_(pa.bool_())),
            ("weight", pa.list_(pa.float32())),
            ("n_tokens", pa.int32()),
            ("prompt", pa.string()),
            ("answer", pa.string()),
            ("correct", pa.bool_()),
            ("model", pa.string()),
            ("checkpoint", pa.string()),
            ("meta", pa.string()),
        ],
        metadata={_META_KEY: (config or WeightsConfig()).to_json().encode()},
    )
    recs = [_record(r) for r in rows]
    for r in recs:
        r["answer"] = None if r["answer"] is None else str(r["answer"])
    return pa.Table.from_pylist(recs, schema=schema)


def pad_batch(
    rows: Sequence[TokenWeights],
    *,
    pad_id: int = 0,
    length: int | None = None,
    truncate: bool = False,
) -> dict[str, np.ndarray]:
    """Right-padded (B, T) arrays of a batch of completions.

    Parameters
    ----------
    rows : sequence of TokenWeights
    pad_id : int
        Id written on padding.
    length : int, optional
        Pad (or cut) every row to this many tokens (e.g. verl's ``response_length``).
    truncate : bool
        Allow cutting rows longer than ``length`` (refused otherwise).

    Returns
    -------
    dict
        ``input_ids`` int64, ``response_mask`` bool, ``planning_mask`` bool, ``weight``
        float32 (all (B, T)) and ``offsets`` int32 (B, T, 2).

    Examples
    --------
    >>> a = TokenWeights("a", "ab", [1, 2], [(0, 1), (1, 2)], [True, False], [1.0, 1.0])
    >>> b = TokenWeights("b", "c", [3], [(0, 1)], [False], [2.0])
    >>> pad_batch([a, b], pad_id=9)["input_ids"].tolist()
    [[1, 2], [3, 9]]
    """
    longest = max((r.n_tokens for r in rows), default=0)
    T = longest if length is None else int(length)
    if length is not None and longest > T and not truncate:
        raise ConfigError(
            f"a completion has {longest} tokens, more than length={T}; pass truncate=True"
        )
    B = len(rows)
    out = {
        "input_ids": np.full((B, T), pad_id, dtype=np.int64),
        "response_mask": np.zeros((B, T), dtype=bool),
        "planning_mask": np.zeros((B, T), dtype=bool),
        "weight": np.zeros((B, T), dtype=np.float32),
        "offsets": np.zeros((B, T, 2), dtype=np.int32),
    }
    for i, r in enumerate(rows):
        n = min(r.n_tokens, T)
        out["input_ids"][i, :n] = r.input_ids[:n]
        out["response_mask"][i, :n] = True
        out["planning_mask"][i, :n] = r.planning_mask[:n]
        out["weight"][i, :n] = r.weight[:n]
        out["offsets"][i, :n] = r.offsets[:n]
    return out


def write_weights(
    path: str | os.PathLike[str],
    rows: Sequence[TokenWeights],
    config: WeightsConfig | None = None,
    *,
    format: str | None = None,
    pad_id: int = 0,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write weights as Parquet (default), JSONL or (B, T) safetensors, atomically.

    The record ``FILE.artifact.json`` (:mod:`mechgraph.artifacts`: kind "weights", the
    WeightsConfig, ``inputs`` with their hashes) is written last.

    Parameters
    ----------
    path : path
        Output file ending in ``.parquet``, ``.jsonl`` or ``.safetensors``: the extension
        is the format (any other is refused; see :func:`weights_format`).
    rows : sequence of TokenWeights
    config : WeightsConfig, optional
        Stored with the file and beside it (``FILE.config.json``).
    format : {"parquet", "jsonl", "safetensors"}, optional
        Must agree with the extension.
    pad_id : int
        safetensors only: id on padding.
    inputs : paths, optional
        What the weights were computed from (the traces), hashed into the record.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> tw = TokenWeights("a", "ab", [1, 2], [(0, 1), (1, 2)], [True, False], [1.0, 1.0])
    >>> p = write_weights(pathlib.Path(tempfile.mkdtemp()) / "w.parquet", [tw])
    >>> read_weights(p)[0].planning_mask.tolist()
    [True, False]
    """
    path = Path(path)
    fmt = weights_format(path, format)
    cfg = config or WeightsConfig()
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise ConfigError("duplicate completion ids in the weights")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = _arrow_table(rows, cfg)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    elif fmt == "jsonl":
        write_jsonl_atomic(path, (_record(r) for r in rows))
    else:
        from safetensors.numpy import save_file

        arrays = pad_batch(rows, pad_id=pad_id)
        meta = {
            "format": "mechgraph.weights/1",
            "ids": json.dumps(ids, ensure_ascii=False),
            "config": cfg.to_json(),
            "pad_id": str(int(pad_id)),
        }
        with atomic_path(path) as tmp:
            save_file(arrays, str(tmp), metadata=meta)
    write_text_atomic(config_path(path), json.dumps(json.loads(cfg.to_json()), indent=1) + "\n")
    from mechgraph.artifacts import write_info

    write_info(path, "weights", cfg.to_dict(), inputs)
    return path


def _from_record(rec: dict[str, Any], where: str) -> TokenWeights:
    try:
        meta = rec.get("meta") or "{}"
        fields = {k: rec.get(k) for k in _FIELDS}
        fields.update(json.loads(meta) if isinstance(meta, str) else dict(meta))
        return TokenWeights(
            id=str(rec["id"]),
            text=rec["text"],
            input_ids=np.asarray(rec["input_ids"], dtype=np.int64),
            offsets=np.asarray([list(o) for o in rec["offsets"]], dtype=np.int64).reshape(-1, 2),
            planning_mask=np.asarray(rec["planning_mask"], dtype=bool),
            weight=np.asarray(rec["weight"], dtype=np.float32),
            fields=fields,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(f"{where}: not a mechgraph weights row: {e!r}") from e


def read_weights(path: str | os.PathLike[str]) -> list[TokenWeights]:
    """Read a Parquet or JSONL weights file back into :class:`TokenWeights`.

    Examples
    --------
    >>> rows = read_weights("weights.parquet")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such weights file")
    fmt = _format_of(path, None)
    if fmt == "safetensors":
        raise ConfigError(f"{path}: safetensors weights hold no text; read them with read_batch")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        recs = pq.read_table(path).to_pylist()
        return [_from_record(r, f"{path} row {i}") for i, r in enumerate(recs)]
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise StoreError(f"{path}:{n}: invalid JSON: {e.msg}") from None
            out.append(_from_record(rec, f"{path}:{n}"))
    return out


def read_config(path: str | os.PathLike[str]) -> WeightsConfig:
    """The :class:`WeightsConfig` a weights file was written with."""
    path = Path(path)
    side = config_path(path)
    if side.is_file():
        return WeightsConfig.from_json(side.read_text(encoding="utf-8"))
    if _format_of(path, None) == "parquet":
        import pyarrow.parquet as pq

        md = pq.read_schema(path).metadata or {}
        if _META_KEY in md:
            return WeightsConfig.from_json(md[_META_KEY])
    raise StoreError(f"{path}: no weights config found (expected {side.name})")


def read_batch(
    path: str | os.PathLike[str], **pad_kw: Any
) -> tuple[list[str], dict[str, np.ndarray]]:
    """(ids, (B, T) arrays) from any weights file (safetensors as stored; others padded).

    Examples
    --------
    >>> ids, arrays = read_batch("weights.safetensors")  # doctest: +SKIP
    >>> arrays["response_mask"].shape  # doctest: +SKIP
    (4, 57)
    """
    path = Path(path)
    if _format_of(path, None) != "safetensors":
        rows = read_weights(path)
        return [r.id for r in rows], pad_batch(rows, **pad_kw)
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata() or {}
        arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    if "ids" not in meta:
        raise StoreError(f"{path}: not a mechgraph weights file (no ids metadata)")
    return json.loads(meta["ids"]), arrays
