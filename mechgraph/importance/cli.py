"""``mechgraph importance``: per-sentence importance scores of traces, written atomically.

The lead registers :func:`importance_command` on the app:
``app.command("importance")(importance_command)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from mechgraph.errors import ConfigError, MechgraphError, TraceError
from mechgraph.io import write_atomic

__all__ = [
    "ImportanceConfig",
    "importance_command",
    "run_importance",
    "write_importance",
]

METHODS = ("receivers", "suppression", "resampling")


@dataclass
class ImportanceConfig:
    """Everything that determines an importance table (saved in its record).

    Parameters
    ----------
    methods : tuple of str
        Methods whose columns the table holds (``receivers``, ``suppression``,
        ``resampling``).
    model : str
        The model scored with (``"default"``, an HF folder or id).
    segmenter : str
        Segmenter of traces without steps.
    max_tokens, top_k, batch_size, n_rollouts, adaptive, max_new_tokens, answer, seed
        The options of :func:`run_importance`.
    dtype, device : str
        How the model was loaded.

    Examples
    --------
    >>> c = ImportanceConfig(methods=("suppression",), max_tokens=512)
    >>> ImportanceConfig.from_dict(c.to_dict()) == c
    True
    """

    methods: tuple[str, ...] = ("receivers",)
    model: str = "default"
    segmenter: str = "sentences"
    max_tokens: int | None = None
    top_k: int = 20
    batch_size: int = 4
    n_rollouts: int = 10
    adaptive: bool = False
    max_new_tokens: int = 512
    answer: str = "boxed"
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if isinstance(self.methods, str):
            self.methods = (self.methods,)
        self.methods = tuple(self.methods)
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError(f"unknown method {bad!r}; choose from {', '.join(METHODS)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["methods"] = list(self.methods)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImportanceConfig:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"unknown importance options {bad}; known: {sorted(known)}")
        return cls(**d)

    def options(self) -> dict[str, Any]:
        """The keyword options of :func:`run_importance`."""
        drop = ("methods", "model", "segmenter", "dtype", "device")
        return {k: v for k, v in asdict(self).items() if k not in drop}


def write_importance(
    table: pd.DataFrame,
    mats: dict[str, np.ndarray] | None,
    out: str | os.PathLike[str],
    config: ImportanceConfig | dict[str, Any],
    inputs: Sequence[str | os.PathLike[str]] = (),
    *,
    model_id: str | None = None,
) -> list[Path]:
    """Write an importance table, its matrices and their records, each atomically.

    The table goes to ``out`` (``.parquet`` or ``.jsonl``), the matrices (when any) to
    ``OUT_STEM.safetensors`` (:func:`matrices_path`); each gets a record
    ``FILE.artifact.json`` (kind "importance", ``config`` the full importance config,
    ``inputs`` the traces with their hashes), written after it.

    Returns
    -------
    list of Path
        Every file written.
    """
    from safetensors.numpy import save_file

    from mechgraph.artifacts import info_path, write_info

    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".jsonl"):
        raise ConfigError(f"--out must end in .parquet or .jsonl, got {out}")
    cfg = config.to_dict() if isinstance(config, ImportanceConfig) else dict(config)
    inputs = list(inputs)
    if out.suffix.lower() == ".parquet":
        write_atomic(out, lambda p: table.to_parquet(p, index=False))
    else:
        write_atomic(
            out, lambda p: table.to_json(p, orient="records", lines=True, force_ascii=False)
        )
    written = [out]
    if mats:
        meta = {"method": ",".join(cfg.get("methods") or []), "model": model_id or ""}
        mpath = matrices_path(out)
        write_atomic(
            mpath,
            lambda p: save_file(
                {k: np.ascontiguousarray(v) for k, v in mats.items()}, p, metadata=meta
            ),
        )
        write_info(mpath, "importance", cfg, inputs)
        written += [mpath, info_path(mpath)]
    write_info(out, "importance", cfg, inputs)
    return [*written, info_path(out)]


def matrices_path(out: Path) -> Path:
    """Where the matrices of a table ``out`` go: ``out`` with suffix ``.safetensors``."""
    return Path(out).with_suffix(".safetensors")


def run_importance(
    traces: list[Any],
    method: str,
    *,
    lm: Any = None,
    max_tokens: int | None = None,
    top_k: int = 20,
    batch_size: int = 4,
    n_rollouts: int = 10,
    adaptive: bool = False,
    max_new_tokens: int = 512,
    answer: str = "boxed",
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Scores of every trace x sentence and the per-trace matrices (for :func:`importance_command`).

    Examples
    --------
    >>> table, mats = run_importance(traces, "suppression", lm=lm, max_tokens=512)  # doctest: +SKIP
    """
    from mechgraph.importance._common import prepare
    from mechgraph.importance.adaptive import adaptive_importance
    from mechgraph.importance.receivers import receiver_scores
    from mechgraph.importance.resampling import (
        HFGenerator,
        MiniLMEmbedder,
        counterfactual_importance,
    )
    from mechgraph.importance.suppression import suppression_matrix

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    rows: list[dict[str, Any]] = []
    mats: dict[str, np.ndarray] = {}
    emb = MiniLMEmbedder() if method == "resampling" else None
    for t in traces:
        try:
            p = prepare(t, lm.tokenizer, max_tokens=max_tokens)
            cols: dict[str, np.ndarray] = {}
            if method == "receivers":
                r = receiver_scores(lm, p, top_k=top_k)
                cols["receiver_score"] = r.scores
                mats[f"{t.id}/vertical"] = r.vertical.astype(np.float32)
                mats[f"{t.id}/heads"] = r.heads
            elif method == "suppression":
                r = suppression_matrix(lm, p, batch_size=batch_size)
                cols["suppression_score"] = r.scores()
                mats[f"{t.id}/suppression"] = r.matrix.astype(np.float32)
            else:
                tt = replace(t, text=t.text[: p.steps[-1].end], steps=p.steps)
                gen = HFGenerator(lm, max_new_tokens=max_new_tokens)
                fn = adaptive_importance if adaptive else counterfactual_importance
                r = fn(tt, gen, emb, n_rollouts=n_rollouts, answer=answer, seed=seed)
                cols |= {
                    "counterfactual_kl": r.kl,
                    "counterfactual_accuracy": r.accuracy,
                    "different_fraction": r.different_fraction,
                }
        except MechgraphError as e:
            msg = str(e) if repr(t.id) in str(e) else f"trace {t.id!r}: {e}"
            raise type(e)(msg) from e
        except Exception as e:
            raise TraceError(f"trace {t.id!r}: {method} failed: {e}") from e
        for k, s in enumerate(p.steps):
            row = {"trace_id": t.id, "step": k, "label": s.label, "text": s.text}
            row |= {c: float(v[k]) for c, v in cols.items()}
            rows.append(row)
    return pd.DataFrame(rows), mats


