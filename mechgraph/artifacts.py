"""What a stage leaves on disk, read back by one call: :func:`load`.

Every stage result is an *artifact*: a folder (store, probe, node space) or a file with a
JSON sidecar (graph table, phases table, weights, labels, importance). Its record,
:class:`ArtifactInfo`, says what it is: ``kind``, format version, mechgraph version, the
config it was computed with, and the inputs it was computed from, each with a content hash
(so that a pipeline can tell whether it is up to date). New writers put the record in
``artifact.json`` inside a folder, or in ``FILE.artifact.json`` beside a file
(:func:`write_info`); artifacts written before the record existed are recognised by their
layout.

>>> import mechgraph as mg
>>> art = mg.load("runs/s")  # doctest: +SKIP
>>> type(art).__name__  # doctest: +SKIP
'Store'
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mechgraph.errors import ArtifactError
from mechgraph.io import jsonable, write_json_atomic

__all__ = [
    "KINDS",
    "ArtifactInfo",
    "TableArtifact",
    "artifact_kind",
    "content_hash",
    "info_path",
    "load",
    "read_info",
    "write_info",
]

#: Artifact kinds :func:`load` knows.
KINDS = ("store", "probe", "nodespace", "graph-table", "phases", "weights", "labels", "importance")
_SIDECAR_FORMATS = {"mechgraph.graph-metrics": "graph-table", "mechgraph.phases": "phases"}
_SKIP = {"artifact.json", ".writer.lock", ".lock"}


@dataclass
class ArtifactInfo:
    """The record of an artifact.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    format_version : int
    mechgraph_version : str
    config : dict
        The stage's config (``to_dict`` of its dataclass).
    inputs : list of dict
        ``{"path": str, "sha256": str}`` of each input.
    """

    kind: str
    format_version: int = 1
    mechgraph_version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "?") -> ArtifactInfo:
        try:
            return cls(
                kind=str(d["kind"]),
                format_version=int(d.get("format_version", 1)),
                mechgraph_version=str(d.get("mechgraph_version", "")),
                config=dict(d.get("config") or {}),
                inputs=[dict(x) for x in d.get("inputs") or []],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{where}: not an artifact record ({e!r})") from None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass
class TableArtifact:
    """A table artifact: graph metrics, phases, importance.

    Attributes
    ----------
    kind : str
    table : pandas.DataFrame
    meta : dict
        The sidecar (config, change points, tests ...), empty when there is none.
    path : Path
    """

    kind: str
    table: Any
    meta: dict[str, Any]
    path: Path


def content_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative names and bytes, sorted).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_text("x")
    >>> content_hash(d / "a.txt") == hashlib.sha256(b"x").hexdigest()
    True
    >>> len(content_hash(d))
    64
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    if not p.is_dir():
        raise ArtifactError(f"{p}: no such file or folder")
    for f in sorted(q for q in p.rglob("*") if q.is_file() and q.name not in _SKIP):
        h.update(f.relative_to(p).as_posix().encode() + b"\0")
        h.update(content_hash(f).encode())
    return h.hexdigest()


def info_path(path: str | os.PathLike[str]) -> Path:
    """Where an artifact's record lives: ``DIR/artifact.json`` or ``FILE.artifact.json``."""
    p = Path(path)
    return p / "artifact.json" if p.is_dir() else p.with_name(p.name + ".artifact.json")


def write_info(
    path: str | os.PathLike[str],
    kind: str,
    config: Any = None,
    inputs: Iterable[str | os.PathLike[str]] = (),
    *,
    format_version: int = 1,
) -> ArtifactInfo:
    """Write the record of the artifact at ``path`` (atomically) and return it.

    ``config`` may be a dataclass (its ``to_dict`` or fields are stored) or a dict; each
    input is hashed with :func:`content_hash`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "in.txt").write_text("x")
    >>> _ = (d / "t.parquet").write_text("")
    >>> write_info(d / "t.parquet", "importance", {"a": 1}, [d / "in.txt"]).inputs[0]["sha256"][:8]
    '2d711642'
    """
    from mechgraph import __version__

    if kind not in KINDS:
        raise ArtifactError(f"unknown artifact kind {kind!r}; known: {', '.join(KINDS)}")
    if config is not None and not isinstance(config, Mapping):
        config = config.to_dict() if hasattr(config, "to_dict") else asdict(config)
    info = ArtifactInfo(
        kind=kind,
        format_version=format_version,
        mechgraph_version=__version__,
        config=dict(config or {}),
        inputs=[{"path": os.fspath(p), "sha256": content_hash(p)} for p in inputs],
    )
    write_json_atomic(info_path(path), info.to_dict())
    return info


