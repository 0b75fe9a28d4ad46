"""steer_test: position-matched controls, a fixed KL window, backward compatibility."""

from __future__ import annotations

import numpy as np
import pytest

from mechgraph.errors import ConfigError
from mechgraph.importance._common import prepare
from mechgraph.importance.steer import position_matched_sets, set_kl, steer_test
from mechgraph.importance.suppression import masked_token_kl
from mechgraph.traces import Trace, segment_traces

N_STEPS = 12


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny model's ops are so small that thread start-up dominates; one thread is faster."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def prepared(tiny_model):
    text = " ".join(f"Step {i} says z = {i} * 2." for i in range(N_STEPS))
    (t,) = segment_traces([Trace(id="s", text=text, prompt="Q: ")], "sentences")
    p = prepare(t, tiny_model.tokenizer)
    assert p.n_steps == N_STEPS
    return p


def _old_steer(lm, p, scores, k, n_random, n_boot, seed):
    """The steer test as it was before eval_from / control (full masked forwards)."""

    def downstream(chosen):
        spans = [p.spans[j] for j in chosen]
        kl = masked_token_kl(lm, p.ids[: p.spans[-1][1]], spans)
        keep = np.arange(len(kl)) >= min(b for _, b in spans)
        for a, b in spans:
            keep[a:b] = False
        keep[: p.spans[0][0]] = False
        return float(kl[keep].mean()) if keep.any() else 0.0

    elig = p.n_steps - 1
    top = list(np.argsort(-scores[:elig], kind="stable")[:k])
    rng = np.random.default_rng(seed)
    top_kl = downstream([int(j) for j in top])
    rand = np.array(
        [downstream(sorted(rng.choice(elig, k, replace=False).tolist())) for _ in range(n_random)]
    )
    boots = rng.choice(rand, (n_boot, len(rand)), replace=True).mean(1)
    lo, hi = np.percentile(top_kl - boots, [2.5, 97.5])
    return top_kl, rand, top_kl - rand.mean(), (lo, hi)


