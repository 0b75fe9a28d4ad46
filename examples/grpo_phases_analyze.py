"""Analyse the GRPO-vs-HICRA runs of ``examples/grpo_phases.py``: collect, phases, compare.

Steps (each resumable: a finished output is not redone):

1. **collect**: for every run folder ``ROOT/{grpo,hicra}-s{N}``, copy what the issue keeps
   into ``--results``: the recorder's traces as ``{method}-seed{N}.jsonl``, the last
   checkpoint's ``trainer_state.json`` as ``{method}-seed{N}.trainer_state.json`` and the
   held-aside evaluation as ``{method}-seed{N}.eval.jsonl``. Never the checkpoints.
   A run already analysed in ``--results`` whose folder is gone (made on an earlier
   machine) joins the comparison from its kept evaluation and ``mechgraph phases`` outputs.
2. **phases**: ``mechgraph phases`` on each run, twice:

   * ``text``: every recorded sample, steps windowed by ``--bin-steps`` (10), joined with
     the recorder's per-step log (``log/phases/entropy_exec`` ..., the policy's own token
     entropy from TRL's loss forward, with a bootstrap over the window's steps): change
     points and the two-phase test (execution entropy vs rarefied semantic entropy);
   * ``model``: the samples of the last ``--recent`` steps before each saved checkpoint,
     teacher-forced under that checkpoint (``--models``) and read by the default model
     for topology (``--topology``).

   Outputs (Parquet + JSON sidecar + record, plots) go to ``ROOT/analysis``; the tables
   and sidecars are copied to ``RESULTS/phases`` (the reader's store stays behind).
3. **compare**: learning curves of GRPO vs HICRA on the held-aside problems (accuracy per
   checkpoint, pooled over seeds, 95% bootstrap CI over problems; seeds drawn thin), HICRA
   minus GRPO at the last checkpoint and averaged over checkpoints (a paired bootstrap
   over held-aside problems, every run scored on the same problems), training reward in
   windows (the text pass's ``log/`` columns), and every run's two-phase verdict, into ``RESULTS/summary.json`` and
   ``RESULTS/curves.png``.

Run::

    python examples/grpo_phases_analyze.py --root /tmp/grpo-phases --results benchmarks/results/rl
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grpo_phases import checkpoints  # the run folders' own layout

RUN = re.compile(r"^(grpo|hicra)-s(\d+)$")


def runs(root: Path) -> list[tuple[str, int, Path]]:
    """``(method, seed, folder)`` of every run folder with an evaluation, by seed, method."""
    found = []
    for p in sorted(root.iterdir()):
        m = RUN.match(p.name)
        if m and (p / "eval.jsonl").is_file():
            found.append((m.group(1), int(m.group(2)), p))
    if not found:
        raise SystemExit(f"{root}: no evaluated run folders ({{grpo,hicra}}-s<N>/eval.jsonl)")
    return sorted(found, key=lambda r: (r[1], r[0]))


def kept(results: Path, found: list[str]) -> list[str]:
    """Runs already analysed in ``results`` whose run folder is gone (an earlier machine).

    A run counts when its evaluation and both ``mechgraph phases`` outputs were kept; it joins
    the comparison as it was analysed then (its checkpoints cannot be read again).
    """
    out = []
    for p in sorted(results.glob("*-seed*.eval.jsonl")):
        name = p.name.removesuffix(".eval.jsonl")
        done = all(
            (results / "phases" / f"{name}.{k}.parquet.json").is_file() for k in ("text", "model")
        )
        if name not in found and re.match(r"^(grpo|hicra)-seed\d+$", name) and done:
            out.append(name)
    return out


def _order(name: str) -> tuple[int, str]:
    method, seed = name.split("-seed")
    return int(seed), method


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# ----------------------------------------------------------------------------- 1. collect
def collect(method: str, seed: int, folder: Path, results: Path) -> str:
    name = f"{method}-seed{seed}"
    ck = checkpoints(folder)
    if not ck:
        raise SystemExit(f"{folder}: no checkpoint with a trainer_state.json")
    _copy(folder / "traces.jsonl", results / f"{name}.jsonl")
    _copy(ck[-1][1] / "trainer_state.json", results / f"{name}.trainer_state.json")
    _copy(folder / "eval.jsonl", results / f"{name}.eval.jsonl")
    _copy(folder / "run.json", results / f"{name}.run.json")
    return name


# ----------------------------------------------------------------------------- 2. phases
def _mechgraph() -> str:
    exe = Path(sys.executable).with_name("mechgraph")
    return str(exe) if exe.is_file() else "mechgraph"


def phases(name: str, folder: Path, results: Path, work: Path, args: argparse.Namespace) -> None:
    common = ["--planning", "sg:hicra", "--n-boot", str(args.n_boot), "--seed", "0"]
    jobs = {
        "text": [
            "--logs", str(results / f"{name}.trainer_state.json"),
            "--bin-steps", str(args.bin_steps),
        ],
    }  # fmt: skip
    if not args.skip_models:
        ck = checkpoints(folder)
        models = ",".join(f"{s}={p}" for s, p in ck)
        jobs["model"] = [
            "--bin-steps", str(args.save_every), "--bin-recent", str(args.recent),
            "--models", models, "--topology",
        ]  # fmt: skip
    for kind, extra in jobs.items():
        out = work / f"{name}.{kind}.parquet"
        if not (out.is_file() and out.with_name(out.name + ".json").is_file()):
            cmd = [
                _mechgraph(), "phases", str(results / f"{name}.jsonl"), "--out", str(out),
                "--plots", str(work / f"{name}.{kind}.plots"), *common, *extra,
            ]  # fmt: skip
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        dst = results / "phases"
        dst.mkdir(exist_ok=True)
        for suffix in ("", ".json", ".artifact.json"):
            _copy(out.with_name(out.name + suffix), dst / (out.name + suffix))


# ----------------------------------------------------------------------------- 3. compare
def eval_matrix(results: Path, names: list[str]) -> tuple[list[int], np.ndarray]:
    """Steps and ``ok[run, step, problem]`` (1 correct, 0 not) on the held-aside set."""
    per = {n: {r["step"]: r["ok"] for r in _read_jsonl(results / f"{n}.eval.jsonl")} for n in names}
    steps = sorted(set.intersection(*(set(v) for v in per.values())))
    return steps, np.array([[per[n][s] for s in steps] for n in names], dtype=float)


def paired_boot(d: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean of per-problem values ``d`` and its 95% BCa bootstrap interval over problems."""
    from scipy.stats import bootstrap

    if np.ptp(d) == 0:
        return float(d.mean()), float(d.mean()), float(d.mean())
    r = bootstrap((d,), np.mean, n_resamples=n_boot, method="BCa", random_state=seed)
    return float(d.mean()), float(r.confidence_interval.low), float(r.confidence_interval.high)


