"""``mechgraph weights``: per-token planning masks and weights for a trainer's tokenizer.

Register with ``app.command("weights")(weights_command)`` in :mod:`mechgraph.cli`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mechgraph.errors import MechgraphError

__all__ = ["run_weights", "weights_command"]


def run_weights(
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    planning: str = "sg",
    importance: str | None = None,
    tokenizer: str = "default",
    model: str | None = None,
    normalize: str = "none",
    weight_fill: float = 1.0,
    segmenter: str = "sentences",
    format: str | None = None,
    device: str | None = None,
) -> Path:
    """Compute weights for the traces in ``input`` and write ``out``.

    Parameters
    ----------
    input : path
        Traces (JSONL, a Thought Anchors folder, or a folder of them).
    out : path
        ``.parquet``, ``.jsonl`` or ``.safetensors`` (the format; any other extension is
        refused before any work, as is an ``out`` that is one of the inputs).
    planning, importance, tokenizer, model, normalize, weight_fill, segmenter
        See :class:`~mechgraph.weights.build.WeightsConfig`.
    format : str, optional
        The format; it must agree with the extension of ``out``.
    device : str, optional
        For ``probe:PATH``.

    Returns
    -------
    Path

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "t.jsonl").write_text(json.dumps({"id": "a", "text": "But wait, 1 + 1 = 2."}))
    >>> p = run_weights(d / "t.jsonl", d / "w.parquet", tokenizer="default")  # doctest: +SKIP
    """
    from mechgraph.cli import check_outputs, path_of
    from mechgraph.models import load_tokenizer
    from mechgraph.traces import load_traces, segment_traces
    from mechgraph.weights.build import WeightsConfig, token_weights
    from mechgraph.weights.export import config_path, weights_format, write_weights
    from mechgraph.weights.sources import PlanningSource

    out = Path(out)
    weights_format(out, format)  # the extension matches the format, before any work
    folders = [x for x in (tokenizer, model) if x and x != "default" and Path(x).exists()]
    check_outputs([(out, "file"), (config_path(out), "file")], [input, path_of(planning), *folders])

    cfg = WeightsConfig(
        planning=planning,
        importance=importance,
        tokenizer=tokenizer,
        model=model,
        normalize=normalize,
        weight_fill=weight_fill,
        segmenter=segmenter,
    )
    traces = load_traces(input)
    from mechgraph.labels.sources import parse_planning

    kind = parse_planning(planning).kind
    if kind not in ("sg", "none") and not all(t.steps for t in traces):  # sentence labellers
        segment_traces([t for t in traces if not t.steps], segmenter)
    kw = {"device": device} if device and kind not in ("sg", "none", "rules") else {}
    src = PlanningSource(planning, segmenter=segmenter, **kw)
    tok = load_tokenizer(tokenizer)
    rows = token_weights(traces, tok, cfg, planning=src)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return write_weights(out, rows, cfg, format=format, pad_id=int(pad), inputs=[input])


def weights_command(
    input: Annotated[
        Path, typer.Argument(help="Traces: JSONL, a Thought Anchors folder, or a folder of them.")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output: .parquet, .jsonl or .safetensors (the format)."),
    ] = Path("weights.parquet"),
    planning: Annotated[
        str, typer.Option("--planning", "-p", help="rules | sg | sg:PATH | probe:PATH | none")
    ] = "sg",
    importance: Annotated[
        str | None,
        typer.Option(
            help="step:FIELD (per-step score in the traces) | receivers | entropy (need a model)."
        ),
    ] = None,
    tokenizer: Annotated[
        str, typer.Option(help="The trainer's tokenizer: default | an HF folder.")
    ] = "default",
    model: Annotated[
        str | None,
        typer.Option(help="Model for --importance receivers / entropy (default: --tokenizer)."),
    ] = None,
    normalize: Annotated[
        str, typer.Option(help="Per-completion weight scaling: none | mean | center | max.")
    ] = "none",
    weight_fill: Annotated[
        float,
        typer.Option(
            "--weight-fill", help="Weight of tokens no importance source covers (1.0: neutral)."
        ),
    ] = 1.0,
    segmenter: Annotated[
        str, typer.Option(help="Sentence splitter for rules / probes (traces without steps).")
    ] = "sentences",
    format: Annotated[
        str | None, typer.Option(help="parquet | jsonl | safetensors (must match --out).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="Device for probe:PATH.")] = None,
) -> None:
    """Per-token planning masks and weights, keyed by the trainer's tokenizer.

    Parquet / JSONL: one row per completion (id, text, input_ids, offsets, planning_mask,
    weight, trace fields). safetensors: (B, T) input_ids, response_mask, planning_mask,
    weight, offsets. The config is saved beside the file (FILE.config.json).
    """
    try:
        path = run_weights(
            input,
            out,
            planning=planning,
            importance=importance,
            tokenizer=tokenizer,
            model=model,
            normalize=normalize,
            weight_fill=weight_fill,
            segmenter=segmenter,
            format=format,
            device=device,
        )
    except MechgraphError as e:
        from mechgraph.cli import error_line

        typer.echo(error_line(e), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote weights ({planning}) -> {path}")
