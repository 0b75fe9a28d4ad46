"""Per-sample columns that need a model: teacher-forced sums and reasoning-graph topology.

* :func:`add_forced`: per-sample sums of token NLL and entropy over planning and execution
  tokens, under each checkpoint's own model (``--models``) or one fixed reader
  (``--forced-reader``); cached beside the store.
* :func:`forced_metrics`: the per-checkpoint means and relative perplexities from them.
* :func:`add_topology`: the samples read by the reader model into one store, one node
  space across all checkpoints, step-matched graph metrics per sample
  (:func:`mechgraph.graphs.analyze_corpus`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError
from mechgraph.phases import stats
from mechgraph.phases.samples import SampleTable

__all__ = ["TOPOLOGY_METRICS", "add_forced", "add_topology", "forced_metrics", "forced_plan"]

#: Graph metrics averaged per checkpoint (``topo/<name>``), plus null z-scores when asked.
TOPOLOGY_METRICS = (
    "n_steps",
    "loop_count",
    "revisits",
    "n_cycles",
    "diameter_norm",
    "small_world_sigma",
)


def forced_plan(cfg: Any) -> dict[str, str]:
    if (
        cfg.forced_reader
        and cfg.forced_reader != "default"
        and not Path(cfg.forced_reader).exists()
    ):
        raise ConfigError(f"forced reader {cfg.forced_reader}: no such model folder")
    if not cfg.models:
        return {}
    from mechgraph.models import load_tokenizer
    from mechgraph.phases.forced import check_same_tokenizer, load_checkpoint_models

    models = load_checkpoint_models(cfg.models)
    check_same_tokenizer({c: load_tokenizer(p) for c, p in models.items()})
    return models


def add_forced(frame, st: SampleTable, traces, models: Mapping[str, str], cfg, prefix: str):
    """Teacher-forced sums per sample: ``models`` maps checkpoint (or ``*``: all) -> model.

    With ``cfg.store`` set, each model's per-sample sums are cached beside the store
    (``<store>.forced/``), keyed by model, planning source and each sample's text, so a
    rerun (another change-point setting, say) does not repeat the forward passes.
    """
    from mechgraph.phases.forced import STAT_COLUMNS

    out = frame.copy()
    cols = [c for c in STAT_COLUMNS if c != "id"]
    for c in cols:
        out[f"{prefix}/{c}"] = np.nan
    ck = out["checkpoint"].to_numpy()
    for ckpt, path in models.items():
        rows = np.flatnonzero(np.ones(len(out), bool) if ckpt == "*" else ck == ckpt)
        res = _forced_rows(path, rows, st, traces, cfg, prefix)
        for c in cols:
            out.loc[out.index[rows], f"{prefix}/{c}"] = res[c].to_numpy(dtype=float)
    return out


def _forced_rows(path: str, rows: np.ndarray, st: SampleTable, traces, cfg, prefix: str):
    import hashlib

    from mechgraph.io import write_atomic
    from mechgraph.models import load_model
    from mechgraph.phases.forced import forced_token_stats

    keys = [
        hashlib.sha1(f"{traces[i].prompt}\x1f{traces[i].text}".encode()).hexdigest() for i in rows
    ]
    cache = None
    if cfg.store:
        tag = hashlib.sha1(f"{prefix}|{path}|{cfg.planning}|{cfg.segmenter}".encode()).hexdigest()
        cache = Path(f"{cfg.store}.forced") / f"{tag[:16]}.parquet"
    have = pd.read_parquet(cache).set_index("key") if cache and cache.exists() else None
    todo = [j for j, k in enumerate(keys) if have is None or k not in have.index]
    if todo:
        lm = load_model(path, device=cfg.device)
        lm.hf.eval()
        new = forced_token_stats(
            lm.hf,
            lm.tokenizer,
            [traces[rows[j]].prompt for j in todo],
            [traces[rows[j]].text for j in todo],
            [st.plan_spans[rows[j]] for j in todo],
            batch_tokens=cfg.batch_tokens,
            ids=[traces[rows[j]].id for j in todo],
        )
        new = new.drop(columns=["id"]).assign(key=[keys[j] for j in todo]).set_index("key")
        have = new if have is None else pd.concat([have, new])
        have = have[~have.index.duplicated(keep="last")]
        if cache is not None:
            frame = have.reset_index()
            write_atomic(cache, lambda tmp: frame.to_parquet(tmp, index=False))
    return have.loc[keys].reset_index(drop=True)


def forced_metrics(frame, draws, points, reps, prefix: str, name_prefix: str) -> None:
    known = frame[f"{prefix}/n_tokens"].notna().to_numpy()
    for side in ("plan", "exec"):
        n = np.where(known, frame[f"{prefix}/n_{side}"].to_numpy(dtype=float), 0.0)
        for q, label in (("ent", "entropy"), ("nll", "nll")):
            s = np.where(known, frame[f"{prefix}/{q}_{side}_sum"].to_numpy(dtype=float), np.nan)
            name = f"{name_prefix}{label}_{side}"
            points[name], reps[name] = stats.ratio_metric(draws, s, n)
        p, r = points[f"{name_prefix}nll_{side}"], reps[f"{name_prefix}nll_{side}"]
        if not np.isfinite(p).any():
            continue
        ref = int(np.flatnonzero(np.isfinite(p))[0])  # the first checkpoint with a model
        points[f"{name_prefix}ppl_rel_{side}"] = np.exp(p - p[ref])
        reps[f"{name_prefix}ppl_rel_{side}"] = np.exp(r - r[:, [ref]])


# ---------------------------------------------------------------- topology


def add_topology(frame, traces, paired: bool, cfg: Any) -> pd.DataFrame:
    from mechgraph.extract import extract
    from mechgraph.graphs import GraphConfig, NodeSpaceConfig, analyze_corpus
    from mechgraph.models import load_model

    lm = load_model(cfg.reader, device=cfg.device)
    layer = cfg.layer if cfg.layer is not None else int(0.9 * lm.n_layers)
    store = extract(
        list(traces),
        cfg.store,
        model=lm,
        layers=(layer,),
        pools=("mean",),
        segmenter=cfg.segmenter,
        batch_tokens=cfg.batch_tokens,
        progress=False,
    )
    match = cfg.match_steps
    if match == "auto":
        if paired:
            match = "paired"
        else:
            med = frame.groupby("checkpoint")["n_steps"].median()
            match = max(2, int(med.min()))
    gcfg = GraphConfig(
        layer=layer,
        nodes=NodeSpaceConfig(k=cfg.k, random_state=cfg.seed),
        n_null=cfg.n_null,
        group_by="checkpoint",
        seed=cfg.seed,
        match_steps=match,
        pair_by="prompt",
    )
    res = analyze_corpus([store], gcfg)
    t = res.table.set_index("trace_id")
    cols = list(TOPOLOGY_METRICS)
    cols += [c for c in t.columns if "_z_" in c]
    out = frame.copy()
    for c in cols:
        if c in t.columns:
            out[f"topo/{c}"] = pd.to_numeric(
                t[c].reindex(out["trace_id"]), errors="coerce"
            ).to_numpy(dtype=float)
    out.attrs["topology"] = {
        "layer": layer,
        "reader": lm.model_id,
        "k_used": int(res.nodespace.k_),
        "match_steps": match,
        "store": os.fspath(Path(cfg.store)),
    }
    return out
