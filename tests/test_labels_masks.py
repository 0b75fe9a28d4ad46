"""Planning masks: char spans -> tokens through offsets, over two different tokenizers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechgraph.align import token_anchors
from mechgraph.errors import AlignmentError
from mechgraph.labels import (
    RuleLabeller,
    gram_spans,
    merge_spans,
    planning_spans,
    planning_token_mask,
    spans_token_mask,
    tokenize_with_offsets,
)
from mechgraph.traces import Trace, segment_traces

WORDS = [
    "Let's",
    "let's",
    "try",
    "But",
    "wait",
    ",",
    "x",
    "=",
    "12",
    ".",
    "\n",
    "\n\n",
    "Hmm",
    "approach",
    "é",
    "数学",
    "  ",
    "double-check",
    "(3+4)",
    "!",
]

texts = (
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=25)
    .map(
        lambda ws: "".join(w if w in (",", ".", "!", "\n", "\n\n") else " " + w for w in ws).lstrip(
            " "
        )
    )
    .filter(lambda t: t.strip() != "")
)


@st.composite
def text_and_spans(draw):
    text = draw(texts)
    n = len(text)
    cuts = draw(st.lists(st.integers(0, n), min_size=0, max_size=8))
    pairs = [tuple(sorted(cuts[i : i + 2])) for i in range(0, len(cuts) - 1, 2)]
    return text, pairs


@pytest.fixture(params=["default_tokenizer", "bert_tokenizer"])
def tok(request):
    return request.getfixturevalue(request.param)


def test_merge_spans_basic():
    assert merge_spans([]) == []
    assert merge_spans([(3, 5), (0, 1), (1, 2), (4, 9)]) == [(0, 2), (3, 9)]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=text_and_spans())
def test_mask_is_anchor_rule(tok, data):
    """Mask == tokens whose anchor lies in a span; tokens inside a span are in."""
    text, spans = data
    ids, off = tokenize_with_offsets(tok, text)
    mask = spans_token_mask(text, off, spans)
    assert mask.shape == ids.shape and mask.dtype == bool
    anchors = token_anchors(text, off)
    merged = merge_spans(spans)
    for k, a in enumerate(anchors):
        inside = a >= 0 and any(s <= a < e for s, e in merged)
        assert mask[k] == inside
        if off[k][1] > off[k][0] and any(s <= off[k][0] and off[k][1] <= e for s, e in merged):
            stripped = text[off[k][0] : off[k][1]]
            if stripped.strip():
                assert mask[k]
    # union of spans: the mask of the union is the OR of the masks
    if len(merged) >= 2:
        parts = [spans_token_mask(text, off, [s]) for s in merged]
        assert np.array_equal(np.logical_or.reduce(parts), mask)
    # nothing in, nothing out
    assert not spans_token_mask(text, off, []).any()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=texts, prefix=st.sampled_from(["", "Prompt: solve it.\n", "<think>\n"]))
def test_prefix_shift_and_whole_text(tok, text, prefix):
    """Spans index the completion; the prompt is never masked; whole text covers every
    token with a non-space character of the completion."""
    _, mask = planning_token_mask(tok, text, [(0, len(text))], prefix=prefix)
    full = prefix + text
    _, off = tokenize_with_offsets(tok, full)
    anchors = token_anchors(full, off)
    for k, a in enumerate(anchors):
        assert mask[k] == (a >= len(prefix))


def test_lets_inside_text_is_not_lets_alone(default_tokenizer):
    """ " Let's" inside the text and "let's" alone are different tokens: match on text."""
    tok = default_tokenizer
    text = "So x = 2. Let's try another approach."
    spans = gram_spans(text, ["let's try"])
    assert [text[a:b] for a, b in spans] == ["Let's try"]
    ids, mask = planning_token_mask(tok, text, spans)
    alone = tok("let's try", add_special_tokens=False)["input_ids"]
    assert list(ids[mask]) != list(alone)  # a phrase tokenised alone would not match
    assert tok.decode(ids[mask]).strip() == "Let's try"


def test_planning_sentence_mask(default_tokenizer):
    t = segment_traces([Trace("t", "Let me try another approach. So 3 * 4 = 12.")])[0]
    labs = RuleLabeller().label_trace(t)
    spans = planning_spans(t, labs)
    assert spans == [(t.steps[0].start, t.steps[0].end)]
    ids, mask = planning_token_mask(default_tokenizer, t.text, spans, prefix="Q: go\n")
    assert default_tokenizer.decode(ids[mask]).strip() == t.steps[0].text
    with pytest.raises(AlignmentError):
        planning_spans(t, [True])
    with pytest.raises(AlignmentError):
        planning_token_mask(default_tokenizer, t.text, [(0, 10_000)])


def test_bert_offsets_lowercase(bert_tokenizer):
    """An uncased tokenizer with ## pieces: matching is still on the original text."""
    text = "Hmm, BUT WAIT: double-checking gives 12."
    spans = gram_spans(text, ["but wait"])
    ids, mask = planning_token_mask(bert_tokenizer, text, spans)
    assert bert_tokenizer.decode(ids[mask]) == "but wait"
