"""Trace loaders and bad input."""

from __future__ import annotations

import json

import pytest

from mechgraph.errors import TraceError
from mechgraph.traces import Trace, load_traces, segment_traces


def write(tmp_path, lines, name="t.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n")
    return p


def test_jsonl_fields_steps_and_labels(tmp_path):
    p = write(
        tmp_path,
        [
            {
                "id": "a",
                "text": "Plan it. Then do it.",
                "prompt": "Q?",
                "correct": True,
                "answer": 3,
                "model": "m",
                "checkpoint": 10,
                "steps": ["Plan it.", "Then do it."],
                "labels": ["plan_generation", "active_computation"],
                "difficulty": "easy",
            },
            {"id": "b", "text": "One step only here.", "steps": [[0, 8], [9, 19]]},
        ],
    )
    a, b = load_traces(p)
    assert (a.prompt, a.correct, a.answer, a.checkpoint, a.meta) == (
        "Q?",
        True,
        "3",
        "10",
        {"difficulty": "easy"},
    )
    assert [(s.start, s.end, s.text, s.label) for s in a.steps] == [
        (0, 8, "Plan it.", "plan_generation"),
        (9, 20, "Then do it.", "active_computation"),
    ]
    assert [s.text for s in b.steps] == ["One step", "only here."]


def test_thought_anchors_folder_and_folder_of_folders(ta_dir):
    one = sorted(ta_dir.glob("correct_base_solution/problem_*"))[0]
    (t,) = load_traces(one)
    assert t.prompt.endswith("<think>") and t.id == one.name
    assert t.correct is True and len(t.steps) > 10
    assert all(t.text[s.start : s.end] == s.text for s in t.steps)
    assert t.steps[0].label and "counterfactual_importance_kl" in t.steps[0].meta
    every = load_traces(ta_dir)
    assert len(every) == 20 and len({x.id for x in every}) == 20
    assert sum(len(x.steps) for x in every) == 2929


def test_dataset_with_column_mapping():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(
        [{"idx": 7, "completion": "Step one here. Step two here.", "ok": True}]
    )
    (t,) = load_traces(ds, columns={"id": "idx", "text": "completion", "correct": "ok"})
    assert (t.id, t.correct) == ("7", True)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (
            {"id": "e", "text": "   \n "},
            r"t\.jsonl:1: trace 'e': text is empty or white space only",
        ),
        (
            {"id": "s", "text": "Hello there.", "steps": ["Hello", "Bye"]},
            r"trace 's': step 1 not found",
        ),
        ("{not json", r"t\.jsonl:1: invalid JSON"),
        ({"text": "no id"}, r"t\.jsonl:1: fields 'id' and 'text' are required"),
        (
            {"id": "l", "text": "A b. C d.", "steps": ["A b."], "labels": ["x", "y"]},
            r"trace 'l': 2 labels for 1 steps",
        ),
    ],
)
def test_bad_lines_name_line_and_trace(tmp_path, line, match):
    p = write(tmp_path, [line])
    with pytest.raises(TraceError, match=match):
        load_traces(p)


def test_duplicate_ids_and_non_utf8(tmp_path):
    p = write(tmp_path, [{"id": "d", "text": "x y z."}, {"id": "d", "text": "u v w."}])
    with pytest.raises(TraceError, match="duplicate trace id 'd'"):
        load_traces(p)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"id": "x", "text": "caf\xe9"}\n')
    with pytest.raises(TraceError, match="not UTF-8"):
        load_traces(bad)


def test_segment_traces_given_requires_steps():
    t = Trace(id="g", text="Some text here.")
    with pytest.raises(TraceError, match="trace 'g': segmenter 'given'"):
        segment_traces([t], "given")
    assert segment_traces([t], "sentences")[0].steps[0].text == "Some text here."


def test_jsonl_with_unicode_line_separators_round_trips(tmp_path):
    import json

    from mechgraph.traces import load_traces

    text = "Let me see.\u2028So x = 1.\u2029Then\x85 y = 2."
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"id": "a", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    (t,) = load_traces(p)
    assert t.text == text
