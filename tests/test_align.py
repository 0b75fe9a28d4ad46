"""Step -> token alignment: the anchor rule, properties over two tokenizers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechgraph.align import align_spans, empty_spans, token_anchors, token_mask
from mechgraph.segment import sentence_spans


def test_anchor_rule_on_hand_offsets():
    text = "A b.\n\nC d."
    # tokens: BOS, "A", " b", ".\n\n", "C", " d", "."
    off = [(0, 0), (0, 1), (1, 3), (3, 6), (6, 7), (7, 9), (9, 10)]
    assert token_anchors(text, off).tolist() == [-1, 0, 2, 3, 6, 8, 9]
    assert align_spans(text, off, [(0, 4), (6, 10)]) == [(1, 4), (4, 7)]
    # a leading-space token belongs to the step of its first visible char
    off2 = [(0, 4), (4, 8), (8, 10)]  # "A b.", "\n\nC ", "d."
    assert align_spans(text, off2, [(0, 4), (6, 10)]) == [(0, 1), (1, 3)]


def test_whitespace_only_token_between_steps_belongs_to_none():
    text = "ab  cd"
    off = [(0, 2), (2, 4), (4, 6)]
    assert align_spans(text, off, [(0, 2), (4, 6)]) == [(0, 1), (2, 3)]
    assert token_mask(text, off, [(0, 2)]).tolist() == [True, False, False]


def test_step_inside_one_token_owns_nothing():
    spans = align_spans("12", [(0, 2)], [(0, 1), (1, 2)])
    assert spans == [(0, 1), (-1, -1)]
    assert empty_spans(spans) == [1]


def _check(text, offsets, spans):
    tok = align_spans(text, offsets, spans)
    anchors = token_anchors(text, offsets)
    owner = np.full(len(offsets), -1)
    prev_end = 0
    for k, (a, b) in enumerate(tok):
        if a < 0:
            continue
        assert prev_end <= a < b  # ordered, disjoint, contiguous
        prev_end = b
        assert (owner[a:b] == -1).all()
        owner[a:b] = k
        # each owned token's anchor lies in the step
        assert all(spans[k][0] <= anchors[i] < spans[k][1] for i in range(a, b))
    # tokens anchored inside a step are owned by it (nothing is lost)
    for i, c in enumerate(anchors):
        inside = [k for k, (s, e) in enumerate(spans) if s <= c < e]
        assert (owner[i] == inside[0]) if inside else owner[i] == -1
    return tok


words = st.sampled_from(
    [
        "Let",
        "us",
        "plan",
        "x",
        "=",
        "2.",
        "Wait,",
        "hmm",
        "3.14",
        "don't",
        "Ω",
        "日本",
        "\n\n",
        "  ",
        "\t",
        "(a+b)",
        "$\\frac{1}{2}$",
        "!",
        "?",
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(words, min_size=1, max_size=40), st.text(alphabet="Pq: \n", max_size=15))
def test_alignment_properties_two_tokenizers(default_tokenizer, bert_tokenizer, ws, prompt):
    text = " ".join(ws)
    spans = [(a + len(prompt), b + len(prompt)) for a, b in sentence_spans(text)]
    full = prompt + text
    for tok in (default_tokenizer, bert_tokenizer):
        enc = tok(full, return_offsets_mapping=True)
        _check(full, enc["offset_mapping"], spans)


@pytest.mark.parametrize("prompt", ["", "Q: what?\n<think>\n"])
def test_default_tokenizer_steps_get_their_tokens(default_tokenizer, prompt):
    text = "Okay, so I need x.\n\nLet's plan: first add. Then 3.5 + 2 = 5.5! Done?"
    full = prompt + text
    spans = [(a + len(prompt), b + len(prompt)) for a, b in sentence_spans(text)]
    enc = default_tokenizer(full, return_offsets_mapping=True)
    tok = _check(full, enc["offset_mapping"], spans)
    ids = enc["input_ids"]
    for (a, b), (s, e) in zip(tok, spans, strict=True):
        assert default_tokenizer.decode(ids[a:b]).strip() == full[s:e]


@pytest.mark.parametrize("special", [False, True])
def test_batched_offsets_equal_the_tokenizer_call(smol, bert_tokenizer, special):
    from mechgraph.align import tokenize_with_offsets

    texts = ["Let me see. So x = 2.", "héllo\u2028 wörld  \n\n x", "ａｂｃ 日本語 😀 e\u0301", ""]
    for tok in (smol, bert_tokenizer):
        got = tokenize_with_offsets(tok, texts, special)
        enc = tok(texts, return_offsets_mapping=True, add_special_tokens=special)
        for (ids, off), i, o in zip(got, enc["input_ids"], enc["offset_mapping"], strict=True):
            assert ids.tolist() == list(i) and off.tolist() == [list(x) for x in o]
