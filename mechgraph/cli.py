"""The ``mechgraph`` command.

Every command writes its output atomically (nothing half-written is left behind), checks
its output paths before any work (:func:`check_output`: never an input, an extension
that names the format written, a writable place of the right kind), prints its results
on stdout and a user error as one ``error: ...`` line on stderr with exit status 1.
Exit status 2 is typer's own usage errors (unknown option, missing argument).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
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


# --- output checks (run by every command before any work) -----------------------------

_EXTRAS = {
    "sentence_transformers": "embed",
    "matplotlib": "plots",
    "plotly": "plots",
    "datasets": "datasets",
    "trl": "trl",
    "ripser": "topology",
    "verl": "verl",
}


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and child.is_relative_to(parent)


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    out: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    *,
    kind: str = "file",
    suffixes: Sequence[str] = (),
    option: str = "--out",
    replaces: bool = False,
    nested: bool = True,
) -> Path:
    """Refuse a bad output path before any work is done (raises :class:`ConfigError`).

    Parameters
    ----------
    out : path
        What the command will write.
    inputs : paths
        What the command reads (``None`` entries and paths that do not exist are skipped
        where they cannot be clobbered).
    kind : {"file", "folder"}
        What ``out`` is.
    suffixes : sequence of str
        Accepted extensions of a file output (e.g. ``(".parquet", ".jsonl")``).
    option : str
        The option named in the messages.
    replaces : bool
        A folder output replaced as a whole (its old content is removed).
    nested : bool
        Refuse an existing ``out`` inside an input folder (False where ``out`` is only
        added to, like a store that is resumed).

    Refused: an extension not in ``suffixes``; ``out`` equal to an input (resolved paths,
    or the same file through a link); an input inside a folder that ``replaces``; an
    existing ``out`` inside an input folder (it would overwrite part of the input); a
    folder where a file is expected or the reverse; a parent that is a file or that
    cannot be written.

    Examples
    --------
    >>> check_output("labels.csv", suffixes=(".jsonl",))
    Traceback (most recent call last):
    ...
    mechgraph.errors.ConfigError: --out labels.csv: unknown extension '.csv'; accepted: .jsonl
    """
    out = Path(out)
    if kind == "file" and suffixes and out.suffix.lower() not in suffixes:
        got = repr(out.suffix) if out.suffix else "none"
        raise ConfigError(
            f"{option} {out}: unknown extension {got}; accepted: {', '.join(suffixes)}"
        )
    ro = out.resolve()
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        ri = Path(inp).resolve()
        if _same(ro, ri):
            raise ConfigError(f"{option} {out} is the input {inp}; write somewhere else")
        if kind == "folder" and replaces and _inside(ri, ro):
            raise ConfigError(
                f"{option} {out} holds the input {inp} and would be replaced; write elsewhere"
            )
        if nested and ri.is_dir() and _inside(ro, ri) and ro.exists():
            raise ConfigError(
                f"{option} {out} is inside the input folder {inp} and would overwrite it"
            )
    if kind == "file" and out.is_dir():
        raise ConfigError(f"{option} {out} is a folder; give a file name")
    if kind == "folder" and out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out} is a file; give a folder")
    parent = ro.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {out}: {parent} is not a folder")
    targets = [parent] + ([ro] if kind == "folder" and ro.is_dir() else [])
    for t in targets:
        if not os.access(t, os.W_OK | os.X_OK):
            raise ConfigError(f"{option} {out}: cannot write in {t} (permission denied)")
    return out


def check_outputs(
    outs: Iterable[tuple[str | os.PathLike[str], str]],
    inputs: Iterable[str | os.PathLike[str] | None],
    **kw: object,
) -> None:
    """:func:`check_output` of several ``(path, kind)`` outputs against the same inputs."""
    inputs = list(inputs)
    for path, kind in outs:
        check_output(path, inputs, kind=kind, **kw)  # type: ignore[arg-type]


def path_of(spec: str | None) -> str | None:
    """The path in a ``kind:PATH`` option (``sg:PATH``, ``probe:PATH``), else None."""
    if not spec or ":" not in spec:
        return None
    path = spec.partition(":")[2]
    return path if path and Path(path).exists() else None


def error_line(e: BaseException) -> str:
    """The one-line ``error: ...`` message of an exception the command line reports."""
    if isinstance(e, ImportError):
        name = (getattr(e, "name", None) or "").split(".")[0]
        msg = str(e) or f"cannot import {name}"
        if name in _EXTRAS:
            msg += f" (an optional extra: pip install 'mechgraph[{_EXTRAS[name]}]')"
    elif isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename is not None else ""
        msg = f"{where}{e.strerror}"
    else:
        msg = str(e) or type(e).__name__
    return "error: " + " ".join(line.strip() for line in msg.splitlines() if line.strip())


@app.command()
def segment(
    input: Annotated[
        Path, typer.Argument(help="Traces: JSONL, a Thought Anchors folder, or a folder of them.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output JSONL: id and steps [{start, end, text}].")
    ],
    method: Annotated[
        str,
        typer.Option(help="sentences | sentences-all | lines | paragraphs | regex:PATTERN | given"),
    ] = "sentences",
) -> None:
    """Split each trace's text into steps (exact char spans into `text`)."""
    from mechgraph.traces import load_traces, segment_traces

    check_output(out, [input], suffixes=(".jsonl",))
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
    max_batch: Annotated[int, typer.Option(help="Most sequences per forward batch.")] = 64,
    window: Annotated[
        str, typer.Option(help="Traces over the context: error | sliding.")
    ] = "error",
    window_overlap: Annotated[
        int | None,
        typer.Option(help="Tokens of left context each later sliding window repeats (n_ctx // 2)."),
    ] = None,
    on_empty_step: Annotated[
        str, typer.Option(help="A step owning no token: error | merge.")
    ] = "error",
    shard_traces: Annotated[
        int, typer.Option(help="Traces per committed shard (the unit of resume).")
    ] = 64,
    store_dtype: Annotated[
        str, typer.Option(help="dtype of the stored states: float32 | float16.")
    ] = "float32",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    pack: Annotated[
        bool,
        typer.Option(
            help="Pack several traces into one row (no padding; native backend; same states "
            "to float rounding)."
        ),
    ] = False,
    overlap: Annotated[
        bool,
        typer.Option(help="Build batches and write shards in threads while the device runs."),
    ] = True,
    engine: Annotated[
        str,
        typer.Option(
            help="local (this process) or ray (Ray tasks prepare, an actor pool computes; "
            "same store)."
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join (HOST:PORT, ray://HOST:PORT, auto); default "
            "$RAY_ADDRESS, else a local Ray instance. Ray engine only."
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(help="Ray actors (model copies); default one per GPU, or per CPU."),
    ] = None,
    gpus_per_actor: Annotated[
        float | None,
        typer.Option(help="GPUs per Ray actor; default 1 with --device cuda, else 0."),
    ] = None,
) -> None:
    """Pool per-step hidden states at some layers into a store.

    With --engine ray the work is spread over a Ray cluster (or a local Ray instance);
    the store is the one the local engine writes, and either engine resumes it.
    """
    from mechgraph.extract import extract as run

    model_dir = model if model != "default" and Path(model).exists() else None
    check_output(out, [input, model_dir], kind="folder", nested=False)
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
        max_batch=max_batch,
        window=window,
        window_overlap=window_overlap,
        on_empty_step=on_empty_step,
        shard_traces=shard_traces,
        store_dtype=store_dtype,
        progress=progress,
        pack=pack,
        overlap=overlap,
        engine=engine,
        address=address,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
    )
    typer.echo(store.summary())


