"""``mechgraph report``: one self-contained HTML page of a run folder.

It reads only the artifacts that ``mechgraph run`` leaves (store, labels, probe, graph
table and node space, importance, weights, phases) with their records, and renders them:
a summary (model, data, per-stage timings, versions, configs), a trace viewer (sentences
coloured by tag, planning score or importance, with tooltips and a token-weight view),
the importance matrices of the selected trace, its reasoning graph and trajectory with
the corpus metrics and their null z-scores, the probe's layer sweep, and the phases
across checkpoints. plotly's JavaScript is inlined once, so the page opens from disk with
no network. A missing artifact leaves its section empty, saying why.

>>> from mechgraph.report import ReportConfig
>>> ReportConfig().max_traces
50
>>> write_report("runs/default")  # doctest: +SKIP
PosixPath('runs/default/report.html')
"""

from __future__ import annotations

from typing import Any

from mechgraph.report.config import ReportConfig

__all__ = ["ReportConfig", "build_report", "write_report"]


def __getattr__(name: str) -> Any:  # the builders import pandas / plotly: load on first use
    if name in ("build_report", "write_report"):
        from mechgraph.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'mechgraph.report' has no attribute {name!r}")