def test_default_matches_the_original_test(tiny_model, prepared):
    scores = np.sin(np.arange(N_STEPS, dtype=float))
    r = steer_test(tiny_model, prepared, scores, k=2, n_random=4, n_boot=100, seed=3)
    top_kl, rand, effect, ci = _old_steer(tiny_model, prepared, scores, 2, 4, 100, 3)
    assert r.control == "uniform" and r.window is None
    assert r.top == [int(j) for j in np.argsort(-scores[: N_STEPS - 1], kind="stable")[:2]]
    np.testing.assert_allclose(r.top_kl, top_kl, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(r.random_kl, rand, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose([r.effect, *r.ci], [effect, *ci], rtol=1e-3, atol=1e-6)
    assert r.top_kl > 0


@pytest.mark.parametrize(
    ("top", "n_elig", "radius"),
    [([3, 7], 12, 1), ([0, 1, 2], 12, 4), ([4, 5, 6], 11, 2), ([0, 9], 10, 2), ([5], 6, 3)],
)
def test_position_matched_sets_respect_the_rule(top, n_elig, radius):
    sets = position_matched_sets(top, n_elig, 50, radius=radius, rng=1)
    assert sets.shape == (50, len(top))
    for s in sets:
        assert list(s) == sorted(set(s.tolist()))  # sorted, distinct
        assert not set(s.tolist()) & set(top)
        assert s.min() >= 0 and s.max() < n_elig
        assert np.abs(s - np.sort(top)).max() <= radius
    # the draw is random, not one fixed set
    assert len({tuple(s) for s in sets.tolist()}) > 1


def test_position_matched_sets_widen_only_when_needed():
    # 0, 1, 2 have only 3 and 4 within radius 2: one partner must come from further away
    sets = position_matched_sets([0, 1, 2], 10, 20, radius=2, rng=0)
    assert (np.abs(sets - [0, 1, 2]).max(1) == 3).all()
    assert not np.isin(sets, [0, 1, 2]).any()


def test_position_matched_sets_bad_input():
    with pytest.raises(ConfigError, match="2k"):
        position_matched_sets([0, 1, 2], 5, 3)
    with pytest.raises(ConfigError, match="radius"):
        position_matched_sets([1], 4, 3, radius=0)
    with pytest.raises(ConfigError, match="outside"):
        position_matched_sets([9], 4, 3)
    with pytest.raises(ConfigError, match="distinct"):
        position_matched_sets([1, 1], 8, 3)


def test_set_kl_matches_full_forwards_and_empty_is_zero(tiny_model, prepared):
    p = prepared
    s0 = N_STEPS - 3
    w0 = p.spans[s0][0]
    sets = [[], [1, 4], [7], [0, 2, 8], [5]]
    got = set_kl(tiny_model, p, sets, eval_from=-3, batch_size=2)
    one = set_kl(tiny_model, p, sets, eval_from=s0, batch_size=1)
    ref = [
        masked_token_kl(tiny_model, p.ids, [p.spans[j] for j in s])[w0:].mean() if s else 0.0
        for s in sets
    ]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got, one, rtol=1e-5, atol=1e-7)
    assert abs(got[0]) < 1e-5  # hiding nothing changes nothing
    assert (got[1:] > 1e-6).all()


def test_set_kl_refuses_hidden_window_sentences(tiny_model, prepared):
    with pytest.raises(ConfigError, match="cannot be hidden"):
        set_kl(tiny_model, prepared, [[1, N_STEPS - 2]], eval_from=-3)
    with pytest.raises(ConfigError, match="cannot be hidden"):
        set_kl(tiny_model, prepared, [[N_STEPS - 1]])
    with pytest.raises(ConfigError, match="empty set"):
        set_kl(tiny_model, prepared, [[]])


def test_position_control_with_fixed_window(tiny_model, prepared):
    p = prepared
    scores = np.zeros(N_STEPS)
    scores[[1, 2, 5]] = [3.0, 2.0, 1.0]
    r = steer_test(
        tiny_model, p, scores, k=3, n_random=6, n_boot=200, control="position", eval_from=-4
    )
    s0 = N_STEPS - 4
    assert r.top == [1, 2, 5] and r.control == "position"
    assert r.window == (p.spans[s0][0], p.spans[-1][1])
    assert r.random_sets.shape == (6, 3)
    assert (r.random_sets < s0).all()
    assert np.abs(r.random_sets - np.array(r.top)).max() <= 2
    assert not (np.isin(r.random_sets, r.top)).any()
    assert r.ci[0] <= r.effect <= r.ci[1]
    # the KL of each set is the one set_kl measures on the same window
    direct = set_kl(tiny_model, p, [r.top, *r.random_sets.tolist()], eval_from=s0)
    np.testing.assert_allclose([r.top_kl, *r.random_kl], direct, rtol=1e-5, atol=1e-8)
    assert r.to_dict()["random_sets"] == r.random_sets.tolist()


def test_deterministic_under_a_seed(tiny_model, prepared):
    scores = np.cos(np.arange(N_STEPS, dtype=float))  # top: 6 and 0
    kw = {"k": 2, "n_random": 4, "n_boot": 100, "control": "position", "eval_from": -3}
    a = steer_test(tiny_model, prepared, scores, seed=7, **kw)
    b = steer_test(tiny_model, prepared, scores, seed=7, **kw)
    c = steer_test(tiny_model, prepared, scores, seed=8, **kw)
    assert a.top_kl == b.top_kl and a.ci == b.ci
    np.testing.assert_array_equal(a.random_sets, b.random_sets)
    np.testing.assert_array_equal(a.random_kl, b.random_kl)
    assert not np.array_equal(a.random_sets, c.random_sets)


@pytest.mark.parametrize(
    "kw",
    [
        {"k": 0},
        {"k": N_STEPS - 1},
        {"k": 6, "eval_from": -6},  # 6 eligible: uniform allows k <= 5 ...
        {"k": 4, "eval_from": -6, "control": "position"},  # ... position needs 2k <= 6
        {"eval_from": 0},
        {"eval_from": N_STEPS},
        {"control": "nearby"},
        {"n_random": 0},
    ],
)
def test_bad_configs_raise(tiny_model, prepared, kw):
    scores = np.arange(N_STEPS, dtype=float)
    with pytest.raises(ConfigError):
        steer_test(tiny_model, prepared, scores, **{"n_random": 2, "n_boot": 10, **kw})


def test_bad_scores_raise(tiny_model, prepared):
    with pytest.raises(ConfigError, match="one score per sentence"):
        steer_test(tiny_model, prepared, np.zeros(3), k=2)
    bad = np.zeros(N_STEPS)
    bad[2] = np.nan
    with pytest.raises(ConfigError, match="finite"):
        steer_test(tiny_model, prepared, bad, k=2)