@app.command()
def info(store: Annotated[Path, typer.Argument(help="A store folder.")]) -> None:
    """Describe a store: model, hooks, pools, traces, steps, labels."""
    from mechgraph.store import open_store

    typer.echo(open_store(store).summary())


@app.command("run")
def run_command(
    config: Annotated[
        Path | None,
        typer.Argument(help="Run config (TOML); default: the embedded model on the sample."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The run folder.")] = Path(
        "runs/default"
    ),
    force: Annotated[
        str, typer.Option(help="Stages to rerun anyway, comma-separated (or 'all').")
    ] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would run and why; run nothing.")
    ] = False,
) -> None:
    """The whole pipeline into one run folder; reruns only what changed (see docs)."""
    from mechgraph.pipeline import STAGES, RunConfig, plan_run, run_pipeline

    cfg = RunConfig.from_toml(config) if config is not None else RunConfig()
    forced = list(STAGES) if force.strip() == "all" else list(_words(force))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; the run folder must be a folder")
    if dry_run:
        for stage, what in plan_run(cfg, out, forced):
            typer.echo(f"{stage:<11} {what}")
        return
    run_pipeline(cfg, out, force=forced, echo=typer.echo)
    typer.echo(f"-> {out}")
    if (out / "report.html").is_file():
        typer.echo(f"report -> {out / 'report.html'}")


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

    check_output(out, kind="folder", nested=False)
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
    from mechgraph.report.cli import report_command
    from mechgraph.weights.cli import weights_command
    from probes.train import probe_command

    app.command("label")(label_command)
    app.command("probe")(probe_command)
    app.command("weights")(weights_command)
    app.command("graph")(graph_command)
    app.command("importance")(importance_command)
    app.command("phases")(phases_command)
    app.command("report")(report_command)


_register()


def main() -> None:
    """Entry point: run the app; a user error is one ``error: ...`` line on stderr, exit 1.

    User errors are mechgraph errors, file-system errors (permission denied, a folder
    where a file is expected, a missing file...) and a missing optional dependency.
    Exit 2 is left to typer's own usage errors (unknown option, missing argument).
    """
    try:
        app()
    except (MechgraphError, OSError, ImportError) as e:
        typer.echo(error_line(e), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
