"""mechgraph.specs: one parser for ``kind:arg`` specs, and each call site using it."""

from __future__ import annotations

import pytest

from mechgraph.errors import ConfigError
from mechgraph.specs import NO_ARG, ArgRule, Spec, optional, parse_spec, required, spec_forms

KINDS = {"rules": NO_ARG, "sg": optional("PATH", "hicra"), "probe": required("PATH")}
FORMS = "use one of rules, sg, sg:hicra, sg:PATH, probe:PATH"


def one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_each_rule():
    assert parse_spec("rules", KINDS) == Spec("rules", None)
    assert parse_spec("sg", KINDS) == Spec("sg")
    assert parse_spec("sg:", KINDS) == Spec("sg")  # an empty argument is none
    assert parse_spec("sg:my grams.json", KINDS) == Spec("sg", "my grams.json")
    assert parse_spec("probe:runs/p", KINDS) == Spec("probe", "runs/p")
    assert (
        str(parse_spec("probe:runs/p", KINDS)) == "probe:runs/p" and str(Spec("rules")) == "rules"
    )


def test_kind_is_case_insensitive_and_stripped_arg_kept():
    assert parse_spec(" SG :HICRA", KINDS) == Spec("sg", "HICRA")
    assert parse_spec("Probe: p ", KINDS).arg == " p "


@pytest.mark.parametrize(
    ("text", "arg"),
    [
        ("probe:C:\\probes\\planning", "C:\\probes\\planning"),
        ("probe:c:/probes/p", "c:/probes/p"),
        ("sg:https://example.org/grams.json", "https://example.org/grams.json"),
        ("sg:a:b:c", "a:b:c"),
    ],
)
def test_split_on_first_colon_only(text, arg):
    assert parse_spec(text, KINDS).arg == arg


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("llm", "unknown planning source 'llm'; "),
        ("", "unknown planning source ''; "),
        ("C:\\grams.json", "unknown planning source 'C:\\\\grams.json'; "),
        ("probe", "unknown planning source 'probe': 'probe' needs an argument (probe:PATH); "),
        ("probe:", "'probe' needs an argument (probe:PATH); "),
        ("rules:x", "unknown planning source 'rules:x': 'rules' takes no argument; "),
    ],
)
def test_errors_are_one_line_and_list_the_forms(text, why):
    msg = one_line_error(parse_spec, text, KINDS)
    assert why in msg and msg.endswith(FORMS)


def test_what_names_the_option_and_non_strings_are_refused():
    msg = one_line_error(parse_spec, "x", {"after": required("MARKER")}, "reasoning rule")
    assert msg == "unknown reasoning rule 'x'; use one of after:MARKER"
    assert "must be a string, got int" in one_line_error(parse_spec, 3, KINDS)


def test_forms_and_rules():
    assert spec_forms(KINDS) == ("rules", "sg", "sg:hicra", "sg:PATH", "probe:PATH")
    assert spec_forms({"regex": required("PATTERN")}) == ("regex:PATTERN",)
    assert optional().need == "optional" and required().metavar == "ARG"
    with pytest.raises(ValueError, match="need must be"):
        ArgRule("sometimes")


# ---------------------------------------------------------------- call sites


def test_get_labeller_uses_parse_spec():
    from mechgraph.labels import get_labeller
    from mechgraph.labels.methods import METHODS

    assert METHODS == ("rules", "sg", "sg:hicra", "sg:PATH", "probe:PATH")
    assert get_labeller("RULES").name == "rules"
    for bad in ("llm", "probe", "rules:x"):
        msg = one_line_error(get_labeller, bad)
        assert msg.startswith("unknown labelling method") and msg.endswith(FORMS)


def test_planning_source_uses_parse_spec():
    from mechgraph.weights.sources import PlanningSource

    assert PlanningSource("None:")("Let me try.") == []
    assert PlanningSource("SG:hicra").name == "SG:hicra"
    for bad in ("llm", "probe", "none:x", "rules:x"):
        msg = one_line_error(PlanningSource, bad)
        assert msg.startswith("unknown planning source") and "probe:PATH, none" in msg


def test_get_segmenter_uses_parse_spec():
    from mechgraph.segment import get_segmenter

    assert get_segmenter("Lines")("a long line\nanother long line") == [(0, 11), (12, 29)]
    assert get_segmenter("regex:a:b")("xa:by") == [(1, 4)]  # the pattern keeps its colon
    for bad in ("words", "regex", "regex:", "lines:x"):
        msg = one_line_error(get_segmenter, bad)
        assert msg.startswith("unknown segmenter") and msg.endswith("given, regex:PATTERN")
    assert "no span function" in one_line_error(get_segmenter, "given")


def test_sample_table_planning_uses_parse_spec():
    from mechgraph.phases.samples import sample_table
    from mechgraph.traces import Trace

    run = [Trace("a", "So 4.", checkpoint="1")]
    for bad in ("magic", "probe", "rules:x"):
        msg = one_line_error(sample_table, run, tokenizer=None, planning=bad)
        assert msg.startswith("unknown planning source") and "probe:PATH" in msg


def test_phase_config_checks_planning_before_any_work():
    from mechgraph.phases.table import PhaseConfig

    assert PhaseConfig(planning="SG:hicra").planning == "SG:hicra"
    assert one_line_error(PhaseConfig, planning="probe").startswith("unknown planning source")


def test_reasoning_rules_use_parse_spec():
    from mechgraph.phases.runs import REASONING_RULES, reasoning_text

    assert REASONING_RULES == ("auto", "chat", "think", "after:MARKER", "none")
    assert reasoning_text("Q ### A: x", "AFTER:A:") == ("Q ### A:", " x")
    for bad in ("bogus", "after", "after:", "think:x", "none:x"):
        msg = one_line_error(reasoning_text, "x", bad)
        assert msg.startswith("unknown reasoning rule")
        assert msg.endswith("auto, chat, think, after:MARKER, none")


def test_load_run_checkpoint_and_reasoning_use_parse_spec(tmp_path):
    from mechgraph.phases.runs import load_run

    p = tmp_path / "run.jsonl"
    p.write_text('{"step": 5, "run": "r1", "text": "Q <think>so 4</think>"}\n')
    assert load_run(p, checkpoint="FIELD:run")[0].checkpoint == "r1"
    assert load_run(p, checkpoint="file")[0].checkpoint == "run"
    for bad in ("field", "field:", "file:x", "step"):
        msg = one_line_error(load_run, p, checkpoint=bad)
        assert msg.startswith("unknown checkpoint source") and msg.endswith("file, field:NAME")
    msg = one_line_error(load_run, tmp_path / "missing.jsonl", reasoning="after")
    assert msg.startswith("unknown reasoning rule")  # checked before any file is read
