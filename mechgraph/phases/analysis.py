"""The whole phases analysis in one call, and its files.

:func:`analyze_phases` = :func:`~mechgraph.phases.phase_table` + change points of every
metric + the two-phase test + the topology link. :func:`write_phases` writes
``OUT.parquet`` (one row per checkpoint) and ``OUT.json`` (config, change points, tests)
atomically, and the plots when asked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mechgraph.artifacts import info_path, write_info
from mechgraph.errors import ConfigError
from mechgraph.io import jsonable, write_atomic, write_text_atomic
from mechgraph.phases.changepoints import ChangeConfig, ChangeResult
from mechgraph.phases.inference import table_change_points, topology_link, two_phase_test
from mechgraph.phases.table import PhaseConfig, PhaseResult, phase_table

__all__ = ["PhaseReport", "analyze_phases", "write_phases"]

FORMAT = "mechgraph.phases"
VERSION = 1


@dataclass
class PhaseReport:
    """Everything :func:`analyze_phases` found.

    Attributes
    ----------
    result : PhaseResult
        The table, the replicates, the per-sample quantities.
    change : ChangeConfig
    change_points : dict
        Metric -> :class:`~mechgraph.phases.changepoints.ChangeResult`.
    two_phase : dict
        :func:`~mechgraph.phases.inference.two_phase_test`.
    topology_link : list of dict
        :func:`~mechgraph.phases.inference.topology_link`.
    """

    result: PhaseResult
    change: ChangeConfig
    change_points: dict[str, ChangeResult]
    two_phase: dict[str, Any]
    topology_link: list[dict[str, Any]]

    @property
    def table(self):
        return self.result.table

    def change_points_dict(self) -> dict[str, list[dict[str, Any]]]:
        """``{metric: [{"checkpoint": label, "x", "lo", "hi", "support"}, ...]}``."""
        labels = list(self.result.table["checkpoint"])
        xs = list(self.result.x)
        out = {}
        for m, cp in self.change_points.items():
            out[m] = [
                {"checkpoint": labels[xs.index(c["x"])] if c["x"] in xs else None, **c}
                for c in cp.changes
            ]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON sidecar."""
        return jsonable(
            {
                "format": FORMAT,
                "version": VERSION,
                "config": self.result.config.to_dict(),
                "change_config": self.change.to_dict(),
                "info": self.result.info,
                "checkpoints": list(self.result.table["checkpoint"]),
                "change_points": self.change_points_dict(),
                "change_fits": {
                    m: {k: v for k, v in cp.to_dict().items() if not k.startswith("replicate")}
                    for m, cp in self.change_points.items()
                },
                "two_phase": self.two_phase,
                "topology_link": self.topology_link,
                "topology": self.result.samples.attrs.get("topology"),
            }
        )


def analyze_phases(
    traces: Any,
    config: PhaseConfig | None = None,
    *,
    change: ChangeConfig | None = None,
    exec_metric: str = "auto",
    plan_metric: str = "auto",
    tokenizer: Any = None,
    **options: Any,
) -> PhaseReport:
    """Phase table, change points, two-phase test and topology link of a run.

    Parameters
    ----------
    traces : sequence of Trace, or a PhaseResult already computed
    config : PhaseConfig, optional
    change : ChangeConfig, optional
        Change-point model, number of changes, penalty.
    exec_metric, plan_metric : str
        Metrics of the two-phase test (``auto``: see
        :func:`~mechgraph.phases.inference.two_phase_test`).
    tokenizer : tokenizer, optional
    **options
        Fields of :class:`PhaseConfig`.

    Examples
    --------
    >>> from mechgraph.phases import load_run  # doctest: +SKIP
    >>> rep = analyze_phases(load_run("samples/"), n_boot=200)  # doctest: +SKIP
    >>> rep.two_phase["verdict"]  # doctest: +SKIP
    'unavailable'
    """
    result = (
        traces
        if isinstance(traces, PhaseResult)
        else phase_table(traces, config, tokenizer=tokenizer, **options)
    )
    change = change or ChangeConfig(level=result.config.level)
    cps = table_change_points(result, change)
    two = two_phase_test(
        result, cps, exec_metric=exec_metric, plan_metric=plan_metric, config=change
    )
    link = topology_link(result, cps, config=change, seed=result.config.seed)
    return PhaseReport(result, change, cps, two, link)


def write_phases(
    report: PhaseReport,
    out: str | os.PathLike[str],
    *,
    plots: str | None = None,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Write ``OUT`` (Parquet, one row per checkpoint) and ``OUT.json``; plots when asked.

    The artifact record ``OUT.artifact.json`` (:func:`mechgraph.artifacts.write_info`)
    holds the config and the content hash of each of ``inputs`` (the sample files read).
    :func:`mechgraph.load` reads the result back.

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise ConfigError(f"--out must end in .parquet, got {out}")
    doc = json.dumps(report.to_dict(), indent=2, allow_nan=False, default=str)
    written = []
    if plots is not None:
        from mechgraph.phases.plots import plot_phases

        written += plot_phases(
            report.table, report.change_points_dict(), out_dir=Path(plots), title=out.stem
        )
    table = report.table
    write_atomic(out, lambda tmp: table.to_parquet(tmp, index=False))
    sidecar = out.with_name(out.name + ".json")
    write_text_atomic(sidecar, doc)
    write_info(out, "phases", report.result.config, inputs)
    return [out, sidecar, info_path(out), *written]
