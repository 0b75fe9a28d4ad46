"""Change points of a metric across RL checkpoints, with bootstrap intervals.

A *series* is one metric measured at ``n`` ordered checkpoints at positions ``x``
(training steps; numeric, strictly increasing, possibly uneven; ``arange(n)`` by default).

Definitions
-----------
- **Change.** A change at index ``i`` means the new regime starts at checkpoint ``i``: the
  segments are ``y[:i]`` and ``y[i:]`` (ruptures' breakpoint convention). Its position is
  ``x[i]``. With ``model="mean"`` each segment has its own level; with ``model="linear"``
  each segment has its own line in ``x`` (segmented regression on ``x``, not on the index;
  segments are not forced to join). A knee lying exactly on a checkpoint puts that point
  on both lines, so it may be reported there or at the next checkpoint.
- **Noise.** ``sigma`` per checkpoint is ``se``, else ``replicates.std(axis=0, ddof=1)``;
  its square is averaged over ``se_window`` neighbouring checkpoints (default 5; 1: off):
  variances from ~100 samples per checkpoint are noisy (+-30% for a skewed quantity) and
  the search picks the checkpoints where they are too small; unsmoothed, the benchmark's
  null runs gave 8-20% false positives instead of 5%. Without either, one robust value
  comes from the data: 1.4826 MAD of the first differences / sqrt(2) (``"mean"``) or of
  Gasser's pseudo-residuals, which cancel any line even on uneven ``x`` (``"linear"``).
  Sigmas are floored at 0.1 x their median (and 1e-9 max|y|), so checkpoints with a zero
  standard error (all samples equal) cannot make a near-constant series significant.
- **Cost.** A segment's cost is its weighted residual sum of squares, weights
  ``1 / sigma**2``, i.e. a chi-square in noise units. It is computed exactly in O(1) per
  segment from cumulative sums (:class:`WeightedCost`, a ruptures cost).
- **Number of changes.** The exact optimum for each ``k = 0..max_changes`` is found by
  dynamic programming; ``k`` minimises ``cost_k + penalty * k * p`` with ``p`` parameters
  per change (1 for ``"mean"``, 2 for ``"linear"``: intercept and slope).
- **Default penalty** (``penalty=None``): ``a + b * log(log(n))`` per parameter (the
  Darling-Erdos growth of a maximum over change locations), calibrated in
  ``benchmarks/phases_detector.py``: it is the fitted 95% quantile, over Gaussian
  pure-noise series with known ``se`` (a constant; for ``"linear"`` any line gives the same
  costs), of ``max_k (cost_0 - cost_k) / (k p)``, so that such series select >= 1 change
  about 5% of the time for ``n`` in 10..200 with ``max_changes=3, min_size=3``.
  ``"mean"``: a = 1.91, b = 4.95 (7.3 at n = 19, 10.2 at n = 200); ``"linear"``:
  a = 1.73, b = 3.05 (5.0 and 6.8 per parameter, twice that per change). A larger
  ``min_size`` gives fewer false positives, a larger ``max_changes`` slightly more. When
  sigma comes from the data alone (no ``se``, no replicates) its own noise is allowed for
  by a factor ``1 + c / n`` (c = 14.8 for ``"mean"``, 18.4 for ``"linear"``, fitted the
  same way), without which that false-positive rate was 7-23%.
- **Intervals.** Each bootstrap replicate (a resample of the samples *within* each
  checkpoint) is refitted with the same ``k`` and weights; its changes, sorted, are
  matched to the point fit's by rank; ``lo``/``hi`` are the ``(1 -+ level)/2``
  percentiles of their positions (lower/higher checkpoint). ``support`` of the j-th change
  is the share of replicates whose own penalised selection finds >= j changes;
  ``replicate_first`` is each replicate's first selected change (NaN: none), for
  precedence tests between metrics bootstrapped with the SAME draws. By default
  (``recentre=True``) replicate ``b`` is first recentred on the point fit,
  ``fit + (replicates[b] - y)``, which keeps each draw's perturbation (and its correlation
  across metrics): ``y`` already holds one draw of noise, so raw replicates carry it twice
  and, on pure noise, 40-70% of them select a change (benchmark), against ~10% recentred.

Speed: ruptures' ``Dynp`` (pure-Python recursion) with this cost takes ~0.14 s per series
of 200 checkpoints (k <= 3): ~14 min for 200 replicates x 30 metrics. The same exact
recursion runs here in numpy, batched over replicates, on the matrix of segment costs
(O(k n^2) time, O(n^2) memory per series): ~0.15 s for 200 checkpoints x 200 replicates.
Tests check it against ``ruptures.Dynp(custom_cost=WeightedCost(...), jump=1)``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = np.r_[np.zeros(10), np.ones(10)] + rng.normal(0, 0.1, 20)
>>> res = change_points(y, se=np.full(20, 0.1), config=ChangeConfig(model="mean"))
>>> res.n_changes, res.changes[0]["index"]
(1, 10)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from ruptures.base import BaseCost
from ruptures.exceptions import NotEnoughPoints

from mechgraph.errors import ConfigError
from mechgraph.io import jsonable

__all__ = ["ChangeConfig", "ChangeResult", "WeightedCost", "change_points", "default_penalty"]

_PARAMS = {"mean": 1, "linear": 2}
_PENALTY = {"mean": (1.91, 4.95), "linear": (1.73, 3.05)}  # a + b log(log(n)), per parameter
_DATA_FACTOR = {"mean": 14.8, "linear": 18.4}  # penalty x (1 + c / n) when sigma is from data
_SIGMA_FLOOR = 0.1  # sigmas are floored at this share of their median
_EPS = 1e-9  # ... and at this share of max|y|
_CHUNK = 1_000_000  # elements of one (rows, n+1, n+1) block of segment costs


def default_penalty(n: int, model: str = "linear") -> float:
    """Calibrated penalty per parameter (noise-variance units) for ``n`` checkpoints.

    Examples
    --------
    >>> round(default_penalty(50, "mean"), 2)
    8.66
    """
    if model not in _PENALTY:
        raise ConfigError(f"model must be one of {sorted(_PENALTY)}, got {model!r}")
    a, b = _PENALTY[model]
    return a + b * math.log(math.log(max(int(n), 3)))


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


@dataclass
class ChangeConfig:
    """Options of :func:`change_points` (see the module docstring for the definitions).

    ``model``: ``"linear"`` (a line in x per segment) or ``"mean"`` (a level per segment).
    ``max_changes``: the selection tries 0..max_changes. ``n_changes``: force this many
    (no selection). ``penalty``: per parameter, in noise-variance units (None: calibrated
    :func:`default_penalty`). ``min_size``: fewest checkpoints per segment. ``level``: of
    the intervals. ``recentre``: recentre replicates on the point fit. ``se_window``: odd
    number of checkpoints over which variances are averaged (1: off).

    Examples
    --------
    >>> ChangeConfig(model="mean", n_changes=1).to_dict()["n_changes"]
    1
    >>> ChangeConfig(level=1.5)
    Traceback (most recent call last):
    ...
    mechgraph.errors.ConfigError: level must be in (0, 1), got 1.5
    """

    model: str = "linear"
    max_changes: int = 3
    n_changes: int | None = None
    penalty: float | None = None
    min_size: int = 3
    level: float = 0.95
    recentre: bool = True
    se_window: int = 5

    def __post_init__(self) -> None:
        least = 2 if self.model == "linear" else 1
        pen = self.penalty
        checks = [
            (self.model in _PARAMS, "model", f"one of {sorted(_PARAMS)}"),
            (_is_int(self.max_changes) and self.max_changes >= 0, "max_changes", "an int >= 0"),
            (self.n_changes is None or (_is_int(self.n_changes) and self.n_changes >= 0),
             "n_changes", "None or an int >= 0"),
            (pen is None or (isinstance(pen, int | float) and math.isfinite(pen) and pen >= 0),
             "penalty", "None or a finite number >= 0"),
            (_is_int(self.min_size) and self.min_size >= least, "min_size",
             f"an int >= {least} for model {self.model!r}"),
            (isinstance(self.level, int | float) and 0 < self.level < 1, "level", "in (0, 1)"),
            (_is_int(self.se_window) and self.se_window >= 1 and self.se_window % 2 == 1,
             "se_window", "an odd int >= 1"),
        ]  # fmt: skip
        for ok, name, want in checks:
            if not ok:
                raise ConfigError(f"{name} must be {want}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """The options as a plain dict."""
        return asdict(self)


@dataclass
class ChangeResult:
    """Output of :func:`change_points`.

    ``changes`` holds one dict per change, in order: ``index``, ``x``, ``lo``, ``hi``,
    ``support`` (NaN without replicates). ``criterion[k]`` is ``cost_k + penalty * k * p``
    for each ``k`` tried. ``replicate_x`` is (B, n_changes); ``replicate_first`` is (B,).
    ``penalty`` is the penalty per parameter used; ``noise`` says where sigma came from
    (``"se"``, ``"replicates"`` or ``"data"``).
    """

    x: np.ndarray
    n_changes: int
    changes: list[dict]
    criterion: dict[int, float]
    replicate_x: np.ndarray | None = None
    replicate_first: np.ndarray | None = None
    note: str = ""
    penalty: float = float("nan")
    noise: str = ""
    config: ChangeConfig = field(default_factory=ChangeConfig)

    def to_dict(self) -> dict:
        """JSON-ready dict (arrays as lists, NaN as None).

        Examples
        --------
        >>> import json
        >>> r = change_points([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
        >>> r.note, json.dumps(r.to_dict()["changes"])
        ('constant series', '[]')
        """
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in out.items()}
        out["config"] = self.config.to_dict()
        return jsonable(out)


# --------------------------------------------------------------------------- costs


def _cumsum0(v: np.ndarray) -> np.ndarray:
    """Cumulative sums along the last axis with a leading 0: ``out[..., e] = v[..., :e].sum()``."""
    out = np.zeros((*v.shape[:-1], v.shape[-1] + 1))
    np.cumsum(v, axis=-1, out=out[..., 1:])
    return out


def _standardise(Y: np.ndarray, x: np.ndarray, w: np.ndarray, linear: bool):
    """Remove each row's global weighted fit and standardise x; segment costs are unchanged."""
    xs = (x - x.mean()) / (x.std() or 1.0)
    sw = w.sum()
    xm = (w * xs).sum() / sw
    xc = xs - xm
    Yc = Y - ((Y * w).sum(axis=-1, keepdims=True) / sw)
    if linear:
        slope = (Yc * (w * xc)).sum(axis=-1, keepdims=True) / (w * xc * xc).sum()
        Yc = Yc - slope * xc
    return Yc, xc


class WeightedCost(BaseCost):
    """ruptures cost: weighted least squares of a level or a line in ``x`` per segment.

    ``error(start, end)`` is O(1) (cumulative sums). ``x`` defaults to the index and
    ``w`` (weights, ``1 / sigma**2``) to ones.

    Examples
    --------
    >>> import ruptures as rpt
    >>> y = np.r_[np.zeros(6), np.arange(6.0) + 3]
    >>> rpt.Dynp(custom_cost=WeightedCost(kind="linear"), min_size=3, jump=1).fit(y).predict(1)
    [6, 12]
    """

    model = "weighted"

    def __init__(self, x=None, w=None, kind: str = "linear", min_size: int = 3):
        if kind not in _PARAMS:
            raise ConfigError(f"kind must be one of {sorted(_PARAMS)}, got {kind!r}")
        self.x, self.w, self.kind = x, w, kind
        self.min_size = max(int(min_size), 2 if kind == "linear" else 1)
        self.signal = None

    def fit(self, signal) -> WeightedCost:
        """Precompute the cumulative sums of ``signal`` (1-D)."""
        y = np.asarray(signal, dtype=float).reshape(-1)
        x = np.arange(y.size, dtype=float) if self.x is None else np.asarray(self.x, float)
        w = np.ones(y.size) if self.w is None else np.asarray(self.w, dtype=float)
        yc, xc = _standardise(y, x, w, self.kind == "linear")
        self.signal = y.reshape(-1, 1)
        self._sums = [
            _cumsum0(v) for v in (w, w * xc, w * xc * xc, w * yc, w * xc * yc, w * yc * yc)
        ]
        return self

    def error(self, start: int, end: int) -> float:
        """Weighted RSS of ``signal[start:end]``."""
        if end - start < self.min_size:
            raise NotEnoughPoints
        W, Sx, Sxx, Sy, Sxy, Syy = (c[end] - c[start] for c in self._sums)
        cost = Syy - Sy * Sy / W
        if self.kind == "linear":
            cost -= (Sxy - Sx * Sy / W) ** 2 / (Sxx - Sx * Sx / W)
        return max(float(cost), 0.0)


def _cost_matrix(Y: np.ndarray, x: np.ndarray, w: np.ndarray, linear: bool, min_size: int):
    """Segment costs ``C[r, s, e]`` of ``Y[r, s:e]`` (inf where ``e - s < min_size``)."""
    n = Y.shape[1]
    Yc, xc = _standardise(Y, x, w, linear)
    idx = np.arange(n + 1)
    ok = (idx[None, :] - idx[:, None]) >= min_size

    def seg(v):
        c = _cumsum0(v)
        return c[..., None, :] - c[..., :, None]

    iW = 1.0 / np.where(ok, seg(w), 1.0)
    Sy = seg(w * Yc)
    C = Sy * Sy  # in place from here: Syy - Sy^2 / W [- (Sxy - Sx Sy / W)^2 / Cxx]
    C *= iW
    np.subtract(seg(w * Yc * Yc), C, out=C)
    if linear:
        Sx = seg(w * xc)
        cxx = np.where(ok, seg(w * xc * xc) - Sx * Sx * iW, 1.0)
        Sy *= Sx
        Sy *= iW
        np.subtract(seg(w * xc * Yc), Sy, out=Sy)
        Sy *= Sy
        Sy /= cxx
        C -= Sy
    np.maximum(C, 0.0, out=C)
    C[:, ~ok] = np.inf
    return C


def _fitted(y, x, w, idx: list[int], linear: bool) -> np.ndarray:
    """Weighted least-squares fit of each segment of ``y`` cut at ``idx``."""
    out = np.empty_like(y)
    for s, e in zip([0, *idx], [*idx, y.size], strict=True):
        xs = x[s:e] - x[s:e].mean()
        A = np.c_[np.ones(e - s), xs] if linear else np.ones((e - s, 1))
        sw = np.sqrt(w[s:e])
        beta = np.linalg.lstsq(A * sw[:, None], y[s:e] * sw, rcond=None)[0]
        out[s:e] = A @ beta
    return out


def _fit_rows(Y, x, w, linear: bool, min_size: int, kmax: int):
    """Exact optimal segmentations of each row of ``Y`` for k = 0..kmax.

    Returns the costs (rows, kmax + 1) and, for each k, the change indices (rows, k).
    """
    rows, n = Y.shape
    costs = np.empty((rows, kmax + 1))
    bkps = [np.empty((rows, k), dtype=int) for k in range(kmax + 1)]
    step = max(1, _CHUNK // (n + 1) ** 2)
    for a in range(0, rows, step):
        C = _cost_matrix(Y[a : a + step], x, w, linear, min_size)
        F = C[:, 0, :]  # best cost of [0, e) with j changes
        back = []
        costs[a : a + step, 0] = F[:, n]
        for j in range(1, kmax + 1):
            tot = F[:, :, None] + C
            arg = np.argmin(tot, axis=1)
            F = np.take_along_axis(tot, arg[:, None, :], axis=1)[:, 0, :]
            back.append(arg)
            costs[a : a + step, j] = F[:, n]
        r = np.arange(C.shape[0])
        for k in range(1, kmax + 1):
            e = np.full(C.shape[0], n)
            for j in range(k, 0, -1):
                e = back[j - 1][r, e]
                bkps[k][a : a + step, j - 1] = e
    return costs, bkps


# --------------------------------------------------------------------------- noise


def _data_sigma(y: np.ndarray, x: np.ndarray, linear: bool) -> float:
    """Robust noise scale from the data: MAD of differences (mean) or pseudo-residuals."""
    if linear and y.size >= 3:
        a = (x[2:] - x[1:-1]) / (x[2:] - x[:-2])
        r = (a * y[:-2] + (1 - a) * y[2:] - y[1:-1]) / np.sqrt(a * a + (1 - a) ** 2 + 1)
    else:
        r = np.diff(y) / math.sqrt(2)
    if r.size == 0:
        return 0.0
    mad = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    return mad if mad > 0 else float(np.std(r))


def _running_mean(v: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean, edges padded with the end values."""
    if window <= 1 or v.size < 2:
        return v
    h = window // 2
    return np.convolve(np.pad(v, h, mode="edge"), np.full(window, 1.0 / window), mode="valid")


def _noise(y, x, se, reps, linear: bool, window: int) -> tuple[np.ndarray, str]:
    if se is not None:
        sigma, src = se, "se"
    elif reps is not None:
        sigma, src = reps.std(axis=0, ddof=1), "replicates"
    else:
        sigma, src = np.full(y.size, _data_sigma(y, x, linear)), "data"
    sigma = np.sqrt(_running_mean(sigma**2, window))
    pos = sigma[sigma > 0]
    ref = float(np.median(sigma)) or (float(np.median(pos)) if pos.size else 0.0)
    ref = ref or _data_sigma(y, x, linear)
    floor = max(_SIGMA_FLOOR * ref, _EPS * (float(np.max(np.abs(y))) or 1.0))
    return np.maximum(sigma, floor), src


# --------------------------------------------------------------------------- API


def _vector(v, n: int | None, name: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be numeric") from None
    if a.ndim != 1 or (n is not None and a.size != n):
        want = f"({n},)" if n is not None else "1-D"
        raise ConfigError(f"{name} must have shape {want}, got {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ConfigError(f"{name} has NaN/inf at positions {bad[:20].tolist()}")
    return a


def change_points(y, x=None, *, replicates=None, se=None, config=None) -> ChangeResult:
    """Detect regime changes in a metric across checkpoints, with bootstrap intervals.

    Parameters
    ----------
    y : array_like, shape (n,)
        The metric at each checkpoint (finite).
    x : array_like, shape (n,), optional
        Checkpoint positions, strictly increasing (default ``arange(n)``).
    replicates : array_like, shape (B, n), optional
        Bootstrap replicates of the whole series; rows with NaN count as unfittable.
    se : array_like, shape (n,), optional
        Standard errors per checkpoint (default: from ``replicates``, else the data).
    config : ChangeConfig, optional

    Returns
    -------
    ChangeResult

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = np.array([8, 16, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320.0])
    >>> y = np.minimum(x, 112) / 112 + rng.normal(0, 0.01, 12)
    >>> reps = y + rng.normal(0, 0.01, (50, 12))
    >>> r = change_points(y, x, replicates=reps)
    >>> r.n_changes, r.changes[0]["x"], r.changes[0]["support"]
    (1, 128.0, 1.0)
    """
    cfg = ChangeConfig() if config is None else config
    if not isinstance(cfg, ChangeConfig):
        raise ConfigError(f"config must be a ChangeConfig, got {type(cfg).__name__}")
    y = _vector(y, None, "y")
    n = y.size
    x = np.arange(n, dtype=float) if x is None else _vector(x, n, "x")
    if n > 1 and np.any(np.diff(x) <= 0):
        raise ConfigError("x must be strictly increasing")
    if se is not None:
        se = _vector(se, n, "se")
        if np.any(se < 0):
            raise ConfigError("se must be >= 0")
    reps = valid = None
    if replicates is not None:
        reps = np.asarray(replicates, dtype=float)
        if reps.ndim != 2 or reps.shape[1] != n or reps.shape[0] < 1:
            raise ConfigError(f"replicates must have shape (B, {n}), got {reps.shape}")
        valid = np.isfinite(reps).all(axis=1)
        if se is None and valid.sum() < 2:
            raise ConfigError("replicates need at least 2 finite rows to give standard errors")
    linear, p = cfg.model == "linear", _PARAMS[cfg.model]
    pen = default_penalty(n, cfg.model) if cfg.penalty is None else float(cfg.penalty)
    feasible = max(n // cfg.min_size - 1, 0)
    if cfg.n_changes is not None and cfg.n_changes > feasible:
        raise ConfigError(
            f"cannot place {cfg.n_changes} changes in {n} checkpoints with min_size={cfg.min_size}"
        )
    constant = n > 0 and np.ptp(y) == 0
    if constant and cfg.n_changes:
        raise ConfigError(f"constant series: cannot place {cfg.n_changes} changes")
    kmax = min(max(cfg.max_changes, cfg.n_changes or 0), feasible)
    note = ""
    if feasible == 0:
        note = f"too few checkpoints ({n}) for a change with min_size={cfg.min_size}"
    elif constant:
        note = "constant series"
    B = 0 if reps is None else reps.shape[0]
    nan_first = None if reps is None else np.full(B, np.nan)
    if n < max(2, cfg.min_size):
        return ChangeResult(x, 0, [], {0: 0.0}, None if reps is None else np.empty((B, 0)),
                            nan_first, note, pen, "", cfg)  # fmt: skip
    rows = reps[valid] if reps is not None else None
    sigma, src = _noise(y, x, se, rows, linear, cfg.se_window)
    if src == "data" and cfg.penalty is None:
        pen *= 1 + _DATA_FACTOR[cfg.model] / n
    w = 1.0 / sigma**2
    crit_pen = pen * p * np.arange(kmax + 1)
    costs, bkps = _fit_rows(y[None], x, w, linear, cfg.min_size, kmax)
    crit = costs[0] + crit_pen
    k = 0 if note else (cfg.n_changes if cfg.n_changes is not None else int(np.argmin(crit)))
    idx = bkps[k][0].tolist()
    changes = [
        {"index": i, "x": float(x[i]), "lo": math.nan, "hi": math.nan, "support": math.nan}
        for i in idx
    ]
    rep_x = rep_first = None
    if reps is not None:
        rep_x, rep_first = np.full((B, k), np.nan), nan_first
        if valid.any() and kmax > 0:
            if cfg.recentre:
                rows = rows - y + _fitted(y, x, w, idx, linear)
            rc, rb = _fit_rows(rows, x, w, linear, cfg.min_size, kmax)
            ksel = np.argmin(rc + crit_pen, axis=1)
            rep_x[valid] = x[rb[k]]
            first = np.full(int(valid.sum()), np.nan)
            for j in range(1, kmax + 1):
                first[ksel == j] = x[rb[j][ksel == j, 0]]
            rep_first[valid] = first
            q = ((1 - cfg.level) / 2 * 100, (1 + cfg.level) / 2 * 100)
            for j, ch in enumerate(changes):
                ch["lo"] = float(np.percentile(rep_x[valid, j], q[0], method="lower"))
                ch["hi"] = float(np.percentile(rep_x[valid, j], q[1], method="higher"))
                ch["support"] = float(np.mean(ksel >= j + 1))
    criterion = {j: float(c) for j, c in enumerate(crit)}
    return ChangeResult(x, k, changes, criterion, rep_x, rep_first, note, pen, src, cfg)
