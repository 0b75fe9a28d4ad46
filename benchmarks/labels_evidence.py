"""Evidence for labels and probes on the shared Thought Anchors data.

Usage::

    python benchmarks/labels_evidence.py                 # tagger vs strategic-gram lists
    python benchmarks/labels_evidence.py --store runs/ta # + grouped-CV probe sweep
    python benchmarks/labels_evidence.py --extract runs/ta --layers 0-29:2  # extract first
    python benchmarks/labels_evidence.py --mine          # re-mine the shipped gram list

Split (fixed before the rules were written): the rules were developed by reading the
10 *correct* traces ("dev", 1,604 sentences); the 10 *incorrect* traces ("held-out",
1,325 sentences) were not read. Both splits share the same 10 problems.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mechgraph.labels import (  # noqa: E402
    DEFAULT_GRAMS,
    PLANNING_TAGS,
    TAGS,
    GramLabeller,
    GramMinerConfig,
    RuleLabeller,
    load_grams,
    mine_strategic_grams,
)
from mechgraph.traces import load_traces  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
TA = SHARED / "thought_anchors_llama8b"
HICRA = SHARED / "hicra_strategic_grams.json"


def _splits(traces):
    return {
        "dev (correct)": [t for t in traces if t.correct],
        "held-out (incorrect)": [t for t in traces if not t.correct],
        "all": list(traces),
    }


def planning_scores(traces, labeller) -> dict[str, float]:
    y = np.array([s.label in PLANNING_TAGS for t in traces for s in t.steps])
    labs = [x for ls in labeller.label_traces(traces) for x in ls]
    p = np.array([x.planning for x in labs])
    sc = np.array([x.score for x in labs])
    return {
        "f1": f1_score(y, p),
        "precision": precision_score(y, p, zero_division=0),
        "recall": recall_score(y, p),
        "auroc": roc_auc_score(y, sc),
        "n": len(y),
        "n_planning": int(y.sum()),
    }


def tag_scores(traces) -> dict[str, float]:
    y = [s.label for t in traces for s in t.steps]
    p = [x.tag for ls in RuleLabeller().label_traces(traces) for x in ls]
    per = f1_score(y, p, labels=list(TAGS), average=None, zero_division=0)
    out = {tag: float(v) for tag, v in zip(TAGS, per, strict=True)}
    out["macro_f1"] = float(f1_score(y, p, labels=list(TAGS), average="macro", zero_division=0))
    out["accuracy"] = float(np.mean([a == b for a, b in zip(y, p, strict=True)]))
    return out


def labels_report(traces) -> dict:
    detectors = {
        "rules (ours)": RuleLabeller(),
        "HICRA published list (249)": GramLabeller(load_grams(HICRA)),
        "mined list, shipped (dev-mined)": GramLabeller(load_grams(DEFAULT_GRAMS)),
    }
    rep: dict = {"planning": {}, "tags": {}}
    for split, ts in _splits(traces).items():
        rep["planning"][split] = {k: planning_scores(ts, d) for k, d in detectors.items()}
        rep["tags"][split] = tag_scores(ts)
    return rep


def print_labels(rep: dict) -> None:
    print("\n## planning detection (planning = plan_generation or uncertainty_management)\n")
    print("| split | detector | F1 | precision | recall | AUROC of score |")
    print("|---|---|---|---|---|---|")
    for split, dets in rep["planning"].items():
        for name, m in dets.items():
            print(
                f"| {split} (n={m['n']}, {m['n_planning']} planning) | {name} | {m['f1']:.3f} | "
                f"{m['precision']:.3f} | {m['recall']:.3f} | {m['auroc']:.3f} |"
            )
    print("\n## rule tagger, F1 per tag\n")
    splits = list(rep["tags"])
    print("| tag | " + " | ".join(splits) + " |")
    print("|---|" + "---|" * len(splits))
    for tag in [*TAGS, "macro_f1", "accuracy"]:
        print(f"| {tag} | " + " | ".join(f"{rep['tags'][s][tag]:.3f}" for s in splits) + " |")


def probe_report(store_path: str, layers: str, n_splits: int) -> dict:
    from probes.train import train_probe

    out = {}
    for est in ("logistic", "diffmeans"):
        t0 = time.time()
        res = train_probe(store_path, "planning", layers=layers, estimator=est, n_splits=n_splits)
        print(f"\n## grouped-CV probe, planning vs rest ({est}, {time.time() - t0:.0f} s)\n")
        print(res.format())
        out[est] = res.to_dict()
    t0 = time.time()
    res = train_probe(store_path, "importance", layers=layers, estimator="ridge", n_splits=n_splits)
    print(f"\n## grouped-CV ridge probe, counterfactual_importance_kl ({time.time() - t0:.0f} s)\n")
    print(res.format())
    out["importance"] = res.to_dict()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="activation store of the Thought Anchors traces")
    ap.add_argument("--extract", help="extract a store here first (default model)")
    ap.add_argument("--layers", default="all", help="layers to extract / sweep (e.g. 0-29:2)")
    ap.add_argument("--n-splits", type=int, default=5)
    ap.add_argument("--mine", action="store_true", help="re-mine and save the shipped gram list")
    ap.add_argument("--json", help="write the numbers as JSON here")
    args = ap.parse_args(argv)

    traces = load_traces(TA)
    if args.mine:
        dev = [t.text for t in traces if t.correct]
        src = (
            "mine_strategic_grams on the 10 correct traces of Thought Anchors "
            "(DeepSeek-R1-Distill-Llama-8B, MATH level 5; MIT); benchmarks/labels_evidence.py --mine"
        )
        sg = mine_strategic_grams(dev, GramMinerConfig(), source=src)
        print(
            f"mined {len(sg.grams)} grams in {len(sg.clusters)} clusters -> {sg.save(DEFAULT_GRAMS)}"
        )
    rep = labels_report(traces)
    print_labels(rep)
    store = args.store
    if args.extract:
        import mechgraph as mg
        from probes.train import parse_layers

        layers = tuple(parse_layers(args.layers, range(64))) if args.layers != "all" else ()
        t0 = time.time()
        mg.extract(
            traces,
            args.extract,
            layers=layers or tuple(range(30)),
            segmenter="given",
            window="sliding",
            progress=False,
        )
        print(f"\nextracted {args.extract} in {time.time() - t0:.0f} s")
        store = args.extract
    if store:
        rep["probes"] = probe_report(store, args.layers, args.n_splits)
    if args.json:
        from mechgraph.io import write_text_atomic

        write_text_atomic(args.json, json.dumps(rep, indent=1, default=float))


if __name__ == "__main__":
    main()
