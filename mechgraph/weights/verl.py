"""verl adapter: a registered advantage estimator and a ``compute_advantage`` wrapper.

verl's tensors are (bs, response_length): ``token_level_rewards``, ``response_mask``,
``responses`` (token ids, right-padded) and ``advantages``. verl 0.9.1's
``compute_advantage`` calls custom estimators with ``token_level_rewards``,
``response_mask``, ``config`` and ``index`` (the group uid) only: no token ids, so an
estimator alone cannot find planning tokens. Hence two pieces:

* :func:`register_estimator` registers (with ``core_algos.register_adv_est``) an
  estimator, ``"hicra"`` by default, that runs a base estimator of verl (GRPO by default)
  and applies a mechgraph transform. It takes ``planning_mask`` / ``token_weights`` as
  keyword arguments (for releases that pass extra batch keys) or from the wrapper below.
* :func:`compute_advantage` wraps verl's: it finds planning on the decoded ``responses``
  (or takes ``planning_mask`` / ``token_weights`` already in the batch, e.g. built from a
  weights Parquet with :func:`to_dataproto`), hands them to the estimator, and calls verl.
  :func:`install` puts the wrapper in place of ``ray_trainer.compute_advantage`` so the
  PPO trainer's ``fit`` uses it.

verl is imported inside the functions; importing this module does not need it.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.weights.online import WeightFn, batch_tokens, rows_to_grid
from mechgraph.weights.tokens import TokenWeights, check_same_text
from mechgraph.weights.transforms import AdvantageConfig, apply_transform

__all__ = ["compute_advantage", "install", "register_estimator", "to_dataproto"]

_TOKENS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "mechgraph_verl_tokens", default=None
)
_NO_TOKENS = (
    "the mechgraph estimator {name!r} got no planning mask / token weights: verl's "
    "compute_advantage passes estimators no token ids. Call "
    "mechgraph.weights.verl.compute_advantage (or install() it in place of verl's), or put "
    "'planning_mask' / 'token_weights' in the batch"
)


def _core() -> Any:
    try:
        from verl.trainer.ppo import core_algos
    except ImportError as e:
        raise ConfigError(
            f"the verl adapter needs verl (pip install --no-deps verl): {e}"
        ) from None
    return core_algos


def _cfg_get(config: Any, key: str, default: Any) -> Any:
    if config is None:
        return default
    if hasattr(config, "get"):
        return config.get(key, default)
    return getattr(config, key, default)


def _make_estimator(name: str, base: str, cfg: AdvantageConfig) -> Callable[..., Any]:
    def estimator(
        token_level_rewards: Any,
        response_mask: Any,
        index: Any = None,
        config: Any = None,
        planning_mask: Any = None,
        token_weights: Any = None,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        import torch

        base_fn = _core().get_adv_estimator_fn(base)
        params = inspect.signature(base_fn).parameters
        call = {"token_level_rewards": token_level_rewards, "response_mask": response_mask}
        extra = {"index": index, "config": config, **kwargs}
        if "norm_adv_by_std_in_grpo" in params:
            extra["norm_adv_by_std_in_grpo"] = _cfg_get(config, "norm_adv_by_std_in_grpo", True)
        call.update({k: v for k, v in extra.items() if k in params and v is not None})
        adv, ret = base_fn(**call)
        held = _TOKENS.get() or {}
        plan = planning_mask if planning_mask is not None else held.get("planning_mask")
        w = token_weights if token_weights is not None else held.get("token_weights")
        if (cfg.needs_planning and plan is None) or (cfg.needs_weights and w is None):
            raise ConfigError(_NO_TOKENS.format(name=name))
        for t in (plan, w):
            if t is not None and tuple(t.shape) != tuple(response_mask.shape):
                raise ConfigError(
                    f"planning mask / weights of shape {tuple(t.shape)} do not match "
                    f"response_mask {tuple(response_mask.shape)}"
                )
        kw: dict[str, Any] = {}
        if cfg.transform == "hicra_code":
            if index is None:
                raise ConfigError("hicra_code needs the group index (verl's 'uid')")
            entropy = held.get("entropy") if cfg.top_entropy > 0 else None
            if cfg.top_entropy > 0 and entropy is None:
                raise ConfigError(
                    "hicra_code with top_entropy > 0 needs token entropies: put them in the "
                    "batch as 'entropys' or set AdvantageConfig(top_entropy=0)"
                )
            total = token_level_rewards.sum(-1)
            kw = {
                "correct": total > cfg.correct_threshold,
                "groups": np.asarray([str(u) for u in index]),
                "entropy": entropy,
            }
        adv = apply_transform(cfg, adv, planning=plan, weights=w, response_mask=response_mask, **kw)
        return adv.to(torch.float32), ret

    estimator.__name__ = f"mechgraph_{name}"
    estimator._mechgraph = (base, cfg.to_dict())  # type: ignore[attr-defined]
    return estimator


def register_estimator(
    name: str = "hicra", *, base: str = "grpo", config: AdvantageConfig | None = None
) -> str:
    """Register a mechgraph advantage estimator with verl (``core_algos.register_adv_est``).

    Parameters
    ----------
    name : str
        Estimator name, for verl's ``algorithm.adv_estimator``.
    base : str
        A verl estimator computing the sequence advantages first (``grpo``, ``rloo``, ...).
    config : AdvantageConfig, optional
        The transform (default HICRA, alpha = 0.2).

    Returns
    -------
    str
        ``name``. Registering the same name with the same settings again is a no-op.

    Raises
    ------
    ConfigError
        ``name`` is taken by another estimator or by other settings.

    Examples
    --------
    >>> register_estimator("hicra")  # doctest: +SKIP
    'hicra'
    """
    cfg = config or AdvantageConfig()
    core = _core()
    if name == base:
        raise ConfigError("the estimator cannot be its own base")
    core.get_adv_estimator_fn(base)  # raises for an unknown base
    have = core.ADV_ESTIMATOR_REGISTRY.get(name)
    if have is not None:
        if getattr(have, "_mechgraph", None) == (base, cfg.to_dict()):
            return name
        raise ConfigError(f"verl already has an advantage estimator named {name!r}")
    core.register_adv_est(name)(_make_estimator(name, base, cfg))
    return name


def _estimator_name(adv_estimator: Any) -> str:
    return str(getattr(adv_estimator, "value", adv_estimator))


def compute_advantage(
    data: Any,
    adv_estimator: Any = "hicra",
    *,
    tokenizer: Any = None,
    planning: Any = None,
    weight_fn: WeightFn | None = None,
    weights_rows: Sequence[TokenWeights] | None = None,
    text_key: str | None = None,
    **verl_kwargs: Any,
) -> Any:
    """verl's ``compute_advantage`` with planning masks / weights handed to the estimator.

    Parameters
    ----------
    data : verl.DataProto
        With ``responses``, ``response_mask``, ``token_level_rewards`` (and ``uid``).
    adv_estimator : str
        A name registered with :func:`register_estimator`; any other estimator runs
        unchanged.
    tokenizer : fast tokenizer, optional
        The trainer's; needed unless the batch already holds ``planning_mask`` /
        ``token_weights``.
    planning : str, callable or PlanningSource, optional
        Planning source (``sg``, ``rules``, ``probe:PATH``, ``text -> spans``).
    weight_fn : callable, optional
        ``(text, offsets) -> (n,)`` weights for the multiplicative / additive transforms.
    weights_rows : list of TokenWeights, optional
        Precomputed weights, one per batch row (e.g. read from Parquet); keyed to the
        batch's ids through char offsets.
    text_key : str, optional
        A ``non_tensor_batch`` key with the completion texts the batch is meant to hold;
        each must equal the decoded ``responses`` (else :class:`TextMismatchError`).
    **verl_kwargs
        Passed to verl's ``compute_advantage`` (``gamma``, ``lam``, ``num_repeat``,
        ``norm_adv_by_std_in_grpo``, ``config``).

    Returns
    -------
    DataProto
        ``data`` with ``advantages`` (bs, response_length) and ``returns``; the planning
        mask / weights used are left in the batch as ``planning_mask`` / ``token_weights``.

    Examples
    --------
    >>> register_estimator("hicra")  # doctest: +SKIP
    >>> data = compute_advantage(data, "hicra", tokenizer=tok, planning="sg")  # doctest: +SKIP
    """
    import torch

    try:
        from verl.trainer.ppo import ray_trainer
    except ImportError as e:
        raise ConfigError(f"the verl adapter needs verl's trainer modules: {e}") from None
    call = getattr(ray_trainer, "_mechgraph_original", ray_trainer.compute_advantage)
    name = _estimator_name(adv_estimator)
    est = _core().ADV_ESTIMATOR_REGISTRY.get(name)
    if getattr(est, "_mechgraph", None) is None:
        return call(data, adv_estimator=adv_estimator, **verl_kwargs)
    cfg = AdvantageConfig(**est._mechgraph[1])
    batch = data.batch
    keys = set(batch.keys())
    if "response_mask" not in keys:
        raise ConfigError("the batch has no 'response_mask'")
    rmask = batch["response_mask"]
    need_plan = cfg.needs_planning and "planning_mask" not in keys
    need_w = cfg.needs_weights and "token_weights" not in keys
    texts = None
    if text_key is not None:
        texts = [str(t) for t in data.non_tensor_batch[text_key]]
    if need_plan or need_w or texts is not None:
        if tokenizer is None or "responses" not in keys:
            raise ConfigError(
                "to find planning tokens the wrapper needs the trainer's tokenizer and the "
                "batch's 'responses' (token ids)"
            )
        if weights_rows is not None:
            bt = rows_to_grid(weights_rows, tokenizer, batch["responses"], rmask)
            if texts is not None:
                for i, (a, b) in enumerate(zip(bt.texts, texts, strict=True)):
                    check_same_text(b, a, trace_id=weights_rows[i].id)
        else:
            bt = batch_tokens(
                tokenizer,
                batch["responses"],
                rmask,
                planning=planning if need_plan else None,
                weights=weight_fn if need_w else None,
                texts=texts,
            )
        if need_plan:
            batch["planning_mask"] = torch.as_tensor(bt.planning, device=rmask.device)
        if need_w:
            batch["token_weights"] = torch.as_tensor(bt.weights, device=rmask.device)
    held = {
        "planning_mask": batch["planning_mask"] if "planning_mask" in batch.keys() else None,
        "token_weights": batch["token_weights"] if "token_weights" in batch.keys() else None,
        "entropy": batch["entropys"] if "entropys" in batch.keys() else None,
    }
    token = _TOKENS.set(held)
    try:
        return call(data, adv_estimator=adv_estimator, **verl_kwargs)
    finally:
        _TOKENS.reset(token)


def install(
    tokenizer: Any, planning: Any = "sg", *, weight_fn: WeightFn | None = None
) -> Callable[[], None]:
    """Replace ``verl.trainer.ppo.ray_trainer.compute_advantage`` by the wrapper.

    verl's PPO trainer (``RayPPOTrainer.fit``) then finds planning tokens in each batch's
    ``responses``. verl's v1 trainer fetches no token ids for its advantage step, so it needs
    ``planning_mask`` in the batch instead.

    Returns
    -------
    callable
        Undoes the replacement.

    Examples
    --------
    >>> undo = install(tokenizer, "sg")  # doctest: +SKIP
    """
    from verl.trainer.ppo import ray_trainer

    original = getattr(ray_trainer, "_mechgraph_original", ray_trainer.compute_advantage)

    def wrapped(data: Any, adv_estimator: Any, *args: Any, **kwargs: Any) -> Any:
        names = ("gamma", "lam", "num_repeat", "norm_adv_by_std_in_grpo", "config")
        kwargs.update(dict(zip(names, args, strict=False)))
        return compute_advantage(
            data,
            adv_estimator,
            tokenizer=tokenizer,
            planning=planning,
            weight_fn=weight_fn,
            **kwargs,
        )

    ray_trainer._mechgraph_original = original
    ray_trainer.compute_advantage = wrapped

    def undo() -> None:
        ray_trainer.compute_advantage = original
        if hasattr(ray_trainer, "_mechgraph_original"):
            del ray_trainer._mechgraph_original

    return undo


def to_dataproto(
    rows: Sequence[TokenWeights],
    *,
    response_length: int | None = None,
    pad_id: int = 0,
    uid: Sequence[Any] | None = None,
) -> Any:
    """A verl ``DataProto`` from weights rows (e.g. :func:`~mechgraph.weights.read_weights`).

    Tensors: ``responses`` (int64), ``response_mask`` (int64 0/1, as verl's),
    ``planning_mask`` (bool), ``token_weights`` (float32), all (bs, response_length);
    non-tensors: ``mg_id`` and ``mg_text`` (the analysed texts), and ``uid`` when given.

    Examples
    --------
    >>> data = to_dataproto(read_weights("w.parquet"), response_length=512)  # doctest: +SKIP
    """
    import torch

    from mechgraph.weights.export import pad_batch

    try:
        from verl import DataProto
    except ImportError as e:
        raise ConfigError(f"to_dataproto needs verl: {e}") from None
    arr = pad_batch(rows, pad_id=pad_id, length=response_length)
    non = {
        "mg_id": np.array([r.id for r in rows], dtype=object),
        "mg_text": np.array([r.text for r in rows], dtype=object),
    }
    if uid is not None:
        non["uid"] = np.array(list(uid), dtype=object)
    tensors = {
        "responses": torch.as_tensor(arr["input_ids"]),
        "response_mask": torch.as_tensor(arr["response_mask"].astype(np.int64)),
        "planning_mask": torch.as_tensor(arr["planning_mask"]),
        "token_weights": torch.as_tensor(arr["weight"]),
    }
    return DataProto.from_dict(tensors=tensors, non_tensors=non)
