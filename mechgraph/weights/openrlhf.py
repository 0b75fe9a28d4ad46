"""OpenRLHF adapter: token advantages in ``compute_advantages_and_returns``.

OpenRLHF's experience maker (``RemoteExperienceMaker`` in
``openrlhf.trainer.ppo_utils.experience_maker``, 0.11) computes, per ``Experience``,
``advantages`` of shape (B, A) aligned with ``action_mask`` (B, A); the action tokens are
the last ``A`` tokens of ``sequences`` (B, T) (in 0.11, ``A = T - 1``: ``sequences[:, 1:]``).
:class:`TokenAdvantageExperienceMixin` overrides ``compute_advantages_and_returns``: it
lets the base compute (and normalise) the advantages, then applies a mechgraph transform
with planning found on the decoded action tokens. ``returns`` are left as they are.

OpenRLHF needs deepspeed and flash-attn, so this adapter is tested against that tensor
contract, not against OpenRLHF itself. OpenRLHF is imported only by
:func:`make_experience_maker_class` when no base is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.weights.online import WeightFn, adapter_sources, batch_tokens
from mechgraph.weights.transforms import AdvantageConfig, apply_transform, hicra_advantages

__all__ = ["TokenAdvantageExperienceMixin", "apply_to_experiences", "make_experience_maker_class"]


def apply_to_experiences(
    experiences: Sequence[Any],
    tokenizer: Any,
    *,
    planning: Any = None,
    weight_fn: WeightFn | None = None,
    config: AdvantageConfig | None = None,
    n_samples_per_prompt: int | None = None,
) -> Sequence[Any]:
    """Apply a token transform to the ``advantages`` of OpenRLHF experiences, in place.

    Parameters
    ----------
    experiences : sequence of Experience
        Each with ``sequences`` (B, T), ``action_mask`` (B, A) and ``advantages`` (B, A);
        ``hicra_code`` also reads ``rewards`` (B,) and ``index`` (original sample order).
    tokenizer : fast tokenizer
    planning, weight_fn
        As for :func:`~mechgraph.weights.online.batch_tokens`.
    config : AdvantageConfig, optional
    n_samples_per_prompt : int, optional
        Group size, for ``hicra_code``.

    Returns
    -------
    the same experiences

    Examples
    --------
    >>> apply_to_experiences(exps, tok, planning="sg")  # doctest: +SKIP
    """
    import torch

    cfg, src = adapter_sources(config, planning, weight_fn)
    eligible: list[np.ndarray] = []
    if cfg.transform == "hicra_code":
        _check_code(cfg, n_samples_per_prompt)
        eligible = _code_eligible(experiences, cfg, int(n_samples_per_prompt or 0))
    for k, exp in enumerate(experiences):
        amask, adv = exp.action_mask, exp.advantages
        actions = exp.sequences[:, -amask.shape[1] :]
        bt = batch_tokens(tokenizer, actions, amask, planning=src, weights=weight_fn)
        plan = bt.planning
        if cfg.transform == "hicra_code":
            plan = plan & eligible[k][:, None]
            out = hicra_advantages(
                adv, torch.as_tensor(plan, device=adv.device), cfg.alpha, response_mask=amask
            )
        else:
            out = apply_transform(
                cfg,
                adv,
                planning=torch.as_tensor(plan, device=adv.device),
                weights=torch.as_tensor(bt.weights, device=adv.device),
                response_mask=amask,
            )
        exp.advantages = out.to(adv.dtype)
        info = getattr(exp, "info", None)
        if isinstance(info, dict):
            m = amask.bool().cpu().numpy()
            share = [float(plan[i][m[i]].mean()) if m[i].any() else 0.0 for i in range(len(m))]
            info["planning_share"] = torch.tensor(share)
    return experiences


def _check_code(cfg: AdvantageConfig, n: int | None) -> None:
    if cfg.top_entropy > 0:
        raise ConfigError(
            "hicra_code in OpenRLHF: token entropies are not available in "
            "compute_advantages_and_returns; set AdvantageConfig(top_entropy=0)"
        )
    if not n or n < 1:
        raise ConfigError("hicra_code needs n_samples_per_prompt (the group size)")


def _code_eligible(experiences: Sequence[Any], cfg: AdvantageConfig, n: int) -> list[np.ndarray]:
    from mechgraph.weights.transforms import hicra_code_eligible

    idx = np.concatenate([np.asarray(e.index, dtype=np.int64).reshape(-1) for e in experiences])
    rew = np.concatenate(
        [e.rewards.detach().float().cpu().numpy().reshape(-1) for e in experiences]
    )
    lens = np.concatenate(
        [e.action_mask.detach().float().sum(1).cpu().numpy().reshape(-1) for e in experiences]
    )
    ok = hicra_code_eligible(rew > cfg.correct_threshold, lens, idx // n)
    out, at = [], 0
    for e in experiences:
        b = e.action_mask.shape[0]
        out.append(ok[at : at + b])
        at += b
    return out


class TokenAdvantageExperienceMixin:
    """Mix into OpenRLHF's experience maker: token advantages after the base's.

    Parameters
    ----------
    *args, **kwargs
        Those of the experience maker (its ``tokenizer`` is used to decode actions).
    planning : str, callable or PlanningSource
    weight_fn : callable, optional
    advantage_config : AdvantageConfig, optional

    Examples
    --------
    >>> Maker = make_experience_maker_class()  # doctest: +SKIP
    >>> maker = Maker(actor, critic, reward, initial, kl_ctl, strategy, tokenizer,
    ...               planning="sg")  # doctest: +SKIP
    """

    def __init__(
        self,
        *args: Any,
        planning: Any = "sg",
        weight_fn: WeightFn | None = None,
        advantage_config: AdvantageConfig | None = None,
        **kwargs: Any,
    ) -> None:
        self.mg_config, self.mg_planning = adapter_sources(advantage_config, planning, weight_fn)
        self.mg_weights = weight_fn
        super().__init__(*args, **kwargs)

    def compute_advantages_and_returns(self, experiences: Any, *args: Any, **kwargs: Any) -> Any:
        experiences = super().compute_advantages_and_returns(experiences, *args, **kwargs)
        n = None
        strategy = getattr(self, "strategy", None)
        args_ = getattr(strategy, "args", None)
        if args_ is not None:
            rollout = getattr(args_, "rollout", None)
            n = getattr(rollout, "n_samples_per_prompt", None) or getattr(
                args_, "n_samples_per_prompt", None
            )
        return apply_to_experiences(
            experiences,
            self.tokenizer,
            planning=self.mg_planning if self.mg_config.needs_planning else None,
            weight_fn=self.mg_weights,
            config=self.mg_config,
            n_samples_per_prompt=n,
        )


def make_experience_maker_class(base: Any = None) -> type:
    """:class:`TokenAdvantageExperienceMixin` on ``base`` (default OpenRLHF's ``RemoteExperienceMaker``).

    Examples
    --------
    >>> Maker = make_experience_maker_class()  # doctest: +SKIP
    """
    if base is None:
        try:
            from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker as base
        except ImportError as e:
            raise ConfigError(f"the OpenRLHF adapter needs openrlhf: {e}") from None
    return type(
        f"Hicra{base.__name__}", (TokenAdvantageExperienceMixin, base), {"__module__": __name__}
    )
