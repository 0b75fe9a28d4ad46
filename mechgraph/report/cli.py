"""``mechgraph report RUN_DIR [--out report.html]``: the HTML report of a run folder.

Registered on the app by :mod:`mechgraph.cli`: ``app.command("report")(report_command)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["report_command"]


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `mechgraph run`.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The HTML file (default: RUN_DIR/report.html)."),
    ] = None,
    max_traces: Annotated[
        int, typer.Option(help="Traces embedded in the viewer, matrices and trace graphs.")
    ] = 50,
    title: Annotated[str, typer.Option(help="Page title.")] = "",
) -> None:
    """One self-contained HTML page of a run: summary, traces, matrices, graphs, probe, phases."""
    from mechgraph.cli import check_output
    from mechgraph.report.build import write_report
    from mechgraph.report.config import ReportConfig

    target = out if out is not None else run_dir / "report.html"
    check_output(target, [run_dir], suffixes=(".html", ".htm"), nested=False)
    cfg = ReportConfig(max_traces=max_traces, title=title)
    path = write_report(run_dir, target, cfg)
    size = path.stat().st_size / 1e6
    typer.echo(f"report ({size:.1f} MB) -> {path}")
