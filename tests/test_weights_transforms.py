"""Advantage transforms: numerics, signs, broadcasting, means, torch / numpy parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mechgraph.errors import ConfigError
from mechgraph.weights import (
    AdvantageConfig,
    additive_advantages,
    apply_transform,
    group_ids,
    hicra_advantages,
    hicra_code_advantages,
    hicra_code_eligible,
    multiplicative_advantages,
    normalize_weights,
    top_entropy_mask,
)

A = np.array([1.5, -2.0, 0.0])
MASK = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]], dtype=bool)
RESP = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]], dtype=bool)


def test_hicra_hand_values_and_broadcast():
    out = hicra_advantages(A, MASK, alpha=0.2)
    want = np.array(
        [[1.8, 1.5, 1.8, 1.5], [-1.6, -1.6, -2.0, -2.0], [0.0, 0.0, 0.0, 0.0]], dtype=np.float64
    )
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, want)
    # (B,) and (B, 1) and (B, T) constant rows give the same result
    np.testing.assert_allclose(hicra_advantages(A[:, None], MASK), out)
    np.testing.assert_allclose(hicra_advantages(np.repeat(A[:, None], 4, 1), MASK), out)


def test_hicra_torch_matches_numpy_and_keeps_device_dtype():
    a = torch.tensor(A, dtype=torch.float32)
    m = torch.tensor(MASK)
    out = hicra_advantages(a, m, 0.2, response_mask=torch.tensor(RESP))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 4)
    ref = hicra_advantages(A, MASK, 0.2, response_mask=RESP)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)
    # padding is exactly 0 (not -0.0 or A)
    assert out[1, 3].item() == 0.0 and not torch.signbit(out[1, 3])
    assert ref[2, 2] == 0.0


def test_mixed_inputs_give_torch():
    out = hicra_advantages(A.tolist(), torch.tensor(MASK))
    assert isinstance(out, torch.Tensor)


def test_hicra_sign_and_alpha_limits():
    out = hicra_advantages([1.0, -1.0], [[1], [1]], alpha=1.0)
    assert out.tolist() == [[2.0], [0.0]]  # alpha = 1 zeroes negative planning advantages
    with pytest.raises(ConfigError, match="alpha"):
        hicra_advantages([1.0], [[1]], alpha=1.5)
    with pytest.raises(ConfigError, match="alpha"):
        hicra_advantages([1.0], [[1]], alpha=-0.1)


def test_shape_errors():
    with pytest.raises(ConfigError, match="rows"):
        hicra_advantages([1.0, 2.0], [[1, 0]])
    with pytest.raises(ConfigError, match=r"\(B, T\)"):
        hicra_advantages([1.0], [1, 0])
    with pytest.raises(ConfigError, match="response_mask"):
        hicra_advantages([1.0], [[1, 0]], response_mask=[[1, 0, 0]])


@settings(max_examples=60, deadline=None)
@given(
    a=arrays(np.float64, st.integers(1, 6), elements=st.floats(-5, 5)),
    data=st.data(),
    alpha=st.floats(0, 0.99),
)
def test_hicra_properties(a, data, alpha):
    B = len(a)
    T = data.draw(st.integers(1, 7))
    m = data.draw(arrays(bool, (B, T)))
    out = hicra_advantages(a, m, alpha)
    A2 = np.repeat(a[:, None], T, 1)
    # sign kept, magnitude never falls for A > 0, never grows for A < 0
    assert np.all(np.sign(out) == np.sign(A2))
    assert np.all(out >= A2 - 1e-12)
    # mean rises by exactly alpha * mean(|A| * m)
    np.testing.assert_allclose(out.mean(), A2.mean() + alpha * (np.abs(A2) * m).mean(), atol=1e-9)
    # non-planning tokens untouched
    np.testing.assert_array_equal(out[~m], A2[~m])


def test_multiplicative_and_additive_signs_and_means():
    w = np.array([[0.5, 1.5, -1.0]])
    mul = multiplicative_advantages([2.0], w)
    assert mul.tolist() == [[1.0, 3.0, -2.0]]  # sign flips where w < 0
    add = additive_advantages([1.0], np.array([[-2.0, 0.5, 0.0]]))
    assert add.tolist() == [[-1.0, 1.5, 1.0]]  # sign flips where |w| > |A| opposite
    assert additive_advantages([1.0], [[1.0, 1.0]], scale=0.5).tolist() == [[1.5, 1.5]]
    # weights with mean 1 keep each sequence's mean under A * w
    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 3, (4, 6))
    adv = rng.normal(size=4)
    wn = normalize_weights(w)
    np.testing.assert_allclose(multiplicative_advantages(adv, wn).mean(1), adv)
    # centred weights keep each sequence's mean under A + w
    wc = normalize_weights(w, how="center")
    np.testing.assert_allclose(additive_advantages(adv, wc).mean(1), adv)


def test_normalize_weights_respects_response_mask():
    w = torch.tensor([[2.0, 4.0, 9.0]])
    rm = torch.tensor([[1, 1, 0]])
    out = normalize_weights(w, rm, "mean")
    np.testing.assert_allclose(out.numpy(), [[2 / 3, 4 / 3, 0.0]], rtol=1e-6)
    assert normalize_weights(w, rm, "max").tolist() == [[0.5, 1.0, 0.0]]
    assert normalize_weights(w, how="none").tolist() == w.tolist()
    with pytest.raises(ConfigError):
        normalize_weights(w, how="zscore")


def test_top_entropy_mask_batch_and_sequence():
    e = np.array([[0.1, 0.9, 0.5, 0.2], [0.8, 0.7, 0.0, 0.0]])
    rm = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    m = top_entropy_mask(e, rm, top=0.5)  # 6 valid tokens -> 3 highest: .9 .8 .7
    assert m.tolist() == [[False, True, False, False], [True, True, False, False]]
    ms = top_entropy_mask(e, rm, top=0.5, per="sequence")
    assert ms.tolist() == [[False, True, True, False], [True, False, False, False]]
    mt = top_entropy_mask(torch.tensor(e), torch.tensor(rm), top=0.5)
    assert isinstance(mt, torch.Tensor) and mt.tolist() == m.tolist()
    with pytest.raises(ConfigError):
        top_entropy_mask(e, top=0.0)


def test_hicra_code_only_long_correct_completions():
    # group 0: lengths 4, 2 (mean 3) ; group 1: lengths 3, 3 (mean 3)
    adv = np.array([1.0, 1.0, 1.0, -1.0])
    rm = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]])
    plan = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]], dtype=bool)
    correct = [True, True, True, False]
    groups = group_ids(4, 2)
    assert hicra_code_eligible(correct, rm.sum(1), groups).tolist() == [True, False, False, False]
    out = hicra_code_advantages(adv, plan, correct=correct, groups=groups, response_mask=rm)
    want = np.where(rm, adv[:, None], 0.0)
    want[0, 0] = 1.2
    np.testing.assert_allclose(out, want)
    # entropy adds the high-entropy tokens of eligible rows only
    ent = np.zeros((4, 4))
    ent[0, 3] = ent[1, 1] = 5.0
    out = hicra_code_advantages(
        adv, plan, correct=correct, groups=groups, response_mask=rm, entropy=ent, top_entropy=0.1
    )
    assert out[0, 3] == pytest.approx(1.2) and out[1, 1] == pytest.approx(1.0)


def test_group_ids_and_config_validation():
    assert group_ids(4, 2).tolist() == [0, 0, 1, 1]
    with pytest.raises(ConfigError):
        group_ids(5, 2)
    with pytest.raises(ConfigError, match="unknown transform"):
        AdvantageConfig(transform="ktae")
    cfg = AdvantageConfig(transform="additive")
    assert not cfg.sign_preserving and cfg.needs_weights and not cfg.needs_planning
    with pytest.raises(ConfigError, match="weights"):
        apply_transform(cfg, [1.0])
    assert apply_transform(cfg, [1.0], weights=[[0.5]]).tolist() == [[1.5]]
    with pytest.raises(ConfigError, match="correct"):
        apply_transform(AdvantageConfig(transform="hicra_code"), [1.0], planning=[[1]])
