"""TRL adapter: GRPO with per-token advantages computed online (HICRA and friends).

:class:`TokenAdvantageMixin` goes in front of TRL's ``GRPOTrainer`` (or a subclass of it).
After TRL generates and scores a batch (``_generate_and_score_completions``), the mixin
decodes each completion with the trainer's tokenizer, finds planning on the text
(strategic grams, rules, a probe, or any callable) and turns TRL's sequence advantages
(B,) into (B, T) advantages with the configured transform. TRL >= 1.x takes (B, T)
advantages in ``_compute_loss`` (it unsqueezes only 1-D ones).

``HicraGRPOTrainer`` is the mixin on ``trl.GRPOTrainer``; it is built on first access, so
importing this module does not need TRL.

Examples
--------
>>> from mechgraph.weights.trl import HicraGRPOTrainer  # doctest: +SKIP
>>> trainer = HicraGRPOTrainer(model=path, reward_funcs=reward, args=GRPOConfig(...),
...                            train_dataset=ds, planning="sg")  # doctest: +SKIP
>>> trainer.train()  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.io import write_text_atomic
from mechgraph.weights.online import BatchTokens, WeightFn, adapter_sources, batch_tokens
from mechgraph.weights.transforms import (
    AdvantageConfig,
    apply_transform,
    group_ids,
    hicra_advantages,
    hicra_code_eligible,
    top_entropy_mask,
)

__all__ = [  # HicraGRPOTrainer is built on first access (module __getattr__)
    "HicraGRPOTrainer",  # noqa: F822
    "TokenAdvantageMixin",
    "check_grpo_args",
    "cpu_grpo_config",
    "make_grpo_trainer_class",
]

METRIC = "mechgraph/planning_share"
CONFIG_FILE = "mechgraph_advantages.json"


def _source(cls: Any, name: str) -> str | None:
    fn = getattr(cls, name, None)
    try:
        return inspect.getsource(fn) if fn is not None else None
    except (OSError, TypeError):
        return None


def _own_sources(cls: Any, names: tuple[str, ...]) -> list[str]:
    """Sources of the methods ``names`` defined by the classes of ``cls``'s MRO, in MRO order."""
    out = []
    for c in cls.__mro__:
        if c is TokenAdvantageMixin or c is object:
            continue
        for n in names:
            if n in vars(c):
                src = _source(c, n)
                if src is not None:
                    out.append(src)
    return out


def _takes_token_advantages(cls: Any) -> bool:
    """Follow ``_compute_loss`` down the MRO (through ``super()`` calls) to the loss code."""
    for src in _own_sources(cls, ("_compute_loss",)):
        if "advantages.dim()" in src:
            return True
        if "super()._compute_loss" not in src:
            return False
    return True  # nothing to inspect


def _mentions_liger(cls: Any) -> bool:
    srcs = _own_sources(cls, ("compute_loss", "_compute_loss", "compute_liger_loss"))
    return any("liger" in s.lower() for s in srcs)


def check_grpo_args(args: Any, config: AdvantageConfig, trainer_cls: Any = None) -> None:
    """Refuse GRPO settings whose loss cannot take (B, T) advantages.

    Refused, with the reason:

    * a TRL whose ``GRPOTrainer._compute_loss`` does not accept (B, T) advantages;
    * Liger's fused GRPO loss (``use_liger_loss``, or ``use_liger_kernel`` on a TRL whose
      loss routes through Liger): it takes one advantage per sequence;
    * Liger's fused linear cross-entropy (``liger_kernel_config``
      ``fused_linear_cross_entropy``): it replaces the forward that yields per-token
      log-probabilities;
    * ``loss_type="vespo"`` or ``off_policy_mask_threshold`` with a transform that can flip
      a token's sign (``additive``): both read the *sign of the sequence's* advantage.

    With TRL 1.16, ``use_liger_kernel=True`` only swaps layer kernels (RMSNorm, RoPE,
    SwiGLU) and the loss stays TRL's own, so it is accepted.

    Raises
    ------
    ConfigError

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> check_grpo_args(SimpleNamespace(use_liger_loss=True), AdvantageConfig())
    Traceback (most recent call last):
    ...
    mechgraph.errors.ConfigError: Liger's fused GRPO loss (use_liger_loss=True) takes one advantage per sequence and cannot apply (B, T) token advantages; turn it off to train with mechgraph's token advantages
    """
    if trainer_cls is not None and not _takes_token_advantages(trainer_cls):
        raise ConfigError(
            "this TRL's GRPOTrainer._compute_loss does not take (B, T) advantages; install "
            "trl>=1.16"
        )
    if args is None:
        return
    if getattr(args, "use_liger_loss", False):
        raise ConfigError(
            "Liger's fused GRPO loss (use_liger_loss=True) takes one advantage per sequence and "
            "cannot apply (B, T) token advantages; turn it off to train with mechgraph's token "
            "advantages"
        )
    if getattr(args, "use_liger_kernel", False):
        cfg = getattr(args, "liger_kernel_config", None) or {}
        if cfg.get("fused_linear_cross_entropy"):
            raise ConfigError(
                "use_liger_kernel with fused_linear_cross_entropy replaces the forward that gives "
                "per-token log-probabilities, so (B, T) token advantages cannot be applied; set "
                "liger_kernel_config={'fused_linear_cross_entropy': False} or turn Liger off"
            )
        if trainer_cls is not None and _mentions_liger(trainer_cls):
            raise ConfigError(
                "use_liger_kernel=True routes this TRL's GRPO loss through Liger's fused loss, "
                "which takes one advantage per sequence; turn it off to train with (B, T) token "
                "advantages"
            )
    if not config.sign_preserving:
        if getattr(args, "loss_type", None) == "vespo":
            raise ConfigError(
                f"loss_type='vespo' weighs each sequence by the sign of its advantage; the "
                f"{config.transform!r} transform can flip signs token by token. Use a "
                "sign-preserving transform (hicra, multiplicative with w >= 0) or another loss"
            )
        if getattr(args, "off_policy_mask_threshold", None) is not None:
            raise ConfigError(
                "off_policy_mask_threshold masks sequences by the sign of their advantage; the "
                f"{config.transform!r} transform can flip signs token by token"
            )


