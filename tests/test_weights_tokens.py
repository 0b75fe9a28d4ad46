"""Token keys: offsets of generated ids, masks across two tokenizers, text mismatch refused."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mechgraph.align import token_anchors, token_mask
from mechgraph.errors import AlignmentError, ConfigError
from mechgraph.weights import (
    TextMismatchError,
    TokenWeights,
    check_same_text,
    decode_with_offsets,
    mask_to_spans,
    tokenize_with_offsets,
    transfer_mask,
    transfer_values,
)

ALPHABET = st.sampled_from(
    [*list("abcdefgxyzABCXYZ0123456789 .,;:!?()+-=*/'\"\n\t"), "é", "ü", "ß", "中", "文", "😀", "—"]
)
TEXTS = st.text(ALPHABET, min_size=1, max_size=120).filter(lambda s: s.strip())
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _word_spans(text: str, pick: list[bool]) -> list[tuple[int, int]]:
    words = [m.span() for m in re.finditer(r"\S+", text)]
    return [w for w, p in zip(words, pick, strict=False) if p]


def test_decode_with_offsets_fast_path_equals_tokenizer(smol):
    text = "Okay, so 12+34 = 46. But wait — let's re-check: café 😀 done.\n\nFinal."
    ids, off = tokenize_with_offsets(smol, text)
    got_text, got_off = decode_with_offsets(smol, ids)
    assert got_text == text
    np.testing.assert_array_equal(got_off, off)


def test_decode_with_offsets_non_canonical_ids_and_specials(smol):
    # " need" split as " ne" + "ed" (ids the tokenizer would not give), an emoji in two byte
    # tokens, then EOS and padding (special tokens, skipped)
    parts = ["Okay, so I", " ne", "ed", " 😀 to", " plan."]
    ids = [i for p in parts for i in smol(p, add_special_tokens=False)["input_ids"]]
    jupyter = smol.convert_tokens_to_ids("<jupyter_start>")  # an added special token
    ids.insert(1, jupyter)
    eos = smol.eos_token_id
    ids = [*ids, eos, eos]
    text, off = decode_with_offsets(smol, ids)
    assert text == "".join(parts)
    assert off.shape == (len(ids), 2)
    assert off[-1].tolist() == off[-2].tolist() == [len(text), len(text)]  # specials: empty
    assert off[1].tolist() == [off[0, 1], off[0, 1]]  # skipped special: empty span
    for i, (a, b) in zip(ids[:-2], off[:-2], strict=True):
        piece = smol.decode([i], skip_special_tokens=True)
        if "\ufffd" not in piece:
            assert text[a:b] == piece
    k = 1 + len(smol(parts[0], add_special_tokens=False)["input_ids"])  # index of " ne"
    assert text[off[k, 0] : off[k + 1, 1]] == " need"
    # the mask found on the text lands on the generated tokens
    m = token_mask(text, off, [(text.index("need"), text.index("need") + 4)])
    assert m.tolist()[k : k + 2] == [True, True] and m.sum() == 2


@SETTINGS
@given(text=TEXTS, cuts=st.lists(st.integers(0, 120), max_size=4))
def test_decode_with_offsets_property(smol, text, cuts):
    """Ids of text pieces tokenised separately decode back to the text, with exact pieces."""
    bounds = sorted({0, len(text), *[c for c in cuts if c < len(text)]})
    ids = []
    for a, b in itertools.pairwise(bounds):
        ids += smol(text[a:b], add_special_tokens=False)["input_ids"]
    got, off = decode_with_offsets(smol, ids)
    assert got == text
    assert np.all(off[:, 0] <= off[:, 1]) and np.all(np.diff(off[:, 0]) >= 0)
    assert off[-1, 1] == len(text)


@SETTINGS
@given(text=TEXTS, pick=st.lists(st.booleans(), min_size=0, max_size=40))
def test_masks_move_between_tokenizers(smol, bert_tokenizer, text, pick):
    """Word-aligned planning spans: A -> B through char offsets equals B computed directly."""
    spans = _word_spans(text, pick)
    _, off_a = tokenize_with_offsets(smol, text)
    _, off_b = tokenize_with_offsets(bert_tokenizer, text)
    assume(len(off_b) > 0)
    m_a = token_mask(text, off_a, spans)
    m_b = token_mask(text, off_b, spans)
    np.testing.assert_array_equal(transfer_mask(text, off_a, m_a, off_b), m_b)
    np.testing.assert_array_equal(transfer_mask(text, off_b, m_b, off_a), m_a)


@SETTINGS
@given(
    text=TEXTS,
    raw=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 30)), max_size=5),
)
def test_same_tokenizer_round_trips(smol, text, raw):
    """Any char spans: mask -> spans -> mask and mask -> same tokens are identities."""
    from mechgraph.labels import merge_spans

    spans = merge_spans((a, min(a + n, len(text))) for a, n in raw if a < len(text))
    _, off = tokenize_with_offsets(smol, text)
    m = token_mask(text, off, spans)
    np.testing.assert_array_equal(transfer_mask(text, off, m, off), m)
    np.testing.assert_array_equal(token_mask(text, off, mask_to_spans(text, off, m)), m)
    # values: every token keeps its own value (tokens sharing an anchor share a value)
    anchors = token_anchors(text, off)
    vals = np.where(anchors >= 0, anchors.astype(float), 0.0)
    np.testing.assert_array_equal(transfer_values(text, off, vals, off, fill=0.0), vals)


def test_transfer_values_fill_for_uncovered_tokens():
    text = "ab  cd"
    src = [(0, 2), (4, 6)]
    dst = [(0, 2), (2, 4), (4, 6)]  # the middle token is white space only
    assert transfer_values(text, src, [3.0, 5.0], dst, fill=-1.0).tolist() == [3.0, -1.0, 5.0]
    with pytest.raises(AlignmentError):
        transfer_values(text, src, [1.0], dst)


def test_check_same_text_names_the_first_difference():
    check_same_text("same", "same")
    with pytest.raises(TextMismatchError, match=r"trace 'c7'.*char 5") as e:
        check_same_text("x = 12 so", "x = 13 so", trace_id="c7")
    assert isinstance(e.value, AlignmentError)
    with pytest.raises(TextMismatchError, match="lengths 3 and 4"):
        check_same_text("abc", "abc ")


def test_token_weights_for_trainer(smol, bert_tokenizer):
    text = "Let me try another approach. So 3 * 4 = 12."
    ids, off = tokenize_with_offsets(smol, text)
    spans = [(0, 28)]
    tw = TokenWeights("c1", text, ids, off, token_mask(text, off, spans), np.arange(len(ids)) + 1.0)
    assert tw.for_trainer(text) is tw
    assert tw.for_trainer(text, ids) is tw
    # another tokenizer's tokens of the same text: moved through offsets
    ids_b, off_b = tokenize_with_offsets(bert_tokenizer, text)
    moved = tw.for_trainer(text, tokenizer=bert_tokenizer)
    np.testing.assert_array_equal(moved.planning_mask, token_mask(text, off_b, spans))
    np.testing.assert_array_equal(moved.input_ids, ids_b)
    ps = moved.planning_spans()  # BERT tokens hold no spaces: one span per word
    assert (
        ps[0][0] == 0
        and ps[-1][1] == 28
        and all(text[b:c].isspace() for (_, b), (c, _) in itertools.pairwise(ps))
    )
    np.testing.assert_array_equal(tw.retokenize(bert_tokenizer).planning_mask, moved.planning_mask)
    # BERT's ids decode to lower case: not the analysed text, so refused
    with pytest.raises(TextMismatchError, match="char 0"):
        tw.for_trainer(text, ids_b, bert_tokenizer)
    # non-canonical ids of the same text (the trainer sampled them): still exact
    gen = smol("Let me try anoth", add_special_tokens=False)["input_ids"]
    gen += smol("er approach. So 3 * 4 = 12.", add_special_tokens=False)["input_ids"]
    moved = tw.for_trainer(text, gen, smol)
    assert moved.n_tokens == len(gen)
    _, goff = decode_with_offsets(smol, gen)
    np.testing.assert_array_equal(moved.planning_mask, token_mask(text, goff, spans))
    # refused: another text, or ids that decode to another text, or ids without a tokenizer
    with pytest.raises(TextMismatchError, match="c1"):
        tw.for_trainer(text.replace("12", "13"))
    other = smol(text.replace("12", "13"), add_special_tokens=False)["input_ids"]
    with pytest.raises(TextMismatchError):
        tw.for_trainer(text, other, smol)
    with pytest.raises(ConfigError, match="tokenizer"):
        tw.for_trainer(text, ids_b)


def test_token_weights_validation():
    with pytest.raises(AlignmentError, match="weight"):
        TokenWeights("x", "ab", [1, 2], [(0, 1), (1, 2)], [True, False], [1.0])
    with pytest.raises(AlignmentError, match="outside"):
        TokenWeights("x", "ab", [1], [(0, 5)], [True], [1.0])