def training_windows(results: Path, name: str) -> dict[str, list[float | None]]:
    """The recorder's per-window log means, as the text pass of ``mechgraph phases`` wrote them."""
    import pandas as pd

    t = pd.read_parquet(results / "phases" / f"{name}.text.parquet")
    cols = {
        "reward": "log/reward",
        "phases/entropy_exec": "log/phases/entropy_exec",
        "phases/entropy_plan": "log/phases/entropy_plan",
        "phases/planning_share": "log/phases/planning_share",
        "completion_length": "log/completions/mean_length",
    }
    out: dict[str, list[float | None]] = {"step": t["checkpoint_value"].astype(int).tolist()}
    for key, col in cols.items():  # a log key never logged (no planning token) is absent
        vals = t[col].to_numpy(float) if col in t else np.full(len(t), np.nan)
        out[key] = [None if not np.isfinite(v) else float(v) for v in vals]
    return out


def compare(results: Path, names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    methods = sorted({n.split("-")[0] for n in names})
    steps, ok = eval_matrix(results, names)
    idx = {m: [i for i, n in enumerate(names) if n.startswith(m + "-")] for m in methods}
    out: dict[str, Any] = {"steps": steps, "n_heldout": int(ok.shape[2]), "runs": names}
    curves: dict[str, Any] = {}
    for m in methods:
        per_problem = ok[idx[m]].mean(axis=0)  # (steps, problems), seeds pooled
        ci = [paired_boot(per_problem[j], args.boot, j) for j in range(len(steps))]
        curves[m] = {
            "accuracy": [c[0] for c in ci],
            "lo": [c[1] for c in ci],
            "hi": [c[2] for c in ci],
            "per_seed": {names[i]: ok[i].mean(axis=1).tolist() for i in idx[m]},
        }
    out["curves"] = curves
    if {"grpo", "hicra"} <= set(methods):
        g, h = ok[idx["grpo"]].mean(axis=0), ok[idx["hicra"]].mean(axis=0)
        last = paired_boot(h[-1] - g[-1], args.boot, 1)
        trained = slice(1, None)  # checkpoints after the start
        mean_all = paired_boot((h[trained] - g[trained]).mean(axis=0), args.boot, 2)
        start = [paired_boot(ok[i, 0] * 1.0, args.boot, 3) for i in range(len(names))]
        gain = {
            m: paired_boot((ok[idx[m]][:, -1] - ok[idx[m]][:, 0]).mean(axis=0), args.boot, 4 + k)
            for k, m in enumerate(methods)
        }
        out["hicra_minus_grpo"] = {
            "last_checkpoint": dict(zip(("diff", "lo", "hi"), last, strict=True)),
            "mean_over_checkpoints": dict(zip(("diff", "lo", "hi"), mean_all, strict=True)),
            "per_seed_last": {
                str(s): float(ok[idx["hicra"][s], -1].mean() - ok[idx["grpo"][s], -1].mean())
                for s in range(min(len(idx["grpo"]), len(idx["hicra"])))
            },
        }
        out["gain_last_minus_start"] = {
            m: dict(zip(("diff", "lo", "hi"), v, strict=True)) for m, v in gain.items()
        }
        out["start_accuracy"] = {
            n: dict(zip(("acc", "lo", "hi"), v, strict=True))
            for n, v in zip(names, start, strict=True)
        }
    out["training"] = {n: training_windows(results, n) for n in names}
    verdicts = {}
    for n in names:
        for kind in ("text", "model"):
            p = results / "phases" / f"{n}.{kind}.parquet.json"
            if p.is_file():
                doc = json.loads(p.read_text())
                tp = doc["two_phase"]
                cps = {
                    m: [(c["x"], c["lo"], c["hi"]) for c in v]
                    for m, v in doc["change_points"].items()
                    if v
                }
                verdicts[f"{n}.{kind}"] = {
                    "verdict": tp["verdict"],
                    "exec_metric": tp["exec_metric"],
                    "plan_metric": tp["plan_metric"],
                    "reason": tp["reason"],
                    "p_exec_first": tp.get("p_exec_first"),
                    "p_plan_first": tp.get("p_plan_first"),
                    "changes": cps,
                    "topology_link": doc.get("topology_link"),
                }
    out["phases"] = verdicts
    return out


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colour = {"grpo": "#0072B2", "hicra": "#D55E00"}  # Okabe-Ito: blue, vermillion
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    steps = summary["steps"]
    for m, c in summary["curves"].items():
        n = len(c["per_seed"])
        label = f"{m.upper()} ({n} seed{'s' if n > 1 else ''}, 95% CI over problems)"
        ax[0].plot(steps, c["accuracy"], color=colour[m], lw=2, label=label)
        ax[0].fill_between(steps, c["lo"], c["hi"], color=colour[m], alpha=0.2)
        for acc in c["per_seed"].values():
            ax[0].plot(steps, acc, color=colour[m], lw=0.7, ls=":")
    ax[0].set(xlabel="optimizer step", ylabel="held-aside accuracy (greedy)", title="accuracy")
    ax[0].legend(fontsize=8)
    panels = [
        ("reward", "training reward (mean, 10-step windows)"),
        ("phases/entropy_exec", "execution-token entropy (nats)"),
        ("phases/entropy_plan", "planning-token entropy (nats)"),
    ]
    for a, (key, label) in zip(ax[1:], panels, strict=True):
        for n, tr in summary["training"].items():
            m = n.split("-")[0]
            ls = "-" if n.endswith("seed0") else "--"
            a.plot(tr["step"], tr[key], color=colour[m], ls=ls, lw=1.3, label=n)
        a.set(xlabel="optimizer step", ylabel=label, title=key.split("/")[-1])
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="folder of the run folders")
    ap.add_argument("--results", required=True, help="folder for the kept small results")
    ap.add_argument("--bin-steps", type=int, default=10, help="window of the text analysis")
    ap.add_argument("--save-every", type=int, default=25, help="checkpoint spacing of the runs")
    ap.add_argument("--recent", type=int, default=4, help="steps before a checkpoint it scores")
    ap.add_argument("--skip-models", action="store_true", help="no --models / topology pass")
    ap.add_argument("--n-boot", type=int, default=200, help="bootstrap of mechgraph phases")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap of the comparisons")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root, results = Path(args.root), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    work = root / "analysis"
    work.mkdir(exist_ok=True)
    names = []
    for method, seed, folder in runs(root):
        name = collect(method, seed, folder, results)
        phases(name, folder, results, work, args)
        names.append(name)
    names = sorted(set(names) | set(kept(results, names)), key=_order)
    summary = compare(results, names, args)
    summary["config"] = vars(args)
    tmp = results / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, results / "summary.json")
    plot(summary, results / "curves.png")
    for m, c in summary["curves"].items():
        acc = " ".join(f"{a:.2f}" for a in c["accuracy"])
        print(f"{m}: held-aside accuracy by step {summary['steps']}: {acc}")
    if "hicra_minus_grpo" in summary:
        print("HICRA - GRPO:", json.dumps(summary["hicra_minus_grpo"]))
    for k, v in summary["phases"].items():
        print(f"{k}: two-phase {v['verdict']} ({v['reason']})")
    return summary


if __name__ == "__main__":
    main()