class TokenAdvantageMixin:
    """Turn TRL GRPO's sequence advantages into (B, T) token advantages, online.

    Put it before ``GRPOTrainer`` in the bases: ``class T(TokenAdvantageMixin, GRPOTrainer)``.

    Parameters
    ----------
    *args, **kwargs
        Those of ``GRPOTrainer``.
    planning : str, callable or PlanningSource
        Planning source (``sg``, ``sg:PATH``, ``rules``, ``probe:PATH`` or
        ``text -> spans``); needed by ``hicra`` and ``hicra_code``.
    weight_fn : callable, optional
        ``(text, offsets) -> (n_tokens,)`` weights; needed by ``multiplicative`` and
        ``additive``.
    advantage_config : AdvantageConfig, optional
        Transform and its parameters (default: HICRA, alpha = 0.2).

    Notes
    -----
    ``hicra_code`` needs correctness (total reward above ``correct_threshold``), group
    lengths, and — when ``top_entropy > 0`` — token entropies, computed with one extra
    no-grad forward pass of the policy.

    The share of planning tokens of each generated batch is logged as
    ``mechgraph/planning_share``; the last batch's (B, T) tensors are kept in
    ``self.mg_last`` (``advantages``, ``planning``, ``texts``) for inspection. Every saved
    model / checkpoint gets ``mechgraph_advantages.json`` (the transform and the source).
    """

    def __init__(
        self,
        *args: Any,
        planning: Any = "sg",
        weight_fn: WeightFn | None = None,
        advantage_config: AdvantageConfig | None = None,
        **kwargs: Any,
    ) -> None:
        cfg = advantage_config or AdvantageConfig()
        grpo_args = kwargs.get("args", args[2] if len(args) > 2 else None)
        check_grpo_args(grpo_args, cfg, type(self))
        self.mg_config, self.mg_planning = adapter_sources(cfg, planning, weight_fn)
        self.mg_weights = weight_fn
        self.mg_last: dict[str, Any] = {}
        self._mg_rewards = None
        super().__init__(*args, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """TRL's ``save_model``, plus ``mechgraph_advantages.json`` (transform and source)."""
        super().save_model(output_dir, _internal_call)
        if getattr(self.args, "should_save", True):
            out = Path(output_dir or self.args.output_dir)
            rec = {
                "format": "mechgraph.advantages/1",
                "advantage_config": self.mg_config.to_dict(),
                "planning": getattr(self.mg_planning, "name", None),
                "weight_fn": getattr(self.mg_weights, "__name__", None),
            }
            write_text_atomic(out / CONFIG_FILE, json.dumps(rec, indent=1) + "\n")

    # TRL hook: keep the rewards (all processes) for hicra_code's correctness
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._mg_rewards = rewards
        return rewards

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        out = super()._generate_and_score_completions(inputs)
        out["advantages"] = self.token_advantages(out)
        return out

    def token_advantages(self, out: dict[str, Any]) -> Any:
        """(B, T) advantages for one generated batch (``out`` of TRL's generation step)."""
        import torch

        A = out["advantages"]
        ids, cmask = out["completion_ids"], out["completion_mask"]
        rmask = cmask if "tool_mask" not in out else cmask * out["tool_mask"]
        bt = batch_tokens(
            self.processing_class,
            ids,
            torch.ones_like(ids, dtype=torch.bool),
            planning=self.mg_planning if self.mg_config.needs_planning else None,
            weights=self.mg_weights,
        )
        cfg = self.mg_config
        plan = torch.as_tensor(bt.planning, device=A.device)
        if cfg.transform == "hicra":
            adv = hicra_advantages(A, plan, cfg.alpha, response_mask=rmask)
        elif cfg.transform == "hicra_code":
            # planning = grams OR top-entropy tokens (over this process's batch), on eligible rows
            if cfg.top_entropy > 0:
                plan = plan | top_entropy_mask(self._entropies(out), rmask, cfg.top_entropy)
            plan = plan & torch.as_tensor(self._eligible(rmask), device=A.device)[:, None]
            adv = hicra_advantages(A, plan, cfg.alpha, response_mask=rmask)
        else:
            w = torch.as_tensor(bt.weights, device=A.device)
            adv = apply_transform(cfg, A, weights=w, response_mask=rmask)
        adv = adv.to(torch.float32)
        self._log_planning(bt, rmask)
        self.mg_last = {"advantages": adv.detach(), "planning": plan.detach(), "texts": bt.texts}
        return adv

    def _log_planning(self, bt: BatchTokens, rmask: Any) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = getattr(self, "_metrics", None)
        if isinstance(metrics, dict) and mode in metrics:
            metrics[mode][METRIC].append(bt.planning_share(rmask))

    def _eligible(self, rmask: Any) -> np.ndarray:
        import torch

        if self._mg_rewards is None:
            raise ConfigError("hicra_code needs the batch rewards; none were recorded")
        acc = self.accelerator
        w = self.reward_weights.to(self._mg_rewards.device)
        total = (self._mg_rewards * w.unsqueeze(0)).nansum(dim=1)
        lengths = acc.gather(rmask.sum(1).to(torch.float32))
        n_gen = self.num_generations if self.model.training else self.num_generations_eval
        groups = group_ids(len(total), n_gen)
        ok = hicra_code_eligible(total > self.mg_config.correct_threshold, lengths, groups)
        B = rmask.shape[0]
        start = acc.process_index * B
        return ok[start : start + B]

    def _entropies(self, out: dict[str, Any]) -> Any:
        import torch

        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        att = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        with torch.no_grad():
            _, ent, _ = self._get_per_token_logps_and_entropies(
                self.model, ids, att, out["completion_ids"].size(1), compute_entropy=True
            )
        return ent


def make_grpo_trainer_class(base: Any = None) -> type:
    """``TokenAdvantageMixin`` on ``base`` (default ``trl.GRPOTrainer``).

    Examples
    --------
    >>> Trainer = make_grpo_trainer_class()  # doctest: +SKIP
    """
    if base is None:
        try:
            from trl import GRPOTrainer as base
        except ImportError as e:
            raise ConfigError(f"the TRL adapter needs trl (pip install trl): {e}") from None
    return type(f"Hicra{base.__name__}", (TokenAdvantageMixin, base), {"__module__": __name__})


_CACHE: dict[str, type] = {}


def __getattr__(name: str) -> Any:
    if name == "HicraGRPOTrainer":
        if name not in _CACHE:
            _CACHE[name] = make_grpo_trainer_class()
        return _CACHE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: GRPOConfig settings of a small run on a CPU (no reference model, no checkpoints)
CPU_GRPO = {
    "use_cpu": True,
    "bf16": False,
    "activation_checkpointing": False,
    "beta": 0.0,
    "loss_type": "grpo",
    "report_to": [],
    "logging_steps": 1,
    "save_strategy": "no",
    "seed": 0,
    "disable_tqdm": True,
}


def cpu_grpo_config(output_dir: str, **overrides: Any) -> Any:
    """A ``trl.GRPOConfig`` for a small CPU run: :data:`CPU_GRPO` updated by ``overrides``.

    Examples
    --------
    >>> cfg = cpu_grpo_config("/tmp/out", max_steps=2, num_generations=4,
    ...                       per_device_train_batch_size=8)  # doctest: +SKIP
    >>> cfg.use_cpu, cfg.beta, cfg.max_steps  # doctest: +SKIP
    (True, 0.0, 2)
    """
    from trl import GRPOConfig

    return GRPOConfig(output_dir=str(output_dir), **{**CPU_GRPO, **overrides})
