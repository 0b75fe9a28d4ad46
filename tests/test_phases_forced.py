"""Teacher-forced NLL / entropy per sample, planning vs execution, on a tiny random Llama."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mechgraph.align import token_mask, tokenize_with_offsets
from mechgraph.errors import ConfigError
from mechgraph.phases.forced import (
    STAT_COLUMNS,
    check_same_tokenizer,
    forced_token_stats,
    load_checkpoint_models,
    relative_perplexity,
)
from mechgraph.weights.sources import completion_entropy

torch.set_num_threads(1)

PROMPTS = ["Q: what is 2+3?\nA:", "Solve x^2 = 4.", "", "Q: 7*6?"]
TEXTS = [
    " Let me think. 2 + 3 = 5. So the answer is 5.",
    " But wait, x could be -2. Let me check: (-2)^2 = 4. So x = 2 or x = -2, café.",
    "First, plan: add. Then 1 + 1 = 2.",
    " 42",
]
SPANS = [[(1, 14)], [(1, 9), (28, 42)], [(0, 16)], []]


@pytest.fixture(scope="module")
def tok(smol):
    return smol


@pytest.fixture(scope="module")
def model(tok):
    from mechgraph.testing import tiny_llama

    return tiny_llama(tok, hidden_size=32, layers=2, max_positions=64)


@pytest.fixture(scope="module")
def no_bos(tok):
    t = copy.deepcopy(tok)
    t.bos_token = None
    assert t.bos_token_id is None
    return t


def _stats(model, tok, **kw):
    return forced_token_stats(model, tok, PROMPTS, TEXTS, SPANS, **kw)


def test_batched_equals_one_at_a_time(model, tok):
    batched = _stats(model, tok, batch_tokens=96)  # several batches, with padding
    alone = [
        forced_token_stats(model, tok, [p], [t], [s], batch_tokens=1)
        for p, t, s in zip(PROMPTS, TEXTS, SPANS, strict=True)
    ]
    assert list(batched.columns) == ["id", *STAT_COLUMNS]
    assert batched["id"].tolist() == ["0", "1", "2", "3"]  # input order
    for i, one in enumerate(alone):
        np.testing.assert_allclose(
            batched.loc[i, list(STAT_COLUMNS)].to_numpy(float),
            one.loc[0, list(STAT_COLUMNS)].to_numpy(float),
            atol=1e-4,
        )
    big = _stats(model, tok, batch_tokens=10_000)  # all in one batch
    np.testing.assert_allclose(
        big[list(STAT_COLUMNS)].to_numpy(float),
        batched[list(STAT_COLUMNS)].to_numpy(float),
        atol=1e-4,
    )


@pytest.mark.parametrize("which", ["bos", "no_bos"])
def test_entropy_equals_completion_entropy(model, tok, no_bos, which):
    t = tok if which == "bos" else no_bos
    df = _stats(model, t, batch_tokens=128)
    for i, (p, text, sp) in enumerate(zip(PROMPTS, TEXTS, SPANS, strict=True)):
        _, off, h = completion_entropy(model, t, p, text)
        plan = token_mask(text, off, sp)
        ok = ~np.isnan(h)
        assert df.n_tokens[i] == ok.sum()
        assert df.n_plan[i] == (plan & ok).sum() and df.n_exec[i] == (~plan & ok).sum()
        assert df.ent_plan_sum[i] == pytest.approx(h[plan & ok].sum(), abs=1e-4)
        assert df.ent_exec_sum[i] == pytest.approx(h[~plan & ok].sum(), abs=1e-4)


def test_nll_equals_hand_computed(model, tok):
    p, text = PROMPTS[1], TEXTS[1]
    df = forced_token_stats(model, tok, [p], [text], [[]])
    ids, _ = tokenize_with_offsets(tok, p + text)
    n_prompt = len(tokenize_with_offsets(tok, p)[0])
    x = torch.as_tensor([tok.bos_token_id, *ids.tolist()])[None]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits[0].float(), -1)
    tgt = x[0, 1:]
    nll = -logp[:-1].gather(-1, tgt[:, None])[:, 0]
    want = nll[n_prompt:]  # the completion's tokens (prompt ends at a token boundary here)
    assert df.n_tokens[0] == len(want) == len(ids) - n_prompt
    assert df.nll_exec_sum[0] == pytest.approx(float(want.sum()), abs=1e-4)
    assert df.nll_plan_sum[0] == 0.0 and df.n_plan[0] == 0


def test_split_sums_to_totals(model, tok):
    some = _stats(model, tok)
    none = forced_token_stats(model, tok, PROMPTS, TEXTS, [[] for _ in TEXTS])
    full = forced_token_stats(model, tok, PROMPTS, TEXTS, [[(0, len(t))] for t in TEXTS])
    assert (some.n_plan + some.n_exec == some.n_tokens).all()
    assert (some.n_plan > 0).sum() == 3
    # empty spans: everything is execution; whole-text spans: everything is planning
    assert (none.n_plan == 0).all() and (none.n_exec == none.n_tokens).all()
    assert (none.nll_plan_sum == 0).all() and (none.ent_plan_sum == 0).all()
    assert (full.n_exec == 0).all() and (full.n_plan == none.n_tokens).all()
    for kind in ("nll", "ent"):
        tot = some[f"{kind}_plan_sum"] + some[f"{kind}_exec_sum"]
        np.testing.assert_allclose(tot, none[f"{kind}_exec_sum"], atol=1e-4)
        np.testing.assert_allclose(full[f"{kind}_plan_sum"], none[f"{kind}_exec_sum"], atol=1e-4)


def test_empty_prompt_with_and_without_bos(model, tok, no_bos):
    text = TEXTS[2]
    n = len(tokenize_with_offsets(tok, text)[0])
    with_bos = forced_token_stats(model, tok, "", [text], [[]])
    without = forced_token_stats(model, no_bos, "", [text], [[]])
    assert with_bos.n_tokens[0] == n  # the BOS predicts the first token
    assert without.n_tokens[0] == n - 1  # the first token has no prefix: not counted
    assert np.isfinite(without[list(STAT_COLUMNS)].to_numpy(float)).all()
    # a lone token with neither prompt nor BOS: nothing to score, no forward needed
    lone = forced_token_stats(model, no_bos, [""], ["Hi"], [[(0, 2)]])
    assert lone.loc[0, list(STAT_COLUMNS)].tolist() == [0] * len(STAT_COLUMNS)


def test_too_long_fails_before_any_forward(model, tok, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("forward ran")

    monkeypatch.setattr(model, "forward", boom)
    long = " ".join(["step"] * 80)
    with pytest.raises(ConfigError, match=r"'long-one'.*context of 64"):
        forced_token_stats(
            model, tok, ["Q", "Q"], [" ok", long], [[], []], ids=["short", "long-one"]
        )
    with pytest.raises(ConfigError, match=r"sample '1'"):
        forced_token_stats(model, tok, ["Q", "Q"], [" ok", long], [[], []])


def test_bad_inputs(model, tok):
    with pytest.raises(ConfigError, match="one of each"):
        forced_token_stats(model, tok, ["a"], ["b", "c"], [[], []])
    with pytest.raises(ConfigError, match="outside"):
        forced_token_stats(model, tok, ["a"], ["bc"], [[(0, 5)]])
    with pytest.raises(ConfigError, match="ids"):
        forced_token_stats(model, tok, ["a"], ["b"], [[]], ids=["x", "y"])


def test_tokenizer_mismatch(tok):
    check_same_tokenizer({"step0": tok, "step50": copy.deepcopy(tok)})
    check_same_tokenizer({"only": tok})
    extended = copy.deepcopy(tok)
    extended.add_tokens(["<plan>"])
    with pytest.raises(ConfigError, match=r"'step0' and 'step100'.*vocabulary size"):
        check_same_tokenizer({"step0": tok, "step50": tok, "step100": extended})
    other_pad = copy.deepcopy(tok)
    other_pad.pad_token = "<|endoftext|>"
    with pytest.raises(ConfigError, match=r"'a' and 'b'.*special tokens"):
        check_same_tokenizer({"a": tok, "b": other_pad})


def test_checkpoint_model_spec(tmp_path):
    (tmp_path / "s100").mkdir()
    p = str(tmp_path / "s100")
    assert load_checkpoint_models(f"s0=default, s100={p}") == {"s0": "default", "s100": p}
    assert list(load_checkpoint_models({"b": "default", "a": p})) == ["b", "a"]  # order kept
    for bad, msg in [
        ("s0", "malformed"),
        ("s0=", "malformed"),
        ("=default", "malformed"),
        ("s0=default,,s1=default", "malformed"),
        ("", "no checkpoint"),
        ("s0=default,s0=default", "given twice"),
        (f"s0={tmp_path / 'nope'}", "does not exist"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            load_checkpoint_models(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint_models({"s0": str(tmp_path / "nope")})


def test_relative_perplexity_vectorised():
    assert relative_perplexity(2.0, 2, 0.0, 4) == pytest.approx(np.e)
    boot = relative_perplexity(np.array([2.0, 4.0]), np.array([2, 2]), np.array([1.0, 2.0]), 2)
    np.testing.assert_allclose(boot, [np.exp(0.5), np.exp(1.0)])
    np.testing.assert_allclose(
        relative_perplexity(np.log(2.0) * 3, 3, np.log(1.3) * 5, 5), 2.0 / 1.3
    )
    assert np.isnan(relative_perplexity(1.0, 0, 1.0, 1))
