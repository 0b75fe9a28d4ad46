"""Segmenters: exact spans, Thought Anchors parity, properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mechgraph.errors import ConfigError, TraceError
from mechgraph.segment import (
    line_spans,
    locate_steps,
    paragraph_spans,
    regex_spans,
    segment_text,
    sentence_spans,
)


def texts(spans, text):
    return [text[a:b] for a, b in spans]


def test_sentences_boundaries_and_merge():
    t = "Okay. So x = 2.\n\nThen y is 3! Is it done now? Yes.\n</think>\n\nignored. part."
    assert texts(sentence_spans(t), t) == [
        "Okay. So x = 2.",
        "Then y is 3!",
        "Is it done now? Yes.",
    ]


def test_sentences_decimal_and_no_space_are_not_boundaries():
    t = "The value 3.14 is pi.Next sentence here. And another one."
    assert texts(sentence_spans(t), t) == [
        "The value 3.14 is pi.Next sentence here.",
        "And another one.",
    ]


def test_sentences_single_short_text_is_kept():
    assert texts(sentence_spans("Hi."), "Hi.") == ["Hi."]


def test_lines_and_paragraphs():
    t = "short\nThis is a long line\n\n  \nAnother long line\nx\n"
    assert texts(line_spans(t), t) == ["This is a long line", "Another long line"]
    assert texts(paragraph_spans(t), t) == ["short\nThis is a long line", "Another long line\nx"]


def test_regex_and_unknown_method():
    assert texts(regex_spans("a1 b22 c", r"\d+"), "a1 b22 c") == ["1", "22"]
    with pytest.raises(ConfigError, match="unknown segmenter"):
        segment_text("x", "words")
    with pytest.raises(ConfigError, match="invalid regular expression"):
        segment_text("x", "regex:(")


def test_locate_steps_strings_spans_and_whitespace():
    t = "First bit.\n\nSecond  bit here.\nThird."
    assert locate_steps(t, ["First bit.", "Second bit here.", "Third."]) == [
        (0, 10),
        (12, 29),
        (30, 36),
    ]
    assert locate_steps(t, [[0, 5], [12, 18]]) == [(0, 5), (12, 18)]
    with pytest.raises(TraceError, match=r"trace 'T': step 1 not found"):
        locate_steps(t, ["First bit.", "Missing step"], "T")
    with pytest.raises(TraceError, match="overlaps"):
        locate_steps(t, [[0, 5], [3, 8]], "T")
    with pytest.raises(TraceError, match="outside"):
        locate_steps(t, [[0, 500]], "T")


def test_sentences_match_thought_anchors_chunks(ta_dir):
    """>= 99% of the released chunks are reproduced (after collapsing white space)."""
    import difflib

    total = matched = 0
    for folder in sorted(ta_dir.glob("*/problem_*")):
        full = json.loads((folder / "base_solution.json").read_text())["full_cot"]
        chunks = json.loads((folder / "chunks_labeled.json").read_text())
        text = full[full.index("<think>") + len("<think>") :]
        ours = [" ".join(text[a:b].split()) for a, b in sentence_spans(text)]
        theirs = [" ".join(c["chunk"].split()) for c in chunks]
        sm = difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False)
        matched += sum(b.size for b in sm.get_matching_blocks())
        total += len(theirs)
    assert total == 2929
    assert matched / total >= 0.99, matched / total


alphabet = st.sampled_from([*"ab .?!\n\t\r,xyz0123", "\n\n", ". ", "</think>"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(alphabet, max_size=80).map("".join),
    st.sampled_from(["sentences", "lines", "paragraphs", r"regex:\w+[.?!]?"]),
)
def test_spans_are_exact_ordered_and_stripped(text, method):
    spans = segment_text(text, method)
    prev = 0
    for a, b in spans:
        assert prev <= a < b <= len(text)
        piece = text[a:b]
        assert piece == piece.strip() and piece
        prev = b


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abc xyz.\n", min_size=1, max_size=12), min_size=1, max_size=8))
def test_locate_steps_roundtrip(pieces):
    pieces = [p for p in pieces if p.strip()]
    text = "\n\n".join(pieces)
    spans = locate_steps(text, pieces)
    assert [text[a:b] for a, b in spans] == [p.strip() for p in pieces]


def test_sentences_all_splits_past_think_end():
    from mechgraph.segment import segment_text

    text = "<think>Let me see. So x = 2.</think>\n<answer>The answer is 2. Done here.</answer>"
    inside = [text[a:b] for a, b in segment_text(text, "sentences")]
    every = [text[a:b] for a, b in segment_text(text, "sentences-all")]
    assert inside == ["<think>Let me see. So x = 2."]  # the short tail merges back
    assert every == [
        "<think>Let me see.",
        "So x = 2.</think>\n<answer>The answer is 2.",
        "Done here.</answer>",
    ]