def read_info(path: str | os.PathLike[str]) -> ArtifactInfo | None:
    """The record of an artifact, or None when it has none (an older artifact)."""
    ip = info_path(path)
    if not ip.is_file():
        return None
    try:
        d = json.loads(ip.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{ip}: unreadable artifact record ({e})") from None
    return ArtifactInfo.from_dict(d, str(ip))


def _sidecar(p: Path) -> dict[str, Any] | None:
    side = p.with_name(p.name + ".json")
    if not side.is_file():
        return None
    try:
        return json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{side}: unreadable sidecar ({e})") from None


def artifact_kind(path: str | os.PathLike[str]) -> str:
    """The kind of the artifact at ``path`` (from its record, else from its layout).

    Raises
    ------
    ArtifactError
        ``path`` is missing or is not a mechgraph artifact.
    """
    p = Path(path)
    if not p.exists():
        raise ArtifactError(f"{p}: no such file or folder")
    info = read_info(p)
    if info is not None:
        return info.kind
    if p.is_dir():
        if (p / "manifest.json").is_file():
            return "store"
        if (p / "nodespace.json").is_file():
            return "nodespace"
        cfg = p / "config.json"
        if cfg.is_file() and '"mechgraph.probe/' in cfg.read_text(encoding="utf-8"):
            return "probe"
        raise ArtifactError(f"{p}: a folder that is not a mechgraph store, probe or node space")
    side = _sidecar(p)
    if side is not None and side.get("format") in _SIDECAR_FORMATS:
        return _SIDECAR_FORMATS[side["format"]]
    wcfg = p.with_name(p.name + ".config.json")
    if wcfg.is_file() or p.suffix == ".safetensors":
        return "weights"
    if p.suffix == ".jsonl":
        from mechgraph.io import read_jsonl

        first = next(iter(read_jsonl(p, ArtifactError)), (0, None))[1]
        if isinstance(first, dict) and isinstance(first.get("steps"), list):
            if first["steps"] and "planning" in first["steps"][0]:
                return "labels"
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(p).names)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise ArtifactError(f"{p}: not a readable Parquet file ({e})") from None
        if {"trace_id", "step"} <= names:
            return "importance"
    raise ArtifactError(f"{p}: not a mechgraph artifact (no record, sidecar or known layout)")


def load(path: str | os.PathLike[str]) -> Any:
    """Read any mechgraph artifact back as its typed object.

    ======================  ==========================================================
    kind                    returns
    ======================  ==========================================================
    store                   :class:`mechgraph.Store`
    nodespace               :class:`mechgraph.graphs.NodeSpace`
    probe                   ``(estimator, ProbeConfig)`` (:func:`probes.load_probe`)
    graph-table             :class:`TableArtifact` (table + sidecar)
    phases, importance      :class:`TableArtifact`; importance matrices
                            (``.safetensors``): dict of arrays
    weights                 list of :class:`mechgraph.weights.TokenWeights`
    labels                  list of ``{"id", "steps": [...]}`` records
    ======================  ==========================================================

    Raises
    ------
    ArtifactError
        Missing, foreign or unreadable, naming the file.
    """
    p = Path(path)
    kind = artifact_kind(p)
    try:
        if kind == "store":
            from mechgraph.store import open_store

            return open_store(p)
        if kind == "nodespace":
            from mechgraph.graphs.nodespace import NodeSpace

            return NodeSpace.load(p)
        if kind == "probe":
            from probes.artifacts import load_probe

            return load_probe(p)
        if kind == "weights":
            from mechgraph.weights.export import read_weights

            return read_weights(p)
        if kind == "labels":
            from mechgraph.io import read_jsonl

            return [rec for _, rec in read_jsonl(p, ArtifactError)]
        if p.suffix == ".safetensors":  # importance matrices: {"<trace>/<name>": array}
            from safetensors.numpy import load_file

            return load_file(str(p))
        import pandas as pd

        table = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_json(p, lines=True)
        return TableArtifact(kind=kind, table=table, meta=_sidecar(p) or {}, path=p)
    except ArtifactError:
        raise
    except Exception as e:  # a stage's own reader failed: one error naming the file
        if e.__class__.__module__.startswith("mechgraph"):
            raise ArtifactError(f"{p}: {e}") from None
        raise ArtifactError(f"{p}: cannot read this {kind} artifact ({e!r})") from None
