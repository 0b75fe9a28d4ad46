"""verl adapter, checked against verl's own GRPO estimator and compute_advantage (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("verl.trainer.ppo.ray_trainer")

from verl import DataProto
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo import core_algos, ray_trainer

from mechgraph.errors import ConfigError
from mechgraph.labels import gram_spans, planning_token_mask
from mechgraph.traces import Trace
from mechgraph.weights import (
    AdvantageConfig,
    TextMismatchError,
    WeightsConfig,
    read_weights,
    token_weights,
    write_weights,
)
from mechgraph.weights.verl import (
    compute_advantage,
    install,
    register_estimator,
    to_dataproto,
)

TEXTS = [
    "But wait, 2 + 2 = 4.",
    "So the sum is 4.",
    "Let me try again: 3 * 3 = 9. But wait.",
    "9.",
]
UID = np.array(["p0", "p0", "p1", "p1"], dtype=object)
SCORES = [1.0, 0.0, 1.0, 0.0]
GRAMS = ["but wait", "let me try"]


def _batch(smol, texts=TEXTS, L=24):
    B = len(texts)
    responses = torch.full((B, L), smol.pad_token_id, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    rewards = torch.zeros((B, L))
    for i, t in enumerate(texts):
        ids = smol(t, add_special_tokens=False)["input_ids"]
        responses[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
        rewards[i, len(ids) - 1] = SCORES[i]
    return DataProto.from_dict(
        tensors={"responses": responses, "response_mask": mask, "token_level_rewards": rewards},
        non_tensors={"uid": UID.copy()},
    )


def _hand_planning(smol, texts=TEXTS, L=24):
    plan = torch.zeros((len(texts), L), dtype=torch.bool)
    for i, t in enumerate(texts):
        _, m = planning_token_mask(smol, t, gram_spans(t, GRAMS))
        plan[i, : len(m)] = torch.as_tensor(m)
    return plan


def test_hicra_estimator_matches_verl_grpo_plus_hand_formula(smol):
    name = register_estimator("mg_hicra")
    assert register_estimator("mg_hicra") == name  # idempotent
    data = _batch(smol)
    base, _ = core_algos.compute_grpo_outcome_advantage(
        data.batch["token_level_rewards"], data.batch["response_mask"], UID
    )
    out = compute_advantage(
        data, name, tokenizer=smol, planning=GRAMS, config=AlgoConfig(adv_estimator=name)
    )
    plan = _hand_planning(smol)
    want = (base + 0.2 * base.abs() * plan) * data.batch["response_mask"]
    torch.testing.assert_close(out.batch["advantages"], want)
    assert torch.equal(out.batch["planning_mask"], plan)
    assert plan.sum() >= 4  # "But wait" x2, "Let me try"
    # signs kept; correct rows (A > 0) grow on planning tokens, wrong ones (A < 0) shrink
    adv = out.batch["advantages"]
    assert torch.equal(torch.sign(adv), torch.sign(base))
    assert adv[0, 0] == pytest.approx(1.2 * float(base[0, 0]), rel=1e-6)


def test_plain_verl_call_explains_what_is_missing(smol):
    name = register_estimator("mg_hicra_plain")
    with pytest.raises(ConfigError, match="no token ids"):
        ray_trainer.compute_advantage(_batch(smol), adv_estimator=name)
    # releases that pass extra batch keys to estimators: the estimator takes them directly
    data = _batch(smol)
    fn = core_algos.get_adv_estimator_fn(name)
    plan = _hand_planning(smol)
    adv, _ = fn(
        data.batch["token_level_rewards"], data.batch["response_mask"], UID, planning_mask=plan
    )
    base, _ = core_algos.compute_grpo_outcome_advantage(
        data.batch["token_level_rewards"], data.batch["response_mask"], UID
    )
    torch.testing.assert_close(adv, (base + 0.2 * base.abs() * plan) * data.batch["response_mask"])


def test_other_estimators_pass_through_and_names_are_guarded(smol):
    data = _batch(smol)
    out = compute_advantage(data, "grpo", tokenizer=smol, planning=GRAMS)
    assert "planning_mask" not in out.batch.keys()
    with pytest.raises(ConfigError, match="already has"):
        register_estimator("rloo")
    register_estimator("mg_hicra_guard")
    with pytest.raises(ConfigError, match="already has"):
        register_estimator("mg_hicra_guard", config=AdvantageConfig(alpha=0.5))


def test_rloo_base_and_multiplicative(smol):
    name = register_estimator(
        "mg_mult_rloo", base="rloo", config=AdvantageConfig(transform="multiplicative")
    )
    data = _batch(smol)
    base, _ = core_algos.get_adv_estimator_fn("rloo")(
        data.batch["token_level_rewards"], data.batch["response_mask"], UID
    )
    out = compute_advantage(
        data, name, tokenizer=smol, weight_fn=lambda text, off: np.arange(len(off)) / 10.0
    )
    w = torch.zeros(4, 24)
    for i, t in enumerate(TEXTS):
        n = len(smol(t, add_special_tokens=False)["input_ids"])
        w[i, :n] = torch.arange(n) / 10.0
    torch.testing.assert_close(out.batch["advantages"], base * w)


def test_hicra_code_in_verl(smol):
    name = register_estimator("mg_code", config=AdvantageConfig(transform="hicra_code"))
    data = _batch(smol)
    with pytest.raises(ConfigError, match="entropys"):
        compute_advantage(data, name, tokenizer=smol, planning=GRAMS)
    data = _batch(smol)
    data.batch["entropys"] = torch.zeros(4, 24)
    out = compute_advantage(data, name, tokenizer=smol, planning=GRAMS)
    base, _ = core_algos.compute_grpo_outcome_advantage(
        data.batch["token_level_rewards"], data.batch["response_mask"], UID
    )
    # eligible: correct and longer than the group mean -> rows 0 and 2 (both correct, longer)
    adv = out.batch["advantages"]
    assert adv[0, 0] > base[0, 0] and adv[2, 0] > base[2, 0]
    torch.testing.assert_close(adv[[1, 3]], base[[1, 3]])


def test_batch_from_parquet_and_text_mismatch(smol, tmp_path):
    traces = [Trace(f"c{i}", t) for i, t in enumerate(TEXTS)]
    rows = token_weights(traces, smol, WeightsConfig(planning="sg"), planning=GRAMS)
    p = write_weights(tmp_path / "w.parquet", rows, WeightsConfig(planning="sg"))
    data = to_dataproto(read_weights(p), response_length=24, pad_id=smol.pad_token_id, uid=UID)
    data.batch["token_level_rewards"] = _batch(smol).batch["token_level_rewards"]
    name = register_estimator("mg_hicra_parquet")
    out = compute_advantage(data, name, tokenizer=smol, text_key="mg_text")
    assert torch.equal(out.batch["planning_mask"], _hand_planning(smol))
    # the texts the batch should hold differ from what its token ids say: refused
    data = to_dataproto(read_weights(p), response_length=24, pad_id=smol.pad_token_id, uid=UID)
    data.batch["token_level_rewards"] = _batch(smol).batch["token_level_rewards"]
    data.non_tensor_batch["mg_text"][3] = "8."
    with pytest.raises(TextMismatchError, match="row 3"):
        compute_advantage(data, name, tokenizer=smol, text_key="mg_text")
    # precomputed rows keyed to a batch whose responses are another completion: refused
    with pytest.raises(TextMismatchError, match="c0"):
        compute_advantage(
            _batch(smol, [TEXTS[1], *TEXTS[1:]]), name, tokenizer=smol, weights_rows=rows
        )


def test_install_replaces_verl_compute_advantage(smol):
    name = register_estimator("mg_hicra_install")
    original = ray_trainer.compute_advantage
    undo = install(smol, GRAMS)
    try:
        out = ray_trainer.compute_advantage(_batch(smol), name, 1.0, 1.0)
        assert torch.equal(out.batch["planning_mask"], _hand_planning(smol))
    finally:
        undo()
    assert ray_trainer.compute_advantage is original
