"""The Ray engine of :func:`mechgraph.extract` (``engine="ray"``, ``--engine ray``).

Three parts, each reusing the local engine's code:

1. **Prepare** (Ray tasks, one CPU each): blocks of traces are segmented, tokenised and
   aligned (:func:`mechgraph.align.prepare_trace`) where the CPUs are. Every trace is
   checked before any model loads, as locally: a bad trace is a one-line error naming it.
2. **Compute** (Ray actors, one model each, ``gpus_per_actor`` GPUs each): a chunk of
   ``shard_traces`` prepared traces is one actor call, run by the local engine's batching
   loop (``_run_chunk``). Each actor keeps at most two calls queued, so it starts the next
   chunk while the driver commits the last one.
3. **Commit** (the driver): results are committed with the local engine's writer
   (``_write_chunk`` into :class:`~mechgraph.store.StoreWriter`), strictly in chunk
   order, so the store has the same shards and rows as a local run.

Why plain actors with a driver-side queue (not Ray Data ``map_batches``): the unit of
work, of commit and of resume is the same chunk, and a chunk's states are a pure function
of (chunk, model). Ray restarts a dead actor (``max_restarts``) and re-runs the calls it
had not finished (``max_task_retries``); the driver alone writes, once per chunk index and
in order, so a retried chunk can never land twice and a killed driver leaves only whole
shards (the writer's rename is the commit) that the next run skips. Ray Data would add a
second scheduler between the queue and the writer (block sizes, reordering unless
``preserve_order``, its own retries) for no gain in these guarantees.

The model's facts the manifest needs (``model_id``, ``fingerprint``, ``n_layers``,
``d_model``, ``n_ctx``, ``dtype``, ``device``, ``tokenizer``) come from the actors, which
load the weights anyway, so the driver loads neither weights nor tokenizer (the prepare
tasks load the tokenizer). Every actor reports its facts and they must
agree: a node holding another copy of the model is refused before any forward pass, and a
restarted actor's results are checked against the manifest's fingerprint.

Examples
--------
>>> import mechgraph as mg
>>> store = mg.extract("traces.jsonl", "runs/s", engine="ray", actors=2)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError, ExtractionError, MechgraphError
from mechgraph.extract import (
    ExtractConfig,
    _manifest,
    _model_facts,
    _pieces,
    _Prepared,
    _progress,
    _resolve_layers,
    _run_chunk,
    _segment,
    _StoreRun,
    _todo,
    _write_chunk,
    write_store_record,
)
from mechgraph.models import LoadedModel, resolve_model
from mechgraph.store import Store, StoreWriter, open_store
from mechgraph.traces import Trace

__all__ = ["extract_ray", "ray_address", "start_local_ray"]

#: Restarts of a dead actor, and re-runs of the chunk it was computing, before giving up.
RETRIES = 3
#: Chunk calls queued per actor (one running, one waiting).
QUEUE_PER_ACTOR = 2
#: Traces per prepare task (at least ``shard_traces``).
PREPARE_BLOCK = 256


def ray_address(address: str | None) -> str | None:
    """The cluster to join: ``address``, else ``$RAY_ADDRESS``, else None (start one).

    A ``HOST:PORT`` (or ``ray://HOST:PORT``) address is checked with a TCP connect of a
    few seconds, so a wrong one fails at once instead of after Ray's own long retries.

    Raises
    ------
    ConfigError
        No port in the address, or nothing answers there.

    Examples
    --------
    >>> ray_address("auto")
    'auto'
    >>> ray_address("nohost")
    Traceback (most recent call last):
    ...
    mechgraph.errors.ConfigError: --address 'nohost': give HOST:PORT (the head node's GCS port, 6379 by default), ray://HOST:PORT or auto
    """
    addr = address or os.environ.get("RAY_ADDRESS") or None
    if addr is None or addr in ("auto", "local"):
        return addr
    where = "--address" if address else "RAY_ADDRESS"
    hostport = addr.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"{where} {addr!r}: give HOST:PORT (the head node's GCS port, 6379 by default), "
            "ray://HOST:PORT or auto"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ConfigError(
            f"{where} {addr!r}: no Ray cluster answers there ({why}); start one with "
            "`ray start --head` or drop --address to run on a local Ray instance"
        ) from None
    return addr


def extract_ray(
    trace_list: list[Trace],
    out: Path,
    traces_path: str | os.PathLike[str] | None,
    model: str | LoadedModel,
    cfg: ExtractConfig,
    dtype: str = "float32",
    device: str = "cpu",
) -> Store:
    """Run :func:`mechgraph.extract` on Ray; called by it for ``engine="ray"``.

    ``trace_list`` is loaded and free of duplicate ids, ``out`` checked by
    :func:`~mechgraph.store.check_store_target`. Joins the cluster of ``cfg.address`` (or
    ``$RAY_ADDRESS``, or the Ray already initialised in this process), else starts a
    local instance sized to the machine (or to ``cfg.actors``) and stops it at the end.

    Parameters
    ----------
    trace_list : list of Trace
    out : Path
        The store folder.
    traces_path : path or None
        The traces file, recorded as the store's input.
    model : str or LoadedModel
        A name or folder every node can load; a loaded model stands for its folder (the
        actors reload it from there and their fingerprint must match).
    cfg : ExtractConfig
    dtype, device : str
        For the actors' copies; ``cuda`` means each actor's own GPU.

    Returns
    -------
    Store

    Examples
    --------
    >>> import mechgraph as mg
    >>> mg.extract("t.jsonl", "runs/s", engine="ray", address="auto")  # doctest: +SKIP
    """
    model_id, load, want_fp = _model_source(model, dtype, device)
    if isinstance(model, LoadedModel):
        dtype, device = model.dtype, model.device
    gpus = cfg.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if str(device).startswith("cuda") else 0.0
    address = ray_address(cfg.address)
    session = _RaySession(address, cfg.actors)
    try:
        with _StoreRun(out) as run:  # a concurrent writer is refused before Ray starts
            ray = session.start()
            n_actors = _n_actors(ray, cfg.actors, gpus)
            preps, seg_name, seg_info = _prepare(ray, trace_list, load, cfg)
            actors = session.actors(ray, n_actors, gpus, load, model_id, dtype, device)
            facts = _facts(ray, actors, want_fp)
            layers = _resolve_layers(cfg.layers, facts["n_layers"])
            from mechgraph.hooks import hook_name

            hooks = [hook_name(layer, k) for layer in layers for k in cfg.hooks]
            for p, has_bos in preps:  # over-context traces refused before any forward pass
                p.pieces = _pieces(len(p.ids), facts["n_ctx"], cfg, has_bos, p.trace.id)
            manifest = _manifest(facts, cfg, layers, hooks, seg_name, seg_info)
            run.writer = writer = StoreWriter(out, manifest, lock=run.lock)
            todo = _todo([p for p, _ in preps], writer, out)
            n_tok = sum(pc[1] - pc[0] for p in todo for pc in p.pieces)
            run.bar = _progress(cfg.progress, n_tok)
            fp = facts["fingerprint"]
            _compute_and_commit(ray, actors, todo, writer, hooks, cfg, fp, run.bar)
            write_store_record(out, writer.manifest, traces_path)
    finally:
        session.stop()
    return open_store(out)


# ----------------------------------------------------------------------------- the driver


def _model_source(model: str | LoadedModel, dtype: str, device: str) -> tuple[str, str, Any]:
    """(model id to record, what actors load, fingerprint they must have or None).

    A name is checked here (a missing folder fails before Ray starts); a relative folder
    is made absolute, since actors do not share the driver's working directory.
    """
    from mechgraph.models import _DTYPES

    if isinstance(model, LoadedModel):
        src = model.path or model.model_id
        if Path(src).exists():
            src = str(Path(src).resolve())
        return model.model_id, src, model.fingerprint
    if dtype not in _DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}")
    model_id, path = resolve_model(model)
    if Path(path).exists():
        path = str(Path(path).resolve())
    return model_id, path, None


class _RaySession:
    """Ray for one run: joined or started, and what it started is stopped at the end."""

    def __init__(self, address: str | None, actors: int | None) -> None:
        self.address = address
        self.n_local = actors
        self.started = False
        self._actors: list[Any] = []
        self._ray: Any = None

    def start(self) -> Any:
        try:
            import ray
        except ImportError as e:
            raise ImportError(
                f"engine='ray' needs Ray: pip install 'ray>=2.9' ({e})", name="ray"
            ) from None
        self._ray = ray
        if ray.is_initialized():  # the caller's own ray.init (runtime_env and all)
            return ray
        opts: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
        if self.address is None or self.address == "local":
            # sized to the machine or to --actors
            cpus = max(os.cpu_count() or 1, self.n_local or 1)
            start_local_ray(ray, num_cpus=cpus, **opts)
        else:
            try:
                ray.init(address=self.address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ConfigError(
                    f"--address {self.address!r}: cannot join the Ray cluster ({_line(e)})"
                ) from None
        self.started = True
        return ray

    def actors(self, ray, n, gpus, load, model_id, dtype, device) -> list[Any]:
        cls = ray.remote(_StateActor)
        tag = uuid.uuid4().hex[:8]
        self._actors = [
            cls.options(
                name=f"mechgraph-extract-{tag}-{k}",
                namespace="mechgraph",
                num_cpus=1,
                num_gpus=gpus,
                max_restarts=RETRIES,
                max_task_retries=RETRIES,
            ).remote(load, model_id, dtype, device)
            for k in range(n)
        ]
        return self._actors

    def stop(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for a in self._actors:
            try:
                ray.kill(a)
            except Exception:  # already dead, or Ray is gone: nothing to free
                pass
        self._actors = []
        if self.started:
            ray.shutdown()
            self.started = False


def start_local_ray(ray: Any, tries: int = 3, **options: Any) -> None:
    """``ray.init(address="local", **options)``, retried on a slow start.

    A new local instance (never one found in ``/tmp/ray``: it may be someone else's). On a
    loaded machine Ray's agents can miss its fixed 30 s start-up window; the start is
    retried (and the agents given 120 s, ``RAY_agent_register_timeout_ms``).
    """
    os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
    for k in range(tries):
        before = _children()
        try:
            ray.init(address="local", **options)
            return
        except Exception as e:  # Ray raises a bare Exception for a start-up timeout
            ray.shutdown()
            _kill_new_children(before)  # what the failed start left running
            if k == tries - 1 or "timed out" not in str(e):
                raise ExtractionError(f"cannot start a local Ray instance: {_line(e)}") from None


def _children() -> set[int]:
    try:
        import psutil
    except ImportError:  # pragma: no cover - Ray depends on psutil
        return set()
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _kill_new_children(before: set[int]) -> None:
    """Kill this process's children started since ``before`` (a failed Ray start's GCS
    server and agents: ``ray.shutdown`` does not know them)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return
    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for p in new:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(new, timeout=10)


def _n_actors(ray, actors: int | None, gpus: float) -> int:
    """Actors to start; refuses a pool the cluster cannot hold (it would wait forever)."""
    res = ray.cluster_resources()
    cpus, have_gpus = int(res.get("CPU", 0)), float(res.get("GPU", 0))
    if actors is None:
        actors = int(have_gpus // gpus) if gpus > 0 else cpus
    if actors < 1 or actors > cpus or actors * gpus > have_gpus + 1e-9:
        raise ConfigError(
            f"{actors} actors with {gpus:g} GPU(s) and 1 CPU each do not fit the Ray cluster "
            f"({cpus} CPUs, {have_gpus:g} GPUs); lower --actors or --gpus-per-actor"
        )
    return actors


def _prepare(ray, trace_list: list[Trace], load: str, cfg: ExtractConfig):
    """Prepared traces (input order) with their BOS flags, the segmenter name and counts."""
    task = ray.remote(num_cpus=1, max_retries=RETRIES)(_prepare_block)
    size = max(cfg.shard_traces, PREPARE_BLOCK)
    refs = [
        task.remote(trace_list[i : i + size], load, cfg.segmenter, cfg.on_empty_step)
        for i in range(0, len(trace_list), size)
    ]
    preps: list[tuple[_Prepared, bool]] = []
    infos = []
    for ref in refs:  # in order: the first bad trace is the one reported, as locally
        block, info = _get(ray, ref, "preparing traces")
        preps += block
        infos.append(info)
    name, info = _merge_segmentation(cfg.segmenter, infos)
    return preps, name, info


def _merge_segmentation(method: str, infos: list[dict[str, Any]]):
    """The segmenter name and counts of the whole input, from those of its blocks (the
    rule of ``mechgraph.extract._segment``, whose result this equals)."""
    given = sum(int(i["given"]) for i in infos)
    segmented = sum(int(i["segmented"]) for i in infos)
    if method != "auto":
        return method, {"method": method, "given": given, "segmented": segmented}
    name = "sentences" if not given else "given" if not segmented else "auto"
    info = {"method": "auto", "given": given, "segmented": segmented, "fallback": "sentences"}
    return name, info


def _facts(ray, actors: list[Any], want_fp: str | None) -> dict[str, Any]:
    facts = [_get(ray, a.facts.remote(), "loading the model") for a in actors]
    fps = {f["fingerprint"] for f in facts}
    if len(fps) > 1:
        raise ExtractionError(
            f"Ray actors loaded different weights (fingerprints {sorted(fps)}): the model "
            "path holds another model on some node; give every node the same copy"
        )
    if want_fp is not None and facts[0]["fingerprint"] != want_fp:
        raise ExtractionError(
            f"the loaded model's weights differ from its folder {facts[0]['path']} (which the "
            "Ray actors load); save it first, or pass the folder or name instead"
        )
    return facts[0]


def _compute_and_commit(ray, actors, todo, writer, hooks, cfg, fingerprint, bar) -> None:
    """Queue chunks on the actors (at most QUEUE_PER_ACTOR each, a bounded window ahead
    of the next commit) and commit results strictly in chunk order."""
    chunks = [todo[c : c + cfg.shard_traces] for c in range(0, len(todo), cfg.shard_traces)]
    window = QUEUE_PER_ACTOR * len(actors)
    load = [0] * len(actors)
    inflight: dict[Any, tuple[int, int]] = {}
    results: dict[int, list] = {}
    nxt, commit = 0, 0
    while commit < len(chunks):
        while nxt < len(chunks) and nxt < commit + window:
            k = min(range(len(actors)), key=load.__getitem__)
            if load[k] >= QUEUE_PER_ACTOR:
                break
            inflight[actors[k].run.remote(chunks[nxt], hooks, cfg)] = (nxt, k)
            load[k] += 1
            nxt += 1
        ready, _ = ray.wait(list(inflight), num_returns=1)
        for ref in ready:
            i, k = inflight.pop(ref)
            load[k] -= 1
            fp, res = _get(ray, ref, _what(chunks[i]))
            if fp != fingerprint:
                raise ExtractionError(
                    f"{_what(chunks[i])}: a restarted Ray actor loaded other weights "
                    f"(fingerprint {fp}, the store's {fingerprint}); give every node the "
                    "same model"
                )
            results[i] = res
        while commit in results:  # in order: the store's rows are the local engine's
            chunk = chunks[commit]
            _write_chunk(writer, chunk, results.pop(commit), hooks, cfg)
            if bar is not None:
                bar.update(sum(pc[1] - pc[0] for p in chunk for pc in p.pieces))
            commit += 1


def _what(chunk: list[_Prepared]) -> str:
    a, b = chunk[0].trace.id, chunk[-1].trace.id
    return f"trace {a!r}" if a == b else f"traces {a!r}..{b!r}"


def _get(ray, ref, what: str) -> Any:
    """``ray.get``, with a mechgraph error raised as itself (one line, naming the trace)
    and a lost actor or task as an ExtractionError naming what it was computing."""
    from ray.exceptions import RayActorError, RayError, RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, MechgraphError | ImportError):
            raise cause from None
        why = _line(cause) if cause is not None else _line(e)
        name = type(cause).__name__ if cause is not None else "error"
        raise ExtractionError(f"{what}: {name} in a Ray worker: {why}") from None
    except RayActorError as e:
        raise ExtractionError(
            f"{what}: the Ray actor died {RETRIES + 1} times ({_line(e)}); a trace too "
            "large for the actor's memory? lower --batch-tokens or --shard-traces"
        ) from None
    except RayError as e:
        raise ExtractionError(f"{what}: Ray failed ({_line(e)})") from None


def _line(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    return lines[0] if lines else type(e).__name__


# ------------------------------------------------------------------ in the Ray processes

_TOKENIZERS: dict[str, Any] = {}


def _prepare_block(traces: list[Trace], load: str, segmenter: str, on_empty_step: str):
    """Segment, tokenise and align a block of traces (a Ray task); pieces are left to the
    driver, which knows the model's context."""
    from mechgraph.align import prepare_trace, tokenize_traces
    from mechgraph.models import load_tokenizer

    tok = _TOKENIZERS.get(load)
    if tok is None:
        tok = _TOKENIZERS[load] = load_tokenizer(load)
    seg, _, info = _segment(traces, segmenter)
    out = []
    for t, enc in zip(seg, tokenize_traces(tok, seg), strict=True):
        ids, steps, spans = prepare_trace(t, tok, on_empty_step, enc)
        owner = np.full(len(ids), -1, dtype=np.int64)
        for k, (a, b) in enumerate(spans):
            owner[a:b] = k
        has_bos = tok.bos_token_id is not None and int(ids[0]) == tok.bos_token_id
        out.append((_Prepared(t, steps, ids, spans, owner), has_bos))
    return out, info


class _StateActor:
    """One model in one Ray actor: pooled states of prepared chunks (``_run_chunk``)."""

    def __init__(self, load: str, model_id: str, dtype: str, device: str) -> None:
        from mechgraph.models import load_model

        # Ray gives each actor its own GPUs as cuda:0.. (CUDA_VISIBLE_DEVICES)
        dev = "cuda" if str(device).startswith("cuda") else device
        self.lm = load_model(load, dtype=dtype, device=dev)
        self.lm.model_id = model_id
        self._backends: dict[tuple, Any] = {}

    def facts(self) -> dict[str, Any]:
        return {**_model_facts(self.lm), "path": self.lm.path, "pid": os.getpid()}

    def run(self, chunk: list[_Prepared], hooks: list[str], cfg: ExtractConfig):
        from mechgraph.hooks import make_backend

        key = (tuple(hooks), cfg.backend, tuple(cfg.pools))
        if key not in self._backends:
            self._backends[key] = make_backend(cfg.backend, self.lm, hooks, cfg.pools)
        backend = self._backends[key]
        res = _run_chunk(chunk, backend, self.lm, hooks, cfg, self.lm.tokenizer, None)
        return self.lm.fingerprint, res
