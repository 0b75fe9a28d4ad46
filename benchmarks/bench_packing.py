"""Padding waste of extraction's batching: length-sorted padding vs packing.

On the shared Thought Anchors traces (20 real R1-Distill-Llama-8B traces), tokenised with
the default model's tokenizer exactly as ``extract`` does (``prompt + text``, sliding
windows where a trace is over the context), this counts the tokens a forward pass
computes under each layout of :mod:`mechgraph.packing` at the default budget
(``batch_tokens=16384``, ``max_batch=64``, one chunk of ``shard_traces=64``):

* ``padded``  one piece per row, right-padded to the longest of its batch (today's path)
* ``rows``    pieces packed first-fit decreasing into rows as wide as the batch's
  longest piece (eager / sdpa, block-diagonal mask)
* ``varlen``  one flat row per batch (flash attention), no padding at all

``waste`` = padded tokens / real tokens. Other budgets are listed for reference. The
lengths of the Thought Anchors traces are also scaled down (x 1/8) to show a set of
short traces, where padding wastes more.

Usage::

    python benchmarks/bench_packing.py            # writes benchmarks/results/packing_waste.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mechgraph.align import tokenize_traces
from mechgraph.extract import ExtractConfig, _pieces
from mechgraph.models import load_model
from mechgraph.packing import LAYOUTS, padding_waste
from mechgraph.traces import load_traces

ROOT = Path(__file__).resolve().parents[1]
TA = Path(os.environ.get("MECHGRAPH_SHARED", ROOT.parent / "shared")) / "data"
TA = TA / "thought_anchors_llama8b"


def piece_lengths(traces_dir: Path) -> tuple[list[int], list[int], int]:
    """Token counts of the traces and of the pieces ``extract`` would run (defaults)."""
    lm = load_model("default")
    tok = lm.tokenizer
    traces = load_traces(traces_dir)
    enc = tokenize_traces(tok, traces)
    cfg = ExtractConfig(window="sliding", progress=False)
    n_tok, lengths = [], []
    for t, (ids, _) in zip(traces, enc, strict=True):
        has_bos = tok.bos_token_id is not None and int(ids[0]) == tok.bos_token_id
        n_tok.append(len(ids))
        for start, end, _, _, add_bos in _pieces(len(ids), lm.n_ctx, cfg, has_bos, t.id):
            lengths.append(end - start + int(add_bos))
    return n_tok, lengths, lm.n_ctx


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=TA)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/packing_waste.json")
    args = ap.parse_args(argv)
    n_tok, lengths, n_ctx = piece_lengths(args.traces)
    d = ExtractConfig()
    res: dict = {
        "traces": str(args.traces.name),
        "tokenizer": "default (SmolLM2-135M-Instruct)",
        "n_traces": len(n_tok),
        "n_ctx": n_ctx,
        "trace_tokens": {
            "min": min(n_tok),
            "median": statistics.median(n_tok),
            "max": max(n_tok),
            "total": sum(n_tok),
        },
        "n_pieces": len(lengths),
        "default": {"batch_tokens": d.batch_tokens, "max_batch": d.max_batch},
        "layouts": {},
        "budgets": {},
        "short_traces_x1_8": {},
    }
    for layout in LAYOUTS:
        res["layouts"][layout] = padding_waste(lengths, d.batch_tokens, d.max_batch, layout)
    for budget in (8192, 16384, 32768, 65536):
        res["budgets"][str(budget)] = {
            lay: round(padding_waste(lengths, budget, d.max_batch, lay)["waste"], 4)
            for lay in LAYOUTS
        }
    short = [max(1, n // 8) for n in lengths]
    for layout in LAYOUTS:
        w = padding_waste(short, d.batch_tokens, d.max_batch, layout)
        res["short_traces_x1_8"][layout] = round(w["waste"], 4)
    pad = res["layouts"]["padded"]
    print(
        f"{res['n_traces']} traces, {res['n_pieces']} pieces, tokens min/median/max "
        f"{min(n_tok)}/{statistics.median(n_tok):.0f}/{max(n_tok)} (n_ctx {n_ctx})"
    )
    print(f"budget {d.batch_tokens} tokens, max_batch {d.max_batch}:")
    print(
        f"{'layout':8s} {'computed':>10s} {'padded':>9s} {'waste':>7s} {'batches':>8s} {'vs padded':>10s}"
    )
    for layout, w in res["layouts"].items():
        ratio = w["computed_tokens"] / pad["computed_tokens"]
        print(
            f"{layout:8s} {w['computed_tokens']:10d} {w['padded_tokens']:9d} {w['waste']:7.3f} "
            f"{w['n_batches']:8d} {ratio:10.3f}"
        )
    print("waste by budget:", json.dumps(res["budgets"]))
    print("waste, lengths / 8:", json.dumps(res["short_traces_x1_8"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"-> {args.out}")
    return res


if __name__ == "__main__":
    main()