def importance_command(
    input: Annotated[
        Path, typer.Argument(help="Traces: JSONL, a Thought Anchors folder, or a folder of them.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Table: .parquet or .jsonl (matrices: .safetensors next to it)."
        ),
    ],
    method: Annotated[str, typer.Option(help="receivers | suppression | resampling")] = "receivers",
    model: Annotated[str, typer.Option(help="'default', an HF folder or cached id.")] = "default",
    segmenter: Annotated[str, typer.Option(help="Used where traces carry no steps.")] = "sentences",
    max_tokens: Annotated[
        int | None, typer.Option(help="Truncate each trace to whole sentences within N tokens.")
    ] = None,
    top_k: Annotated[int, typer.Option(help="Receiver heads.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Suppressed sentences per batch.")] = 4,
    n_rollouts: Annotated[int, typer.Option(help="Rollouts per position (resampling).")] = 10,
    adaptive: Annotated[bool, typer.Option(help="Adaptive rollouts (20% budget).")] = False,
    max_new_tokens: Annotated[int, typer.Option(help="Rollout length (resampling).")] = 512,
    answer: Annotated[
        str,
        typer.Option(help="Answer extraction: boxed | boxed_or_stated | boxed_or_last_number."),
    ] = "boxed",
    seed: Annotated[int, typer.Option(help="Rollout seed (resampling).")] = 0,
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16 | float16.")] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda ...")] = "cpu",
) -> None:
    """Per-sentence importance: receiver heads, attention suppression or resampling.

    Writes the table, the matrices (``OUT_STEM.safetensors``) and a record beside each
    (``FILE.artifact.json``: every option, the traces' hash).
    """
    from mechgraph.cli import check_output
    from mechgraph.models import load_model
    from mechgraph.traces import load_traces, segment_traces

    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    model_dir = model if model != "default" and Path(model).exists() else None
    check_output(out, [input, model_dir], suffixes=(".parquet", ".jsonl"))
    check_output(matrices_path(out), [input, model_dir], option="--out's matrices")
    traces = load_traces(input)
    if not all(t.steps for t in traces):
        traces = segment_traces(traces, segmenter)
    cfg = ImportanceConfig(
        methods=(method,),
        model=model,
        segmenter=segmenter,
        max_tokens=max_tokens,
        top_k=top_k,
        batch_size=batch_size,
        n_rollouts=n_rollouts,
        adaptive=adaptive,
        max_new_tokens=max_new_tokens,
        answer=answer,
        seed=seed,
        dtype=dtype,
        device=device,
    )
    lm = load_model(model, dtype=dtype, device=device)
    table, mats = run_importance(traces, method, lm=lm, **cfg.options())
    write_importance(table, mats, out, cfg, [input], model_id=lm.model_id)
    typer.echo(f"{len(traces)} traces, {len(table)} sentences -> {out}")
