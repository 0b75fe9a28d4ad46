"""Benchmark of the text labels: RuleTagger and GramMatcher, old vs new, side by side.

On the RL samples of the shared data (``rl_checkpoints_qwen15b_grpo/step_*.jsonl``: the text
after ``assistant\\n`` of each ``output``), times in one run, round after round:

1. ``RuleTagger.tag`` (one call per trace, sentences from ``mechgraph.segment``): the plain
   implementation (one case-insensitive search per rule and sentence, kept as the reference
   in ``tests/test_labels_speed_parity.py``) against the current one, with its sentence
   cache (cleared before each pass) and without it (every sentence computed);
2. ``GramMatcher.find_grams`` over every text with HICRA's 249-gram list and the shipped
   list: the longest-first alternation (reference) against the current matcher.

Outputs are checked to be identical. Times are the best of ``--rounds`` (the machine is
shared: compare the ratios, measured in the same run). Also projects the time of a 100 M
character corpus (200 checkpoints x 256 samples x ~2,000 characters) by character count.
Usage::

    python benchmarks/bench_text_labels.py [--rounds 3] [--out benchmarks/results/text_labels.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

from mechgraph.io import write_json_atomic
from mechgraph.labels import DEFAULT_GRAMS, GramMatcher, RuleTagger, load_grams
from mechgraph.labels import tagger as tagger_mod
from mechgraph.segment import segment_text

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MECHGRAPH_SHARED", ROOT.parent / "shared"))
TARGET_CHARS = 100_000_000


def load_reference():
    """The plain implementations, from the parity test."""
    path = ROOT / "tests" / "test_labels_speed_parity.py"
    spec = importlib.util.spec_from_file_location("labels_speed_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_texts(folder: Path) -> list[str]:
    texts = []
    for f in sorted(folder.glob("step_*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["output"].split("assistant\n", 1)[-1])
    return texts


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "rl_checkpoints_qwen15b_grpo")
    ap.add_argument("--hicra", type=Path, default=SHARED / "data" / "hicra_strategic_grams.json")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "text_labels.json"
    )
    args = ap.parse_args()

    ref = load_reference()
    texts = load_texts(args.data)
    if not texts:
        raise SystemExit(f"no RL samples under {args.data}")
    n_chars = sum(map(len, texts))
    seg_s, traces = timed(lambda: [[t[a:b] for a, b in segment_text(t)] for t in texts])
    sents = [s for tr in traces for s in tr]
    distinct = len(set(sents))
    print(
        f"{len(texts)} texts, {n_chars:,} chars, {len(sents):,} sentences "
        f"({distinct:,} distinct); segmentation {seg_s:.2f} s"
    )

    tagger = RuleTagger()
    plan = tagger_mod._plan()
    size = plan.cache_size

    def new_tag(cache: bool):
        plan.cache.clear()
        plan.cache_size = size if cache else 0
        try:
            return [tagger.tag(tr) for tr in traces]
        finally:
            plan.cache_size = size
            plan.cache.clear()

    lists = {"hicra": load_grams(args.hicra).grams, "shipped": load_grams(DEFAULT_GRAMS).grams}
    matchers = {k: GramMatcher(g) for k, g in lists.items()}
    for m in matchers.values():  # compile the reference patterns outside the timings
        ref._ref_find(m, "")

    best: dict[str, float] = {}
    outputs: dict[str, object] = {}

    def record(key, seconds, out):
        best[key] = min(best.get(key, float("inf")), seconds)
        outputs.setdefault(key, out)

    for r in range(args.rounds):
        record("tagger_old", *timed(lambda: [ref._ref_tag(tr) for tr in traces]))
        record("tagger_new", *timed(lambda: new_tag(True)))
        record("tagger_new_nocache", *timed(lambda: new_tag(False)))
        for k, m in matchers.items():
            record(f"grams_{k}_old", *timed(lambda m=m: [ref._ref_find_grams(m, t) for t in texts]))
            record(f"grams_{k}_new", *timed(lambda m=m: [m.find_grams(t) for t in texts]))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in best.items()))

    same_tags = all(
        repr(outputs["tagger_old"]) == repr(outputs[k])
        for k in ("tagger_new", "tagger_new_nocache")
    )
    same_grams = all(outputs[f"grams_{k}_old"] == outputs[f"grams_{k}_new"] for k in matchers)
    if not (same_tags and same_grams):
        raise SystemExit("outputs differ between the old and the new implementations")

    scale = TARGET_CHARS / n_chars

    def entry(old_key, new_key):
        return {
            "old_s": best[old_key],
            "new_s": best[new_key],
            "speedup": best[old_key] / best[new_key],
            "old_projected_100M_s": best[old_key] * scale,
            "new_projected_100M_s": best[new_key] * scale,
        }

    res = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "args": {"data": str(args.data), "rounds": args.rounds},
        "data": {
            "texts": len(texts),
            "chars": n_chars,
            "sentences": len(sents),
            "distinct_sentences": distinct,
            "segmentation_s": seg_s,
        },
        "identical_outputs": True,
        "tagger": entry("tagger_old", "tagger_new"),
        "tagger_no_cache": entry("tagger_old", "tagger_new_nocache"),
        "grams": {
            k: {"n_grams": len(m.grams), **entry(f"grams_{k}_old", f"grams_{k}_new")}
            for k, m in matchers.items()
        },
        "projection_note": (
            f"times scaled by characters to {TARGET_CHARS:,} chars (x{scale:.1f}); the cached "
            "tagger figure assumes the same share of repeated sentences as this data"
        ),
    }

    print(f"\n{'':28s}{'old s':>9s}{'new s':>9s}{'speedup':>9s}{'old 100M':>10s}{'new 100M':>10s}")
    rows = [
        ("tagger (sentence cache)", res["tagger"]),
        ("tagger (no cache)", res["tagger_no_cache"]),
    ]
    rows += [(f"grams {k} ({v['n_grams']})", v) for k, v in res["grams"].items()]
    for name, e in rows:
        print(
            f"{name:28s}{e['old_s']:9.3f}{e['new_s']:9.3f}{e['speedup']:8.1f}x"
            f"{e['old_projected_100M_s']:9.0f}s{e['new_projected_100M_s']:9.0f}s"
        )
    write_json_atomic(args.out, res)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
