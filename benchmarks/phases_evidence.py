"""Evidence for docs/phases.md: the phases analysis of a real GRPO run.

On ``../shared/data/rl_checkpoints_qwen15b_grpo`` (Qwen2.5-1.5B-Instruct, GRPO with TRL on
OpenR1-Math; 19 checkpoints, steps 50..950, the same 100 training problems at every
checkpoint, one sample each, 1,024 new tokens at most; no weights, no logits, no logs):

* ``text`` stage: every text metric with paired-bootstrap intervals (2,000 replicates),
  change points of every metric, the two-phase test (unavailable without an execution-side
  metric: the run ships no weights and no logs), written to
  ``benchmarks/results/phases_text.{parquet,json}``;
* ``model`` stage: adds the topology read by the default model (SmolLM2-135M-Instruct,
  layer int(0.9 n_layers), K nodes fitted across all checkpoints, paired step matching)
  and a fixed-reader proxy of the execution side (the same model's teacher-forced entropy
  and NLL of execution vs planning tokens, ``reader/...``), then the two-phase test with
  ``reader/entropy_exec`` and the topology link; written to
  ``benchmarks/results/phases_model.{parquet,json}``. The reader's store is kept under
  ``--work`` (resumable: a killed run continues where it stopped).

Usage: ``python benchmarks/phases_evidence.py [--stage text|model|both] [--prompts N]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "rl_checkpoints_qwen15b_grpo"


def _subset(run, n_prompts: int | None):
    if not n_prompts:
        return run
    keys = list(dict.fromkeys(t.prompt for t in run))[:n_prompts]
    keep = set(keys)
    return [t for t in run if t.prompt in keep]


def _early_late(rep, k: int = 5) -> dict:
    """Mean of the last k checkpoints minus the first k, with a bootstrap 95% interval."""
    import numpy as np

    out = {}
    for m, r in rep.result.replicates.items():
        y = rep.table[m].to_numpy(dtype=float)
        if not np.isfinite(y).all():
            continue
        d = r[:, -k:].mean(1) - r[:, :k].mean(1)
        lo, hi = np.nanquantile(d, [0.025, 0.975])
        out[m] = {
            "early": float(y[:k].mean()),
            "late": float(y[-k:].mean()),
            "diff": float(y[-k:].mean() - y[:k].mean()),
            "lo": float(lo),
            "hi": float(hi),
        }
    return out


def _summary(rep, seconds: float) -> dict:
    d = rep.to_dict()
    return {
        "early_vs_late_5": _early_late(rep),
        "seconds": round(seconds, 1),
        "n_samples": rep.result.info["n_samples"],
        "pairing": rep.result.info["pairing"],
        "change_points": d["change_points"],
        "two_phase": d["two_phase"],
        "topology_link": d["topology_link"],
        "topology": d["topology"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--stage", default="both", choices=["text", "model", "both"])
    ap.add_argument("--prompts", type=int, default=None, help="first N problems only")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--match-steps", default="auto", help="auto | paired | N (model stage)")
    ap.add_argument("--work", type=Path, default=Path("runs/phases_evidence"))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    import torch

    from mechgraph.io import write_json_atomic
    from mechgraph.phases import analyze_phases, load_run, write_phases

    torch.set_num_threads(2)
    run = _subset(load_run(args.data, pattern="step_*.jsonl"), args.prompts)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage in ("text", "both"):
        t0 = time.time()
        rep = analyze_phases(run, n_boot=args.n_boot, topology=False)
        dt = time.time() - t0
        write_phases(rep, args.out / "phases_text.parquet")
        write_json_atomic(args.out / "phases_text_summary.json", _summary(rep, dt))
        print(f"text stage: {dt:.1f} s; two-phase: {rep.two_phase['verdict']}")
        print(json.dumps(rep.change_points_dict(), indent=1, default=str))
    if args.stage in ("model", "both"):
        t0 = time.time()
        rep = analyze_phases(
            run,
            n_boot=args.n_boot,
            topology=True,
            store=str(args.work / "reader.store"),
            k=args.k,
            forced_reader="default",
            match_steps=args.match_steps,
        )
        dt = time.time() - t0
        name = "phases_model" if args.match_steps == "auto" else f"phases_model_m{args.match_steps}"
        write_phases(rep, args.out / f"{name}.parquet", plots=str(args.work / f"plots_{name}"))
        write_json_atomic(args.out / f"{name}_summary.json", _summary(rep, dt))
        print(f"model stage: {dt:.1f} s; two-phase: {rep.two_phase}")
        for row in rep.topology_link:
            print(row)


if __name__ == "__main__":
    main()
