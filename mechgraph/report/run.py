"""A run folder made by ``mechgraph run``: where each artifact is, its record, why one is missing.

The report reads only these artifacts (:func:`mechgraph.load`) and their records; it
never recomputes what a stage owns. :class:`RunFolder` loads each artifact once, and
says, for an absent one, which stage did not run and why (from ``run.json``, the
pipeline's record of what each stage did, when there is one).

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> RunFolder(d)
Traceback (most recent call last):
...
mechgraph.errors.ArtifactError: ...: not a mechgraph run folder (none of store/, labels.jsonl, probe/, ...)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mechgraph.errors import ArtifactError

__all__ = ["ARTIFACTS", "ArtifactSpec", "RunFolder"]


@dataclass(frozen=True)
class ArtifactSpec:
    """One artifact of a run folder: its name, the stage that writes it, its path."""

    name: str
    stage: str
    path: str
    what: str


#: The artifacts a report reads, in pipeline order.
ARTIFACTS: tuple[ArtifactSpec, ...] = (
    ArtifactSpec("store", "extract", "store", "per-step hidden states"),
    ArtifactSpec("labels", "label", "labels.jsonl", "sentence tags and planning flags"),
    ArtifactSpec("probe", "probe", "probe", "probe and its layer sweep"),
    ArtifactSpec("graph", "graph", "graph.parquet", "graph metrics with null z-scores"),
    ArtifactSpec("nodespace", "graph", "graph.nodespace", "the node space (cluster centers)"),
    ArtifactSpec("importance", "importance", "importance.parquet", "per-sentence importance"),
    ArtifactSpec("matrices", "importance", "importance.safetensors", "importance matrices"),
    ArtifactSpec("weights", "weights", "weights.parquet", "HICRA token weights"),
    ArtifactSpec("phases", "phases", "phases.parquet", "metrics across checkpoints"),
)
_BY_NAME = {a.name: a for a in ARTIFACTS}
RUN_RECORD = "run.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path}: not a JSON object")
    return doc


class RunFolder:
    """The artifacts of one run folder, each loaded once, with their records.

    Parameters
    ----------
    path : path
        A folder written by ``mechgraph run`` (or holding some of its artifacts).

    Raises
    ------
    ArtifactError
        ``path`` is not a folder, holds none of the artifacts, or a record is corrupt.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            what = "no such folder" if not self.path.exists() else "a file, not a run folder"
            raise ArtifactError(f"{self.path}: {what}")
        rr = self.path / RUN_RECORD
        self.run_record: dict[str, Any] | None = _read_json(rr) if rr.is_file() else None
        if self.run_record is None and not any(self.has(a.name) for a in ARTIFACTS):
            names = ", ".join(a.path + ("/" if "." not in a.path else "") for a in ARTIFACTS[:3])
            raise ArtifactError(
                f"{self.path}: not a mechgraph run folder (none of {names}, ... and no "
                f"{RUN_RECORD}; make one with `mechgraph run --out {self.path}`)"
            )
        self._cache: dict[str, Any] = {}
        self.records: dict[str, dict[str, Any] | None] = {
            a.name: self._record(a) for a in ARTIFACTS if self.has(a.name)
        }

    # ------------------------------------------------------------------ where and what
    def file(self, name: str) -> Path:
        """Path of the artifact ``name`` (one of :data:`ARTIFACTS`)."""
        return self.path / _BY_NAME[name].path

    def has(self, name: str) -> bool:
        return self.file(name).exists()

    def _record(self, spec: ArtifactSpec) -> dict[str, Any] | None:
        from mechgraph.artifacts import info_path

        p = info_path(self.file(spec.name))
        return _read_json(p) if p.is_file() else None

    def load(self, name: str) -> Any:
        """The artifact as :func:`mechgraph.load` reads it (cached); ArtifactError if corrupt."""
        if name not in self._cache:
            from mechgraph.artifacts import load

            p = self.file(name)
            if not p.exists():
                raise ArtifactError(f"{p}: no such file or folder")
            self._cache[name] = load(p)
        return self._cache[name]

    def stage_status(self, stage: str) -> str | None:
        """What the last ``mechgraph run`` did for ``stage`` (``run.json``), if known."""
        for s in (self.run_record or {}).get("stages", []):
            if isinstance(s, dict) and s.get("stage") == stage:
                return str(s.get("status", ""))
        return None

    def why_missing(self, name: str) -> str:
        """One sentence: which artifact is missing, and which stage did not write it, why.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "store").mkdir()
        >>> RunFolder(d).why_missing("phases")
        'phases.parquet is missing: the phases stage has not run in this folder (it runs when the traces carry two or more checkpoints).'
        """
        spec = _BY_NAME[name]
        status = self.stage_status(spec.stage)
        head = f"{spec.path} is missing"
        if status and status.startswith("skip"):
            why = status.partition(":")[2].strip() or "skipped"
            return f"{head}: the {spec.stage} stage was skipped ({why})."
        if status and name != "matrices":
            return (
                f"{head}, though run.json records the {spec.stage} stage ({status}): it was "
                "removed since; rerun `mechgraph run` on this folder."
            )
        if name == "matrices" and self.has("importance"):
            return (
                f"{head}: this run kept no importance matrices (only per-sentence scores); "
                "rerun `mechgraph run --force importance` to keep them."
            )
        hint = {
            "phases": " (it runs when the traces carry two or more checkpoints)",
        }.get(spec.stage, " (run `mechgraph run` on this folder)")
        return f"{head}: the {spec.stage} stage has not run in this folder{hint}."

    # ------------------------------------------------------------------------- records
    def timing(self, name: str) -> dict[str, Any]:
        """``{"seconds", "finished"}`` of the stage that wrote ``name``, when recorded."""
        rec = self.records.get(name) or {}
        t = rec.get("timing")
        return dict(t) if isinstance(t, dict) else {}

    def inputs_read(self) -> list[Path]:
        """Every artifact present (what the report was made from)."""
        return [self.file(a.name) for a in ARTIFACTS if self.has(a.name)]
