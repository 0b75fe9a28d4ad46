"""One config rule: options given with a config override its fields, validated again."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from mechgraph.configs import config_from_dict, config_to_dict, merge_config
from mechgraph.errors import ConfigError
from mechgraph.traces import Trace, segment_traces


@dataclass
class Inner:
    width: int = 2
    names: tuple[str, ...] = ("a",)


@dataclass
class Outer:
    top_k: int = 20
    seed: int = 0
    inner: Inner = field(default_factory=Inner)
    extra: Inner | None = None

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")


def test_merge_precedence():
    base = Outer(top_k=5, seed=3)
    assert merge_config(Outer, base) is base
    assert merge_config(Outer, None, seed=1) == Outer(seed=1)
    assert merge_config(Outer) == Outer()
    merged = merge_config(Outer, base, top_k=7)
    assert merged == Outer(top_k=7, seed=3) and base.top_k == 5  # a copy, base untouched
    assert merge_config(Outer, {"seed": 4}, top_k=2) == Outer(top_k=2, seed=4)


def test_unknown_field_and_wrong_type():
    with pytest.raises(ConfigError, match=r"'top_kk'.*did you mean 'top_k'.*seed, top_k"):
        merge_config(Outer, Outer(), top_kk=3)
    with pytest.raises(ConfigError, match="no field 'bogus'"):
        merge_config(Outer, None, bogus=1)
    with pytest.raises(ConfigError, match="must be a Outer, got Inner"):
        merge_config(Outer, Inner())
    with pytest.raises(ConfigError, match="must be a Outer, got Inner"):
        merge_config(Outer, Inner(), seed=1)


def test_validation_reruns():
    with pytest.raises(ConfigError, match="top_k must be >= 1"):
        merge_config(Outer, Outer(), top_k=0)
    with pytest.raises(ConfigError, match="top_k must be >= 1"):
        merge_config(Outer, None, top_k=0)


def test_dict_round_trip_nested():
    cfg = Outer(top_k=3, inner=Inner(5, ("x", "y")), extra=Inner(1))
    d = json.loads(json.dumps(config_to_dict(cfg)))
    assert d["inner"] == {"width": 5, "names": ["x", "y"]}
    assert config_from_dict(Outer, d) == cfg
    assert config_from_dict(Outer, {}) == Outer()
    with pytest.raises(ConfigError, match=r"no field 'wdth'.*names, width"):
        config_from_dict(Outer, {"inner": {"wdth": 1}})


# --- the importance functions honour options given together with a config ----------


class _Stop(Exception):
    pass


def _trace(n=4):
    text = " ".join(f"Sentence {i} is about the value {i * 7}." for i in range(n))
    (t,) = segment_traces([Trace(id="t", text=text, prompt="Q: ", answer="42")], "sentences")
    return t


def test_receiver_scores_merges(monkeypatch):
    from mechgraph.importance import receivers
    from mechgraph.importance.receivers import ReceiverConfig

    seen = {}
    S = 6

    def fake_prepared(trace, tokenizer, max_tokens=None):
        seen["max_tokens"] = max_tokens
        return SimpleNamespace(ids=np.arange(12), spans=[(2 * i, 2 * i + 2) for i in range(S)])

    def fake_attention(lm, ids, spans, query_chunk):
        seen["query_chunk"] = query_chunk
        return np.random.default_rng(0).random((2, 3, S, S))

    monkeypatch.setattr(receivers, "as_prepared", fake_prepared)
    monkeypatch.setattr(receivers, "sentence_attention", fake_attention)
    cfg = ReceiverConfig(top_k=5, query_chunk=64, max_tokens=100, proximity_ignore=1)
    r = receivers.receiver_scores(SimpleNamespace(tokenizer=None), object(), cfg, top_k=2)
    assert r.heads.shape == (2, 2)  # the option wins
    assert seen == {"max_tokens": 100, "query_chunk": 64}  # the config's other fields kept
    with pytest.raises(ConfigError, match="no field 'topk'"):
        receivers.receiver_scores(SimpleNamespace(tokenizer=None), object(), cfg, topk=2)


@pytest.mark.parametrize("naive", [False, True])
def test_suppression_matrix_merges(monkeypatch, naive):
    from mechgraph.importance import suppression
    from mechgraph.importance.suppression import SuppressionConfig

    seen = {}

    def fake_prepared(trace, tokenizer, max_tokens=None):
        seen["max_tokens"] = max_tokens
        raise _Stop

    monkeypatch.setattr(suppression, "as_prepared", fake_prepared)
    fn = suppression.suppression_matrix_naive if naive else suppression.suppression_matrix
    lm = SimpleNamespace(tokenizer=None)
    with pytest.raises(_Stop):
        fn(lm, object(), SuppressionConfig(batch_size=3, max_tokens=500), max_tokens=40)
    assert seen["max_tokens"] == 40
    with pytest.raises(ConfigError, match="batch_size and kl_chunk"):
        fn(lm, object(), SuppressionConfig(), batch_size=0)


def test_suppression_batch_size_option(monkeypatch):
    from mechgraph.importance import suppression
    from mechgraph.importance.suppression import SuppressionConfig

    p = SimpleNamespace(ids=np.arange(10), spans=[(0, 2), (2, 4), (4, 6), (6, 8)], n_steps=4)
    monkeypatch.setattr(suppression, "as_prepared", lambda *a, **k: p)
    monkeypatch.setattr(
        suppression, "_base_forward", lambda hf, ids: (None, SimpleNamespace(dtype=None), None)
    )

    def fake_masked(hf, x, cache, start, masked, dtype):
        raise _Stop(len(masked))

    monkeypatch.setattr(suppression, "_masked_forward", fake_masked)
    lm = SimpleNamespace(tokenizer=None, hf=SimpleNamespace(get_output_embeddings=lambda: None))
    with pytest.raises(_Stop) as e:
        suppression.suppression_matrix(lm, object(), SuppressionConfig(batch_size=3), batch_size=2)
    assert e.value.args == (2,)


def _stub_rollouts(monkeypatch, module, seen):
    from mechgraph.importance.resampling import Rollout

    def fake(trace, i, n, generator, embedder, *, seed=0, start=0, answer="boxed"):
        seen.append((n, seed, answer))
        return [Rollout(f"s{k}", "42" if k % 2 else "7", 0.5) for k in range(start, start + n)]

    monkeypatch.setattr(module, "sample_rollouts", fake)


def test_counterfactual_importance_merges(monkeypatch):
    from mechgraph.importance import resampling
    from mechgraph.importance.resampling import ResamplingConfig

    seen: list = []
    _stub_rollouts(monkeypatch, resampling, seen)
    cfg = ResamplingConfig(n_rollouts=50, seed=9, answer="boxed_or_stated")
    r = resampling.counterfactual_importance(_trace(), None, None, cfg, n_rollouts=3)
    assert r.config == ResamplingConfig(n_rollouts=3, seed=9, answer="boxed_or_stated")
    assert set(seen) == {(3, 9, "boxed_or_stated")}
    with pytest.raises(ConfigError, match="n_rollouts must be >= 1"):
        resampling.counterfactual_importance(_trace(), None, None, cfg, n_rollouts=0)


def test_adaptive_importance_merges(monkeypatch):
    from mechgraph.importance import adaptive
    from mechgraph.importance.resampling import ResamplingConfig

    seen: list = []
    _stub_rollouts(monkeypatch, adaptive, seen)
    cfg = ResamplingConfig(n_rollouts=100, seed=5, threshold=0.3)
    r = adaptive.adaptive_importance(
        _trace(), None, None, cfg, n_rollouts=10, budget=0.5, n_initial=2
    )
    assert r.config == ResamplingConfig(n_rollouts=10, seed=5, threshold=0.3)
    assert {s[1] for s in seen} == {5} and max(len(x) for x in r.rollouts) <= 10
    with pytest.raises(ConfigError, match="no field 'n_rollout'"):
        adaptive.adaptive_importance(_trace(), None, None, cfg, n_rollout=10)


def test_module_examples():
    import doctest

    import mechgraph.configs

    res = doctest.testmod(mechgraph.configs, optionflags=doctest.ELLIPSIS)
    assert res.attempted and res.failed == 0
