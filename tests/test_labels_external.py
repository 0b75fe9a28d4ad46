"""External labeller plug-in: any callable, batch or per sentence."""

from __future__ import annotations

import pytest

from mechgraph.errors import ConfigError, TraceError
from mechgraph.labels import (
    CallableLabeller,
    Labeller,
    RuleLabeller,
    StepLabel,
    as_labeller,
    label_traces,
)
from mechgraph.traces import Trace, segment_traces


def _traces():
    return segment_traces(
        [Trace("a", "Let me try a new idea. So 2 + 2 = 4."), Trace("b", "Wait, is that right?")]
    )


def test_batch_callable_with_annotation_guess():
    calls = []

    def llm(sentences: list[str]) -> list[str]:
        calls.append(list(sentences))
        return ["plan_generation" if "try" in s else "active_computation" for s in sentences]

    out = label_traces(_traces(), llm)
    assert [[x.tag for x in t] for t in out] == [
        ["plan_generation", "active_computation"],
        ["active_computation"],
    ]
    assert [[x.planning for x in t] for t in out] == [[True, False], [False]]
    assert len(calls) == 2  # one call per trace, with all its sentences


def test_per_sentence_callable_guessed_from_str_annotation():
    def one(sentence: str) -> str:
        return "uncertainty_management" if "?" in sentence else "fact_retrieval"

    lab = as_labeller(one)
    assert isinstance(lab, CallableLabeller) and lab.per_sentence
    out = lab.label_traces(_traces())
    assert out[1][0] == StepLabel("uncertainty_management", True, 1.0)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (("plan_generation", 0.7), StepLabel("plan_generation", True, 0.7)),
        ({"tag": "x", "planning": True, "score": 0.2}, StepLabel("x", True, 0.2)),
        ({"tag": "self_checking"}, StepLabel("self_checking", False, 0.0)),
        (StepLabel("y", False, 0.1), StepLabel("y", False, 0.1)),
        (None, StepLabel(None, False, 0.0)),
    ],
)
def test_result_forms(result, expected):
    lab = CallableLabeller(lambda s: result, per_sentence=True)
    assert lab.label_sentences(["anything"]) == [expected]


def test_custom_planning_tags():
    lab = CallableLabeller(lambda ss: ["PLAN" for _ in ss], planning_tags={"PLAN"})
    assert lab.label_sentences(["a"])[0].planning


def test_errors_name_the_trace():
    bad_len = CallableLabeller(lambda ss: ["x"], name="short")
    with pytest.raises(TraceError, match=r"trace 'a'.*short.*1 labels for 2"):
        bad_len.label_traces(_traces())

    def boom(ss):
        raise RuntimeError("api down")

    with pytest.raises(TraceError, match=r"trace 'a'.*api down"):
        CallableLabeller(boom).label_traces(_traces())
    with pytest.raises(TraceError, match="must return a list"):
        CallableLabeller(lambda ss: "plan").label_sentences(["a"])
    with pytest.raises(TraceError, match="tag must be a string"):
        CallableLabeller(lambda s: 3, per_sentence=True).label_sentences(["a"])
    with pytest.raises(ConfigError):
        CallableLabeller("not callable")
    with pytest.raises(TraceError, match="no steps"):
        RuleLabeller().label_traces([Trace("z", "text")])


def test_as_labeller_passthrough_and_names():
    r = RuleLabeller()
    assert as_labeller(r) is r
    assert isinstance(as_labeller("rules"), Labeller)
    with pytest.raises(ConfigError, match="unknown labelling method"):
        as_labeller("llm")
    with pytest.raises(ConfigError, match="probe:PATH"):
        as_labeller("probe")
