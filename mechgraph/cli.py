"""The ``mechgraph`` command.

Every command exits non-zero on error with a one-line message on stderr, and writes its
output atomically (nothing half-written is left behind).
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from mechgraph.errors import ConfigError, MechgraphError
from mechgraph.io import write_jsonl_atomic

app = typer.Typer(
    name="mechgraph",
    help="Mechanistic analysis of LLM reasoning traces: steps, hidden states, graphs, weights.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def sample_path() -> Path:
    """The bundled sample traces (problems and reasoning written for mechgraph)."""
    return Path(str(resources.files("mechgraph") / "data" / "sample_traces.jsonl"))


def _ints(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--layers takes integers separated by commas, got {text!r}") from None


def _words(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


@app.command()
def segment(
    input: Annotated[
        Path, typer.Argument(help="Traces: JSONL, a Thought Anchors folder, or a folder of them.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output JSONL: id and steps [{start, end, text}].")
    ],
    method: Annotated[
        str, typer.Option(help="sentences | lines | paragraphs | regex:PATTERN | given")
    ] = "sentences",
) -> None:
    """Split each trace's text into steps (exact char spans into `text`)."""
    from mechgraph.traces import load_traces, segment_traces

    traces = segment_traces(load_traces(input), method)
    records = (
        {
            "id": t.id,
            "steps": [{"start": s.start, "end": s.end, "text": s.text} for s in t.steps or []],
        }
        for t in traces
    )
    write_jsonl_atomic(out, records)
    n = sum(len(t.steps or []) for t in traces)
    typer.echo(f"{len(traces)} traces, {n} steps -> {out}")


@app.command()
def extract(
    input: Annotated[
        Path, typer.Argument(help="Traces: JSONL, a Thought Anchors folder, or a folder of them.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Store folder (created, resumed or appended).")
    ],
    model: Annotated[
        str,
        typer.Option(help="'default' (SmolLM2-135M-Instruct, offline), an HF folder or cached id."),
    ] = "default",
    layers: Annotated[
        str,
        typer.Option(
            help="Blocks, comma-separated (negative from the end); default int(0.9 n_layers)."
        ),
    ] = "",
    pool: Annotated[
        str, typer.Option(help="Pools, comma-separated: mean, first, last, max.")
    ] = "mean",
    hook: Annotated[
        str,
        typer.Option(
            help="Hook kinds, comma-separated: resid_pre, resid_mid, resid_post, attn_out, mlp_out."
        ),
    ] = "resid_post",
    segmenter: Annotated[
        str, typer.Option(help="auto | sentences | lines | paragraphs | regex:PATTERN | given.")
    ] = "auto",
    backend: Annotated[
        str, typer.Option(help="native (HF forward hooks) or bridge (TransformerBridge).")
    ] = "native",
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 | float16.")] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 ...")] = "cpu",
    batch_tokens: Annotated[int, typer.Option(help="Padded tokens per forward batch.")] = 16384,
    window: Annotated[
        str, typer.Option(help="Traces over the context: error | sliding.")
    ] = "error",
    on_empty_step: Annotated[
        str, typer.Option(help="A step owning no token: error | merge.")
    ] = "error",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Pool per-step hidden states at some layers into a store."""
    from mechgraph.extract import extract as run

    store = run(
        input,
        out,
        model=model,
        dtype=dtype,
        device=device,
        layers=_ints(layers),
        pools=_words(pool),
        hooks=_words(hook),
        segmenter=segmenter,
        backend=backend,
        batch_tokens=batch_tokens,
        window=window,
        on_empty_step=on_empty_step,
        progress=progress,
    )
    typer.echo(store.summary())


@app.command()
def info(store: Annotated[Path, typer.Argument(help="A store folder.")]) -> None:
    """Describe a store: model, hooks, pools, traces, steps, labels."""
    from mechgraph.store import open_store

    typer.echo(open_store(store).summary())


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the outputs.")] = Path(
        "runs/sample"
    ),
    layers: Annotated[str, typer.Option(help="Blocks to read.")] = "3,15,27",
) -> None:
    """The main job on the embedded default: sample traces -> store -> labels, graphs, weights."""
    import warnings

    import mechgraph as mg

    src = sample_path()
    typer.echo(f"sample traces: {src}")
    traces = mg.segment_traces(mg.load_traces(src), "sentences")
    lm = mg.load_model("default")  # loaded once: extraction, then its tokenizer for weights
    store = mg.extract(
        traces, out / "store", model=lm, layers=_ints(layers), pools=("mean", "last")
    )
    typer.echo(store.summary())

    typer.echo("\nplanning steps (rule tagger):")
    for t, labels in zip(traces, mg.label_traces(traces, "rules"), strict=True):
        plans = [s.text for s, lab in zip(t.steps or [], labels, strict=True) if lab.planning]
        typer.echo(
            f"  {t.id}: {len(plans)}/{len(labels)}  e.g. {plans[0][:60]!r}"
            if plans
            else f"  {t.id}: 0"
        )

    layer = max(store.layers)
    with warnings.catch_warnings():  # six short traces: fewer steps than K=200 nodes
        warnings.simplefilter("ignore")
        table = mg.graph_table([store], layer=layer, k=12)
    cols = ["trace_id", "n_steps", "loop_count", "revisits", "n_cycles", "diameter_norm"]
    typer.echo(f"\nreasoning graphs (block {layer}, 12 nodes):")
    typer.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))

    rows = mg.token_weights(traces, lm.tokenizer, mg.WeightsConfig(planning="rules"))
    path = mg.write_weights(out / "weights.parquet", rows)
    share = sum(float(r.planning_share) * r.n_tokens for r in rows) / sum(r.n_tokens for r in rows)
    typer.echo(f"\nHICRA token weights -> {path}  (planning tokens: {share:.1%})")


def _register() -> None:
    """Commands of the analysis stages (each lives with its stage)."""
    from mechgraph.graphs.cli import graph_command
    from mechgraph.importance.cli import importance_command
    from mechgraph.labels.cli import label_command
    from mechgraph.phases.cli import phases_command
    from mechgraph.weights.cli import weights_command
    from probes.train import probe_command

    app.command("label")(label_command)
    app.command("probe")(probe_command)
    app.command("weights")(weights_command)
    app.command("graph")(graph_command)
    app.command("importance")(importance_command)
    app.command("phases")(phases_command)


_register()


def main() -> None:
    """Entry point: run the app, turning mechgraph errors into a message and exit 1."""
    try:
        app()
    except MechgraphError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
