"""Extraction: traces -> steps -> tokens -> pooled hidden states -> store.

The model sees ``prompt + text`` tokenised once, with the tokenizer's special tokens
(no doubled BOS: when the prompt already starts with the BOS string, none is added).
Steps are aligned to those ids by :mod:`mechgraph.align`. Traces are processed in
chunks of ``shard_traces`` (one committed shard each); inside a chunk they are sorted by
length and batched under a padded-token budget, right-padded with an attention mask, or
packed several to a row (``pack=True``, :mod:`mechgraph.packing`). With ``overlap=True``
(the default) the next batch is built in a background thread and shards are committed in
a writer thread, while the device runs.

Long traces
-----------
A trace longer than the model's context is an error by default. With
``window="sliding"`` it is cut into windows of ``n_ctx`` tokens that overlap by
``window_overlap`` tokens (default ``n_ctx // 2``); a window after the first repeats the
BOS token when the trace starts with one. Each token's state is taken from the one
window where it is *owned*: the first window owns everything it covers, a later window
owns what follows the overlap. So every token is seen with at least ``window_overlap``
tokens of left context (fewer than the full prefix: states of a windowed trace are an
approximation, recorded in the store's config). Pools combine exactly across windows.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

# prepare_trace / tokenize_traces live in mechgraph.align (stage 0); re-exported here.
from mechgraph.align import prepare_trace, tokenize_traces
from mechgraph.errors import ConfigError, ExtractionError, TraceError
from mechgraph.hooks import HOOK_KINDS, POOLS, PoolAccumulator, hook_name, make_backend
from mechgraph.models import LoadedModel, load_model
from mechgraph.packing import (
    WriteBehind,
    accumulate,
    build_batch,
    fetch_pooled,
    plan_batches,
    prefetch,
)
from mechgraph.store import (
    MANIFEST,
    Store,
    StoreLock,
    StoreWriter,
    check_store_target,
    open_store,
    state_key,
)
from mechgraph.traces import Step, Trace, load_traces, segment_traces

__all__ = ["ExtractConfig", "extract", "prepare_trace", "write_store_record"]

_STORE_DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass
class ExtractConfig:
    """Options of :func:`extract`, saved in the store's manifest.

    Parameters
    ----------
    layers : tuple of int
        Blocks to read (negative counts from the end). Empty: ``int(0.9 * n_layers)``, the
        layer Topology of Reasoning uses.
    hooks : tuple of str
        Hook kinds: resid_pre, resid_mid, resid_post, attn_out, mlp_out.
    pools : tuple of str
        mean, first, last, max over each step's tokens.
    segmenter : str
        sentences, lines, paragraphs, regex:PATTERN, given, or auto: each trace that
        carries steps keeps them (and their labels), the others are split into sentences.
        The manifest records ``segmenter`` as ``given`` (every trace had steps),
        ``sentences`` (none had) or ``auto`` (a mix), and ``segmentation`` the counts.
    backend : {"native", "bridge"}
    batch_tokens : int
        Budget of padded tokens per forward batch.
    max_batch : int
        Most sequences per batch.
    window : {"error", "sliding"}
        What to do with traces longer than the context (see the module docstring).
    window_overlap : int or None
        Tokens of left context each later window repeats (default n_ctx // 2).
    on_empty_step : {"error", "merge"}
        A step that owns no token: an error, or merged into the step before it (the
        one after, for a first step); the merged step keeps the surviving step's label.
    shard_traces : int
        Traces per committed shard (the unit of resume).
    store_dtype : {"float32", "float16"}
    progress : bool
        Show a progress bar with tokens/s.
    pack : bool
        Pack several traces (pieces) into one row instead of padding each to the longest
        of its batch: position ids restart per trace and attention stays inside each trace
        (block-diagonal causal mask; flash attention: one flat varlen row). Native backend
        only; states equal the padded run's to float rounding (see
        :mod:`mechgraph.packing`). Not part of the store's identity: a store may be
        resumed or appended with another value (its manifest keeps the first run's).
    overlap : bool
        Build the next batch in a background thread while the current one runs (pinned
        memory and non-blocking copies on CUDA) and commit shards in a writer thread.
        Byte-identical to ``overlap=False``; not part of the store's identity.
    engine : {"local", "ray"}
        Where the forward passes run: in this process, or prepared in Ray tasks and
        computed by a pool of Ray actors, one model each, the shards committed here by
        the same writer (:mod:`mechgraph.engines.ray`; guide: ``docs/scale.md``). Same
        store either way; the engine fields are not part of the store's identity (its
        config records them at their defaults), so either engine resumes the other's.
    address : str or None
        Ray cluster to join (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``); default
        ``$RAY_ADDRESS``, else a local Ray instance is started and stopped. Ray only.
    actors : int or None
        Actors (model copies); default one per GPU with ``gpus_per_actor`` > 0, else one
        per CPU of the cluster. Ray only.
    gpus_per_actor : float or None
        GPUs each actor holds; default 1 when ``device`` is CUDA, else 0. Ray only.
    """

    layers: tuple[int, ...] = ()
    hooks: tuple[str, ...] = ("resid_post",)
    pools: tuple[str, ...] = ("mean",)
    segmenter: str = "auto"
    backend: str = "native"
    batch_tokens: int = 16384
    max_batch: int = 64
    window: str = "error"
    window_overlap: int | None = None
    on_empty_step: str = "error"
    shard_traces: int = 64
    store_dtype: str = "float32"
    progress: bool = True
    pack: bool = False
    overlap: bool = True
    engine: str = "local"
    address: str | None = None
    actors: int | None = None
    gpus_per_actor: float | None = None

    def __post_init__(self) -> None:
        self.layers = tuple(int(x) for x in self.layers)
        self.hooks = tuple(self.hooks)
        self.pools = tuple(self.pools)
        for h in self.hooks:
            if h not in HOOK_KINDS:
                raise ConfigError(f"unknown hook {h!r}; choose from {', '.join(HOOK_KINDS)}")
        for p in self.pools:
            if p not in POOLS:
                raise ConfigError(f"unknown pool {p!r}; choose from {', '.join(POOLS)}")
        if not self.hooks or not self.pools:
            raise ConfigError("give at least one hook and one pool")
        if self.backend not in ("native", "bridge"):
            raise ConfigError(f"unknown backend {self.backend!r}; choose native or bridge")
        if self.window not in ("error", "sliding"):
            raise ConfigError(f"window must be 'error' or 'sliding', not {self.window!r}")
        if self.on_empty_step not in ("error", "merge"):
            raise ConfigError("on_empty_step must be 'error' or 'merge'")
        if self.store_dtype not in _STORE_DTYPES:
            raise ConfigError(f"store_dtype must be one of {sorted(_STORE_DTYPES)}")
        if self.batch_tokens < 1 or self.max_batch < 1 or self.shard_traces < 1:
            raise ConfigError("batch_tokens, max_batch and shard_traces must be positive")
        if self.pack and self.backend != "native":
            raise ConfigError(
                f"pack=True needs backend='native' (backend {self.backend!r} takes no "
                "packed position ids); drop --pack or use the native backend"
            )
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"unknown engine {self.engine!r}; choose local or ray")
        ray_only = {"address": self.address, "actors": self.actors}
        ray_only["gpus_per_actor"] = self.gpus_per_actor
        given = [k for k, v in ray_only.items() if v is not None]
        if self.engine == "local" and given:
            raise ConfigError(f"{', '.join(given)}: options of engine='ray' (--engine ray)")
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"actors must be positive, got {self.actors}")
        if self.gpus_per_actor is not None and not self.gpus_per_actor >= 0:
            raise ConfigError(f"gpus_per_actor must be >= 0, got {self.gpus_per_actor}")


@dataclass
class _Prepared:
    trace: Trace
    steps: list[Step]
    ids: np.ndarray
    tok_spans: list[tuple[int, int]]
    owner: np.ndarray  # step index of each token, -1 for none
    pieces: list[tuple[int, int, int, int, bool]] = field(default_factory=list)


def _pieces(n: int, n_ctx: int, cfg: ExtractConfig, has_bos: bool, trace_id: str):
    """(start, end, own_start, own_end, add_bos) windows over n tokens."""
    if n <= n_ctx:
        return [(0, n, 0, n, False)]
    if cfg.window == "error":
        raise ExtractionError(
            f"trace {trace_id!r}: {n} tokens exceed the model's context of {n_ctx}; "
            "pass window='sliding' (--window sliding) to read it in overlapping windows"
        )
    width = n_ctx - 1 if has_bos else n_ctx
    overlap = cfg.window_overlap if cfg.window_overlap is not None else n_ctx // 2
    if not 0 <= overlap < width:
        raise ConfigError(f"window_overlap must be in [0, {width}), got {overlap}")
    stride = width - overlap
    out, start = [], 0
    while True:
        end = min(start + width, n)
        own = start if start == 0 else start + overlap
        out.append((start, end, own, end, has_bos and start > 0))
        if end >= n:
            return out
        start += stride


def _text_sha(t: Trace) -> str:
    return hashlib.sha256((t.prompt + "\x00" + t.text).encode()).hexdigest()[:24]


def _resolve_layers(layers: Sequence[int], n_layers: int) -> list[int]:
    if not layers:
        return [int(0.9 * n_layers)]
    out = []
    for layer in layers:
        real = layer + n_layers if layer < 0 else layer
        if not 0 <= real < n_layers:
            raise ConfigError(f"layer {layer} does not exist: the model has {n_layers} blocks")
        out.append(real)
    return sorted(set(out))


def _segment(traces: list[Trace], method: str) -> tuple[list[Trace], str, dict[str, Any]]:
    """Segmented copies of the traces (the caller's are left alone), the segmenter name to
    record, and what happened (counts of traces that kept their steps / were segmented).
    """
    if method != "auto":
        out = segment_traces([copy.copy(t) for t in traces], method)
        given = len(out) if method == "given" else 0
        info = {"method": method, "given": given, "segmented": len(out) - given}
        return out, method, info
    todo = [copy.copy(t) for t in traces if not t.steps]
    done = iter(segment_traces(todo, "sentences"))
    out = [t if t.steps else next(done) for t in traces]
    n_given = len(out) - len(todo)
    name = "sentences" if not n_given else "given" if not todo else "auto"
    info = {"method": "auto", "given": n_given, "segmented": len(todo), "fallback": "sentences"}
    return out, name, info


def extract(
    traces: Iterable[Trace] | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | LoadedModel = "default",
    config: ExtractConfig | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    **options: Any,
) -> Store:
    """Extract pooled per-step hidden states into a store (created, appended or resumed).

    Parameters
    ----------
    traces : list of Trace, or a path for :func:`~mechgraph.load_traces`
    out : path
        The store folder. If it exists with the same model and config, traces already
        in it are skipped (resume) and new ones appended; another model or config is
        refused. Its record ``artifact.json`` (:mod:`mechgraph.artifacts`: kind "store",
        the config, the traces path as input when one was given) is written after the
        shards, and rewritten by a resume or an append.
    model : str or LoadedModel
        ``"default"``, an HF folder, or a loaded model.
    config : ExtractConfig, optional
    dtype, device : str
        For loading ``model`` by name.
    **options
        Fields of :class:`ExtractConfig` (``layers=(3, 15)``, ``pools=("mean", "last")``...).

    Returns
    -------
    Store

    Raises
    ------
    StoreError
        Before the model loads: ``out`` is a file, is not writable, is a folder that is
        not a store, or another process is writing it (the message names the holder).
    ConfigError
        Before weights load: a model path that does not exist (nor is a cached hub id),
        a device this build or machine lacks.

    Examples
    --------
    >>> store = extract("traces.jsonl", "runs/s", layers=(3, 15))  # doctest: +SKIP
    >>> store.states(15).shape  # doctest: +SKIP
    (412, 576)
    """
    cfg = config if config is not None else ExtractConfig(**options)
    if config is not None and options:
        cfg = ExtractConfig(**{**asdict(config), **options})
    trace_list = load_traces(traces) if _is_path(traces) else list(traces)
    seen: set[str] = set()
    for t in trace_list:
        if t.id in seen:
            raise TraceError(f"duplicate trace id {t.id!r}")
        seen.add(t.id)
    out = Path(out)
    # OS-level problems and a concurrent writer are refused here, before weights load
    check_store_target(out)
    if cfg.engine == "ray":  # the same store, computed by a Ray actor pool
        from mechgraph.engines.ray import extract_ray

        source = traces if _is_path(traces) else None
        return extract_ray(trace_list, out, source, model, cfg, dtype, device)
    with _StoreRun(out) as run:
        run.writer, todo, lm, hooks, backend = _open_run(
            trace_list, out, run.lock, model, cfg, dtype, device
        )
        run.bar = _progress(cfg.progress, sum(len(p.ids) for p in todo))
        _run_chunks(todo, run.writer, backend, lm, hooks, cfg, run.bar)
        # the record, after the shards (rewritten on a resume or an append)
        write_store_record(out, run.writer.manifest, traces if _is_path(traces) else None)
    return open_store(out)


class _StoreRun:
    """The lock, writer and progress bar of one run into a store (either engine): on any
    error a store this run created and committed nothing to is removed; the lock is
    released and the bar closed whatever happens."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.lock = StoreLock(out)  # a concurrent writer is refused here
        self.fresh = not (out / MANIFEST).exists()
        self.writer: StoreWriter | None = None
        self.bar: Any = None

    def __enter__(self) -> _StoreRun:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        try:
            if exc_type is not None and self.fresh:  # leave no empty store
                if self.writer is None or not self.writer.committed():
                    shutil.rmtree(self.out, ignore_errors=True)
        finally:
            self.lock.release()
            if self.bar is not None:
                self.bar.close()


def _run_chunks(todo, writer, backend, lm, hooks, cfg: ExtractConfig, bar) -> None:
    """Run and commit every chunk in order; with ``cfg.overlap`` the commits run in a
    writer thread (a shard is committed whole or not at all, as without it)."""
    shards = WriteBehind(_write_chunk, depth=2) if cfg.overlap else None
    try:
        for c in range(0, len(todo), cfg.shard_traces):
            chunk = todo[c : c + cfg.shard_traces]
            results = _run_chunk(chunk, backend, lm, hooks, cfg, lm.tokenizer, bar)
            if shards is None:
                _write_chunk(writer, chunk, results, hooks, cfg)
            else:
                shards.submit(writer, chunk, results, hooks, cfg)
    except BaseException:
        if shards is not None:  # chunks done before the error still land, as sequentially
            shards.close(raise_error=False)
        raise
    if shards is not None:
        shards.close()


def _is_path(x: Any) -> bool:
    return isinstance(x, str | os.PathLike)


def write_store_record(
    out: str | os.PathLike[str],
    manifest: dict[str, Any],
    traces: str | os.PathLike[str] | None = None,
) -> Any:
    """Write the store's artifact record ``STORE/artifact.json`` (atomically).

    ``kind`` "store", ``config`` the :class:`ExtractConfig` of the manifest (layers resolved,
    the segmenter as recorded), ``inputs`` the traces file or folder when one was given.
    """
    from mechgraph.artifacts import write_info

    config = manifest.get("config") or {}
    return write_info(out, "store", dict(config), [traces] if traces is not None else [])


def _open_run(trace_list, out: Path, lock: StoreLock, model, cfg: ExtractConfig, dtype, device):
    """Load the model, segment and check every trace, open the writer: all before any
    forward pass. Returns (writer, traces to run, model, hooks, backend)."""
    lm = model if isinstance(model, LoadedModel) else load_model(model, dtype=dtype, device=device)
    layers = _resolve_layers(cfg.layers, lm.n_layers)
    hooks = [hook_name(layer, k) for layer in layers for k in cfg.hooks]
    trace_list, seg_name, seg_info = _segment(trace_list, cfg.segmenter)
    tok = lm.tokenizer
    manifest = _manifest(_model_facts(lm), cfg, layers, hooks, seg_name, seg_info)
    preps = []
    encoded = tokenize_traces(tok, trace_list)
    for t, enc in zip(trace_list, encoded, strict=True):  # check all before writing anything
        ids, steps, spans = prepare_trace(t, tok, cfg.on_empty_step, enc)
        owner = np.full(len(ids), -1, dtype=np.int64)
        for k, (a, b) in enumerate(spans):
            owner[a:b] = k
        has_bos = tok.bos_token_id is not None and int(ids[0]) == tok.bos_token_id
        p = _Prepared(t, steps, ids, spans, owner)
        p.pieces = _pieces(len(ids), lm.n_ctx, cfg, has_bos, t.id)
        preps.append(p)
    backend = make_backend(cfg.backend, lm, hooks, cfg.pools)
    if cfg.pack:
        backend.pack_layout()  # an attention that cannot keep packed traces apart: refused
    writer = StoreWriter(out, manifest, lock=lock)
    return writer, _todo(preps, writer, out), lm, hooks, backend


#: The engine fields, as every store records them: where states were computed is no part
#: of a store, so either engine resumes the other's.
_ENGINE_DEFAULTS = {"engine": "local", "address": None, "actors": None, "gpus_per_actor": None}


def _model_facts(lm: LoadedModel) -> dict[str, Any]:
    """What a store's manifest records of the model (the Ray actors report the same)."""
    return {
        "model_id": lm.model_id,
        "fingerprint": lm.fingerprint,
        "dtype": lm.dtype,
        "device": lm.device,
        "n_layers": lm.n_layers,
        "d_model": lm.d_model,
        "n_ctx": lm.n_ctx,
        "tokenizer": _tok_id(lm.tokenizer, lm),
    }


def _manifest(facts, cfg: ExtractConfig, layers, hooks, seg_name, seg_info) -> dict[str, Any]:
    """The store's manifest for a model's facts (:func:`_model_facts`) and a config."""
    recorded = replace(cfg, **_ENGINE_DEFAULTS)
    return {
        "mechgraph_version": _version(),
        **{k: facts[k] for k in ("model_id", "fingerprint", "dtype", "device")},
        **{k: facts[k] for k in ("n_layers", "d_model", "n_ctx")},
        "hooks": hooks,
        "layers": layers,
        "pools": list(cfg.pools),
        "segmenter": seg_name,
        "segmentation": seg_info,
        "tokenizer": facts["tokenizer"],
        "window": cfg.window if cfg.window == "error" else f"sliding:{cfg.window_overlap}",
        "on_empty_step": cfg.on_empty_step,
        "store_dtype": cfg.store_dtype,
        "config": {**asdict(recorded), "layers": layers, "segmenter": seg_name},
    }


def _todo(preps: list[_Prepared], writer: StoreWriter, out: Path) -> list[_Prepared]:
    """The prepared traces not in the store yet; one already there with another text is
    refused."""
    done = writer.committed()
    todo = []
    for p in preps:
        if p.trace.id in done:
            if done[p.trace.id] != _text_sha(p.trace):
                raise TraceError(
                    f"trace {p.trace.id!r} is already in store {out} with a different text; "
                    "give it another id or write a new store"
                )
            continue
        todo.append(p)
    return todo


def _tok_id(tok: Any, lm: LoadedModel) -> str:
    name = getattr(tok, "name_or_path", "") or ""
    return lm.model_id if name == lm.path else str(name)


def _version() -> str:
    from mechgraph import __version__

    return __version__


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tok", unit_scale=True, desc="extract", smoothing=0.1)


def _run_chunk(chunk: list[_Prepared], backend, lm: LoadedModel, hooks, cfg, tok, bar):
    accs = [PoolAccumulator(len(p.steps), lm.d_model, hooks, cfg.pools) for p in chunk]
    pieces = [(i, pc) for i, p in enumerate(chunk) for pc in p.pieces]
    lengths = [pc[1] - pc[0] + int(pc[4]) for _, pc in pieces]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    device = torch.device(lm.device)
    layout = backend.pack_layout() if cfg.pack else "padded"
    groups = plan_batches(lengths, cfg.batch_tokens, cfg.max_batch, layout)
    pin = cfg.overlap and device.type == "cuda"
    host = (
        build_batch(rows, pieces, lengths, chunk, pad, tok.bos_token_id, layout).stage(pin)
        for rows in groups
    )
    pending = None  # the batch whose pooled states are on their way to the host
    for hb in prefetch(host, depth=2) if cfg.overlap else host:
        x = hb.inputs(device)
        sink = backend.run(
            x["input_ids"], x["attention_mask"], x["plan"], x["position_ids"], **x["extra"]
        )
        fetched = fetch_pooled(sink, pin)
        if pending is not None:
            accumulate(accs, hooks, *pending, bar)
        pending = (hb, fetched)
    if pending is not None:
        accumulate(accs, hooks, *pending, bar)
    return [acc.finish(p.trace.id) for acc, p in zip(accs, chunk, strict=True)]


def _write_chunk(writer: StoreWriter, chunk, results, hooks, cfg: ExtractConfig) -> None:
    base = writer.n_traces()
    trace_rows, step_rows = [], []
    for k, p in enumerate(chunk):
        t = p.trace
        trace_rows.append(
            {
                **t.fields(),
                "ord": base + k,
                "text": t.text,
                "n_tokens": len(p.ids),
                "n_steps": len(p.steps),
                "text_sha": _text_sha(t),
                "input_ids": p.ids.astype(np.int32).tolist(),
            }
        )
        for j, (s, (a, b)) in enumerate(zip(p.steps, p.tok_spans, strict=True)):
            step_rows.append(
                {
                    "trace_id": t.id,
                    "step": j,
                    "char_start": s.start,
                    "char_end": s.end,
                    "tok_start": a,
                    "tok_end": b,
                    "text": s.text,
                    "label": s.label,
                    **dict(s.meta),
                }
            )
    dt = _STORE_DTYPES[cfg.store_dtype]
    states = {
        state_key(h, pool): np.concatenate([r[h, pool] for r in results]).astype(dt)
        for h in hooks
        for pool in cfg.pools
    }
    steps = pd.DataFrame(step_rows)
    if steps["label"].isna().all():
        steps = steps.drop(columns="label")
    writer.write_shard(pd.DataFrame(trace_rows), steps, states)
