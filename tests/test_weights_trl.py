"""TRL adapter: a tiny model trains with (B, T) HICRA advantages; refused loss paths."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
from conftest import half_text, reward_len, tiny_grpo_config

trl = pytest.importorskip("trl")

from mechgraph.errors import ConfigError  # noqa: E402
from mechgraph.weights import AdvantageConfig  # noqa: E402
from mechgraph.weights.trl import check_grpo_args, make_grpo_trainer_class  # noqa: E402

ALPHA = 0.2


def _args(tmp_path, **kw):
    return tiny_grpo_config(tmp_path, **kw)


def _hand_planning(tok, ids: list[int]) -> list[bool] | None:
    """Anchor rule by prefix decoding: planning iff the token's first non-space char is in
    the first half of the text. None when a prefix ends inside a multi-byte char."""
    text = tok.decode(ids, skip_special_tokens=True)
    half = len(text) // 2
    out = []
    for t in range(len(ids)):
        before = tok.decode(ids[:t], skip_special_tokens=True)
        upto = tok.decode(ids[: t + 1], skip_special_tokens=True)
        if "\ufffd" in upto or not upto.startswith(before):
            return None
        piece = upto[len(before) :]
        if not piece:
            out.append(False)
            continue
        lead = len(piece) - len(piece.lstrip()) if piece.strip() else 0
        out.append(len(before) + lead < half)
    return out


def test_hicra_grpo_trains_with_hand_checked_token_advantages(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ds = Dataset.from_dict({"prompt": [f"What is {i} + {i}?" for i in range(8)]})

    class Recording(make_grpo_trainer_class()):
        seq_adv: ClassVar[list] = []
        seen: ClassVar[list] = []

        def token_advantages(self, out):
            for ids, a in zip(out["completion_ids"], out["advantages"], strict=True):
                self.seq_adv.append((tuple(ids.tolist()), float(a)))
            return super().token_advantages(out)

        def _compute_loss(self, model, inputs):
            loss = super()._compute_loss(model, inputs)
            self.seen.append(
                {
                    k: inputs[k].detach().clone()
                    for k in ("completion_ids", "completion_mask", "advantages")
                }
                | {"loss": loss.item()}
            )
            return loss

    trainer = Recording(
        model=str(tiny_model_dir),
        reward_funcs=reward_len,
        args=_args(tmp_path),
        train_dataset=ds,
        processing_class=tok,
        planning=half_text,
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()

    assert trainer.state.global_step == 2
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert changed, "no parameter moved in two optimizer steps"
    assert len(trainer.seen) == 2
    logged = [h["mechgraph/planning_share"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and all(0.2 < s < 0.8 for s in logged)

    seq = dict(trainer.seq_adv)
    checked = nonzero = 0
    for batch in trainer.seen:
        adv, mask = batch["advantages"], batch["completion_mask"]
        assert adv.shape == batch["completion_ids"].shape and adv.dtype == torch.float32
        want = torch.zeros_like(adv)
        for i, ids in enumerate(batch["completion_ids"].tolist()):
            a = seq[tuple(ids)]
            plan = _hand_planning(tok, ids)
            if plan is None:
                continue
            for t, p in enumerate(plan):
                want[i, t] = (a + ALPHA * abs(a) * p) * mask[i, t]
            torch.testing.assert_close(adv[i], want[i], atol=1e-6, rtol=1e-6)
            checked += 1
            nonzero += a != 0
        # the GRPO loss with ratio 1 and beta 0 is -mean_b(sum_t A'_bt m_bt / sum_t m_bt)
        hand = -((adv * mask).sum(1) / mask.sum(1).clamp(min=1)).mean().item()
        assert batch["loss"] == pytest.approx(hand, abs=1e-6)
    assert checked >= 4 and nonzero >= 1


def test_refuses_loss_paths_that_cannot_take_token_advantages(tmp_path):
    Trainer = make_grpo_trainer_class()
    liger = _args(
        tmp_path, use_liger_kernel=True, liger_kernel_config={"fused_linear_cross_entropy": True}
    )
    with pytest.raises(ConfigError, match="fused_linear_cross_entropy"):
        Trainer(model="unused", reward_funcs=reward_len, args=liger, planning=half_text)
    # older TRL: Liger's fused GRPO loss
    with pytest.raises(ConfigError, match="one advantage per sequence"):
        check_grpo_args(SimpleNamespace(use_liger_loss=True), AdvantageConfig())

    # a TRL whose loss goes through Liger when use_liger_kernel is on
    class LigerLossTrainer(trl.GRPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return self.compute_liger_loss(model, inputs)  # liger fused loss path

    with pytest.raises(ConfigError, match="Liger's fused loss"):
        make_grpo_trainer_class(LigerLossTrainer)(
            model="unused",
            reward_funcs=reward_len,
            args=_args(tmp_path, use_liger_kernel=True),
            planning=half_text,
        )

    # a TRL whose _compute_loss only takes (B,) advantages
    class OldTrainer(trl.GRPOTrainer):
        def _compute_loss(self, model, inputs):
            return inputs["advantages"].unsqueeze(1).sum()

    with pytest.raises(ConfigError, match=r"\(B, T\)"):
        make_grpo_trainer_class(OldTrainer)(
            model="unused", reward_funcs=reward_len, args=_args(tmp_path), planning=half_text
        )
    # sign-flipping transforms with losses that read the sequence's advantage sign
    add = AdvantageConfig(transform="additive")
    w = lambda text, off: [0.0] * len(off)  # noqa: E731
    with pytest.raises(ConfigError, match="vespo"):
        Trainer(
            model="unused",
            reward_funcs=reward_len,
            args=_args(tmp_path, loss_type="vespo"),
            advantage_config=add,
            weight_fn=w,
        )
    with pytest.raises(ConfigError, match="off_policy_mask_threshold"):
        check_grpo_args(_args(tmp_path, off_policy_mask_threshold=0.5), add)
    # missing inputs
    with pytest.raises(ConfigError, match="weight function"):
        Trainer(
            model="unused",
            reward_funcs=reward_len,
            args=_args(tmp_path),
            advantage_config=AdvantageConfig(transform="multiplicative"),
        )


def test_accepts_what_trl_116_supports(tmp_path):
    # TRL 1.16 keeps its own loss under use_liger_kernel (only layer kernels change)
    check_grpo_args(_args(tmp_path, use_liger_kernel=True), AdvantageConfig(), trl.GRPOTrainer)
    check_grpo_args(_args(tmp_path, loss_type="vespo"), AdvantageConfig(), trl.GRPOTrainer)


def test_lazy_class_and_import_without_trl():
    import mechgraph.weights.trl as mod

    assert mod.HicraGRPOTrainer is mod.HicraGRPOTrainer
    assert issubclass(mod.HicraGRPOTrainer, trl.GRPOTrainer)
    with pytest.raises(AttributeError):
        mod.Nope  # noqa: B018


def _fake_batch(tok, texts, prompt="Q: 2 + 2?"):
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    rows = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    T = max(map(len, rows)) + 1
    ids = torch.full((len(rows), T), tok.pad_token_id)
    cmask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        cmask[i, : len(r)] = 1
    return {
        "prompt_ids": torch.tensor([p] * len(rows)),
        "prompt_mask": torch.ones((len(rows), len(p)), dtype=torch.long),
        "completion_ids": ids,
        "completion_mask": cmask,
        "advantages": torch.tensor([0.9, -0.9, -0.9, 0.9]),
    }


def test_hicra_code_and_multiplicative_online(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from mechgraph.weights import hicra_code_advantages

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ds = Dataset.from_dict({"prompt": ["Q: 2 + 2?"] * 4})
    texts = ["But wait, so 2 + 2 = 4 here.", "But wait, 2 + 2 = 5 I think.", "But wait.", "4."]
    out = _fake_batch(tok, texts)
    Trainer = make_grpo_trainer_class()
    cfg = AdvantageConfig(transform="hicra_code", top_entropy=0.25)
    tr = Trainer(
        model=str(tiny_model_dir),
        reward_funcs=reward_len,
        args=_args(tmp_path),
        train_dataset=ds,
        processing_class=tok,
        planning=["but wait"],
        advantage_config=cfg,
    )
    tr.model.train()
    tr._mg_rewards = torch.tensor([[1.0], [0.0], [0.0], [1.0]])  # rows 0 and 3 correct
    adv = tr.token_advantages(dict(out))
    plan = torch.zeros_like(out["completion_ids"], dtype=torch.bool)
    plan[:3, :2] = True  # "But wait" tokens
    want = hicra_code_advantages(
        out["advantages"],
        plan,
        correct=[True, False, False, True],
        groups=[0, 0, 0, 0],
        response_mask=out["completion_mask"],
        entropy=tr._entropies(out),
        top_entropy=0.25,
    )
    torch.testing.assert_close(adv, want)
    # only row 0 (correct, longer than the mean) changes; 1 is long but wrong, 3 correct but short
    base = out["advantages"][:, None] * out["completion_mask"]
    assert (adv[0] > base[0]).any()
    torch.testing.assert_close(adv[1:], base[1:].float())

    tr2 = Trainer(
        model=str(tiny_model_dir),
        reward_funcs=reward_len,
        args=_args(tmp_path),
        train_dataset=ds,
        processing_class=tok,
        planning=None,
        advantage_config=AdvantageConfig(transform="multiplicative"),
        weight_fn=lambda text, off: [0.5] * len(off),
    )
    adv = tr2.token_advantages(dict(out))
    torch.testing.assert_close(adv, 0.5 * base.float())
    # the transform is saved next to the model
    tr.save_model(str(tmp_path / "saved"))
    rec = json.loads((tmp_path / "saved" / "mechgraph_advantages.json").read_text())
    assert rec["advantage_config"]["transform"] == "hicra_code" and rec["planning"] == "sg:list"
