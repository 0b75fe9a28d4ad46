"""`label --method probe:PATH` end to end on a tiny random model (fast)."""

from __future__ import annotations

import json

import pytest

from mechgraph.errors import ConfigError
from mechgraph.labels.cli import run_label
from mechgraph.traces import Trace, segment_traces

PLAN = [
    "Let me try another approach.",
    "Wait, maybe that is wrong.",
    "Alternatively, use symmetry.",
]
EXEC = ["So 3 * 4 = 12 here.", "Then 12 + 5 = 17 now.", "Thus 17 - 2 = 15 again."]


def _traces(n=6):
    out = []
    for i in range(n):
        sents = [PLAN[i % 3], EXEC[i % 3], EXEC[(i + 1) % 3], PLAN[(i + 1) % 3]]
        labels = [
            "plan_generation",
            "active_computation",
            "active_computation",
            "uncertainty_management",
        ]
        t = Trace(f"t{i}", " ".join(sents), prompt="Solve: ")
        t = segment_traces([t])[0]
        t.steps = [
            s.__class__(s.start, s.end, s.text, lab) for s, lab in zip(t.steps, labels, strict=True)
        ]
        out.append(t)
    return out


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory, tiny_model):
    from mechgraph.extract import extract
    from probes import train_probe

    tmp = tmp_path_factory.mktemp("probe")
    store = extract(
        _traces(), tmp / "store", model=tiny_model, layers=(0, 2), segmenter="given", progress=False
    )
    res = train_probe(store, "planning", n_splits=3, out=tmp / "probe")
    assert set(res.table["layer"]) == {0, 2}
    return tmp / "probe"


def test_probe_method_labels_new_traces(probe_dir, tmp_path):
    inp = tmp_path / "in.jsonl"
    recs = [
        {"id": "new", "text": "Let me try another approach. So 3 * 4 = 12 here."},
        {
            "id": "new2",
            "text": "Wait, maybe that is wrong.",
            "steps": ["Wait, maybe that is wrong."],
        },
    ]
    inp.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = run_label(inp, f"probe:{probe_dir}", tmp_path / "out.jsonl")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["new", "new2"]
    assert [len(r["steps"]) for r in lines] == [2, 1]
    for r in lines:
        for s in r["steps"]:
            assert s["tag"] in ("planning", "other") and 0 <= s["score"] <= 1
            assert s["planning"] == (s["score"] >= 0.5)


def test_probe_method_checks_the_model(probe_dir, tmp_path):
    cfg = json.loads((probe_dir / "config.json").read_text())
    cfg["fingerprint"] = "not-the-same"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "weights.safetensors").write_bytes((probe_dir / "weights.safetensors").read_bytes())
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "x", "text": "Let me try another approach."}) + "\n")
    with pytest.raises(ConfigError, match="fingerprint"):
        run_label(inp, f"probe:{bad}", tmp_path / "o.jsonl")
    with pytest.raises(ConfigError, match="not a probe artifact"):
        run_label(inp, f"probe:{tmp_path}", tmp_path / "o.jsonl")
