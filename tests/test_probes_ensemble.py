"""Rule features, the stacked ensemble, and the probe labeller with several blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mechgraph.labels import TAGS
from probes.artifacts import ProbeConfig, load_probe, save_probe
from probes.ensemble import N_RULES, StackedEnsemble, rule_features
from probes.labeller import ProbeLabeller

TA = Path(__file__).resolve().parents[2] / "shared" / "data" / "thought_anchors_llama8b"


def _data(seed=0, n_traces=12, length=40):
    """Two partial views of the label: a weak state signal and a rule that fires on 60%."""
    rng = np.random.default_rng(seed)
    n = n_traces * length
    y = (rng.random(n) < 0.25).astype(int)
    S = rng.normal(size=(n, 6))
    S[:, 0] += 2.0 * y
    R = np.full((n, N_RULES), 0.1)
    R[:, 1] += 0.6 * y * (rng.random(n) < 0.6)
    return np.hstack([S, R]), y, np.repeat(np.arange(n_traces), length)


def test_rule_features_are_the_tagger_probabilities():
    f = rule_features(["Alternatively, maybe we can use symmetry.", "So 3 * 4 = 12."])
    assert f.shape == (2, len(TAGS)) == (2, N_RULES)
    assert TAGS[int(f[0].argmax())] == "plan_generation"
    assert np.allclose(f.sum(axis=1), 1)


def test_stacking_beats_each_view_and_is_calibrated():
    from sklearn.metrics import f1_score

    from probes.calibration import brier_score

    X, y, g = _data()
    tr, te = g < 8, g >= 8
    m = StackedEnsemble(window=0).fit(X[tr], y[tr], groups=g[tr])
    f_ens = f1_score(y[te], m.predict(X[te], groups=g[te]))
    f_rule = f1_score(y[te], X[te, -N_RULES + 1] > 0.3)
    f_state = f1_score(y[te], X[te, 0] > 0.5)
    assert f_ens > max(f_rule, f_state) + 0.03
    p = m.predict_proba(X[te], groups=g[te])[:, 1]
    assert brier_score(y[te], p) < brier_score(y[te], np.full(te.sum(), y[tr].mean()))
    assert 0 < m.threshold_ < 1


def test_target_precision_raises_precision():
    from sklearn.metrics import precision_score

    X, y, g = _data(seed=2)
    hi = StackedEnsemble(window=0, target_precision=0.99).fit(X, y, groups=g)
    lo = StackedEnsemble(window=0, target_precision=0.7).fit(X, y, groups=g)
    assert hi.threshold_ >= lo.threshold_
    assert precision_score(y, hi.predict(X, groups=g)) >= precision_score(
        y, lo.predict(X, groups=g)
    )


def test_stacked_artifact_and_labeller_use_the_threshold(tmp_path):
    X, y, g = _data()
    m = StackedEnsemble(window=1, n_components=3).fit(X, y, groups=g)
    cfg = ProbeConfig(
        "stacked",
        m.get_params(),
        "planning",
        [0, 1],
        0,
        "resid_post",
        "mean",
        "default",
        None,
        6,
        features={"layers": [0], "pools": ["mean"], "rules": True},
    )
    path = save_probe(m, cfg, tmp_path / "p")
    m2, _ = load_probe(path)
    one = g == 5
    assert np.allclose(m2.predict_proba(X[one]), m.predict_proba(X[one], groups=g[one]))
    labels = ProbeLabeller(path).label_from_states(X[one])
    flags = np.array([s.planning for s in labels])
    assert np.array_equal(flags, m.predict(X[one], groups=g[one]) == 1)


@pytest.mark.skipif(not TA.is_dir(), reason="needs ../shared/data (Thought Anchors traces)")
def test_real_traces_rules_in_context_transfer_to_held_out_problems():
    """Rule probabilities of a sentence and its neighbours, stacked, on unseen problems."""
    from sklearn.metrics import f1_score

    from mechgraph.labels import PLANNING_TAGS
    from mechgraph.traces import load_traces

    traces = load_traces(TA)
    R = [rule_features([s.text for s in t.steps]) for t in traces]
    y = np.concatenate([[s.label in PLANNING_TAGS for s in t.steps] for t in traces]).astype(int)
    g = np.concatenate([[k] * len(t.steps) for k, t in enumerate(traces)])
    prob = np.concatenate([[t.id.split("/")[-1]] * len(t.steps) for t in traces])
    X = np.hstack([np.vstack(R), np.vstack(R)])  # "states" = the rule scores themselves
    rule_pred = (X[:, 1] + X[:, 3] >= 0.5).astype(int)  # not the tagger's argmax: a bound
    held = np.isin(prob, np.unique(prob)[:3])
    m = StackedEnsemble(window=1, C=0.5).fit(X[~held], y[~held], groups=g[~held])
    pred = m.predict(X[held], groups=g[held])
    assert f1_score(y[held], pred) > 0.6
    assert f1_score(y[held], pred) > f1_score(y[held], rule_pred[held]) - 0.05


def test_labeller_extracts_every_block_and_the_rules(tmp_path, tiny_model):
    """A saved ensemble over 2 layers x 2 pools + rules labels new traces end to end."""
    from mechgraph.extract import extract
    from mechgraph.traces import Trace, segment_traces

    plan = ["Let me try another approach.", "Wait, maybe that is wrong."]
    calc = ["So 3 * 4 = 12 here.", "Then 12 + 5 = 17 now."]
    traces = []
    for i in range(6):
        t = segment_traces([Trace(f"t{i}", " ".join([plan[i % 2], *calc, plan[1 - i % 2]]))])[0]
        tags = ["plan_generation", "active_computation", "active_computation", "plan_generation"]
        t.steps = [
            s.__class__(s.start, s.end, s.text, g) for s, g in zip(t.steps, tags, strict=True)
        ]
        traces.append(t)
    store = extract(
        traces,
        tmp_path / "s",
        model=tiny_model,
        layers=(0, 2),
        pools=("mean", "last"),
        segmenter="given",
        progress=False,
    )
    steps = store.steps
    X = np.hstack(
        [store.states(la, pool=po) for la in (0, 2) for po in ("mean", "last")]
        + [np.vstack([rule_features([s.text for s in t.steps]) for t in traces])]
    )
    assert list(steps["trace_id"]) == [t.id for t in traces for _ in t.steps]
    y = np.array([lab in ("plan_generation",) for lab in steps["label"]], dtype=int)
    est = StackedEnsemble(window=1).fit(X, y, groups=steps["trace_id"].to_numpy())
    feats = {"layers": [0, 2], "pools": ["mean", "last"], "rules": True}
    cfg = ProbeConfig.for_store(est, store, 0, features=feats)
    assert cfg.n_features == X.shape[1]
    path = save_probe(est, cfg, tmp_path / "p")
    got = ProbeLabeller(path, model=tiny_model).label_traces(traces[:2])
    want = est.predict_proba(X[:8], groups=steps["trace_id"].to_numpy()[:8])[:, 1]
    assert np.allclose([s.score for ls in got for s in ls], want, atol=1e-5)
