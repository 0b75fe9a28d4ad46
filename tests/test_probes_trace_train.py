"""Whole-trace probes from a store (probes.trace_train, `mechgraph probe --estimator ...`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mechgraph.errors import ConfigError
from probes import load_probe
from probes.sweep import CVResult, cross_validate_probe
from probes.trace_train import trace_order, train_trace_probe

PLAN = ["Let me try another approach.", "Wait, maybe that is wrong.", "Alternatively, use x."]
EXEC = ["So 3 * 4 = 12 here.", "Then 12 + 5 = 17 now.", "Thus 17 - 2 = 15 again."]


class FakeStore:
    """Store-like: 2 traces per problem, rows shuffled, planning visible one step late."""

    def __init__(self, n_problems=8, per=12, d=6, seed=0, pools=("mean", "last")):
        rng = np.random.default_rng(seed)
        rows = []
        for p in range(n_problems):
            for c in range(2):
                for k in range(per):
                    plan = rng.random() < 0.3
                    rows.append(
                        dict(
                            trace_id=f"{'ok' if c else 'bad'}/p{p}",
                            step=k,
                            text=(PLAN if plan else EXEC)[k % 3],
                            label="plan_generation" if plan else "active_computation",
                            problem=f"problem {p}",
                        )
                    )
        df = pd.DataFrame(rows)
        # the states of a step show whether the step *before* it was a plan: only a model
        # reading neighbours can find it
        prev = df.groupby("trace_id")["label"].shift(1).eq("plan_generation").to_numpy()
        self._states = {}
        for la in (0, 2):
            for po in pools:
                X = rng.normal(size=(len(df), d))
                X[:, 0] += 4.0 * prev * (la == 2)
                self._states[la, po] = X.astype(np.float32)
        perm = rng.permutation(len(df))  # store rows need not be in trace order
        self.steps = df.iloc[perm].reset_index(drop=True)
        self._states = {k: v[perm] for k, v in self._states.items()}
        self.layers, self.pools = [0, 2], list(pools)
        self.path = Path("fake")
        self.manifest = {"model_id": "m", "fingerprint": "fp", "segmenter": "given", "d_model": d}

    def states(self, layer, pool="mean", hook="resid_post"):
        return self._states[layer, pool]


def test_trace_order_groups_traces_and_sorts_steps():
    order = trace_order(["b", "a", "b", "a", "c"], [1, 1, 0, 0, 0])
    assert order.tolist() == [2, 0, 3, 1, 4]


def test_context_probe_reads_neighbours_and_folds_hold_problems():
    store = FakeStore()
    res = train_trace_probe(
        store, estimator="context", layers=[2], pools=["mean"], params={"window": 1}, n_splits=4
    )
    assert res.group_by == "problem" and res.n_groups == 8 and res.n_traces == 16
    assert res.task == "binary" and res.n_steps == 16 * 12
    assert res.metrics["auroc"] > 0.9, res.metrics  # the signal is one step late
    blind = train_trace_probe(
        store, estimator="context", layers=[2], pools=["mean"], params={"window": 0}, n_splits=4
    )
    assert blind.metrics["auroc"] < 0.75
    lo, hi = res.intervals["f1"]
    fold_mean = np.mean([m["f1"] for m in res.fold_metrics])
    assert lo <= fold_mean <= hi and len(res.fold_metrics) == 4
    assert 0 <= res.metrics["brier"] <= 1
    s = res.summary()
    assert {"f1", "f1_std", "f1_ci95", "auroc_ci95", "brier"} <= set(s)
    text = res.format()
    assert "grouped by problem (8 groups, 16 traces" in text and "auroc" in text


def test_folds_never_split_a_problem(monkeypatch):
    import probes.sweep as sweep

    seen = []
    real = sweep.grouped_folds

    def spy(groups, n_splits):
        folds = real(groups, n_splits)
        g = np.asarray(groups)
        for tr, te in folds:
            seen.append(set(g[tr]) & set(g[te]))
        return folds

    monkeypatch.setattr(sweep, "grouped_folds", spy)
    train_trace_probe(FakeStore(), estimator="context", layers=[2], pools=["mean"], n_splits=4)
    assert seen and all(not s for s in seen)
    res = train_trace_probe(
        FakeStore(), estimator="context", layers=[2], pools=["mean"], group_by="trace_id"
    )
    assert res.group_by == "trace_id" and res.n_groups == 16


def test_cv_refuses_a_trace_split_across_groups():
    from probes.context import ContextProbe

    X = np.random.default_rng(0).normal(size=(8, 2))
    y = np.array([0, 1] * 4)
    with pytest.raises(ConfigError, match="spans several CV groups"):
        cross_validate_probe(ContextProbe(), X, y, list("aabbccdd"), 2, traces=["t"] * 8)


def test_traces_with_unlabelled_steps_are_left_out_whole():
    store = FakeStore()
    store.steps.loc[store.steps["trace_id"] == "ok/p3", "label"] = None
    store.steps.loc[store.steps.index[store.steps["trace_id"] == "bad/p5"][:1], "label"] = None
    res = train_trace_probe(store, estimator="context", layers=[2], pools=["mean"], n_splits=4)
    assert res.dropped == ["bad/p5", "ok/p3"] and res.n_traces == 14
    assert res.n_steps == 14 * 12 and "left out 2 traces" in res.format()


def test_stacked_saves_features_metrics_and_cv(tmp_path):
    store = FakeStore()
    out = tmp_path / "probe"
    res = train_trace_probe(
        store, estimator="stacked", layers=[0, 2], pools=["mean", "last"], n_splits=4, out=out
    )
    est, cfg = load_probe(out)
    assert cfg.estimator == "stacked" and res.rules
    assert cfg.features == {"layers": [0, 2], "pools": ["mean", "last"], "rules": True}
    assert cfg.blocks == [(0, "mean"), (0, "last"), (2, "mean"), (2, "last")]
    assert cfg.n_features == 4 * 6 + 8 == est.n_features_in_
    assert cfg.metrics["f1_ci95"] == res.intervals["f1"] and cfg.source["group_by"] == "problem"
    cv = json.loads((out / "cv.json").read_text())
    assert len(cv["fold_metrics"]) == 4 and cv["blocks"][0] == [0, "mean"]
    assert 0 <= est.threshold_ <= 1


def test_eight_way_tags():
    store = FakeStore()
    store.steps.loc[store.steps.index[::5], "label"] = "self_checking"
    res = train_trace_probe(
        store, "tag", estimator="bigru", layers=[2], pools=["mean"], params={"epochs": 5}
    )
    assert res.task == "multiclass" and "macro_f1" in res.metrics


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"target": "importance"}, "classify steps"),
        ({"estimator": "logistic"}, "unknown trace estimator"),
        ({"estimator": "stacked", "rules": False}, "reads the rule features"),
        ({"params": {"no_such": 1}}, "bad parameters for the context estimator"),
        ({"layers": [7]}, "has no layer 7"),
        ({"pools": ["max"]}, "has no pool 'max'"),
        ({"group_by": "nope"}, "no column 'nope'"),
        ({"n_splits": 40}, "40 folds need at least 40"),
    ],
)
def test_bad_settings_fail_in_one_line_before_fitting(kw, match):
    kw = {"estimator": "context", "layers": [2], "pools": ["mean"], **kw}
    with pytest.raises(ConfigError, match=match):
        train_trace_probe(FakeStore(), **kw)


def test_intervals_of_a_cv_result():
    r = CVResult("binary", {}, [{"f1": v, "auroc": np.nan} for v in (0.5, 0.9, 0.7)], None, None)
    iv = r.intervals()
    assert iv["f1"][0] < 0.7 < iv["f1"][1] and np.isnan(iv["auroc"][0])


def test_cli_trains_a_stacked_probe_that_labels_new_traces(tmp_path, tiny_model):
    """`mechgraph probe --estimator stacked` on a real store, then `label --method probe:`."""
    from mechgraph.cli import app
    from mechgraph.extract import extract
    from mechgraph.labels.cli import run_label
    from mechgraph.traces import Trace, segment_traces

    traces = []
    for i in range(8):
        t = segment_traces([Trace(f"t{i}", " ".join([PLAN[i % 3], EXEC[i % 3], EXEC[0]]))])[0]
        labs = ["plan_generation", "active_computation", "active_computation"]
        t.steps = [
            s.__class__(s.start, s.end, s.text, la) for s, la in zip(t.steps, labs, strict=True)
        ]
        traces.append(t)
    extract(
        traces, tmp_path / "s", model=tiny_model, layers=(0, 2), pools=("mean", "last"),
        segmenter="given", progress=False,
    )  # fmt: skip
    args = ["probe", str(tmp_path / "s"), "--estimator", "stacked", "--layers", "2"]
    args += ["--pools", "mean,last", "--n-splits", "4", "--param", "window=1"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert "stacked probe on 2:mean, 2:last + rules" in r.output
    assert "grouped by trace_id" in r.output  # the store has no problem column
    _, cfg = load_probe(tmp_path / "p")
    assert cfg.params["window"] == 1
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "new", "text": f"{PLAN[0]} {EXEC[1]}"}) + "\n")
    out = run_label(inp, f"probe:{tmp_path / 'p'}", tmp_path / "lab.jsonl")
    steps = json.loads(out.read_text())["steps"]
    assert len(steps) == 2 and all(0 <= s["score"] <= 1 for s in steps)
    bad = CliRunner().invoke(app, [*args, "--param", "window"])
    assert bad.exit_code == 1 and "--param takes KEY=VALUE" in bad.output
