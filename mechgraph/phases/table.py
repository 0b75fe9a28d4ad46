"""The phase table: one row per checkpoint, every metric with a bootstrap interval.

:func:`phase_table` reads the samples of a run (traces tagged with ``checkpoint``) and
gives, per checkpoint, the text metrics (accuracy, reward, length, tag shares, planning
share, semantic entropy raw and rarefied), HICRA's teacher-forced quantities when the
checkpoints' models are given, reasoning-graph topology read by one reader model in one
node space, and trainer-log scalars. Each value ``m`` comes with ``m_lo`` / ``m_hi``, a
percentile bootstrap interval over samples (paired over prompts when every checkpoint
holds the same prompts); the replicates are kept for the change points.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError
from mechgraph.labels.sources import parse_planning
from mechgraph.phases import stats
from mechgraph.phases.readers import add_forced, add_topology, forced_metrics, forced_plan
from mechgraph.phases.runs import checkpoint_order, checkpoint_value, load_logs
from mechgraph.phases.samples import sample_numbers, sample_table
from mechgraph.traces import Trace

__all__ = ["PhaseConfig", "PhaseResult", "bin_traces", "phase_table"]


@dataclass
class PhaseConfig:
    """Everything that determines a phase table (saved next to it).

    Parameters
    ----------
    planning : str
        Planning tokens for ``planning_share`` and the forced split: ``rules``, ``sg``,
        ``sg:hicra``, ``sg:PATH`` or ``probe:PATH``.
    grams : str
        Strategic grams of the semantic entropy: ``hicra`` (HICRA's list), ``mechgraph``
        or a path.
    tokenizer : str
        Tokenizer of ``length_tokens`` and ``planning_share`` (default model's).
    segmenter : str
        Sentence splitter of the tagger and of the graph steps.
    order : tuple of str, optional
        Checkpoint order (else numeric / natural sort of the labels).
    paired : {"auto", "yes", "no"}
        Bootstrap over prompts jointly (``auto``: when every checkpoint holds the same
        prompts).
    n_boot, level, seed : int, float, int
        Bootstrap replicates, interval level, seed.
    rarefy : int, optional
        Gram occurrences per checkpoint of the rarefied semantic entropy (default 3/4 of
        the smallest checkpoint's total).
    workers : int, optional
        Processes for the text metrics.
    models : dict
        Checkpoint -> model (HF folder or ``default``) for the teacher-forced metrics.
    forced_reader : str, optional
        One fixed model that reads every checkpoint's samples: ``reader/entropy_exec``,
        ``reader/nll_plan``, ... A proxy when the checkpoints' weights are gone (how
        predictable the samples are to a fixed reader), not HICRA's policy quantities.
    batch_tokens, device : int, str
        Forward batches of the forced metrics and of the reader.
    topology : bool
        Read the samples with ``reader`` and add ``topo/`` columns.
    reader, layer, k : str, int or None, int
        Reader model, its layer (default ``int(0.9 * n_layers)``), node count.
    match_steps : int, "paired", "auto" or None
        Step matching of the graph metrics (``auto``: ``paired`` when prompts repeat,
        else the smallest per-checkpoint median step count).
    n_null : int
        Null draws of the graph stage (z-score columns when >= 2).
    store : str, optional
        Folder of the reader's activation store (resumable); required with topology.
        Teacher-forced sums are cached beside it (``<store>.forced/``).
    logs, log_step : str, optional
        Trainer log to join (``log/`` columns) and its step key.
    bin_steps : int, optional
        Window the checkpoints: samples of steps ``(w - bin_steps, w]`` become checkpoint
        ``w`` (a multiple of ``bin_steps``), and so do the log rows of those steps. For runs
        recorded at every step (:class:`~mechgraph.weights.recorder.PhaseRecorder`), whose
        single steps hold too few samples for an interval. With it, ``log/`` columns get
        intervals too: a bootstrap over the window's logged steps.
    bin_recent : int, optional
        With ``bin_steps``: keep only the samples (and log rows) of the last ``bin_recent``
        steps of each window, e.g. those generated just before the checkpoint saved at
        ``w`` that ``models`` scores.
    """

    planning: str = "rules"
    grams: str = "hicra"
    tokenizer: str = "default"
    segmenter: str = "sentences-all"
    order: tuple[str, ...] | None = None
    paired: str = "auto"
    n_boot: int = 200
    level: float = 0.95
    seed: int = 0
    rarefy: int | None = None
    workers: int | None = None
    models: dict[str, str] = field(default_factory=dict)
    forced_reader: str | None = None
    batch_tokens: int = 8192
    device: str = "cpu"
    topology: bool = False
    reader: str = "default"
    layer: int | None = None
    k: int = 200
    match_steps: int | str | None = "auto"
    n_null: int = 0
    store: str | None = None
    logs: str | None = None
    log_step: str | None = None
    bin_steps: int | None = None
    bin_recent: int | None = None

    def __post_init__(self) -> None:
        parse_planning(self.planning)  # before any work
        if self.order is not None:
            self.order = tuple(str(o) for o in self.order)
        if self.paired not in ("auto", "yes", "no"):
            raise ConfigError(f"paired must be 'auto', 'yes' or 'no', got {self.paired!r}")
        if self.n_boot < 20:
            raise ConfigError(f"n_boot must be >= 20 for an interval, got {self.n_boot}")
        if not 0.5 < self.level < 1:
            raise ConfigError(f"level must be in (0.5, 1), got {self.level}")
        if self.rarefy is not None and self.rarefy < 1:
            raise ConfigError(f"rarefy must be >= 1, got {self.rarefy}")
        if self.k < 2:
            raise ConfigError(f"k must be >= 2, got {self.k}")
        if isinstance(self.match_steps, str) and self.match_steps not in ("auto", "paired"):
            try:
                self.match_steps = int(self.match_steps)
            except ValueError:
                raise ConfigError(
                    f"match_steps must be an int, 'paired', 'auto' or None, got {self.match_steps!r}"
                ) from None
        self.models = {str(k): str(v) for k, v in dict(self.models).items()}
        if self.bin_steps is not None and self.bin_steps < 1:
            raise ConfigError(f"bin_steps must be >= 1, got {self.bin_steps}")
        if self.bin_recent is not None:
            if self.bin_steps is None:
                raise ConfigError("bin_recent needs bin_steps")
            if not 1 <= self.bin_recent <= self.bin_steps:
                raise ConfigError(
                    f"bin_recent must be in 1..bin_steps={self.bin_steps}, got {self.bin_recent}"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["order"] = list(self.order) if self.order else None
        return d


@dataclass
class PhaseResult:
    """What :func:`phase_table` returns.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per checkpoint, in order: ``checkpoint``, ``checkpoint_value``,
        ``n_traces``, ``n_prompts``, then each metric ``m`` with ``m_lo`` / ``m_hi``;
        ``log/`` columns have no interval unless ``bin_steps`` windows them.
    replicates : dict
        Metric -> ``(n_boot, n_checkpoints)`` bootstrap replicates, from one set of draws.
    samples : pandas.DataFrame
        The per-sample quantities (one row per trace).
    config : PhaseConfig
    info : dict
        Facts of the run: ``paired``, ``rarefy_m``, ``rarefy_short``, notes.
    """

    table: pd.DataFrame
    replicates: dict[str, np.ndarray]
    samples: pd.DataFrame
    config: PhaseConfig
    info: dict[str, Any]

    @property
    def metrics(self) -> list[str]:
        """Metrics with replicates, in table order."""
        return [c for c in self.table.columns if c in self.replicates]

    @property
    def x(self) -> np.ndarray:
        return self.table["checkpoint_value"].to_numpy(dtype=float)


def _ratio_specs(frame: pd.DataFrame) -> list[tuple[str, str, str | None]]:
    """(metric, numerator column, denominator column or None for a plain mean)."""
    specs = [("accuracy", "correct", None), ("reward", "reward", None)]
    specs.append(("length_tokens", "n_tokens", None))
    specs += [(c, c, "n_steps") for c in frame.columns if c.startswith("tag/")]
    specs.append(("planning_share", "n_plan_tokens", "n_tokens"))
    return specs


def _window(step: np.ndarray, width: int) -> np.ndarray:
    """The window end ``w`` (a multiple of ``width``) of each step: ``w - width < step <= w``."""
    return np.ceil(np.asarray(step, dtype=float) / width) * width


def bin_traces(traces: Sequence[Trace], width: int, recent: int | None = None) -> list[Trace]:
    """Samples relabelled with their window's checkpoint (see ``PhaseConfig.bin_steps``).

    Examples
    --------
    >>> ts = [Trace(f"s{s}", "So 4.", checkpoint=str(s)) for s in (1, 9, 10, 11, 20)]
    >>> [t.checkpoint for t in bin_traces(ts, 10)]
    ['10', '10', '10', '20', '20']
    >>> [t.id for t in bin_traces(ts, 10, recent=2)]
    ['s9', 's10', 's20']
    """
    out = []
    for t in traces:
        if t.checkpoint is None:
            raise ConfigError(f"trace {t.id!r}: no checkpoint (tag every sample with one)")
        step = checkpoint_value(t.checkpoint)
        if not np.isfinite(step):
            raise ConfigError(f"trace {t.id!r}: checkpoint {t.checkpoint!r} is not a step number")
        w = float(_window(step, width))
        if recent is not None and step <= w - recent:
            continue
        meta = {**t.meta, "step": step}
        out.append(replace(t, checkpoint=f"{w:g}", meta=meta))
    if not out:
        raise ConfigError("bin_steps / bin_recent left no samples")
    return out


def _binned_logs(logs: pd.DataFrame, cfg: PhaseConfig, x: np.ndarray):
    """Per-window means of the log rows and bootstrap replicates over the window's steps."""
    steps = logs.index.to_numpy(dtype=float)
    w = _window(steps, cfg.bin_steps)
    keep = np.ones(len(steps), bool) if cfg.bin_recent is None else steps > w - cfg.bin_recent
    values = logs.to_numpy(dtype=float)[keep]
    w = w[keep]
    rng = np.random.default_rng([cfg.seed, 7])
    points = np.full((len(x), values.shape[1]), np.nan)
    reps = np.full((cfg.n_boot, len(x), values.shape[1]), np.nan)
    for j, xv in enumerate(x):
        rows = values[w == xv]
        if not len(rows):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            points[j] = np.nanmean(rows, axis=0)
            pick = rng.integers(0, len(rows), size=(cfg.n_boot, len(rows)))
            reps[:, j] = np.nanmean(rows[pick], axis=1)  # one draw for every column
    return points, reps


def _check_inputs(traces: Sequence[Trace], cfg: PhaseConfig):
    missing = next((t for t in traces if t.checkpoint is None), None)
    if missing is not None:
        raise ConfigError(f"trace {missing.id!r}: no checkpoint (tag every sample with one)")
    labels, x = checkpoint_order([t.checkpoint for t in traces], cfg.order)
    sample_numbers(traces)
    absent = sorted(set(cfg.models) - set(labels))
    if absent:
        raise ConfigError(
            f"--models names checkpoints absent from the traces: {absent} (have {labels[:6]}...)"
        )
    logs = None
    if cfg.logs:
        logs = load_logs(cfg.logs, cfg.log_step)
        steps = logs.index.to_numpy(dtype=float)
        hit = np.isin(x, _window(steps, cfg.bin_steps) if cfg.bin_steps else steps)
        if not hit.any():
            key = logs.attrs.get("step_key")
            raise ConfigError(
                f"--logs {cfg.logs}: no value of step key {key!r} matches a checkpoint "
                f"(checkpoints {x[0]:g}..{x[-1]:g}, log steps "
                f"{logs.index.min():g}..{logs.index.max():g}); set --log-step"
            )
    if cfg.topology and not cfg.store:
        raise ConfigError("topology needs a folder for the reader's store (store=...)")
    return labels, x, logs


def _pairing(frame: pd.DataFrame, labels: list[str], mode: str) -> tuple[np.ndarray | None, str]:
    sets = [frozenset(frame.loc[frame.checkpoint == c, "prompt_key"]) for c in labels]
    same = all(s == sets[0] for s in sets) and len(sets[0]) >= 2
    if mode == "yes" and not same:
        raise ConfigError("paired=yes but the checkpoints do not all hold the same prompts")
    if mode == "no" or not same:
        shared = len(frozenset.intersection(*sets))
        why = "off" if mode == "no" else f"{shared} of {len(frozenset.union(*sets))} prompts shared"
        return None, f"independent bootstrap within checkpoints ({why})"
    codes = pd.factorize(frame["prompt_key"])[0]
    return codes, f"paired bootstrap over {len(sets[0])} prompts repeated at every checkpoint"


def phase_table(
    traces: Sequence[Trace],
    config: PhaseConfig | None = None,
    *,
    tokenizer: Any = None,
    **options: Any,
) -> PhaseResult:
    """Per-checkpoint metrics of a run, each with a bootstrap interval.

    Parameters
    ----------
    traces : sequence of Trace
        Samples tagged with ``checkpoint`` (see :func:`mechgraph.phases.load_run`);
        ``correct`` and a numeric ``reward`` field are used when present.
    config : PhaseConfig, optional
    tokenizer : tokenizer, optional
        Instead of loading ``config.tokenizer``.
    **options
        Fields of :class:`PhaseConfig`; they override ``config``'s.

    Returns
    -------
    PhaseResult

    Raises
    ------
    ConfigError
        Fewer than two checkpoints, checkpoints that cannot be ordered, ``models`` for a
        checkpoint absent from the traces, logs that match no checkpoint, mismatched
        tokenizers: all before any expensive work.

    Examples
    --------
    >>> from mechgraph.phases import load_run  # doctest: +SKIP
    >>> res = phase_table(load_run("runs/samples"), n_boot=200)  # doctest: +SKIP
    >>> res.table[["checkpoint", "accuracy", "accuracy_lo", "accuracy_hi"]]  # doctest: +SKIP
    """
    cfg = config if config is not None else PhaseConfig(**options)
    if config is not None and options:
        cfg = PhaseConfig(**{**asdict(config), **options})
    traces = list(traces)
    if not traces:
        raise ConfigError("no samples given")
    if cfg.bin_steps:
        traces = bin_traces(traces, cfg.bin_steps, cfg.bin_recent)
    labels, x, logs = _check_inputs(traces, cfg)
    forced_models = forced_plan(cfg)  # tokenizers checked before any forward pass
    if tokenizer is None:
        from mechgraph.models import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer)
    st = sample_table(
        traces,
        tokenizer=tokenizer,
        planning=cfg.planning,
        grams=cfg.grams,
        segmenter=cfg.segmenter,
        workers=cfg.workers,
    )
    frame = st.frame
    index = {c: i for i, c in enumerate(labels)}
    ck = frame["checkpoint"].map(index).to_numpy()
    prompt_of, pairing = _pairing(frame, labels, cfg.paired)
    draws = stats.draw_weights(
        ck, len(labels), prompt_of=prompt_of, n_boot=cfg.n_boot, seed=cfg.seed
    )
    if forced_models:
        frame = add_forced(frame, st, traces, forced_models, cfg, "forced")
    if cfg.forced_reader:
        frame = add_forced(frame, st, traces, {"*": cfg.forced_reader}, cfg, "reader")
    if cfg.topology:
        frame = add_topology(frame, traces, prompt_of is not None, cfg)

    points: dict[str, np.ndarray] = {}
    reps: dict[str, np.ndarray] = {}
    for name, num, den in _ratio_specs(frame):
        d = np.ones(len(frame)) if den is None else frame[den].to_numpy(dtype=float)
        points[name], reps[name] = stats.ratio_metric(draws, frame[num].to_numpy(float), d)
    sem = stats.semantic_entropy(draws, st.grams, rarefy=cfg.rarefy, seed=cfg.seed)
    m, short = sem.pop("_m"), sem.pop("_short")
    for name, (p, r) in sem.items():
        points[name], reps[name] = p, r
    if forced_models:
        forced_metrics(frame, draws, points, reps, "forced", "")
    if cfg.forced_reader:
        forced_metrics(frame, draws, points, reps, "reader", "reader/")
    for col in [c for c in frame.columns if c.startswith("topo/")]:
        v = frame[col].to_numpy(dtype=float)
        points[col], reps[col] = stats.ratio_metric(draws, v, np.isfinite(v).astype(float))

    n_traces = np.array([len(r) for r in draws.rows])
    table = pd.DataFrame(
        {
            "checkpoint": labels,
            "checkpoint_value": x,
            "n_traces": n_traces,
            "n_prompts": [frame.loc[frame.checkpoint == c, "prompt_key"].nunique() for c in labels],
        }
    )
    few = n_traces < 2
    cols: dict[str, np.ndarray] = {}
    for name in points:
        reps[name] = _centred(points[name], reps[name])
        lo, hi = stats.percentile_ci(reps[name], cfg.level)
        lo[few], hi[few] = np.nan, np.nan  # one sample: no interval (documented)
        cols[name], cols[f"{name}_lo"], cols[f"{name}_hi"] = points[name], lo, hi
    table = pd.concat([table, pd.DataFrame(cols)], axis=1)
    if logs is not None and cfg.bin_steps:
        lp, lr = _binned_logs(logs, cfg, x)
        lcols: dict[str, np.ndarray] = {}
        for i, c in enumerate(logs.columns):
            reps[c] = lr[:, :, i]
            lo, hi = stats.percentile_ci(reps[c], cfg.level)
            lcols[c], lcols[f"{c}_lo"], lcols[f"{c}_hi"] = lp[:, i], lo, hi
        table = pd.concat([table, pd.DataFrame(lcols)], axis=1)
    elif logs is not None:
        joined = logs.reindex(x)
        for c in logs.columns:
            table[c] = joined[c].to_numpy()
    notes = [pairing]
    if few.any():
        notes.append(f"checkpoints with one sample have no interval: {list(table.checkpoint[few])}")
    info = {
        "paired": prompt_of is not None,
        "pairing": pairing,
        "rarefy_m": m,
        "rarefy_short": short,
        "n_samples": len(frame),
        "n_grams": len(st.vocabulary),
        "notes": notes,
    }
    return PhaseResult(table=table, replicates=reps, samples=frame, config=cfg, info=info)


def _centred(point: np.ndarray, reps: np.ndarray) -> np.ndarray:
    """Replicates shifted so that their median is the point value, per checkpoint.

    Resampling with replacement repeats samples, which lowers diversity measures (semantic
    entropy, distinct grams) in every replicate; centring removes that bias from the
    intervals and the change-point refits (for means and shares the shift is ~0).
    """
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        shift = np.nanmedian(reps, axis=0) - point
    return reps - np.where(np.isfinite(shift), shift, 0.0)
