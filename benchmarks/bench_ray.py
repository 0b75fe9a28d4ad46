"""The Ray engine against the local engine, side by side in one run, on the same traces.

Runs, in one process, on the same traces and model (the default, SmolLM2-135M, CPU):

* ``local``     ``mechgraph.extract`` in this process, the model loaded in the timing
* ``ray_1``     ``engine="ray"`` with one actor (its model load included)
* ``ray_2``     ``engine="ray"`` with two actors

Every model copy gets one torch thread (the local run too), so ``ray_1 / local`` is the
engine's own overhead (task and actor start, model load in a fresh process, sending chunks
and results) and ``ray_1 / ray_2`` its scaling on this machine. The Ray instance is started
once, before the timings (its start is reported apart). Stores are checked to be equal.
The machine's load average is recorded before and after: other jobs share its cores.

Usage::

    python benchmarks/bench_ray.py                       # writes benchmarks/results/ray.json
    python benchmarks/bench_ray.py --traces 96 --reps 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mechgraph as mg

ROOT = Path(__file__).resolve().parents[1]


def corpus(n: int) -> list[mg.Trace]:
    """n traces cycled from the bundled sample traces (new ids)."""
    base = mg.load_traces(ROOT / "mechgraph" / "data" / "sample_traces.jsonl")
    out = []
    for i in range(n):
        t = base[i % len(base)]
        out.append(mg.Trace(id=f"s{i}", text=t.text, prompt=t.prompt))
    return out


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    res = fn()
    return time.perf_counter() - t, res


def run(mode: str, out: Path, traces: list[mg.Trace], opts: dict) -> mg.Store:
    if mode == "local":  # the model load is timed, as an actor's is
        return mg.extract(traces, out, model=mg.load_model("default"), **opts)
    n = int(mode.rpartition("_")[2])
    return mg.extract(traces, out, model="default", engine="ray", actors=n, **opts)


def _load_note(load: float) -> str:
    cpus = os.cpu_count() or 1
    if load > cpus:
        return (
            f"loaded machine (load {load:.1f} on {cpus} cores: other jobs shared it); every "
            "process start (Ray workers import torch and transformers) is slowed most, so the "
            "Ray engine's times are pessimistic"
        )
    return f"quiet machine (load {load:.1f} on {cpus} cores)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=48)
    ap.add_argument("--shard-traces", type=int, default=8)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ray.json"))
    args = ap.parse_args()
    import ray

    torch.set_num_threads(1)
    traces = corpus(args.traces)
    opts = dict(shard_traces=args.shard_traces, progress=False)
    load_before = os.getloadavg()
    from mechgraph.engines.ray import start_local_ray

    t_ray, _ = timed(
        lambda: start_local_ray(ray, num_cpus=2, include_dashboard=False, log_to_driver=False)
    )
    times: dict[str, list[float]] = {"local": [], "ray_1": [], "ray_2": []}
    stores = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.reps):
                for mode in times:  # interleaved: A B C A B C ...
                    out = Path(tmp) / f"{mode}-{rep}"
                    dt, store = timed(lambda m=mode, o=out: run(m, o, traces, opts))
                    times[mode].append(dt)
                    stores[mode] = store
                    print(f"{mode:6s} rep {rep}: {dt:.1f} s", file=sys.stderr, flush=True)
            ref = stores["local"]
            diffs = {}
            for mode in ("ray_1", "ray_2"):
                s = stores[mode]
                assert s.trace_ids == ref.trace_ids and len(s.steps) == len(ref.steps)
                layer = ref.layers[0]
                diffs[mode] = float(np.abs(s.states(layer) - ref.states(layer)).max())
            n_tokens = int(ref.traces["n_tokens"].sum())
            n_steps = len(ref.steps)
    finally:
        ray.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "what": "local engine vs Ray engine (1 and 2 actors), same traces, one run",
        "model": "default (SmolLM2-135M-Instruct, float32, CPU)",
        "traces": args.traces,
        "steps": n_steps,
        "tokens": n_tokens,
        "shard_traces": args.shard_traces,
        "reps": args.reps,
        "torch_threads_per_model_copy": 1,
        "ray_start_s": round(t_ray, 2),
        "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 2) for k, v in med.items()},
        "tokens_per_s": {k: round(n_tokens / v, 1) for k, v in med.items()},
        "overhead_ray_1_over_local": round(med["ray_1"] / med["local"], 3),
        "speedup_ray_2_over_ray_1": round(med["ray_1"] / med["ray_2"], 3),
        "max_abs_state_diff_vs_local": diffs,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ray": ray.__version__,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "note": _load_note(load_before[0]),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
