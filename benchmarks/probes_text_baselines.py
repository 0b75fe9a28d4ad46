"""Issue 14, the ceiling of the default reader: text-only detectors and soft votes.

On the store and folds of ``probes_transfer_evidence.py`` (Thought Anchors traces,
leave one problem out), scores

* text-only detectors: TF-IDF word 1-3 grams + logistic regression (vectoriser fitted
  inside each training fold), all-MiniLM-L6-v2 sentence embeddings (+ window 1);
* the three strongest detectors of the evidence run, each as there: the block-19
  mean/first/last context probe, the BiGRU on blocks 15 + 19 mean/last, the rules;
* their soft vote (the mean of the three out-of-fold probabilities, threshold 0.5),
  picked in an exploratory run of votes on the same folds (so it carries that choice);
* every soft vote of 2 to 6 of {those three, TF-IDF, the BiGRU on mean/first/last, the
  BiGRU with MiniLM features}: the best of these 57 is chosen on the test folds (an
  optimistic upper bound for this reader), the median says what a vote typically gives.

Writes ``benchmarks/results/probes_text_baselines.json``. Usage::

    python benchmarks/probes_text_baselines.py [--work /tmp/ta] [--store DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import probes_transfer_evidence as ev  # noqa: E402


class TfidfProbe:
    """Word 1-3 gram TF-IDF + balanced logistic regression (rows are step indices)."""

    def __init__(self, texts, C: float = 10.0) -> None:
        self.texts, self.C = np.asarray(texts, dtype=object), C

    def fit(self, X, y):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vec_ = TfidfVectorizer(ngram_range=(1, 3), sublinear_tf=True, min_df=2)
        A = self.vec_.fit_transform(self.texts[X[:, 0].astype(int)])
        self.lr_ = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
        self.lr_.fit(A, y)
        self.classes_ = self.lr_.classes_
        return self

    def predict_proba(self, X):
        return self.lr_.predict_proba(self.vec_.transform(self.texts[X[:, 0].astype(int)]))

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


def main(argv: list[str] | None = None) -> None:
    import torch

    from mechgraph.labels import minilm_embedder
    from mechgraph.traces import load_traces
    from probes.context import ContextProbe
    from probes.sequence import BiGRUTagger

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/mechgraph-probes-transfer", help="store cache")
    ap.add_argument("--store", help="use this store as it is")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/probes_text_baselines.json"))
    args = ap.parse_args(argv)
    if Path(args.work).resolve().is_relative_to(ROOT):
        raise SystemExit("--work must be outside the repository")
    traces = load_traces(ev.TA)
    if args.store:
        from mechgraph.store import open_store

        store = open_store(args.store)
    else:
        store = ev.build_store(args.work)
    d = ev.load_data(store, traces)
    y = d["y"]
    by_id = {t.id: t for t in traces}
    texts = [s.text for tid in dict.fromkeys(d["trace"]) for s in by_id[tid].steps]
    assert len(texts) == len(y)
    t0 = time.time()
    E = np.asarray(minilm_embedder()(texts), dtype=np.float64)
    print(f"embedded {len(texts)} sentences in {time.time() - t0:.0f} s", flush=True)
    idx = np.arange(len(y), dtype=float)[:, None]
    S_mfl = ev.features(d, [19], list(ev.POOLS))
    S_ml = ev.features(d, [15, 19], ["mean", "last"])
    S_3 = ev.features(d, [15, 19], list(ev.POOLS))
    runs = {
        "TF-IDF word 1-3 grams": (lambda: TfidfProbe(texts), idx),
        "MiniLM sentence embedding": (lambda: ContextProbe(window=0, C=ev.C_CTX), E),
        "MiniLM + window 1": (lambda: ContextProbe(window=1, C=ev.C_CTX), E),
        "L19 mean/first/last": (lambda: ContextProbe(window=0, C=ev.C_CTX), S_mfl),
        "BiGRU (L15+L19 mean/last)": (lambda: BiGRUTagger(epochs=40), S_ml),
        "BiGRU (L15+L19 mean/first/last)": (lambda: BiGRUTagger(epochs=40), S_3),
        "BiGRU (L15+L19 mean/last + MiniLM)": (
            lambda: BiGRUTagger(epochs=40),
            np.hstack([S_ml, E]),
        ),
    }
    rep: dict = {"data": {"store": str(store.path), "n_steps": len(y)}, "planning": {}}
    rows = rep["planning"]
    probs = {"rules": d["rule_score"]}
    rows["rules"] = ev.binary_summary(y, d["rule_score"], d["rule_pred"], d)
    cache = Path(args.work) / "text_baselines_oof.npz"
    done = dict(np.load(cache)) if cache.exists() else {}
    for name, (make, X) in runs.items():
        t0 = time.time()
        if name in done:  # out-of-fold probabilities of an earlier run on the same store
            P1 = done[name]
            pred = (P1 >= 0.5).astype(int)
        else:
            P, pred = ev.run_folds(make, X, y, d)
            P1 = done[name] = P[:, 1]
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **done)
        probs[name] = P1
        rows[name] = ev.binary_summary(y, P1, pred, d)
        rows[name]["lopo_seconds"] = round(time.time() - t0, 1)
        print(f"{name:40s} F1 {rows[name]['f1']['mean']:.3f} ({time.time() - t0:.0f} s)")

    def vote(names):
        p = np.mean([probs[n] for n in names], axis=0)
        return ev.binary_summary(y, p, (p >= 0.5).astype(int), d)

    named = ["L19 mean/first/last", "BiGRU (L15+L19 mean/last)", "rules"]
    rows["soft vote: L19 mean/first/last + BiGRU + rules (picked in an exploratory run)"] = vote(
        named
    )
    pool = [*named, *[n for n in probs if n.startswith(("TF-IDF", "BiGRU (L15+L19 mean/f"))]]
    pool.append("BiGRU (L15+L19 mean/last + MiniLM)")
    combos = {}
    for r in range(2, len(pool) + 1):
        for c in itertools.combinations(pool, r):
            combos[" | ".join(c)] = vote(c)["f1"]["mean"]
    best = max(combos, key=combos.get)
    rows[f"best soft vote of {len(combos)} (chosen on the test folds): {best}"] = vote(
        best.split(" | ")
    )
    rep["soft_votes"] = {
        "n": len(combos),
        "f1_min": min(combos.values()),
        "f1_median": float(np.median(list(combos.values()))),
        "f1_max": combos[best],
        "all": combos,
    }
    rules_f = rows["rules"]["f1"]["folds"]
    rep["wins_over_rules"] = {
        k: int(sum(a > b for a, b in zip(v["f1"]["folds"], rules_f, strict=True)))
        for k, v in rows.items()
        if k != "rules"
    }
    for k, v in rows.items():
        print(f"{k[:70]:70s} F1 {v['f1']['mean']:.3f} {np.round(v['f1']['ci95'], 3)}")
    print("soft votes: F1 min / median / max", rep["soft_votes"]["f1_min"],
          rep["soft_votes"]["f1_median"], rep["soft_votes"]["f1_max"])  # fmt: skip
    from mechgraph.io import write_text_atomic

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.json, json.dumps(rep, indent=1, default=float))
    print("wrote", args.json)


if __name__ == "__main__":
    main()
