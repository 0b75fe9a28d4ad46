"""Step-count matching in the graph stage: first-N cuts and prompt-paired cuts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from mechgraph.errors import ConfigError
from mechgraph.graphs import (
    METRIC_COLUMNS,
    GraphConfig,
    NodeSpace,
    NodeSpaceConfig,
    analyze_corpus,
    graph_table,
    load_corpus,
    topology_metrics,
)
from mechgraph.graphs.cli import graph_command
from mechgraph.graphs.matching import match_corpus

# tiny corpora: the node space falls back to fewer nodes, as documented
pytestmark = pytest.mark.filterwarnings("ignore::mechgraph.graphs.nodespace.NodeSpaceWarning")

D = 6
CENTERS = np.random.default_rng(42).normal(0, 5, (5, D))
WORDS = ["Wait, let me check.", "So x = 2.", "Then y = 3.", "Hmm, no."]


def _trace_rows(tid: str, n: int, seed: int, model: str) -> tuple[list[dict], np.ndarray]:
    """Steps and states of one trace; the same (tid, seed) always gives the same steps."""
    rng = np.random.default_rng(seed)
    walk = rng.integers(0, len(CENTERS), n)
    states = CENTERS[walk] + rng.normal(0, 0.3, (n, D))
    rows = [
        {
            "trace_id": tid,
            "step": s,
            "text": WORDS[s % 4],
            "label": "uncertainty_management" if s % 4 in (0, 3) else "active_computation",
            "model": model,
        }
        for s in range(n)
    ]
    return rows, states


class PromptStore:
    """Duck-typed store whose traces are given as (trace_id, prompt, n_steps)."""

    def __init__(self, path, traces, *, model="m", seed=0, cut=None, with_prompt=True):
        self.path = Path(path)
        rows, states = [], []
        for i, (tid, _, n) in enumerate(traces):
            r, st = _trace_rows(tid, n, seed * 1000 + i, model)
            keep = n if cut is None else min(n, cut.get(tid, n))
            rows += r[:keep]
            states.append(st[:keep])
        self.steps = pd.DataFrame(rows, columns=["trace_id", "step", "text", "label", "model"])
        self._states = np.concatenate(states).astype(np.float32) if states else np.zeros((0, D))
        tr = {
            "trace_id": [t for t, _, _ in traces],
            "text": "x",
            "model": model,
            "checkpoint": "c0",
            "correct": True,
            "answer": "1",
        }
        if with_prompt:
            tr["prompt"] = [p for _, p, _ in traces]
        self.traces = pd.DataFrame(tr)

    def states(self, layer, pool="mean", hook="resid_post"):
        return self._states


def _cfg(**kw) -> GraphConfig:
    return GraphConfig(layer=0, nodes=NodeSpaceConfig(k=4, random_state=0), **kw)


def _same_metrics(a: pd.DataFrame, b: pd.DataFrame) -> None:
    cols = [c for c in METRIC_COLUMNS if c in a and c in b]
    pd.testing.assert_frame_equal(
        a[["store", "trace_id", *cols]].reset_index(drop=True),
        b[["store", "trace_id", *cols]].reset_index(drop=True),
    )


# ----------------------------------------------------------------------------- int N
def test_first_n_cut_equals_metrics_of_truncated_traces(tmp_path):
    spec_a = [("a0", "p0", 12), ("a1", "p1", 3), ("a2", "p2", 9), ("empty", "p3", 0)]
    spec_b = [("b0", "p0", 7), ("b1", "p1", 15)]
    stores = [
        PromptStore(tmp_path / "A", spec_a, model="r1", seed=1),
        PromptStore(tmp_path / "B", spec_b, model="base", seed=2),
    ]
    res = analyze_corpus(stores, _cfg(match_steps=6, n_null=2))
    t = res.table
    assert t["trace_id"].tolist() == ["a0", "a1", "a2", "empty", "b0", "b1"]
    assert t["n_steps"].tolist() == [6, 3, 6, 0, 6, 6]
    assert t["n_steps_full"].tolist() == [12, 3, 9, 0, 7, 15]
    cols = list(t.columns)
    assert cols[cols.index("n_steps") + 1] == "n_steps_full"
    assert "pair_key" not in t and "prompt" not in t
    assert res.nodespace.meta["n_steps_seen"] == 27  # fitted on the matched steps only
    assert len(res.corpus.steps) == len(res.corpus.states) == len(res.nodes) == 27
    assert res.matching["n_traces_cut"] == 4 and res.matching["n_steps"] == 46
    # the same numbers as analysing stores that only ever held the first 6 steps
    cut = {t: 6 for t in ("a0", "a2", "b0", "b1")}
    by_hand = [
        PromptStore(tmp_path / "A", spec_a, model="r1", seed=1, cut=cut),
        PromptStore(tmp_path / "B", spec_b, model="base", seed=2, cut=cut),
    ]
    ref = analyze_corpus(by_hand, _cfg(n_null=2))
    _same_metrics(t, ref.table)
    pd.testing.assert_frame_equal(
        t.filter(like="_z_"), ref.table.filter(like="_z_"), check_dtype=False
    )
    pd.testing.assert_frame_equal(res.aha, ref.aha)
    assert (ref.table["n_steps_full"] == ref.table["n_steps"]).all()
    # and each row is topology_metrics on the trace's first 6 node ids
    full = load_corpus(stores, 0)
    nodes = res.nodespace.predict(full.states)
    lo = full.offsets[0]
    one = topology_metrics(nodes[lo : lo + 6], full.states[lo : lo + 6])
    assert t.iloc[0]["n_cycles"] == one["n_cycles"]
    assert t.iloc[0]["revisits"] == one["revisits"]
    assert t.iloc[0]["diameter"] == pytest.approx(one["diameter"])


def test_graph_table_shortcut_and_config_record(tmp_path):
    stores = [PromptStore(tmp_path / "A", [("a0", "p", 10), ("a1", "q", 4)])]
    t = graph_table(stores, 0, k=3, match_steps=5)
    assert t["n_steps"].tolist() == [5, 4] and t["n_steps_full"].tolist() == [10, 4]
    d = _cfg(match_steps="paired", pair_by="trace_id").to_dict()
    assert d["match_steps"] == "paired" and d["pair_by"] == "trace_id"
    assert GraphConfig(layer=0, match_steps="8").match_steps == 8  # from the CLI / JSON
    assert GraphConfig(layer=0).match_steps is None


# ----------------------------------------------------------------------------- paired
def test_paired_two_groups_cuts_to_shortest_and_drops_unpaired(tmp_path):
    spec_a = [("a0", "p1", 10), ("a1", "p2", 6), ("a2", "p3", 8), ("a3", "p1", 12)]
    spec_b = [("b0", "p1", 7), ("b1", "p2", 9), ("b2", "p4", 5), ("e", "p2", 0)]
    stores = [
        PromptStore(tmp_path / "A", spec_a, model="r1", seed=1),
        PromptStore(tmp_path / "B", spec_b, model="base", seed=2),
    ]
    res = analyze_corpus(stores, _cfg(match_steps="paired"))
    t = res.table
    assert t["trace_id"].tolist() == ["a0", "a1", "a3", "b0", "b1"]
    assert t["n_steps"].tolist() == [7, 6, 7, 7, 6]
    assert t["n_steps_full"].tolist() == [10, 6, 12, 7, 9]
    assert "prompt" not in t and t["pair_key"].str.len().eq(12).all()
    assert t["pair_key"].nunique() == 2
    assert t.groupby("pair_key")["store"].nunique().eq(2).all()
    m = res.matching
    assert m["n_prompts"] == 2 and m["n_groups"] == 2 and m["pair_by"] == "prompt"
    assert m["n_dropped_unpaired"] == 2 and m["n_dropped_empty"] == 1
    assert m["n_traces_kept"] == 5 and m["n_steps_kept"] == 33
    assert res.nodespace.meta["n_steps_seen"] == 33
    sizes = res.corpus.steps.groupby(["store", "trace_id"], sort=False).size()
    assert sizes.tolist() == [7, 6, 7, 7, 6]


def test_paired_matches_hand_cut_exactly(tmp_path):
    # unpaired traces last, so that hand-built stores draw the same steps for the rest
    spec_a = [("a0", "p1", 10), ("a1", "p2", 6), ("a2", "p3", 8)]
    spec_b = [("b0", "p1", 7), ("b1", "p2", 9)]
    stores = [
        PromptStore(tmp_path / "A", spec_a, seed=1),
        PromptStore(tmp_path / "B", spec_b, seed=2),
    ]
    res = analyze_corpus(stores, _cfg(match_steps="paired", n_null=2))
    cut = {"a0": 7, "b1": 6}
    ref = analyze_corpus(
        [
            PromptStore(tmp_path / "A", spec_a[:2], seed=1, cut=cut),
            PromptStore(tmp_path / "B", spec_b, seed=2, cut=cut),
        ],
        _cfg(n_null=2),
    )
    _same_metrics(res.table, ref.table)
    pd.testing.assert_frame_equal(
        res.table.filter(like="_z_"), ref.table.filter(like="_z_"), check_dtype=False
    )
    pd.testing.assert_frame_equal(res.aha, ref.aha)
    np.testing.assert_array_equal(res.nodespace.centers_, ref.nodespace.centers_)


def test_paired_three_groups_and_group_by_field(tmp_path):
    stores = [
        PromptStore(tmp_path / "A", [("x", "p1", 9), ("y", "p2", 8), ("z", "p3", 5)], seed=1),
        PromptStore(tmp_path / "B", [("x", "p1", 4), ("y", "p2", 11)], seed=2),
        PromptStore(tmp_path / "C", [("x", "p1", 6), ("z", "p3", 3)], seed=3),
    ]
    res = analyze_corpus(stores, _cfg(match_steps="paired"))
    t = res.table
    assert t["store"].tolist() == ["A", "B", "C"] and set(t["trace_id"]) == {"x"}
    assert t["n_steps"].tolist() == [4, 4, 4] and t["n_steps_full"].tolist() == [9, 4, 6]
    assert res.matching["n_prompts"] == 1 and res.matching["n_dropped_unpaired"] == 4
    # pair by trace id instead of prompt: same pairs here
    by_id = analyze_corpus(stores, _cfg(match_steps="paired", pair_by="trace_id")).table
    assert by_id["n_steps"].tolist() == [4, 4, 4]
    # group by a trace field: two models spread over three stores
    stores[1].traces["model"] = "m"
    stores[2].traces["model"] = "other"
    stores[0].traces["model"] = ["m", "m", "other"]
    g = analyze_corpus(stores, _cfg(match_steps="paired", group_by="model"))
    # p1: m has A.x (9) and B.x (4), other has C.x (6) -> all cut to 4.
    # p2: only in m (A.y, B.y); p3: only in other (A.z, C.z) -> dropped.
    assert g.table["trace_id"].tolist() == ["x", "x", "x"]
    assert g.table["n_steps"].tolist() == [4, 4, 4]
    assert g.matching["n_groups"] == 2 and g.matching["n_dropped_unpaired"] == 4


def test_paired_single_group_cuts_within_prompt(tmp_path):
    s = PromptStore(tmp_path / "A", [("a", "p", 9), ("b", "p", 5), ("c", "q", 7)])
    res = analyze_corpus([s], _cfg(match_steps="paired", group_by=None))
    assert res.table["n_steps"].tolist() == [5, 5, 7]
    assert res.matching["n_dropped_unpaired"] == 0


def test_match_corpus_directly(tmp_path):
    s = PromptStore(tmp_path / "A", [("a", "p", 9), ("b", None, 5), ("c", "p", 3)])
    corpus = load_corpus([s], 0, pair_by="prompt")
    assert corpus.traces["pair_key"].isna().tolist() == [False, True, False]
    out, info = match_corpus(corpus, "paired")
    assert out.keys["trace_id"].tolist() == ["a", "c"] and out.offsets.tolist() == [0, 3, 6]
    np.testing.assert_array_equal(out.states[:3], corpus.states[:3])
    np.testing.assert_array_equal(out.states[3:], corpus.states[14:17])
    assert out.n_steps_full.tolist() == [9, 3] and info["n_dropped_unpaired"] == 1
    out2, _ = match_corpus(out, 2)  # cutting a cut corpus keeps the original length
    assert out2.n_steps_full.tolist() == [9, 3] and out2.offsets.tolist() == [0, 2, 4]


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [1, 0, -3, True, 2.5, "pairs", "1"])
def test_bad_match_steps(bad):
    with pytest.raises(ConfigError, match="match_steps"):
        GraphConfig(layer=0, match_steps=bad)
    with pytest.raises(ConfigError, match="pair_by"):
        GraphConfig(layer=0, pair_by="")


def test_pairing_errors_are_one_line(tmp_path):
    a = PromptStore(tmp_path / "A", [("a", "p", 5)])
    no_prompt = PromptStore(tmp_path / "B", [("b", "p", 5)], with_prompt=False)
    with pytest.raises(ConfigError, match="no such trace field in store\\(s\\) B") as e:
        analyze_corpus([a, no_prompt], _cfg(match_steps="paired"))
    assert "\n" not in str(e.value)
    other = PromptStore(tmp_path / "C", [("c", "q", 5)])
    with pytest.raises(ConfigError, match="no 'prompt' is shared by all 2 groups") as e:
        analyze_corpus([a, other], _cfg(match_steps="paired"))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="pair_by"):
        match_corpus(load_corpus([a], 0), "paired")
    # the int cut needs no prompt
    assert analyze_corpus([a, no_prompt], _cfg(match_steps=3)).table["n_steps"].tolist() == [3, 3]


# ----------------------------------------------------------------------------- CLI
def _write_store(path: Path, traces: list[tuple[str, str, int]], seed: int) -> None:
    """A real on-disk store (one shard) with a ``prompt`` trace field."""
    from mechgraph.store import StoreWriter, state_key

    w = StoreWriter(
        path,
        {
            "model_id": "fake",
            "layers": [0],
            "hooks": ["blocks.0.hook_resid_post"],
            "pools": ["mean"],
            "d_model": D,
            "n_layers": 1,
        },
    )
    rows, states = [], []
    for i, (tid, _, n) in enumerate(traces):
        r, st = _trace_rows(tid, n, seed * 1000 + i, "m")
        rows += r
        states.append(st)
    steps = pd.DataFrame(rows).drop(columns="model")
    steps["char_start"], steps["char_end"] = 0, 1
    steps["tok_start"], steps["tok_end"] = 0, 1
    tr = pd.DataFrame(
        {
            "trace_id": [t for t, _, _ in traces],
            "prompt": [p for _, p, _ in traces],
            "text": "x",
            "text_sha": [f"h{t}" for t, _, _ in traces],
            "model": path.name,
        }
    )
    key = state_key("blocks.0.hook_resid_post", "mean")
    w.write_shard(tr, steps, {key: np.concatenate(states).astype(np.float32)})


def test_cli_match_steps_on_real_stores(tmp_path):
    long_prompt = "Solve: " + "x" * 500
    _write_store(tmp_path / "r1", [("t0", long_prompt, 12), ("t1", "q2", 6), ("t2", "q3", 5)], 1)
    _write_store(tmp_path / "instruct", [("u0", long_prompt, 4), ("u1", "q2", 9)], 2)
    app = typer.Typer()
    app.command("graph")(graph_command)
    app.command("noop")(lambda: None)
    out = tmp_path / "m.parquet"
    base = ["graph", str(tmp_path / "r1"), str(tmp_path / "instruct"), "--layer", "0", "--k", "3"]
    r = CliRunner().invoke(app, [*base, "--match-steps", "paired", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "step-matched (paired)" in r.output and "1 unpaired" in r.output
    t = pd.read_parquet(out)
    assert t["trace_id"].tolist() == ["t0", "t1", "u0", "u1"]
    assert t["n_steps"].tolist() == [4, 6, 4, 6]
    assert t["n_steps_full"].tolist() == [12, 6, 4, 9]
    assert "prompt" not in t and not (t.astype(str) == long_prompt).any().any()
    doc = json.loads((tmp_path / "m.parquet.json").read_text())
    assert doc["config"]["match_steps"] == "paired" and doc["config"]["pair_by"] == "prompt"
    assert doc["matching"]["n_dropped_unpaired"] == 1 and doc["matching"]["n_prompts"] == 2
    assert NodeSpace.load(tmp_path / "m.nodespace").meta["n_steps_seen"] == 20

    out2 = tmp_path / "n.parquet"
    r = CliRunner().invoke(app, [*base, "--match-steps", "5", "--out", str(out2)])
    assert r.exit_code == 0, r.output
    t2 = pd.read_parquet(out2)
    assert t2["n_steps"].tolist() == [5, 5, 5, 4, 5]
    assert json.loads((tmp_path / "n.parquet.json").read_text())["config"]["match_steps"] == 5

    bad = CliRunner().invoke(app, [*base, "--match-steps", "1", "--out", str(out2)])
    assert bad.exit_code != 0 and "match_steps" in str(bad.exception)
    bad = CliRunner().invoke(
        app, [*base, "--match-steps", "paired", "--pair-by", "problem", "--out", str(out2)]
    )
    assert bad.exit_code != 0 and "'problem'" in str(bad.exception)
