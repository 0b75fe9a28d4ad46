"""`mechgraph label`: output format, given steps kept, atomic writes, errors."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from mechgraph.errors import TraceError
from mechgraph.labels.cli import label_command, run_label, write_jsonl_atomic

KEYS = {"start", "end", "text", "tag", "planning", "score"}


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _read(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_given_steps_are_kept_exactly(tmp_path):
    text = "Let me think.  Hmm, wait: is 2 + 2 = 4? Yes. Then x = 1."
    steps = ["Let me think.", "Hmm, wait: is 2 + 2 = 4? Yes.", "x = 1."]
    inp = _write(tmp_path / "in.jsonl", [{"id": "t1", "text": text, "steps": steps}])
    out = run_label(inp, "rules", tmp_path / "out.jsonl")
    (rec,) = _read(out)
    assert rec["id"] == "t1"
    assert [s["text"] for s in rec["steps"]] == steps
    for s in rec["steps"]:
        assert set(s) == KEYS
        assert text[s["start"] : s["end"]] == s["text"]
        assert 0 <= s["score"] <= 1 and isinstance(s["planning"], bool)


def test_segmented_when_no_steps_and_sg_method(tmp_path):
    recs = [
        {"id": "a", "text": "Okay. So we start here.\n\nBut wait, let me try again. 3 + 4 = 7."},
        {"id": "b", "text": "Alternatively, maybe we can factor it. That is all for now."},
    ]
    inp = _write(tmp_path / "in.jsonl", recs)
    grams = tmp_path / "g.txt"
    grams.write_text("but wait\nmaybe we can\n")
    out = run_label(inp, "sg", tmp_path / "o.jsonl", grams=grams)
    a, b = _read(out)
    assert [s["text"] for s in a["steps"]] == [
        "Okay. So we start here.",
        "But wait, let me try again.",
        "3 + 4 = 7.",
    ]
    assert [s["planning"] for s in a["steps"]] == [False, True, False]
    assert [s["planning"] for s in b["steps"]] == [True, False]
    assert all(s["tag"] is None for s in a["steps"])
    out2 = run_label(inp, f"sg:{grams}", tmp_path / "o2.jsonl")
    assert _read(out2) == _read(out)


def test_thought_anchors_folder_keeps_their_chunks(ta_dir, tmp_path):
    folder = ta_dir / "correct_base_solution" / "problem_6998"
    out = run_label(folder, "rules", tmp_path / "ta.jsonl")
    (rec,) = _read(out)
    chunks = json.loads((folder / "chunks_labeled.json").read_text())
    assert len(rec["steps"]) == len(chunks)
    assert [" ".join(s["text"].split()) for s in rec["steps"]] == [
        " ".join(c["chunk"].split()) for c in sorted(chunks, key=lambda c: c["chunk_idx"])
    ]


def test_errors_name_the_trace_and_leave_old_output(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    inp = _write(
        tmp_path / "bad.jsonl",
        [{"id": "ok", "text": "Fine."}, {"id": "bad-1", "text": "abc", "steps": ["zzz"]}],
    )
    with pytest.raises(TraceError, match="bad-1"):
        run_label(inp, "rules", out)
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "out.jsonl"]


def test_atomic_writer_cleans_up_on_failure(tmp_path):
    out = tmp_path / "x.jsonl"
    with pytest.raises(TypeError):
        write_jsonl_atomic(out, [{"a": object()}])
    assert list(tmp_path.iterdir()) == []


def test_typer_command(tmp_path):
    app = typer.Typer()
    app.command("label")(label_command)
    app.command("noop")(lambda: None)
    inp = _write(tmp_path / "in.jsonl", [{"id": "a", "text": "Let me try. 1 + 1 = 2."}])
    r = CliRunner().invoke(
        app, ["label", str(inp), "--method", "rules", "--out", str(tmp_path / "o.jsonl")]
    )
    assert r.exit_code == 0, r.output
    assert _read(tmp_path / "o.jsonl")[0]["steps"][0]["planning"] is True
    r = CliRunner().invoke(
        app, ["label", str(inp), "--method", "nope", "--out", str(tmp_path / "o.jsonl")]
    )
    assert r.exit_code == 1 and "unknown labelling method" in r.output
    r = CliRunner().invoke(app, ["label", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 1 and "no such file" in r.output


def test_label_table_lines_up_with_step_rows():
    import pandas as pd

    from mechgraph.errors import ConfigError
    from mechgraph.labels import label_table, label_traces
    from mechgraph.traces import Trace, segment_traces

    texts = ["Let me plan this. First add 2 and 3. That gives 5.", "Wait, check it. 5 is right."]
    traces = segment_traces([Trace(id=f"t{i}", text=x) for i, x in enumerate(texts)], "sentences")
    labels = label_traces(traces, "rules")
    table = label_table(traces, labels)
    assert list(table.columns) == ["trace_id", "step", "tag", "planning", "score"]
    assert table[["trace_id", "step"]].values.tolist() == [
        ["t0", 0],
        ["t0", 1],
        ["t0", 2],
        ["t1", 0],
        ["t1", 1],
    ]
    assert table.planning.tolist() == [lab.planning for labs in labels for lab in labs]
    steps = pd.DataFrame({"trace_id": ["t1", "t0", "t0"], "step": [1, 2, 0]})  # store order
    rows = steps.merge(table, on=["trace_id", "step"], how="left", validate="1:1")
    assert rows.tag.tolist() == [labels[1][1].tag, labels[0][2].tag, labels[0][0].tag]
    with pytest.raises(ConfigError, match="'t0': 2 labels for 3 steps"):
        label_table(traces, [labels[0][:2], labels[1]])
