"""Weights from traces, exports (Parquet / JSONL / safetensors) and the `weights` command."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from mechgraph.errors import ConfigError, StoreError
from mechgraph.traces import Step, Trace
from mechgraph.weights import (
    WeightsConfig,
    pad_batch,
    read_batch,
    read_config,
    read_weights,
    token_weights,
    write_weights,
)
from mechgraph.weights.cli import weights_command

TEXT = "Okay, let me think. But wait, 2 + 2 = 4. So the answer is 4."


@pytest.fixture(scope="module")
def rows(smol):
    steps = [
        Step(0, 19, TEXT[0:19], meta={"imp": 0.5}),
        Step(20, 40, TEXT[20:40], meta={"imp": 2.0}),
        Step(41, 60, TEXT[41:60], meta={"imp": 0.25}),
    ]
    t1 = Trace(
        "a", TEXT, prompt="Q: 2+2?", answer="4", correct=True, steps=steps, meta={"level": 3}
    )
    t2 = Trace("b", "Hmm, 5 * 3 = 15.", answer="15", correct=False, model="m", checkpoint="7")
    cfg = WeightsConfig(planning="sg")
    out = token_weights([t1, t2], smol, cfg, planning=["but wait", "let me think"])
    imp = token_weights([t1], smol, WeightsConfig(importance="step:imp"))[0]
    out[0] = replace(out[0], weight=imp.weight)
    return out


def test_token_weights_marks_gram_tokens_and_spreads_step_scores(rows, smol):
    a = rows[0]
    assert smol.decode(a.input_ids[a.planning_mask]) == " let me think But wait"
    assert a.fields["prompt"] == "Q: 2+2?" and a.fields["level"] == 3
    # step scores spread to the tokens of each step; tokens between steps get the fill (1.0)
    by_tok = {smol.decode([int(i)]): float(w) for i, w in zip(a.input_ids, a.weight, strict=True)}
    assert by_tok["Okay"] == 0.5 and by_tok[" wait"] == 2.0 and by_tok[" answer"] == 0.25
    assert rows[1].planning_mask.sum() == 0 and np.all(rows[1].weight == 1.0)


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_row_formats_round_trip(rows, tmp_path, suffix):
    cfg = WeightsConfig(planning="sg", importance="step:imp", normalize="mean")
    p = write_weights(tmp_path / f"w.{suffix}", rows, cfg)
    back = read_weights(p)
    assert [r.id for r in back] == ["a", "b"]
    for r, b in zip(rows, back, strict=True):
        assert b.text == r.text
        np.testing.assert_array_equal(b.input_ids, r.input_ids)
        np.testing.assert_array_equal(b.offsets, r.offsets)
        np.testing.assert_array_equal(b.planning_mask, r.planning_mask)
        np.testing.assert_array_equal(b.weight, r.weight)
    assert back[0].fields["correct"] is True and back[0].fields["level"] == 3
    assert back[1].fields["checkpoint"] == "7" and back[1].fields["answer"] == "15"
    assert read_config(p) == cfg
    assert json.loads((tmp_path / f"w.{suffix}.config.json").read_text())["normalize"] == "mean"
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_parquet_schema_is_documented_types(rows, tmp_path):
    p = write_weights(tmp_path / "w.parquet", rows, WeightsConfig())
    schema = pq.read_schema(p)
    types = {f.name: str(f.type) for f in schema}
    assert types["input_ids"] == "list<element: int32>"
    assert types["offsets"] == "list<element: fixed_size_list<element: int32>[2]>"
    assert types["planning_mask"] == "list<element: bool>"
    assert types["weight"] == "list<element: float>"
    assert types["correct"] == "bool" and types["n_tokens"] == "int32"
    assert b"mechgraph.weights" in schema.metadata
    # verl-style padded batch straight from the Parquet
    ids, arr = read_batch(p, pad_id=-1)
    assert ids == ["a", "b"] and arr["input_ids"].shape == (2, rows[0].n_tokens)
    assert arr["input_ids"][1, -1] == -1 and not arr["response_mask"][1, -1]


def test_safetensors_round_trip(rows, tmp_path):
    p = write_weights(tmp_path / "w.safetensors", rows, WeightsConfig(), pad_id=7)
    ids, arr = read_batch(p)
    assert ids == ["a", "b"]
    want = pad_batch(rows, pad_id=7)
    assert set(arr) == set(want)
    for k in want:
        assert arr[k].dtype == want[k].dtype, k
        np.testing.assert_array_equal(arr[k], want[k])
    assert arr["response_mask"].sum(1).tolist() == [r.n_tokens for r in rows]
    assert oct(os.stat(p).st_mode & 0o777) == "0o644"
    with pytest.raises(ConfigError, match="read_batch"):
        read_weights(p)


def test_pad_batch_length_and_truncation(rows):
    n = rows[0].n_tokens
    assert pad_batch(rows, length=n + 3)["weight"].shape == (2, n + 3)
    with pytest.raises(ConfigError, match="truncate"):
        pad_batch(rows, length=2)
    assert pad_batch(rows, length=2, truncate=True)["response_mask"].all()


def test_write_is_atomic_on_failure(rows, tmp_path, monkeypatch):
    p = write_weights(tmp_path / "w.parquet", rows, WeightsConfig())
    before = p.read_bytes()
    with pytest.raises(ConfigError, match="duplicate"):
        write_weights(p, [rows[0], rows[0]], WeightsConfig())

    def crash(table, where, **kw):  # a writer that dies half-way through
        open(where, "wb").write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        write_weights(p, rows[:1], WeightsConfig())
    assert p.read_bytes() == before
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "w.parquet",
        "w.parquet.artifact.json",
        "w.parquet.config.json",
    ]


def test_config_validation_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="planning"):
        WeightsConfig(planning="llm")
    with pytest.raises(ConfigError, match="probe:PATH"):
        WeightsConfig(planning="probe")
    with pytest.raises(ConfigError, match="importance"):
        WeightsConfig(importance="kl")
    with pytest.raises(StoreError, match="no such"):
        read_weights(tmp_path / "none.parquet")
    (tmp_path / "x.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(StoreError, match=r"x.jsonl:1"):
        read_weights(tmp_path / "x.jsonl")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("weights")(weights_command)
    app.command("noop")(lambda: None)  # keep `weights` a sub-command
    return app


def test_weights_command_on_thought_anchors(ta_dir, tmp_path):
    src = ta_dir / "correct_base_solution" / "problem_1591"
    out = tmp_path / "w.parquet"
    res = CliRunner().invoke(
        _app(),
        [
            "weights",
            str(src),
            "--planning",
            "rules",
            "--importance",
            "step:counterfactual_importance_kl",
            "--normalize",
            "mean",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    (row,) = read_weights(out)
    assert row.id == "problem_1591" and 0.02 < row.planning_share < 0.6
    assert row.weight.mean() == pytest.approx(1.0, rel=1e-4)
    cfg = read_config(out)
    assert cfg.planning == "rules" and cfg.importance == "step:counterfactual_importance_kl"
    # HICRA's published grams, JSONL output
    res = CliRunner().invoke(
        _app(),
        [
            "weights",
            str(src),
            "-p",
            "sg:" + str(ta_dir.parent / "hicra_strategic_grams.json"),
            "--out",
            str(tmp_path / "w.jsonl"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert read_weights(tmp_path / "w.jsonl")[0].planning_mask.any()


def test_weights_command_errors(tmp_path):
    (tmp_path / "t.jsonl").write_text(json.dumps({"id": "a", "text": "Let me try. 1 + 1 = 2."}))
    res = CliRunner().invoke(
        _app(),
        ["weights", str(tmp_path / "t.jsonl"), "-p", "llm", "--out", str(tmp_path / "o.parquet")],
    )
    assert res.exit_code == 1 and "unknown planning source" in res.output
    res = CliRunner().invoke(
        _app(),
        [
            "weights",
            str(tmp_path / "t.jsonl"),
            "--importance",
            "step:x",
            "--out",
            str(tmp_path / "o.parquet"),
        ],
    )
    assert res.exit_code == 1 and "no steps" in res.output
    assert not (tmp_path / "o.parquet").exists()
