"""``mechgraph phases``: metrics across RL checkpoints, change points, the two-phase test.

Registered on the main app as ``app.command("phases")(phases_command)``. Writes, all
atomically: ``OUT`` (Parquet, one row per checkpoint), ``OUT.json`` (config, change points,
two-phase test, topology link), the reader's store (``OUT_STEM.store/``, resumable) when
topology is on, cached teacher-forced sums (``OUT_STEM.store.forced/``) when models are
given, and with ``--plots DIR`` ``phases.png`` / ``phases.html``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mechgraph.errors import ConfigError

__all__ = ["load_samples", "phases_command"]


def _mapping(text: str) -> dict[str, str]:
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        k, sep, v = part.partition("=")
        if not sep or not k.strip() or not v.strip():
            raise ConfigError(
                f"--columns takes ours=theirs pairs separated by commas, got {part!r}"
            )
        out[k.strip()] = v.strip()
    return out


def _is_trace_jsonl(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(rec, dict) and "id" in rec and "text" in rec
    return False


def load_samples(
    paths: list[Path],
    *,
    columns: dict[str, str] | None = None,
    checkpoint: str = "auto",
    reasoning: str = "auto",
    pattern: str = "*.jsonl",
) -> list[Any]:
    """Traces from mechgraph JSONL files (``id``, ``text``, ``checkpoint``) or run folders.

    A file whose first record has ``id`` and ``text`` is read with
    :func:`mechgraph.load_traces`; anything else (folders of per-checkpoint sample files,
    other JSONL) with :func:`mechgraph.phases.load_run`.
    """
    from mechgraph.phases.runs import load_run
    from mechgraph.traces import load_traces

    traces = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ConfigError(f"{p}: no such file or folder")
        if p.is_file() and not columns and _is_trace_jsonl(p):
            traces += load_traces(p)
        else:
            traces += load_run(
                p, columns=columns, checkpoint=checkpoint, reasoning=reasoning, pattern=pattern
            )
    ids = [t.id for t in traces]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"duplicate sample id {dup!r} across the inputs")
    return traces


def phases_command(
    traces: Annotated[
        list[Path],
        typer.Argument(help="Sample files or folders (one JSONL per checkpoint, or traces JSONL)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output table (.parquet).")] = Path(
        "phases.parquet"
    ),
    logs: Annotated[
        Path | None,
        typer.Option(help="Trainer log: trainer_state.json, JSONL of dicts or a CSV (W&B)."),
    ] = None,
    log_step: Annotated[
        str | None, typer.Option("--log-step", help="Step column of the log (step, global_step).")
    ] = None,
    models: Annotated[
        str,
        typer.Option(help="Checkpoint models for teacher-forced metrics: CKPT=PATH,CKPT=PATH."),
    ] = "",
    bin_steps: Annotated[
        int | None,
        typer.Option(
            "--bin-steps", help="Window steps (w-N, w] into checkpoint w (per-step recordings)."
        ),
    ] = None,
    bin_recent: Annotated[
        int | None,
        typer.Option("--bin-recent", help="With --bin-steps: keep the last N steps of a window."),
    ] = None,
    forced_reader: Annotated[
        str | None,
        typer.Option(
            "--forced-reader",
            help="One fixed model reads all samples (reader/ entropy, NLL): a proxy without weights.",
        ),
    ] = None,
    planning: Annotated[
        str, typer.Option(help="Planning tokens: rules | sg | sg:hicra | sg:PATH | probe:PATH.")
    ] = "rules",
    grams: Annotated[
        str, typer.Option(help="Strategic grams of the semantic entropy: hicra | mechgraph | PATH.")
    ] = "hicra",
    topology: Annotated[
        bool, typer.Option(help="Read the samples with --reader and add topology columns.")
    ] = True,
    reader: Annotated[str, typer.Option(help="Reader model of the topology.")] = "default",
    layer: Annotated[
        int | None, typer.Option(help="Reader layer (default int(0.9 n_layers)).")
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Nodes of the shared node space.")] = 200,
    match_steps: Annotated[
        str, typer.Option("--match-steps", help="auto | paired | N | none (graph step matching).")
    ] = "auto",
    n_null: Annotated[int, typer.Option("--n-null", help="Null draws of the graph stage.")] = 0,
    n_changes: Annotated[
        int | None, typer.Option("--n-changes", help="Force this many change points.")
    ] = None,
    max_changes: Annotated[int, typer.Option("--max-changes", help="Most changes tried.")] = 3,
    change_model: Annotated[
        str, typer.Option("--change-model", help="linear (segmented regression) | mean.")
    ] = "linear",
    penalty: Annotated[
        float | None, typer.Option(help="Penalty per change parameter (default: calibrated).")
    ] = None,
    exec_metric: Annotated[
        str, typer.Option("--exec-metric", help="Execution side of the two-phase test.")
    ] = "auto",
    plan_metric: Annotated[
        str, typer.Option("--plan-metric", help="Planning side of the two-phase test.")
    ] = "auto",
    order: Annotated[
        str, typer.Option(help="Checkpoint order a,b,c (default: numeric/natural sort).")
    ] = "",
    columns: Annotated[
        str, typer.Option(help="Column mapping ours=theirs,...; e.g. correct={checkpoint}_correct.")
    ] = "",
    checkpoint_from: Annotated[
        str, typer.Option("--checkpoint-from", help="auto | file | field:NAME.")
    ] = "auto",
    reasoning: Annotated[
        str, typer.Option(help="What is reasoning: auto | chat | think | after:MARKER | none.")
    ] = "auto",
    pattern: Annotated[str, typer.Option(help="Glob of sample files inside folders.")] = "*.jsonl",
    paired: Annotated[str, typer.Option(help="Paired bootstrap over prompts: auto | yes | no.")] = (
        "auto"
    ),
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap replicates.")] = 200,
    level: Annotated[float, typer.Option(help="Interval level of every CI.")] = 0.95,
    segmenter: Annotated[
        str, typer.Option(help="Sentence splitter of the tagger and the graph steps.")
    ] = "sentences-all",
    batch_tokens: Annotated[
        int, typer.Option("--batch-tokens", help="Padded tokens per forward batch.")
    ] = 8192,
    min_size: Annotated[
        int, typer.Option("--min-size", help="Fewest checkpoints per change-point segment.")
    ] = 3,
    se_window: Annotated[
        int, typer.Option("--se-window", help="Checkpoints whose SEs are averaged (odd).")
    ] = 5,
    recentre: Annotated[
        bool, typer.Option(help="Refit replicates as fit + (replicate - series).")
    ] = True,
    rarefy: Annotated[
        int | None, typer.Option(help="Gram occurrences of the rarefied semantic entropy.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and the node space.")] = 0,
    tokenizer: Annotated[str, typer.Option(help="Tokenizer of lengths and shares.")] = "default",
    workers: Annotated[int | None, typer.Option(help="Processes for the text metrics.")] = None,
    device: Annotated[str, typer.Option(help="Device of the models: cpu, cuda ...")] = "cpu",
    plots: Annotated[
        Path | None, typer.Option("--plots", help="Write phases.png and phases.html here.")
    ] = None,
) -> None:
    """Metrics per RL checkpoint with intervals, change points, the two-phase test."""
    from mechgraph.phases.analysis import analyze_phases, write_phases
    from mechgraph.phases.changepoints import ChangeConfig
    from mechgraph.phases.forced import load_checkpoint_models
    from mechgraph.phases.table import PhaseConfig

    if out.suffix.lower() != ".parquet":
        raise ConfigError(f"--out must end in .parquet, got {out}")
    if any(Path(t).resolve() == out.resolve() for t in traces):
        raise ConfigError(f"--out {out} is one of the inputs")
    from mechgraph.cli import check_outputs

    # the rest of the project's output checks: a folder where a file goes, an unwritable
    # parent, side files (sidecar, record, store) that would clobber an input
    side = [(out.with_name(out.name + s), "file") for s in (".json", ".artifact.json")]
    store = [(out.with_name(out.stem + ".store"), "folder")] if topology else []
    check_outputs([(out, "file"), *side, *store], list(traces), nested=False)
    ms: Any = None if match_steps.lower() == "none" else match_steps
    cfg = PhaseConfig(
        planning=planning,
        grams=grams,
        tokenizer=tokenizer,
        order=tuple(o.strip() for o in order.split(",") if o.strip()) or None,
        paired=paired,
        n_boot=n_boot,
        level=level,
        segmenter=segmenter,
        batch_tokens=batch_tokens,
        seed=seed,
        rarefy=rarefy,
        workers=workers,
        models=load_checkpoint_models(models) if models.strip() else {},
        forced_reader=forced_reader,
        device=device,
        topology=topology,
        reader=reader,
        layer=layer,
        k=k,
        match_steps=ms,
        n_null=n_null,
        store=str(out.with_name(out.stem + ".store")),
        logs=str(logs) if logs else None,
        log_step=log_step,
        bin_steps=bin_steps,
        bin_recent=bin_recent,
    )
    change = ChangeConfig(
        model=change_model,
        max_changes=max_changes,
        n_changes=n_changes,
        penalty=penalty,
        level=cfg.level,
        min_size=min_size,
        se_window=se_window,
        recentre=recentre,
    )
    samples = load_samples(
        list(traces),
        columns=_mapping(columns) if columns else None,
        checkpoint=checkpoint_from,
        reasoning=reasoning,
        pattern=pattern,
    )
    report = analyze_phases(
        samples, cfg, change=change, exec_metric=exec_metric, plan_metric=plan_metric
    )
    written = write_phases(report, out, plots=str(plots) if plots else None, inputs=list(traces))
    t = report.table
    typer.echo(f"{len(samples)} samples, {len(t)} checkpoints ({report.result.info['pairing']})")
    show = [c for c in ("accuracy", "planning_share", "semantic_entropy_rarefied") if c in t]
    typer.echo(t[["checkpoint", "n_traces", *show]].to_string(index=False, float_format="%.3f"))
    for m, cp in report.change_points.items():
        for c in cp.changes:
            typer.echo(f"change {m}: at {c['x']:g} [{c['lo']}, {c['hi']}]")
    tp = report.two_phase
    typer.echo(f"two-phase test: {tp['verdict']} ({tp['reason']})")
    typer.echo(f"-> {', '.join(str(p) for p in written)}")
