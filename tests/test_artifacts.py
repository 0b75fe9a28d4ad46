"""`mechgraph.artifacts.load`: every artifact kind read back as its typed object."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mechgraph.artifacts import (
    TableArtifact,
    artifact_kind,
    content_hash,
    info_path,
    load,
    read_info,
    write_info,
)
from mechgraph.errors import ArtifactError, StoreError
from mechgraph.traces import Trace


def test_phases_round_trip_with_record(tmp_path, smol):
    from mechgraph.phases import analyze_phases, write_phases

    src = tmp_path / "samples.jsonl"
    run = [
        Trace(f"{c}/{i}", f"Let me try {i}. So {i} + {c} = {i + c}.", checkpoint=str(c))
        for c in (10, 20, 30, 40, 50, 60)
        for i in range(3)
    ]
    src.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in run))
    rep = analyze_phases(run, tokenizer=smol, n_boot=30, workers=1, topology=False)
    out = tmp_path / "ph.parquet"
    written = write_phases(rep, out, inputs=[src])
    assert info_path(out) in written
    art = load(out)
    assert isinstance(art, TableArtifact) and art.kind == "phases"
    pd.testing.assert_frame_equal(art.table, rep.table)
    assert art.meta["two_phase"]["verdict"] == rep.two_phase["verdict"]
    info = read_info(out)
    assert info.kind == "phases" and info.config["n_boot"] == 30
    assert info.inputs == [{"path": str(src), "sha256": content_hash(src)}]


def test_nodespace_and_probe_round_trip(tmp_path):
    from mechgraph.graphs import NodeSpace, NodeSpaceConfig
    from probes.artifacts import ProbeConfig, save_probe
    from probes.estimators import LinearProbe

    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    ns = NodeSpace(NodeSpaceConfig(k=3)).fit(X, layer=1)
    ns.save(tmp_path / "ns")
    back = load(tmp_path / "ns")
    assert isinstance(back, NodeSpace) and np.array_equal(back.predict(X), ns.predict(X))
    y = (X[:, 0] > 0).astype(int)
    est = LinearProbe().fit(X, y)
    cfg = ProbeConfig(
        "logistic", est.get_params(), "planning", [0, 1], 0, "resid_post", "mean", "m", None, 4
    )
    save_probe(est, cfg, tmp_path / "probe")
    assert artifact_kind(tmp_path / "probe") == "probe"
    est2, cfg2 = load(tmp_path / "probe")
    assert np.array_equal(est2.predict(X), est.predict(X)) and cfg2.target == "planning"


def test_weights_and_labels_round_trip(tmp_path, smol):
    import mechgraph as mg
    from mechgraph.labels.cli import run_label

    traces = mg.segment_traces([Trace("a", "Let me try another way. So 2 + 2 = 4.")])
    rows = mg.token_weights(traces, smol, mg.WeightsConfig(planning="rules"))
    for name in ("w.parquet", "w.jsonl"):
        mg.write_weights(tmp_path / name, rows)
        assert artifact_kind(tmp_path / name) == "weights"
        (back,) = load(tmp_path / name)
        assert back.id == "a" and np.array_equal(back.input_ids, rows[0].input_ids)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "text": traces[0].text}) + "\n")
    out = run_label(src, "rules", tmp_path / "labels.jsonl")
    (rec,) = load(out)
    assert rec["id"] == "a" and rec["steps"][0]["planning"] is True


def test_graph_table_and_store_round_trip(tmp_path):
    from mechgraph.graphs import GraphConfig, NodeSpaceConfig, analyze_corpus
    from mechgraph.graphs.cli import write_outputs
    from mechgraph.store import Store, StoreWriter, state_key

    path = tmp_path / "store"
    w = StoreWriter(
        path,
        {
            "model_id": "fake",
            "layers": [0],
            "hooks": ["blocks.0.hook_resid_post"],
            "pools": ["mean"],
            "d_model": 4,
            "n_layers": 1,
        },
    )
    rng = np.random.default_rng(0)
    n = [6, 5]
    steps = pd.DataFrame(
        {
            "trace_id": [f"t{i}" for i, k in enumerate(n) for _ in range(k)],
            "step": [j for k in n for j in range(k)],
            "text": "s",
            "char_start": 0,
            "char_end": 1,
            "tok_start": 0,
            "tok_end": 1,
        }
    )
    traces = pd.DataFrame({"trace_id": ["t0", "t1"], "text": "x", "text_sha": ["h0", "h1"]})
    states = {state_key("blocks.0.hook_resid_post", "mean"): rng.normal(size=(11, 4))}
    w.write_shard(traces, steps, {k: v.astype(np.float32) for k, v in states.items()})
    store = load(path)
    assert isinstance(store, Store) and store.states(0).shape == (11, 4)
    res = analyze_corpus([path], GraphConfig(layer=0, nodes=NodeSpaceConfig(k=2)))
    out = tmp_path / "m.parquet"
    write_outputs(res, out, nodespace_path=None, stores=[path])
    art = load(out)
    assert art.kind == "graph-table" and len(art.table) == 2 and art.meta["config"]["layer"] == 0


def test_foreign_missing_and_corrupt_artifacts_name_the_file(tmp_path):
    with pytest.raises(ArtifactError, match="no such file"):
        load(tmp_path / "nope.parquet")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ArtifactError, match=r"x\.txt: not a mechgraph artifact"):
        load(tmp_path / "x.txt")
    (tmp_path / "d").mkdir()
    with pytest.raises(ArtifactError, match="not a mechgraph store"):
        load(tmp_path / "d")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(ArtifactError, match=r"bad\.parquet"):
        load(bad)
    write_info(bad, "importance")
    info_path(bad).write_text("{broken")
    with pytest.raises(ArtifactError, match="unreadable artifact record"):
        load(bad)
    assert issubclass(ArtifactError, StoreError)
    with pytest.raises(ArtifactError, match="unknown artifact kind"):
        write_info(bad, "magic")


def test_atomic_dir_folders_are_readable_by_the_group(tmp_path):
    import os
    import stat

    from mechgraph.io import atomic_dir

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "a") as tmp:
            (tmp / "f.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755


def test_importance_table_and_matrices_load(tmp_path):
    import numpy as np
    import pandas as pd

    from mechgraph.importance.cli import ImportanceConfig, write_importance

    table = pd.DataFrame({"trace_id": ["a", "a"], "step": [0, 1], "receiver_score": [0.1, 0.2]})
    mats = {"a/vertical": np.eye(2, dtype=np.float32)}
    out = tmp_path / "imp.parquet"
    write_importance(table, mats, out, ImportanceConfig(methods=["receivers"]), [])
    art = load(out)
    assert art.kind == "importance" and art.table["receiver_score"].tolist() == [0.1, 0.2]
    m = load(out.with_suffix(".safetensors"))
    assert np.array_equal(m["a/vertical"], np.eye(2))
