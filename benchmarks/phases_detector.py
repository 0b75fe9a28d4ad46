"""Calibration and evidence for :mod:`mechgraph.phases.changepoints`.

Synthetic runs made like real ones: ``n`` checkpoints, ``m`` samples per checkpoint of a
skewed per-sample quantity (``mu + sd * (Exp(1) - 1)``, SE = sd / sqrt(m)); the metric is
the per-checkpoint mean and the ``B`` replicates resample the samples within each
checkpoint. Effect sizes are in units of that SE.

1. ``calibration``: the default penalty. For each ``n``, the 95% quantile over Gaussian
   pure-noise series (known sigma = 1) of ``max_k (cost_0 - cost_k) / (k p)`` is the
   penalty giving a 5% false-positive rate; ``a + b log(log(n))`` is fitted to it and
   compared with the module's constants, whose rate is then checked on fresh series. The
   same with sigma estimated from the data alone fits the factor ``1 + c / n`` applied
   then, checked with :func:`change_points` on 500 fresh series per n.
2. ``null``: no change (a constant; a linear trend for the linear model), the full
   pipeline with bootstrap replicates: false-positive rate with a 95% binomial CI, and the
   share of replicates that select a change (what ``support`` / ``replicate_first`` see),
   recentred (default) and raw (n = 19).
3. ``planted``: one step (mean model) or one knee (linear model, uneven x) at 40% of the
   run: detection rate, hit rate (a change within one checkpoint of the truth) and coverage
   of the 95% interval (runs whose interval holds the true x, among runs with a change),
   for replicates recentred on the fit (default) and, at n = 19, raw.
4. ``order``: metrics A (change at 30%) and B (70%) from the same samples (correlation
   0.5) and the same bootstrap draws: how often P(A first) >= 0.95 is claimed, and how
   often P(B first) >= 0.95 (the wrong order). NaN (no change) counts as never.
5. ``timing``: 30 metrics x 200 checkpoints x 200 replicates, default config.

    python benchmarks/phases_detector.py            # ~5 min on 2 CPU cores
    python benchmarks/phases_detector.py --quick    # fewer runs, ~1 min
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mechgraph.io import write_json_atomic  # noqa: E402
from mechgraph.phases import changepoints as cp  # noqa: E402

M, B, SD = 100, 200, 1.0
DATA_SIMS = 500
EFFECTS = {"step": (1.0, 2.0, 4.0, 8.0), "knee": (2.0, 4.0, 8.0, 16.0)}
SE = SD / np.sqrt(M)


def rate(k: int, n: int) -> dict:
    """Share with its 95% Clopper-Pearson interval."""
    if n == 0:
        return {"rate": None, "lo": None, "hi": None, "k": 0, "n": 0}
    ci = binomtest(k, n).proportion_ci(0.95)
    return {"rate": k / n, "lo": ci.low, "hi": ci.high, "k": k, "n": n}


def fmt(r: dict) -> str:
    if r["rate"] is None:
        return "     -          "
    return f"{r['rate']:5.3f} [{r['lo']:.2f},{r['hi']:.2f}]"


def simulate(mus: np.ndarray, rng: np.random.Generator, rho: float = 0.5):
    """Metrics ``mus`` (q, n) measured on the same m samples per checkpoint, bootstrapped.

    Returns the point series (q, n) and the replicates (q, B, n), same draws for all q.
    """
    q, n = mus.shape
    common = rng.exponential(1.0, (n, M)) - 1
    own = rng.exponential(1.0, (q, n, M)) - 1
    noise = np.sqrt(rho) * common + np.sqrt(1 - rho) * own
    samples = mus[:, :, None] + SD * noise
    counts = rng.multinomial(M, np.full(M, 1 / M), size=(n, B)).astype(float)  # (n, B, m)
    reps = np.matmul(counts, samples.transpose(1, 2, 0)) / M  # (n, B, q): shared draws
    return samples.mean(axis=2), reps.transpose(2, 1, 0)


def calibration(rng, sims: int) -> dict:
    grid = [10, 12, 15, 19, 25, 35, 50, 75, 100, 140, 200]
    out = {}
    for model, p in cp._PARAMS.items():
        q95, q95_data, fpr, fpr_data = {}, {}, {}, {}
        cfg = cp.ChangeConfig(model=model)
        for n in grid:
            x = np.arange(n, dtype=float)
            kmax = min(3, n // 3 - 1)
            for label in ("fit", "check"):
                Y = rng.normal(0, 1, (sims, n))
                if model == "linear":
                    Y += rng.normal(0, 1, (sims, 1)) * (x - x.mean()) / n  # any line: same costs
                c, _ = cp._fit_rows(Y, x, np.ones(n), model == "linear", 3, kmax)
                T = ((c[:, :1] - c[:, 1:]) / (p * np.arange(1, kmax + 1))).max(axis=1)
                if label == "fit":
                    q95[n] = float(np.quantile(T, 0.95))
                    s2 = np.array([cp._data_sigma(y, x, model == "linear") for y in Y]) ** 2
                    q95_data[n] = float(np.quantile(T / s2, 0.95))  # sigma from the data
                else:
                    fpr[n] = rate(int((T > cp.default_penalty(n, model)).sum()), sims)
            if n in (10, 19, 50, 200):  # the public function, sigma from the data alone
                hits = sum(cp.change_points(y, x, config=cfg).n_changes > 0 for y in Y[:DATA_SIMS])
                fpr_data[n] = rate(int(hits), min(DATA_SIMS, sims))
        A = np.c_[np.ones(len(grid)), np.log(np.log(grid))]
        a, b = np.linalg.lstsq(A, np.array(list(q95.values())), rcond=None)[0]
        inv = 1 / np.array(grid, dtype=float)
        ratio = np.array([q95_data[n] / cp.default_penalty(n, model) for n in grid])
        c_data = float(np.sum(inv * (ratio - 1)) / np.sum(inv * inv))  # ratio = 1 + c / n
        out[model] = {
            "q95": q95,
            "fitted_a_b": [float(a), float(b)],
            "module_a_b": list(cp._PENALTY[model]),
            "fpr_known_se": fpr,
            "q95_sigma_from_data": q95_data,
            "fitted_data_factor_c": c_data,
            "module_data_factor_c": cp._DATA_FACTOR[model],
            "fpr_sigma_from_data": fpr_data,
        }
        print(f"calibration {model}: fitted a={a:.2f} b={b:.2f}, module {cp._PENALTY[model]};"
              f" data factor c={c_data:.1f}, module {cp._DATA_FACTOR[model]}")  # fmt: skip
        for label, d in (("known se", fpr), ("sigma from data", fpr_data)):
            print(f"  FPR {label}: " + "  ".join(f"n={n}: {fmt(d[n])}" for n in (10, 19, 50, 200)))
    return out


def positions(n: int, uneven: bool) -> np.ndarray:
    i = np.arange(n, dtype=float)
    return 10 * (i + i * i / n) + 10 if uneven else 50 * (i + 1)


def null(rng, runs: dict, raw_upto: int) -> list:
    rows = []
    for n, R in runs.items():
        for name, model in (("constant", "mean"), ("constant", "linear"), ("trend", "linear")):
            x = positions(n, model == "linear")
            mu = 10 * SE * (x - x[0]) / (x[-1] - x[0]) if name == "trend" else np.zeros(n)
            cfg = cp.ChangeConfig(model=model)
            raw = cp.ChangeConfig(model=model, recentre=False)
            fp, rep_sel, raw_sel = 0, [], []
            for _ in range(R):
                y, reps = simulate(mu[None], rng)
                res = cp.change_points(y[0], x, replicates=reps[0], config=cfg)
                fp += res.n_changes > 0
                rep_sel.append(float(np.mean(~np.isnan(res.replicate_first))))
                if n <= raw_upto:
                    res = cp.change_points(y[0], x, replicates=reps[0], config=raw)
                    raw_sel.append(float(np.mean(~np.isnan(res.replicate_first))))
            row = {"n": n, "series": name, "model": model, "fpr": rate(fp, R),
                   "replicate_select_rate": float(np.mean(rep_sel)),
                   "raw_replicate_select_rate": float(np.mean(raw_sel)) if raw_sel else None}  # fmt: skip
            rows.append(row)
            rawtxt = "-" if not raw_sel else f"{np.mean(raw_sel):.3f}"
            print(f"null n={n:3d} {name:8s} {model:6s} FPR {fmt(row['fpr'])}  replicates "
                  f"selecting a change: recentred {row['replicate_select_rate']:.3f} raw {rawtxt}",
                  flush=True)  # fmt: skip
    return rows


def planted_mu(kind: str, n: int, at: float, effect: float):
    """Mean curve with one change at index round(at * n); effect in SE units.

    step: a jump of ``effect`` SE. knee (uneven x): falls, then flat from between
    checkpoints k-1 and k; scaled so that its largest distance from its own best straight
    line is ``effect`` SE (what a linear fit without a change leaves unexplained).
    """
    x = positions(n, kind == "knee")
    k = round(at * n)
    if kind == "step":
        return x, k, np.where(np.arange(n) >= k, effect * SE, 0.0)
    knee = (x[k - 1] + x[k]) / 2  # between checkpoints: the new regime starts at k
    mu = -np.minimum(x, knee)
    A = np.c_[np.ones(n), x]
    dev = np.abs(mu - A @ np.linalg.lstsq(A, mu, rcond=None)[0]).max()
    return x, k, mu * effect * SE / dev


def planted(rng, runs: dict, effects, raw_upto: int) -> list:
    rows = []
    for n, R in runs.items():
        for kind in ("step", "knee"):
            model = "mean" if kind == "step" else "linear"
            for eff in effects[kind]:
                x, k, mu = planted_mu(kind, n, 0.4, eff)
                variants = ["recentred", "raw"] if n <= raw_upto else ["recentred"]
                acc = {v: {"det": 0, "hit": 0, "near": 0, "cov": 0, "ncov": 0, "width": []}
                       for v in variants}  # fmt: skip
                for _ in range(R):
                    y, reps = simulate(mu[None], rng)
                    for v in variants:
                        cfg = cp.ChangeConfig(model=model, recentre=v == "recentred")
                        res = cp.change_points(y[0], x, replicates=reps[0], config=cfg)
                        a = acc[v]
                        if not res.changes:
                            continue
                        a["det"] += 1
                        ch = min(res.changes, key=lambda c: abs(c["index"] - k))
                        a["hit"] += abs(ch["index"] - k) <= 1
                        a["near"] += abs(ch["index"] - k) <= max(1, n // 10)
                        a["ncov"] += 1
                        a["cov"] += ch["lo"] <= x[k] <= ch["hi"]
                        a["width"].append(int(np.sum((x >= ch["lo"]) & (x <= ch["hi"]))))
                for v, a in acc.items():
                    row = {"n": n, "kind": kind, "model": model, "effect_se": eff, "bootstrap": v,
                           "detection": rate(a["det"], R), "hit": rate(a["hit"], R),
                           "near_10pct": rate(a["near"], R),
                           "coverage": rate(a["cov"], a["ncov"]),
                           "median_width_checkpoints": float(np.median(a["width"])) if a["width"] else None}  # fmt: skip
                    rows.append(row)
                    print(f"planted n={n:3d} {kind} {eff:4.1f} SE {v:9s} detect {fmt(row['detection'])}"
                          f" hit {fmt(row['hit'])} near {fmt(row['near_10pct'])} coverage {fmt(row['coverage'])}"
                          f" width {row['median_width_checkpoints']}", flush=True)  # fmt: skip
    return rows


def p_first(fa: np.ndarray, fb: np.ndarray, both: bool = False) -> float:
    """P(A's first change is before B's) over replicates; NaN (no change) is never.

    ``both``: only over replicates where both metrics change (NaN if there are none).
    """
    if both:
        ok = ~np.isnan(fa) & ~np.isnan(fb)
        return float(np.mean(fa[ok] < fb[ok])) if ok.any() else float("nan")
    a, b = np.nan_to_num(fa, nan=np.inf), np.nan_to_num(fb, nan=np.inf)
    return float(np.mean(a < b))


def order(rng, runs: dict, effects) -> list:
    rows = []
    for n, R in runs.items():
        for kind in ("step", "knee"):
            model = "mean" if kind == "step" else "linear"
            for eff in effects[kind][1:]:
                x, _, mua = planted_mu(kind, n, 0.3, eff)
                _, _, mub = planted_mu(kind, n, 0.7, eff)
                right = wrong = right2 = wrong2 = 0
                pa = []
                for _ in range(R):
                    y, reps = simulate(np.stack([mua, mub]), rng)
                    cfg = cp.ChangeConfig(model=model)
                    ra = cp.change_points(y[0], x, replicates=reps[0], config=cfg)
                    rb = cp.change_points(y[1], x, replicates=reps[1], config=cfg)
                    p = p_first(ra.replicate_first, rb.replicate_first)
                    q = p_first(rb.replicate_first, ra.replicate_first)
                    pa.append(p)
                    right += p >= 0.95
                    wrong += q >= 0.95
                    fa, fb = ra.replicate_first, rb.replicate_first
                    right2 += p_first(fa, fb, both=True) >= 0.95
                    wrong2 += p_first(fb, fa, both=True) >= 0.95
                row = {"n": n, "kind": kind, "effect_se": eff, "claims_A_first": rate(right, R),
                       "claims_B_first_wrong": rate(wrong, R), "median_P_A_first": float(np.median(pa)),
                       "both_change_claims_A_first": rate(right2, R),
                       "both_change_claims_B_first_wrong": rate(wrong2, R)}  # fmt: skip
                rows.append(row)
                print(f"order n={n:3d} {kind} {eff:4.1f} SE  P(A first)>=.95 {fmt(row['claims_A_first'])}"
                      f"  wrong {fmt(row['claims_B_first_wrong'])} | both changing: right"
                      f" {fmt(row['both_change_claims_A_first'])} wrong"
                      f" {fmt(row['both_change_claims_B_first_wrong'])}", flush=True)  # fmt: skip
    return rows


def timing(rng) -> dict:
    n, q = 200, 30
    mus = np.zeros((q, n))
    mus[:, 120:] = 3 * SE
    y, reps = simulate(mus, rng)
    t = time.perf_counter()
    for i in range(q):
        cp.change_points(y[i], replicates=reps[i])
    lin = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(q):
        cp.change_points(y[i], replicates=reps[i], config=cp.ChangeConfig(model="mean"))
    mean = time.perf_counter() - t
    print(
        f"timing: 30 metrics x 200 checkpoints x 200 replicates: linear {lin:.1f} s, mean {mean:.1f} s"
    )
    return {"metrics": q, "n": n, "B": B, "linear_s": lin, "mean_s": mean}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "phases_detector.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    s = 0.25 if args.quick else 1.0
    t0 = time.perf_counter()
    out = {"m": M, "B": B, "sd": SD, "se": SE, "seed": args.seed, "quick": args.quick}
    secs = {}

    def timed(name, f, *a):
        t = time.perf_counter()
        out[name] = f(rng, *a)
        secs[name] = time.perf_counter() - t
        print(f"[{name}: {secs[name]:.0f} s]", flush=True)

    timed("calibration", calibration, int(4000 * s))
    timed("null", null, {19: int(300 * s), 50: int(200 * s), 200: int(50 * s)}, 19)
    runs = {19: int(50 * s), 50: int(50 * s), 200: int(20 * s)}
    timed("planted", planted, runs, EFFECTS, 19)
    timed("order", order, {19: int(30 * s), 50: int(30 * s), 200: int(15 * s)}, EFFECTS)
    timed("timing", timing)
    out["section_s"] = secs
    out["total_s"] = time.perf_counter() - t0
    write_json_atomic(args.out, out)
    print(f"total {out['total_s']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
