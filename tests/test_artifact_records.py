"""Every stage's own writer leaves the artifact record (kind, config, inputs) that ``load``
reads back: the Python functions write exactly what the command line writes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mechgraph as mg
from mechgraph.artifacts import TableArtifact, content_hash, info_path, load, read_info
from mechgraph.errors import StoreError
from mechgraph.traces import Trace

TEXTS = [
    "Let me try another way. So 2 + 2 = 4. But wait, check it. Yes 4.",
    "Let me try adding first. 3 + 5 = 8. So the answer is 8.",
    "Let me try to factor it. x = 2. Therefore x is 2.",
    "Let me try a table. 7 * 6 = 42. The answer is 42.",
]


def _inputs(*paths):
    return [{"path": str(p), "sha256": content_hash(p)} for p in paths]


@pytest.fixture()
def traces_file(tmp_path):
    src = tmp_path / "traces.jsonl"
    src.write_text(
        "".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS))
    )
    return src


@pytest.fixture()
def store(tiny_model, traces_file, tmp_path):
    out = tmp_path / "store"
    mg.extract(traces_file, out, model=tiny_model, layers=(0, 1), progress=False)
    return out


def test_store_record_and_extract_config_round_trip(store, traces_file, tiny_model, tmp_path):
    from mechgraph.extract import ExtractConfig

    info = read_info(store)
    assert info is not None and info.kind == "store" and info_path(store) == store / "artifact.json"
    assert info.inputs == _inputs(traces_file)
    s = load(store)
    cfg = s.extract_config
    assert isinstance(cfg, ExtractConfig) and cfg.layers == (0, 1)
    assert ExtractConfig(**info.config) == cfg
    assert isinstance(s.config, dict) and s.config["layers"] == [0, 1]  # the old dict API
    # from a list of traces: no input; a resume rewrites the record
    mg.extract(mg.load_traces(traces_file), store, model=tiny_model, layers=(0, 1), progress=False)
    assert read_info(store).inputs == [] and len(load(store)) == 4
    # a manifest written by another version
    m = json.loads((store / "manifest.json").read_text())
    m["config"]["future_option"] = 1
    (store / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match=r"manifest\.json: extract config from another"):
        _ = mg.open_store(store).extract_config
    m["schema_version"] = 99
    (store / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match=r"manifest\.json: store schema version 99"):
        mg.open_store(store)


def test_labels_record(traces_file, tmp_path):
    from mechgraph.labels.cli import run_label

    out = run_label(traces_file, "rules", tmp_path / "labels.jsonl")
    info = read_info(out)
    assert info.kind == "labels" and info_path(out).name == "labels.jsonl.artifact.json"
    assert info.config == {"method": "rules", "grams": None, "segmenter": "sentences"}
    assert info.inputs == _inputs(traces_file)
    assert len(load(out)) == 4
    grams = tmp_path / "grams.txt"
    grams.write_text("but wait\nlet me try\n")
    out2 = run_label(traces_file, "sg", tmp_path / "sg.jsonl", grams=grams)
    info2 = read_info(out2)
    assert info2.config["grams"] == str(grams) and info2.inputs == _inputs(traces_file, grams)


def test_probe_record(store, traces_file, tmp_path):
    from mechgraph.labels.cli import run_label
    from probes.artifacts import ProbeConfig
    from probes.train import train_probe

    labels = run_label(traces_file, "rules", tmp_path / "labels.jsonl")
    out = tmp_path / "probe"
    train_probe(store, "planning", labels=labels, n_splits=2, out=out)
    info = read_info(out)
    assert info.kind == "probe" and (out / "artifact.json").is_file()
    _est, cfg = load(out)
    assert ProbeConfig(**info.config) == cfg
    assert info.inputs == _inputs(store, labels)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # one atomic commit


def test_nodespace_and_graph_table_records(store, tmp_path):
    from mechgraph.graphs import GraphConfig, NodeSpace, NodeSpaceConfig, analyze_corpus

    cfg = GraphConfig(layer=1, nodes=NodeSpaceConfig(k=2), n_null=2)
    res = analyze_corpus([store], cfg)
    assert res.stores == [str(store)]
    out = tmp_path / "g.parquet"
    written = res.save(out)
    ns_path = tmp_path / "g.nodespace"
    assert ns_path in written and info_path(out) in written
    # the node space: config + provenance, the stores as inputs
    ninfo = read_info(ns_path)
    assert ninfo.kind == "nodespace" and ninfo.inputs == _inputs(store)
    ncfg = dict(ninfo.config)
    prov = ncfg.pop("provenance")
    assert NodeSpaceConfig(**ncfg) == cfg.nodes and prov["k"] == res.nodespace.k_
    back = load(ns_path)
    assert isinstance(back, NodeSpace) and back.k_ == res.nodespace.k_
    # the table
    info = read_info(out)
    assert info.kind == "graph-table" and GraphConfig(**info.config) == cfg
    assert info.inputs == _inputs(store)
    art = load(out)
    assert isinstance(art, TableArtifact) and art.kind == "graph-table" and len(art.table) == 4
    # a reused node space is an input of the table, and is not rewritten
    before = content_hash(ns_path)
    res2 = analyze_corpus([store], cfg, nodespace=back)
    res2.save(tmp_path / "g2.parquet", nodespace_path=ns_path, save_nodespace=False)
    assert read_info(tmp_path / "g2.parquet").inputs == _inputs(store, ns_path)
    assert content_hash(ns_path) == before


def test_importance_record(traces_file, tmp_path):
    from mechgraph.importance.cli import ImportanceConfig, matrices_path, write_importance

    table = pd.DataFrame(
        {"trace_id": ["t0", "t0"], "step": [0, 1], "label": None, "text": ["a", "b"]}
    ).assign(suppression_score=[0.5, 0.1])
    mats = {"t0/suppression": np.eye(2, dtype=np.float32)}
    cfg = ImportanceConfig(methods=("suppression",), max_tokens=64, batch_size=2)
    out = tmp_path / "imp.parquet"
    written = write_importance(table, mats, out, cfg, [traces_file])
    assert out in written and matrices_path(out) in written
    for p in (out, matrices_path(out)):
        info = read_info(p)
        assert info.kind == "importance" and ImportanceConfig.from_dict(info.config) == cfg
        assert info.inputs == _inputs(traces_file)
    assert info.config["max_tokens"] == 64 and info.config["top_k"] == 20  # every option
    art = load(out)
    assert art.kind == "importance"
    pd.testing.assert_frame_equal(art.table, table)
    jl = write_importance(table, None, tmp_path / "imp.jsonl", cfg.to_dict(), [traces_file])
    assert read_info(jl[0]).config == cfg.to_dict() and len(jl) == 2


def test_weights_record(traces_file, smol, tmp_path):
    from mechgraph.weights.build import WeightsConfig

    traces = mg.segment_traces([Trace("a", TEXTS[0])])
    wcfg = WeightsConfig(planning="rules")
    rows = mg.token_weights(traces, smol, wcfg)
    out = mg.write_weights(tmp_path / "w.parquet", rows, wcfg, inputs=[traces_file])
    info = read_info(out)
    assert info.kind == "weights" and WeightsConfig(**info.config) == wcfg
    assert info.inputs == _inputs(traces_file)
    (back,) = load(out)
    assert back.id == "a"
    assert read_info(mg.write_weights(tmp_path / "w.jsonl", rows, wcfg)).inputs == []
