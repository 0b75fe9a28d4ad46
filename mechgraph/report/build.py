"""Assemble the report of a run folder and write it atomically, with its record.

:func:`build_report` returns the page as text; :func:`write_report` writes it to
``RUN/report.html`` (or ``out``) through a temporary file and ``os.replace``, then its
record ``OUT.artifact.json`` (kind ``report``: the :class:`ReportConfig` and the content
hash of every artifact read). Bad input raises :class:`~mechgraph.errors.ArtifactError`
naming the path, before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mechgraph.errors import ConfigError
from mechgraph.report import sections as S
from mechgraph.report.config import ReportConfig
from mechgraph.report.html import page
from mechgraph.report.run import ARTIFACTS, RunFolder
from mechgraph.report.traces import collect_traces, node_data

__all__ = ["build_report", "write_report"]

#: Kind of the report's record (the artifact kinds of the stages are in mechgraph.artifacts).
REPORT_KIND = "report"


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    if "</script" in js.lower():  # cannot happen with plotly's bundle, but never break the page
        js = js.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    return js


def _template() -> dict[str, Any]:
    import json

    import plotly.graph_objects as go

    return json.loads(go.Figure(layout={"template": "plotly_white"}).to_json())["layout"][
        "template"
    ]


def build_report(
    run_dir: str | os.PathLike[str], config: ReportConfig | None = None
) -> tuple[str, RunFolder]:
    """The report page of a run folder (one self-contained HTML document).

    Parameters
    ----------
    run_dir : path
        A folder made by ``mechgraph run``.
    config : ReportConfig, optional

    Returns
    -------
    html : str
    run : RunFolder
        The artifacts read (for the record).

    Raises
    ------
    ArtifactError
        ``run_dir`` is not a run folder, or one of its artifacts is corrupt.
    ImportError
        plotly is not installed (``pip install 'mechgraph[report]'``).
    """
    import plotly  # noqa: F401  (fail first, before reading anything, when it is absent)

    cfg = config or ReportConfig()
    run = RunFolder(run_dir)
    for a in ARTIFACTS:  # every artifact present loads (a corrupt one: one error naming it)
        if run.has(a.name):
            run.load(a.name)
    nodes = node_data(run)
    traces, info = collect_traces(run, cfg, nodes) if run.has("store") else ([], _no_info())
    ctx = S.Context(run=run, config=cfg, traces=traces, info=info, nodes=nodes)
    body = [
        S.summary(ctx),
        S.trace_viewer(ctx),
        S.matrices(ctx),
        S.graph(ctx),
        S.probe_sweep(ctx),
        S.phases(ctx),
    ]
    ctx.data["traces"] = [t.to_json() for t in traces]
    ctx.data["config"] = cfg.to_dict()
    ctx.data["template"] = _template()
    title = cfg.title or f"mechgraph report: {run.path.resolve().name}"
    return page(title, body, ctx.data, _plotly_js()), run


def _no_info() -> dict[str, Any]:
    return {"n_traces": 0, "shown": 0, "importance": [], "tags": [], "unmatched": {}}


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    config: ReportConfig | None = None,
) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN/report.html``), atomically.

    Examples
    --------
    >>> write_report("runs/default")  # doctest: +SKIP
    PosixPath('runs/default/report.html')
    """
    from mechgraph.artifacts import ArtifactInfo, content_hash, info_path
    from mechgraph.io import write_json_atomic, write_text_atomic

    cfg = config or ReportConfig()
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {out}: the report is an .html file")
    html, run = build_report(run_dir, cfg)
    write_text_atomic(out, html)
    from mechgraph import __version__

    info = ArtifactInfo(
        kind=REPORT_KIND,
        mechgraph_version=__version__,
        config=cfg.to_dict(),
        inputs=[{"path": os.fspath(p), "sha256": content_hash(p)} for p in run.inputs_read()],
    )
    write_json_atomic(info_path(out), {**info.to_dict(), "size_bytes": out.stat().st_size})
    return out
