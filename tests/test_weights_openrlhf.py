"""OpenRLHF adapter against its tensor contract (OpenRLHF needs deepspeed / flash-attn).

The contract (OpenRLHF 0.11, ``RemoteExperienceMaker.compute_advantages_and_returns``):
each ``Experience`` holds ``sequences`` (B, T) = prompt + response ids, ``action_mask``
(B, A) over the last ``A`` tokens of ``sequences`` (0.11: ``A = T - 1``, aligned with
``sequences[:, 1:]``), ``advantages`` / ``returns`` (B, A), ``rewards`` (B,), ``index``
(original sample order) and ``info`` (dict).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mechgraph.errors import ConfigError
from mechgraph.labels import gram_spans, planning_token_mask
from mechgraph.weights import AdvantageConfig
from mechgraph.weights.openrlhf import apply_to_experiences, make_experience_maker_class

GRAMS = ["but wait", "let me try"]
PROMPT = "Q: what is 2 + 2?\n"
TEXTS = ["But wait, 2 + 2 = 4.", "4", "Let me try: 2 + 2 = 5. But wait, 4.", "5."]
REWARDS = [1.0, 0.0, 1.0, 0.0]


def _experience(smol, rows: list[int]):
    """One experience in OpenRLHF 0.11's layout: right-padded, action_mask = sequences[:, 1:]."""
    p = smol(PROMPT, add_special_tokens=False)["input_ids"]
    seqs = [
        p + smol(TEXTS[i], add_special_tokens=False)["input_ids"] + [smol.eos_token_id]
        for i in rows
    ]
    T = max(map(len, seqs)) + 2
    sequences = torch.full((len(rows), T), smol.pad_token_id)
    action = torch.zeros((len(rows), T - 1), dtype=torch.bool)
    for k, s in enumerate(seqs):
        sequences[k, : len(s)] = torch.tensor(s)
        action[k, len(p) - 1 : len(s) - 1] = True  # response tokens (and EOS), shifted by one
    return SimpleNamespace(
        sequences=sequences,
        action_mask=action,
        advantages=None,
        returns=None,
        rewards=torch.tensor([REWARDS[i] for i in rows]),
        index=list(rows),
        info={},
    )


class FakeMaker:
    """Stands in for RemoteExperienceMaker: group-normalised rewards spread over actions."""

    def __init__(self, tokenizer, n_samples_per_prompt=2, **kwargs):
        self.tokenizer = tokenizer
        self.strategy = SimpleNamespace(
            args=SimpleNamespace(rollout=SimpleNamespace(n_samples_per_prompt=n_samples_per_prompt))
        )

    def compute_advantages_and_returns(self, experiences):
        r = torch.tensor(REWARDS).view(-1, 2)
        r = ((r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-9)).view(-1)
        for e in experiences:
            a = r[torch.as_tensor(e.index)][:, None] * e.action_mask
            e.advantages, e.returns = a.clone(), a.clone()
        return experiences


def _hand(smol, exp):
    """HICRA by hand: planning tokens from labels' own tokenisation of each completion."""
    want = exp.advantages.clone()
    for k, i in enumerate(exp.index):
        _, m = planning_token_mask(smol, TEXTS[i], gram_spans(TEXTS[i], GRAMS))
        pos = exp.action_mask[k].nonzero().flatten()[: len(m)]
        a = exp.advantages[k, pos]
        want[k, pos] = a + 0.2 * a.abs() * torch.as_tensor(m)
    return want


def test_override_applies_hicra_after_the_base(smol):
    Maker = make_experience_maker_class(FakeMaker)
    maker = Maker(smol, planning=GRAMS)
    exps = [_experience(smol, [0, 1]), _experience(smol, [2, 3])]
    base = FakeMaker(smol).compute_advantages_and_returns(
        [_experience(smol, [0, 1]), _experience(smol, [2, 3])]
    )
    out = maker.compute_advantages_and_returns(exps)
    for e, b in zip(out, base, strict=True):
        assert e.advantages.shape == e.action_mask.shape
        torch.testing.assert_close(e.advantages, _hand(smol, b))
        torch.testing.assert_close(e.returns, b.returns)  # returns untouched
        assert e.info["planning_share"].shape == (2,)
    assert out[0].info["planning_share"][0] > 0 and out[0].info["planning_share"][1] == 0


def test_hicra_code_and_weights_on_the_contract(smol):
    exps = FakeMaker(smol).compute_advantages_and_returns(
        [_experience(smol, [0, 1]), _experience(smol, [2, 3])]
    )
    before = [e.advantages.clone() for e in exps]
    cfg = AdvantageConfig(transform="hicra_code", top_entropy=0.0)
    apply_to_experiences(exps, smol, planning=GRAMS, config=cfg, n_samples_per_prompt=2)
    # rows 0 and 2 are correct and longer than their group's mean: amplified; 1 and 3 not
    assert exps[0].advantages[0].sum() > before[0][0].sum()
    torch.testing.assert_close(exps[0].advantages[1], before[0][1])
    torch.testing.assert_close(exps[1].advantages[1], before[1][1])
    with pytest.raises(ConfigError, match="top_entropy=0"):
        apply_to_experiences(
            exps,
            smol,
            planning=GRAMS,
            config=AdvantageConfig(transform="hicra_code"),
            n_samples_per_prompt=2,
        )
    exps = FakeMaker(smol).compute_advantages_and_returns([_experience(smol, [0, 1])])
    base = exps[0].advantages.clone()
    apply_to_experiences(
        exps,
        smol,
        weight_fn=lambda text, off: [2.0] * len(off),
        config=AdvantageConfig(transform="multiplicative"),
    )
    torch.testing.assert_close(exps[0].advantages, 2 * base)


def test_without_openrlhf_the_default_base_is_a_clear_error():
    try:
        import openrlhf  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="openrlhf"):
            make_experience_maker_class()
    with pytest.raises(ConfigError, match="planning"):
        make_experience_maker_class(FakeMaker)(None, planning=None)
