"""probes.train on a small fake store: targets, label files, artifacts, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from mechgraph.errors import ConfigError, TraceError
from probes import load_probe, probe_command, train_probe
from probes.train import parse_layers, read_label_jsonl, targets

TAGS = ["plan_generation", "active_computation", "uncertainty_management", "fact_retrieval"]


class FakeStore:
    """The parts of mechgraph.store.Store that probes use."""

    def __init__(self, n_traces=12, per=10, d=8, layers=(0, 2, 4), seed=0):
        rng = np.random.default_rng(seed)
        rows = []
        for t in range(n_traces):
            pos = 0
            for k in range(per):
                tag = TAGS[rng.integers(0, len(TAGS))]
                rows.append(
                    dict(
                        trace_id=f"tr{t}",
                        step=k,
                        char_start=pos,
                        char_end=pos + 5,
                        text="abcde",
                        label=tag,
                        counterfactual_importance_kl=float(rng.random()),
                    )
                )
                pos += 6
        self.steps = pd.DataFrame(rows)
        self.layers = list(layers)
        self.path = Path("fake")
        self.manifest = {
            "model_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "fingerprint": "fp0",
            "segmenter": "given",
            "d_model": d,
        }
        plan = self.steps["label"].isin(TAGS[0:3:2]).to_numpy()
        imp = self.steps["counterfactual_importance_kl"].to_numpy()
        self._states = {}
        for i, layer in enumerate(layers):
            X = rng.normal(size=(len(self.steps), d))
            X[:, 0] += i * 1.5 * plan
            X[:, 1] += i * 2.0 * imp
            self._states[layer] = X.astype(np.float32)

    def states(self, layer, pool="mean", hook="resid_post"):
        if pool != "mean" or hook != "resid_post":
            raise ConfigError("only mean/resid_post in the fake store")
        return self._states[layer]


def test_parse_layers():
    assert parse_layers("all", [1, 2]) == [1, 2]
    assert parse_layers("0-4:2,7", range(10)) == [0, 2, 4, 7]
    assert parse_layers([3], range(5)) == [3]
    with pytest.raises(ConfigError, match="not in the store"):
        parse_layers("12", range(5))


def test_planning_probe_from_store_labels(tmp_path):
    store = FakeStore()
    res = train_probe(store, "planning", layers="all", n_splits=4, out=tmp_path / "p")
    assert res.best_layer == 4 and res.table.set_index("layer").loc[4, "auroc"] > 0.9
    est, cfg = load_probe(tmp_path / "p")
    assert cfg.layer == 4 and cfg.classes == [0, 1] and cfg.target == "planning"
    assert cfg.fingerprint == "fp0" and cfg.sweep["best_layer"] == 4
    assert cfg.source["n_traces"] == 12
    assert (tmp_path / "p" / "sweep.csv").is_file()
    X = store.states(4)
    assert est.predict_proba(X).shape == (len(X), 2)


def test_tag_and_importance_targets(tmp_path):
    store = FakeStore()
    res = train_probe(store, "tag", layers=[4], estimator="diffmeans", n_splits=3)
    assert res.task == "multiclass"
    res = train_probe(store, "importance", layers="0,4", n_splits=3, out=tmp_path / "imp")
    assert res.task == "regression" and res.best_layer == 4
    assert res.table.set_index("layer").loc[4, "spearman"] > 0.5
    _, cfg = load_probe(tmp_path / "imp")
    assert cfg.target == "importance:counterfactual_importance_kl" and cfg.classes is None
    with pytest.raises(ConfigError, match="no column"):
        train_probe(store, "importance:nope", n_splits=3)
    with pytest.raises(ConfigError, match="unknown probe target"):
        train_probe(store, "vibes", n_splits=3)


def _label_file(store, path, flip=False, break_span=None):
    recs = []
    for tid, df in store.steps.groupby("trace_id", sort=False):
        steps = [
            dict(
                start=int(a),
                end=int(b),
                text="abcde",
                tag=t,
                planning=(t in ("plan_generation", "uncertainty_management")) != flip,
                score=0.5,
            )
            for a, b, t in df[["char_start", "char_end", "label"]].to_numpy()
        ]
        if break_span == tid:
            steps[0]["start"] += 1
        recs.append({"id": tid, "steps": steps})
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_label_file_targets(tmp_path):
    store = FakeStore()
    lab = _label_file(store, tmp_path / "l.jsonl")
    y_file, keep = targets(store.steps, "planning", read_label_jsonl(lab))
    y_store, _ = targets(store.steps, "planning")
    assert keep.all() and np.array_equal(y_file, y_store)
    flipped = _label_file(store, tmp_path / "f.jsonl", flip=True)
    y_flip, _ = targets(store.steps, "planning", read_label_jsonl(flipped))
    assert np.array_equal(y_flip, 1 - y_store)
    bad = _label_file(store, tmp_path / "b.jsonl", break_span="tr3")
    with pytest.raises(TraceError, match="tr3"):
        train_probe(store, "planning", labels=bad, n_splits=3)
    (tmp_path / "junk.jsonl").write_text("{}\n")
    with pytest.raises(TraceError, match=r"junk\.jsonl:1"):
        read_label_jsonl(tmp_path / "junk.jsonl")


def test_missing_labels_are_dropped():
    store = FakeStore()
    store.steps.loc[::7, "label"] = None
    _, keep = targets(store.steps, "planning")
    assert (~keep).sum() == len(store.steps[::7])


def test_probe_command_prints_table(tmp_path, monkeypatch):
    import probes.train as pt
    from mechgraph import store as store_mod

    fake = FakeStore()
    monkeypatch.setattr(store_mod, "open_store", lambda p: fake)
    app = typer.Typer()
    app.command("probe")(probe_command)
    app.command("noop")(lambda: None)
    r = CliRunner().invoke(
        app,
        [
            "probe",
            str(tmp_path),
            "--layers",
            "0,4",
            "--n-splits",
            "3",
            "--out",
            str(tmp_path / "art"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "auroc" in r.output and "saved the layer-4 probe" in r.output
    r = CliRunner().invoke(app, ["probe", str(tmp_path), "--layers", "9"])
    assert r.exit_code == 1 and "not in the store" in r.output
    assert pt.DEFAULT_IMPORTANCE == "counterfactual_importance_kl"


def test_module_entry_point_help():
    r = subprocess.run(
        [sys.executable, "-m", "probes.train", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert r.returncode == 0 and "--target" in r.stdout


def test_config_for_a_probe_fitted_by_hand(tmp_path):
    from probes import LinearProbe, ProbeConfig, RidgeProbe, save_probe

    store = FakeStore()
    y = store.steps["label"].isin(TAGS[0:3:2]).to_numpy().astype(int)
    est = LinearProbe(C=0.5).fit(store.states(4), y)
    cfg = ProbeConfig.for_store(est, store, 4, metrics={"note": "by hand"})
    assert (cfg.estimator, cfg.classes, cfg.layer, cfg.d_model) == ("logistic", [0, 1], 4, 8)
    assert cfg.params["C"] == 0.5 and cfg.fingerprint == "fp0"
    assert cfg.source["store"] == "fake" and cfg.metrics == {"note": "by hand"}
    est2, cfg2 = load_probe(save_probe(est, cfg, tmp_path / "p"))
    assert cfg2 == cfg
    np.testing.assert_allclose(
        est2.predict_proba(store.states(4)), est.predict_proba(store.states(4))
    )
    ridge = RidgeProbe().fit(store.states(0), store.steps["counterfactual_importance_kl"])
    rcfg = ProbeConfig.for_store(ridge, store, 0, "importance:counterfactual_importance_kl")
    assert rcfg.estimator == "ridge" and rcfg.classes is None
    with pytest.raises(ConfigError, match="no layer 3"):
        ProbeConfig.for_store(est, store, 3)
    with pytest.raises(ConfigError, match="not a probes estimator"):
        ProbeConfig.for_store(object(), store, 4)
