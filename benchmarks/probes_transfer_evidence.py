"""Evidence for planning detection that transfers (issue 14): context, sequence, ensemble.

Usage::

    python benchmarks/probes_transfer_evidence.py                 # store under /tmp
    python benchmarks/probes_transfer_evidence.py --work /tmp/ta  # or here (never the repo)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TA = ROOT.parent / "shared" / "data" / "thought_anchors_llama8b"
LAYERS = (11, 15, 19, 23)
POOLS = ("mean", "first", "last")
DTYPE = "bfloat16"


def build_store(work: str | Path, *, dtype: str = DTYPE, progress: bool = False):
    """The store of the Thought Anchors traces (default model), built once under ``work``.

    Speed-ups that leave the states unchanged or nearly so: only the blocks up to the
    deepest layer read are run (later blocks cannot change earlier residuals: the model is
    causal in depth), and the forward pass runs in ``dtype`` (bfloat16 on a CPU with AMX
    is about 3x faster than float32; the states differ by about 0.7% in norm). The weights
    fingerprint is the full model's.
    """
    import mechgraph as mg
    from mechgraph.models import load_model
    from mechgraph.store import open_store
    from mechgraph.traces import load_traces

    work = Path(work)
    out = work / f"ta_store_{'-'.join(map(str, LAYERS))}_{'-'.join(POOLS)}_{dtype}"
    if (out / "artifact.json").exists():
        return open_store(out)
    work.mkdir(parents=True, exist_ok=True)
    lm = load_model("default", dtype=dtype)
    _ = lm.fingerprint  # of the whole model, before the cut
    lm.hf.model.layers = lm.hf.model.layers[: max(LAYERS) + 1]
    # both traces of a problem together, shorter problems first: a store stopped early
    # still holds whole problems
    traces = load_traces(TA)
    pid = {t.id: t.id.split("/")[-1] for t in traces}
    size = {}
    for t in traces:
        size[pid[t.id]] = size.get(pid[t.id], 0) + len(t.text)
    traces.sort(key=lambda t: (size[pid[t.id]], pid[t.id], not t.correct))
    t0 = time.time()
    store = mg.extract(
        traces,
        out,
        model=lm,
        layers=LAYERS,
        pools=POOLS,
        segmenter="given",
        window="sliding",
        shard_traces=2,
        progress=progress,
    )
    print(f"extracted {out} in {time.time() - t0:.0f} s", flush=True)
    return store


# ----------------------------------------------------------------------------- data


def load_data(store, traces):
    """Rows in trace order, steps in order: blocks, labels, groups, rule outputs."""
    import numpy as np

    from mechgraph.labels import PLANNING_TAGS, RuleLabeller
    from probes.ensemble import rule_features

    steps = store.steps
    by_id = {t.id: t for t in traces}
    order, tids = [], steps["trace_id"].to_numpy()
    kept = [t for t in traces if (tids == t.id).any()]
    for t in kept:
        idx = np.flatnonzero(tids == t.id)
        order.append(idx[np.argsort(steps["step"].to_numpy()[idx], kind="stable")])
    order = np.concatenate(order)
    st = steps.iloc[order].reset_index(drop=True)
    blocks = {
        (la, po): store.states(la, pool=po)[order].astype(np.float64)
        for la in store.layers
        for po in store.pools
    }
    rl = RuleLabeller()
    rules = [x for t in kept for x in rl.label_traces([t])[0]]
    R = np.vstack([rule_features([s.text for s in t.steps]) for t in kept])
    tag = st["label"].astype(str).to_numpy()
    return {
        "blocks": blocks,
        "tag": tag,
        "y": np.isin(tag, list(PLANNING_TAGS)).astype(int),
        "trace": st["trace_id"].to_numpy(),
        "problem": np.array([x.split("/")[-1] for x in st["trace_id"]]),
        "correct": np.array([bool(by_id[x].correct) for x in st["trace_id"]]),
        "rule_pred": np.array([x.planning for x in rules], dtype=int),
        "rule_score": np.array([x.score for x in rules]),
        "rule_tag": np.array([x.tag for x in rules]),
        "R": R,
    }


def features(d, layers=(19,), pools=("mean",), rules=False):
    import numpy as np

    X = np.hstack([d["blocks"][(la, po)] for la in layers for po in pools])
    return np.hstack([X, d["R"]]) if rules else X


# ----------------------------------------------------------------------------- evaluation


from probes.sweep import _takes_groups  # noqa: E402  (fit / predict per trace)


def run_folds(make, X, y, d, *, train_mask=None, test_mask=None, proba=True):
    """Out-of-fold predictions, one fold per problem (leave-one-problem-out).

    A step is predicted by a model fitted on the other 9 problems (both of their traces,
    or those in ``train_mask``); ``test_mask`` limits the predicted steps.
    """
    import numpy as np

    n = len(y)
    train_mask = np.ones(n, bool) if train_mask is None else train_mask
    test_mask = np.ones(n, bool) if test_mask is None else test_mask
    classes = np.unique(y)
    P = np.full((n, len(classes)), np.nan)
    pred = np.empty(n, dtype=object)
    for prob in np.unique(d["problem"]):
        tr = (d["problem"] != prob) & train_mask
        te = (d["problem"] == prob) & test_mask
        if not te.any():
            continue
        est = make()
        g = {"groups": d["trace"][tr]} if _takes_groups(est) else {}
        est.fit(X[tr], y[tr], **g)
        gt = {"groups": d["trace"][te]} if _takes_groups(est) else {}
        if proba:
            cols = [list(est.classes_).index(c) for c in classes]
            P[te] = est.predict_proba(X[te], **gt)[:, cols]
        pred[te] = est.predict(X[te], **gt)
    return P, pred


def _interval(values):
    import numpy as np
    from scipy.stats import bootstrap

    v = np.asarray([x for x in values if x == x], dtype=float)
    if len(v) < 3 or np.ptp(v) == 0:
        return [float(v.mean()), float(v.mean())] if len(v) else [None, None]
    r = bootstrap((v,), np.mean, n_resamples=2000, method="percentile", random_state=0)
    return [float(r.confidence_interval.low), float(r.confidence_interval.high)]


def binary_summary(y, score, pred, d, mask=None):
    """Per-fold (problem) F1, AUROC, Brier: mean, 95% bootstrap interval over folds, pooled."""
    import numpy as np
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    from probes.calibration import brier_score

    mask = np.ones(len(y), bool) if mask is None else mask
    folds = {"f1": [], "auroc": [], "brier": [], "precision": [], "recall": []}
    for prob in np.unique(d["problem"][mask]):
        m = mask & (d["problem"] == prob)
        yy, pp, ss = y[m], pred[m].astype(int), score[m]
        folds["f1"].append(f1_score(yy, pp, zero_division=0))
        folds["precision"].append(precision_score(yy, pp, zero_division=0))
        folds["recall"].append(recall_score(yy, pp, zero_division=0))
        folds["auroc"].append(roc_auc_score(yy, ss) if 0 < yy.sum() < len(yy) else float("nan"))
        folds["brier"].append(brier_score(yy, ss))
    out = {}
    for k, v in folds.items():
        out[k] = {"mean": float(np.nanmean(v)), "ci95": _interval(v), "folds": v}
    m = mask
    out["pooled"] = {
        "f1": float(f1_score(y[m], pred[m].astype(int))),
        "auroc": float(roc_auc_score(y[m], score[m])),
        "brier": brier_score(y[m], score[m]),
        "n": int(m.sum()),
        "n_planning": int(y[m].sum()),
    }
    return out


def tag_summary(tag, pred, labels):
    import numpy as np
    from sklearn.metrics import confusion_matrix, f1_score

    per = f1_score(tag, pred, labels=labels, average=None, zero_division=0)
    return {
        "per_tag_f1": {t: float(v) for t, v in zip(labels, per, strict=True)},
        "macro_f1": float(f1_score(tag, pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(np.mean(tag == pred)),
        "confusion": {
            "labels": list(labels),
            "matrix": confusion_matrix(tag, pred, labels=labels).tolist(),
        },
    }


# ----------------------------------------------------------------------------- methods

C_CTX = 0.05  # fixed before any test fold was scored; nested CV below checks it
NPC = 256  # principal components of the wide inputs (all 12 blocks: 6,912 columns)


def methods(layers, pools):
    """name -> (estimator factory, feature settings), all settings fixed before scoring."""
    from probes.context import ContextProbe
    from probes.ensemble import StackedEnsemble
    from probes.estimators import LinearProbe
    from probes.sequence import BiGRUTagger

    one = {"layers": [19], "pools": ["mean"]}
    allb = {"layers": list(layers), "pools": list(pools)}
    return {
        "probe L19 mean (current)": (lambda: LinearProbe(), one),
        "L19 mean + window 1": (lambda: ContextProbe(window=1, C=C_CTX), one),
        "ensemble: PCA256 + window 1 + rules (stacked)": (
            lambda: StackedEnsemble(window=1, C=C_CTX, n_components=NPC),
            {**allb, "rules": True},
        ),
        "all blocks PCA256 + window 1": (
            lambda: ContextProbe(window=1, C=C_CTX, n_components=NPC),
            allb,
        ),
        "L19 mean/first/last": (
            lambda: ContextProbe(window=0, C=C_CTX),
            {"layers": [19], "pools": list(pools)},
        ),
        "BiGRU (L15+L19 mean/last)": (
            lambda: BiGRUTagger(epochs=40),
            {"layers": [15, 19], "pools": ["mean", "last"]},
        ),
        "L19 mean + position": (lambda: ContextProbe(window=0, C=1.0), one),
        "L19 mean + window 1 + prev 8": (lambda: ContextProbe(window=1, prev_k=8, C=C_CTX), one),
        "layers 11-23 mean": (
            lambda: ContextProbe(window=0, C=C_CTX),
            {"layers": list(layers), "pools": ["mean"]},
        ),
        "all blocks PCA256": (lambda: ContextProbe(window=0, C=C_CTX, n_components=NPC), allb),
        # added after the first run had shown PCA hurting and L19 mean/first/last the best
        # single feature set: chosen on the same LOPO folds (see docs/probes.md)
        "ensemble: L19 mean/first/last + window 1 + rules (stacked)": (
            lambda: StackedEnsemble(window=1, C=C_CTX),
            {"layers": [19], "pools": list(pools), "rules": True},
        ),
    }


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    import numpy as np
    import torch

    from mechgraph.traces import load_traces

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/mechgraph-probes-transfer", help="store cache")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/probes_transfer.json"))
    ap.add_argument("--only", help="comma-separated method names (default: all)")
    ap.add_argument("--quick", action="store_true", help="skip nested CV, tags and transfer")
    ap.add_argument("--store", help="use this store as it is (e.g. one still being built)")
    args = ap.parse_args(argv)
    if Path(args.work).resolve().is_relative_to(ROOT):
        raise SystemExit("--work must be outside the repository")

    traces = load_traces(TA)
    if args.store:
        from mechgraph.store import open_store

        store = open_store(args.store)
    else:
        store = build_store(args.work)
    d = load_data(store, traces)
    y = d["y"]
    print(f"{len(y)} steps, {y.sum()} planning, {len(np.unique(d['problem']))} problems")
    rep: dict = {
        "data": {
            "store": str(store.path),
            "n_steps": len(y),
            "n_planning": int(y.sum()),
            "n_problems": len(np.unique(d["problem"])),
            "layers": list(LAYERS),
            "pools": list(POOLS),
            "dtype": DTYPE,
        },
        "protocol": (
            "leave-one-problem-out: 10 folds, each holding out both traces of one problem; "
            "fold metrics summarised by their mean with a 95% percentile bootstrap interval "
            "over folds (scipy.stats.bootstrap, 2000 resamples); pooled = on all "
            "out-of-fold predictions"
        ),
        "planning": {},
    }
    rows = rep["planning"]
    rows["rules"] = binary_summary(y, d["rule_score"], d["rule_pred"], d)
    L, P = list(LAYERS), list(POOLS)
    ms = methods(L, P)
    only = set(args.only.split(";")) if args.only else None

    def save() -> None:
        if not args.json:
            return
        from mechgraph.io import write_text_atomic

        rows_out = {k: {a: b for a, b in v.items() if a != "_p"} for k, v in rows.items()}
        rules_f = rows["rules"]
        rep["wins_over_rules"] = {
            k: {
                m: int(sum(a > b for a, b in zip(v[m]["folds"], rules_f[m]["folds"], strict=True)))
                for m in ("f1", "auroc")
            }
            for k, v in rows_out.items()
            if k != "rules"
        }
        out = {**rep, "planning": rows_out}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(out, indent=1, default=float))

    for name, (make, feat) in ms.items():
        if only and name not in only:
            continue
        X = features(d, feat["layers"], feat["pools"], feat.get("rules", False))
        t0 = time.time()
        Pr, pred = run_folds(make, X, y, d)
        rows[name] = binary_summary(y, Pr[:, 1], pred, d)
        rows[name]["_p"] = Pr[:, 1]
        rows[name]["features"] = feat
        rows[name]["lopo_seconds"] = round(time.time() - t0, 1)
        r = rows[name]
        print(
            f"{name:40s} F1 {r['f1']['mean']:.3f} {np.round(r['f1']['ci95'], 3)} "
            f"AUROC {r['auroc']['mean']:.3f} Brier {r['brier']['mean']:.3f} "
            f"({r['lopo_seconds']:.0f} s)",
            flush=True,
        )
        save()
    print(f"{'rules':40s} F1 {rows['rules']['f1']['mean']:.3f}", flush=True)
    best = max((k for k in rows if k != "rules"), key=lambda k: rows[k]["f1"]["mean"])
    train_time(d, ms, rep, best)
    save()
    if not args.quick:
        extras(d, ms, rows, rep, save)
    save()
    print("wrote", args.json)


class _Calibrated:
    """CalibratedClassifierCV(LinearProbe, sigmoid) with inner folds grouped by problem."""

    def __init__(self, C: float) -> None:
        self.C = C

    def fit(self, X, y, groups):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.model_selection import GroupKFold

        from probes.estimators import LinearProbe

        prob = [str(t).split("/")[-1] for t in groups]
        cv = list(GroupKFold(n_splits=3).split(X, y, prob))
        self.m = CalibratedClassifierCV(LinearProbe(C=self.C), method="sigmoid", cv=cv)
        self.m.fit(X, y)
        self.classes_ = self.m.classes_
        return self

    def predict_proba(self, X, groups=None):
        return self.m.predict_proba(X)

    def predict(self, X, groups=None):
        return self.m.predict(X)


class _NestedC:
    """ContextProbe whose C is chosen by inner 3-fold CV grouped by problem (nested CV).

    The PCA is fitted once on the outer training steps (no labels) and shared by the
    inner folds; only C is tuned, on inner F1."""

    GRID = (0.01, 0.05, 0.2)

    def __init__(self, window: int = 1) -> None:
        self.window = window

    def fit(self, X, y, groups):
        import numpy as np
        from sklearn.metrics import f1_score
        from sklearn.model_selection import GroupKFold

        from probes.context import ContextProbe

        self.pca = ContextProbe(window=0, n_components=NPC, max_iter=1).fit(X, y)
        Z = self.pca._reduce(np.asarray(X, dtype=float))
        prob = np.array([str(t).split("/")[-1] for t in groups])
        scores = {}
        for C in self.GRID:
            f = []
            for tr, te in GroupKFold(n_splits=3).split(Z, y, prob):
                m = ContextProbe(window=self.window, C=C).fit(Z[tr], y[tr], groups[tr])
                f.append(f1_score(y[te], m.predict(Z[te], groups[te])))
            scores[C] = float(np.mean(f))
        self.C_ = max(scores, key=scores.get)
        self.inner_ = scores
        self.m = ContextProbe(window=self.window, C=self.C_).fit(Z, y, groups)
        self.classes_ = self.m.classes_
        return self

    def predict_proba(self, X, groups=None):
        return self.m.predict_proba(self.pca._reduce(X), groups)

    def predict(self, X, groups=None):
        return self.m.predict(self.pca._reduce(X), groups)


def extras(d, ms, rows, rep, save) -> None:
    """Transfer, calibration, precision target, nested CV, 8 tags, training time."""
    import numpy as np

    from mechgraph.labels import TAGS
    from probes.calibration import reliability_curve
    from probes.context import ContextProbe, context_features
    from probes.ensemble import StackedEnsemble

    y = d["y"]
    best = max((k for k in rows if k != "rules"), key=lambda k: rows[k]["f1"]["mean"])
    rep["best"] = best
    # transfer: train on the correct traces of the other problems, test on the incorrect one
    inc = ~d["correct"]
    rep["transfer"] = {"rules": binary_summary(y, d["rule_score"], d["rule_pred"], d, inc)}
    for name in dict.fromkeys(("probe L19 mean (current)", best)):
        make, feat = ms[name]
        X = features(d, feat["layers"], feat["pools"], feat.get("rules", False))
        P, pred = run_folds(make, X, y, d, train_mask=d["correct"], test_mask=inc)
        rep["transfer"][name] = binary_summary(y, np.nan_to_num(P[:, 1]), pred, d, inc)
        print(f"transfer {name}: F1 {rep['transfer'][name]['f1']['mean']:.3f}", flush=True)
    print(f"transfer rules: F1 {rep['transfer']['rules']['f1']['mean']:.3f}", flush=True)
    save()
    # calibration: reliability data of the best method and of the rules
    rep["calibration"] = {
        "rules": reliability_curve(y, d["rule_score"]),
        best: reliability_curve(y, rows[best]["_p"]),
    }
    Z19 = context_features(features(d, [19], ["mean"]), d["trace"], window=1)  # label-free
    P, pred = run_folds(lambda: _Calibrated(C_CTX), Z19, y, d)
    name = "L19 mean + window 1, CalibratedClassifierCV(sigmoid)"
    rows[name] = binary_summary(y, P[:, 1], pred, d)
    rep["calibration"][name] = reliability_curve(y, P[:, 1])
    print(f"{name}: Brier {rows[name]['brier']['mean']:.3f}", flush=True)
    save()
    # precision target 0.8, threshold chosen on inner out-of-fold meta inputs
    Xe = features(d, [19], POOLS, rules=True)
    P, pred = run_folds(
        lambda: StackedEnsemble(window=1, C=C_CTX, target_precision=0.8),
        Xe,
        y,
        d,
    )
    name = "ensemble (L19 mean/first/last + rules), threshold for precision 0.8"
    rows[name] = binary_summary(y, P[:, 1], pred, d)
    print(f"{name}: precision {rows[name]['precision']['mean']:.3f}", flush=True)
    save()
    # nested CV of C
    Xa = features(d, LAYERS, POOLS)
    chosen = []

    def make_nested():
        m = _NestedC(window=1)
        chosen.append(m)
        return m

    P, pred = run_folds(make_nested, Xa, y, d)
    rows["all blocks PCA256 + window 1, C by nested CV"] = binary_summary(y, P[:, 1], pred, d)
    rep["nested_cv"] = {
        "grid": list(_NestedC.GRID),
        "chosen_C_per_fold": [m.C_ for m in chosen],
        "inner_f1": [{str(k): v for k, v in m.inner_.items()} for m in chosen],
    }
    print("nested C per fold:", [m.C_ for m in chosen], flush=True)
    save()
    # 8 tags
    labels = list(TAGS)
    _, pred = run_folds(
        lambda: ContextProbe(window=1, C=C_CTX, n_components=NPC), Xa, d["tag"], d, proba=False
    )
    rep["tags"] = {
        "rules": tag_summary(d["tag"], d["rule_tag"], labels),
        "all blocks PCA256 + window 1 (8-way)": tag_summary(d["tag"], pred.astype(str), labels),
    }
    print("tags macro F1", {k: round(v["macro_f1"], 3) for k, v in rep["tags"].items()})
    save()


def train_time(d, ms, rep, name) -> None:
    """Seconds to fit one detector on all steps (a store already built)."""
    make, feat = ms[name]
    X = features(d, feat["layers"], feat["pools"], feat.get("rules", False))
    est = make()
    t0 = time.time()
    est.fit(X, d["y"], groups=d["trace"]) if _takes_groups(est) else est.fit(X, d["y"])
    rep["training_seconds"] = {"method": name, "seconds": round(time.time() - t0, 1)}
    print(f"training {name} on {len(X)} steps: {time.time() - t0:.1f} s", flush=True)


def markdown(rep: dict) -> str:
    """The tables of docs/probes.md from the JSON report."""

    def cell(m, k, nd=3):
        lo, hi = m[k]["ci95"]
        return f"{m[k]['mean']:.{nd}f} [{lo:.{nd}f}, {hi:.{nd}f}]"

    out = [
        "| detector | F1 | AUROC | Brier | F1 > rules (folds) | pooled F1 |",
        "|---|---|---|---|---|---|",
    ]
    wins = rep.get("wins_over_rules", {})
    for k, m in rep["planning"].items():
        w = f"{wins[k]['f1']}/{len(m['f1']['folds'])}" if k in wins else "-"
        out.append(
            f"| {k} | {cell(m, 'f1')} | {cell(m, 'auroc')} | {cell(m, 'brier')} | {w} "
            f"| {m['pooled']['f1']:.3f} |"
        )
    if "transfer" in rep:
        out += [
            "",
            "| transfer: correct -> incorrect traces | F1 | AUROC | Brier |",
            "|---|---|---|---|",
        ]
        for k, m in rep["transfer"].items():
            out.append(f"| {k} | {cell(m, 'f1')} | {cell(m, 'auroc')} | {cell(m, 'brier')} |")
    if "tags" in rep:
        names = list(rep["tags"])
        out += ["", "| tag | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        tags = list(rep["tags"][names[0]]["per_tag_f1"])
        for t in [*tags, "macro_f1", "accuracy"]:
            vals = [
                rep["tags"][n]["per_tag_f1"][t] if t in tags else rep["tags"][n][t] for n in names
            ]
            out.append(f"| {t} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--table"]:
        import json

        print(markdown(json.loads(Path(sys.argv[2]).read_text())))
        raise SystemExit

    main()
