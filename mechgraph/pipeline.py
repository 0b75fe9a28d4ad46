"""``mechgraph run``: the whole pipeline from one TOML file, into one run folder, like make.

Stages, in order (each writes one artifact with its record, see :mod:`mechgraph.artifacts`):

============  ==============================  ===========================================
stage         artifact in the run folder      computed from
============  ==============================  ===========================================
extract       ``store/``                      the traces; model, layers, pools, segmenter
label         ``labels.jsonl``                the traces; ``[label]``
probe         ``probe/``                      the store and the labels; ``[probe]``
graph         ``graph.parquet`` (+ sidecar)   the store; ``[graph]`` (nulls by default)
importance    ``importance.parquet``          the traces; ``[importance]``
weights       ``weights.parquet``             the traces; ``[weights]``
phases        ``phases.parquet``              the traces, when they carry 2+ checkpoints
============  ==============================  ===========================================

Each stage's own writer writes the artifact's record (what ``mechgraph extract``, ``label``,
``probe``, ... write too); the pipeline then rewrites it with the stage's section of the
run config, which is what its make-like check compares. A stage reruns only when its
record is missing, its config changed, or an input's content hash changed (so a changed option reruns that stage and the ones downstream of it);
``force`` reruns some anyway. Every artifact is committed atomically and the record is
written after it, so a run killed at any moment and started again ends with the same run
folder (the extraction resumes inside the store). Each record also keeps the stage's
``timing`` (seconds, finished; not part of the up-to-date check); ``run.json`` records the
run config, what each stage did and the package versions, and ``report.html``
(:mod:`mechgraph.report`) is rewritten at the end of every run.

Example ``run.toml`` (every key optional; the defaults run the embedded default model on
the bundled sample)::

    traces = "traces.jsonl"
    model = "default"
    layers = [3, 15, 27]

    [graph]
    k = 12
    n_null = 20

    [importance]
    methods = ["receivers", "suppression"]
    max_tokens = 512
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mechgraph.artifacts import content_hash, read_info, write_info
from mechgraph.errors import ConfigError

__all__ = ["RUN_RECORD", "STAGES", "RunConfig", "plan_run", "run_pipeline"]

STAGES = ("extract", "label", "probe", "graph", "importance", "weights", "phases")


@dataclass
class RunConfig:
    """The pipeline's config (one TOML file; ``RunConfig.from_toml``).

    Parameters
    ----------
    traces : str, optional
        Traces file or folder (default: mechgraph's bundled sample).
    model, device : str
        Model of extraction, importance and weights (default: the embedded default).
    layers : list of int
        Blocks to extract (default: 3, 15 and the last but one of the default's 30).
    pools : list of str
    segmenter : str
    extract : dict
        Other fields of :class:`mechgraph.ExtractConfig` (``window = "sliding"``, ...).
    label, probe, graph, importance, weights, phases : dict
        Options of each stage; ``enabled = false`` skips one.
    """

    traces: str | None = None
    model: str = "default"
    device: str = "cpu"
    layers: list[int] = field(default_factory=lambda: [3, 15, 27])
    pools: list[str] = field(default_factory=lambda: ["mean", "last"])
    segmenter: str = "sentences"
    extract: dict[str, Any] = field(default_factory=dict)
    label: dict[str, Any] = field(default_factory=lambda: {"method": "rules"})
    probe: dict[str, Any] = field(
        default_factory=lambda: {"target": "planning", "estimator": "logistic", "n_splits": 3}
    )
    graph: dict[str, Any] = field(default_factory=lambda: {"k": 12, "n_null": 20})
    importance: dict[str, Any] = field(
        default_factory=lambda: {"methods": ["receivers", "suppression"], "max_tokens": 256}
    )
    weights: dict[str, Any] = field(default_factory=lambda: {"planning": "rules"})
    phases: dict[str, Any] = field(default_factory=lambda: {"topology": False, "n_boot": 200})

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> RunConfig:
        """Read a run config; unknown keys are an error naming them."""
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such run config") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: invalid TOML: {e}") from None
        return cls.from_dict(raw, where=str(p))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "run config") -> RunConfig:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(raw) - known)
        if bad:
            raise ConfigError(f"{where}: unknown keys {bad}; known: {sorted(known)}")
        base = cls()
        merged = {}
        for k, v in raw.items():
            default = getattr(base, k)
            if isinstance(default, dict):
                if not isinstance(v, dict):
                    raise ConfigError(f"{where}: [{k}] must be a table")
                v = {**default, **v}
            merged[k] = v
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Stage:
    name: str
    output: str
    inputs: Callable[[Path, Path], list[Path]]
    config: Callable[[RunConfig], dict[str, Any]]
    run: Callable[[Any, Path, Path], str]  # (context, traces path, run dir) -> summary
    kind: str


def _shared(cfg: RunConfig) -> dict[str, Any]:
    return {"model": cfg.model, "segmenter": cfg.segmenter}


def _stage_config(name: str) -> Callable[[RunConfig], dict[str, Any]]:
    def get(cfg: RunConfig) -> dict[str, Any]:
        if name == "extract":
            return {
                **_shared(cfg),
                "layers": list(cfg.layers),
                "pools": list(cfg.pools),
                **cfg.extract,
            }
        return {**_shared(cfg), **getattr(cfg, name)}

    return get


class _Context:
    """What stages share: the run config, the loaded model (on first use), the traces."""

    def __init__(self, cfg: RunConfig, traces_path: Path) -> None:
        self.cfg = cfg
        self.traces_path = traces_path
        self._lm = None

    @property
    def lm(self):
        if self._lm is None:
            from mechgraph.models import load_model

            self._lm = load_model(self.cfg.model, device=self.cfg.device)
        return self._lm

    def traces(self):
        from mechgraph.traces import load_traces, segment_traces

        traces = load_traces(self.traces_path)
        todo = [t for t in traces if not t.steps]
        if todo:
            segment_traces(todo, self.cfg.segmenter)
        return traces


def _opts(section: dict[str, Any], drop: Sequence[str] = ("enabled",)) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in drop}


def _run_extract(ctx: _Context, src: Path, run: Path) -> str:
    from mechgraph.extract import extract

    store = extract(
        ctx.traces(),
        run / "store",
        model=ctx.lm,
        layers=tuple(ctx.cfg.layers),
        pools=tuple(ctx.cfg.pools),
        progress=False,
        **ctx.cfg.extract,
    )
    return f"{len(store.trace_ids)} traces, {len(store.steps)} steps"


def _run_label(ctx: _Context, src: Path, run: Path) -> str:
    from mechgraph.labels.cli import run_label

    opts = _opts(ctx.cfg.label)
    run_label(src, opts.pop("method", "rules"), run / "labels.jsonl", **opts)
    return "labels.jsonl"


def _run_probe(ctx: _Context, src: Path, run: Path) -> str:
    from probes.trace_train import TRACE_ESTIMATORS, train_trace_probe
    from probes.train import train_probe

    opts = _opts(ctx.cfg.probe)
    if opts.get("estimator") in TRACE_ESTIMATORS:  # context / bigru / stacked: no sweep
        res_t = train_trace_probe(
            run / "store",
            opts.pop("target", "planning"),
            labels=run / "labels.jsonl",
            out=run / "probe",
            **opts,
        )
        m = res_t.metrics
        shown = ", ".join(f"{k} {m[k]:.3f}" for k in ("f1", "macro_f1", "auroc") if k in m)
        return f"{res_t.estimator} probe ({shown})"
    res = train_probe(
        run / "store",
        opts.pop("target", "planning"),
        labels=run / "labels.jsonl",
        out=run / "probe",
        **opts,
    )
    best = getattr(res, "best_layer", None)
    return f"best layer {best}" if best is not None else "probe"


def _run_graph(ctx: _Context, src: Path, run: Path) -> str:
    from mechgraph.graphs import GraphConfig, NodeSpaceConfig, analyze_corpus
    from mechgraph.graphs.cli import write_graph
    from mechgraph.store import open_store

    opts = _opts(ctx.cfg.graph)
    store = open_store(run / "store")
    layer = int(opts.pop("layer", max(store.layers)))
    k = int(opts.pop("k", 12))
    gcfg = GraphConfig(layer=layer, nodes=NodeSpaceConfig(k=k), **opts)
    import warnings

    with warnings.catch_warnings():  # a small sample has fewer steps than K nodes want
        warnings.simplefilter("ignore")
        res = analyze_corpus([store], gcfg)
    write_graph(
        res, run / "graph.parquet", nodespace_path=run / "graph.nodespace", stores=[run / "store"]
    )
    return f"{len(res.table)} traces, {res.nodespace.k_} nodes"


def _run_importance(ctx: _Context, src: Path, run: Path) -> str:
    import pandas as pd

    from mechgraph.importance.cli import ImportanceConfig, run_importance, write_importance

    opts = _opts(ctx.cfg.importance)
    methods = list(opts.pop("methods", ["receivers", "suppression"]))
    icfg = ImportanceConfig.from_dict(
        {
            "model": ctx.cfg.model,
            "segmenter": ctx.cfg.segmenter,
            "device": ctx.cfg.device,
            **opts,
            "methods": methods,
        }
    )
    traces = ctx.traces()
    table = None
    mats: dict[str, Any] = {}  # kept (importance.safetensors) for the report's matrices
    for m in methods:
        t, mm = run_importance(traces, m, lm=ctx.lm, **icfg.options())
        mats.update(mm)
        table = t if table is None else table.merge(t, on=["trace_id", "step", "label", "text"])
    if table is None:
        table = pd.DataFrame(columns=["trace_id", "step"])
    write_importance(table, mats or None, run / "importance.parquet", icfg, [src])
    return f"{', '.join(methods)} on {table['trace_id'].nunique()} traces"


def _run_weights(ctx: _Context, src: Path, run: Path) -> str:
    from mechgraph.weights.cli import run_weights

    opts = _opts(ctx.cfg.weights)
    opts.setdefault("tokenizer", ctx.cfg.model)
    run_weights(src, run / "weights.parquet", **opts)
    return "weights.parquet"


def _run_phases(ctx: _Context, src: Path, run: Path) -> str:
    from mechgraph.phases import analyze_phases, write_phases

    opts = _opts(ctx.cfg.phases)
    if opts.get("topology"):
        opts.setdefault("store", str(run / "phases.store"))
    rep = analyze_phases(ctx.traces(), **opts)
    write_phases(rep, run / "phases.parquet", inputs=[src])
    return f"{len(rep.table)} checkpoints, two-phase test: {rep.two_phase['verdict']}"


def _stages() -> list[_Stage]:
    t = lambda src, run: [src]  # noqa: E731
    return [
        _Stage("extract", "store", t, _stage_config("extract"), _run_extract, "store"),
        _Stage("label", "labels.jsonl", t, _stage_config("label"), _run_label, "labels"),
        _Stage(
            "probe",
            "probe",
            lambda src, run: [run / "store", run / "labels.jsonl"],
            _stage_config("probe"),
            _run_probe,
            "probe",
        ),
        _Stage(
            "graph",
            "graph.parquet",
            lambda src, run: [run / "store"],
            _stage_config("graph"),
            _run_graph,
            "graph-table",
        ),
        _Stage(
            "importance",
            "importance.parquet",
            t,
            _stage_config("importance"),
            _run_importance,
            "importance",
        ),
        _Stage("weights", "weights.parquet", t, _stage_config("weights"), _run_weights, "weights"),
        _Stage("phases", "phases.parquet", t, _stage_config("phases"), _run_phases, "phases"),
    ]


def _has_checkpoints(src: Path) -> bool:
    from mechgraph.traces import load_traces

    return len({t.checkpoint for t in load_traces(src) if t.checkpoint is not None}) >= 2


def _why(
    stage: _Stage, cfg: RunConfig, src: Path, run: Path, changed: set[str], hashes: dict
) -> str | None:
    """Why a stage must run (None: it is up to date); ``hashes`` caches content hashes."""
    out = run / stage.output
    if not out.exists():
        return "no output yet"
    info = read_info(out)
    if info is None:
        return "no record"
    if info.config != _jsonish(stage.config(cfg)):
        return "config changed"
    ins = stage.inputs(src, run)
    if any(os.fspath(p) in changed for p in ins):
        return "an input will change"
    have = {x["path"]: x["sha256"] for x in info.inputs}
    for p in ins:
        if not p.exists():
            return f"input {p.name} changed"
        key = os.fspath(p)
        if key not in hashes:  # the store is an input of two stages: hash it once
            hashes[key] = content_hash(p)
        if have.get(key) != hashes[key]:
            return f"input {p.name} changed"
    return None


def _jsonish(d: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(d, default=str))


def _enabled(stage: _Stage, cfg: RunConfig, src: Path) -> tuple[bool, str]:
    if stage.name == "extract":
        return True, ""
    section = getattr(cfg, stage.name)
    on = section.get("enabled", "auto")
    if on is False:
        return False, "disabled"
    if stage.name == "phases" and on == "auto" and not _has_checkpoints(src):
        return False, "the traces carry fewer than two checkpoints"
    return True, ""


def plan_run(
    cfg: RunConfig, out: str | os.PathLike[str], force: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """What :func:`run_pipeline` would do: ``[(stage, "run: why" | "up to date" | "skip: why")]``."""
    run, src = Path(out), _source(cfg)
    bad = sorted(set(force) - set(STAGES))
    if bad:
        raise ConfigError(f"--force names unknown stages {bad}; stages are {', '.join(STAGES)}")
    changed: set[str] = set()
    hashes: dict[str, str] = {}
    plan = []
    for st in _stages():
        on, why_off = _enabled(st, cfg, src)
        if not on:
            plan.append((st.name, f"skip: {why_off}"))
            continue
        why = "forced" if st.name in force else _why(st, cfg, src, run, changed, hashes)
        if why is None:
            plan.append((st.name, "up to date"))
        else:
            plan.append((st.name, f"run: {why}"))
            changed.add(os.fspath(run / st.output))
    return plan


def _source(cfg: RunConfig) -> Path:
    if cfg.traces is None:
        from mechgraph.cli import sample_path

        return sample_path()
    p = Path(cfg.traces)
    if not p.exists():
        raise ConfigError(f"traces {p}: no such file or folder")
    return p


#: Packages whose versions the run record keeps (read from their metadata, not imported).
VERSIONED = ("mechgraph", "torch", "transformers", "numpy", "scikit-learn", "pandas", "plotly")


def _versions() -> dict[str, str | None]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_record(st: _Stage, cfg: RunConfig, src: Path, run: Path, seconds: float) -> None:
    """The stage's record, with its timing (``timing``: seconds, finished; not compared)."""
    from mechgraph.artifacts import info_path
    from mechgraph.io import write_json_atomic

    info = write_info(run / st.output, st.kind, st.config(cfg), st.inputs(src, run))
    timing = {"seconds": round(seconds, 3), "finished": _now()}
    write_json_atomic(info_path(run / st.output), {**info.to_dict(), "timing": timing})


#: The run folder's own record: the run config, what each stage did, the versions.
RUN_RECORD = "run.json"


def _write_run_record(cfg: RunConfig, src: Path, run: Path, done: list[tuple[str, str]]) -> None:
    from mechgraph.io import write_json_atomic

    doc = {
        "format": "mechgraph.run",
        "version": 1,
        "config": cfg.to_dict(),
        "traces": os.fspath(src),
        "stages": [{"stage": name, "status": what} for name, what in done],
        "versions": _versions(),
        "finished": _now(),
    }
    write_json_atomic(run / RUN_RECORD, doc)


def _write_report(run: Path, echo: Callable[[str], None]) -> None:
    """``RUN/report.html`` (:mod:`mechgraph.report`); skipped, with a line, without plotly."""
    try:
        from mechgraph.report import write_report

        write_report(run)
    except ImportError as e:
        echo(f"{'report':<11} skipped: {e} (pip install 'mechgraph[report]')")


def run_pipeline(
    cfg: RunConfig,
    out: str | os.PathLike[str] = "runs/default",
    *,
    force: Sequence[str] = (),
    echo: Callable[[str], None] = print,
    report: bool = True,
) -> list[tuple[str, str]]:
    """Run the stages that are not up to date; one progress line per stage.

    Each stage's record gets its timing; ``RUN/run.json`` records the run config, what
    each stage did and the package versions; with ``report``, ``RUN/report.html`` is
    written last (:func:`mechgraph.report.write_report`).

    Returns
    -------
    list of (stage, what happened)
    """
    run, src = Path(out), _source(cfg)
    run.mkdir(parents=True, exist_ok=True)
    ctx = _Context(cfg, src)
    done = []
    for (name, what), st in zip(plan_run(cfg, run, force), _stages(), strict=True):
        if not what.startswith("run"):
            echo(f"{name:<11} {what}")
            done.append((name, what))
            continue
        t0 = time.perf_counter()
        summary = st.run(ctx, src, run)
        # every stage's writer leaves its own record (its config as a dataclass dict);
        # the pipeline's, written over it, is the final word: the run config section
        # and the inputs that the make-like check above compares against
        seconds = time.perf_counter() - t0
        _write_record(st, cfg, src, run, seconds)
        line = f"ran in {seconds:.1f} s ({what[5:]}): {summary}"
        echo(f"{name:<11} {line}")
        done.append((name, line))
    _write_run_record(cfg, src, run, done)
    if report:
        _write_report(run, echo)
    return done
