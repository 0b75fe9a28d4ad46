"""Pooling hooks and the two backends that run them.

Hook names follow TransformerLens whatever the backend: ``blocks.{L}.hook_resid_pre``,
``hook_resid_mid``, ``hook_resid_post``, ``hook_attn_out``, ``hook_mlp_out``. Layer ``L``
is block ``L``: ``blocks.L.hook_resid_post`` is the output of block ``L``, which equals HF
``hidden_states[L + 1]`` for every block but the last (HF's last hidden state has the final
norm applied; ours never does).

Backends
--------
``native`` (default)
    PyTorch forward hooks on the plain HF model (its fast attention kept). Supports
    decoder-only models whose blocks are ``model.model.layers`` with ``self_attn``,
    ``mlp`` and ``post_attention_layernorm`` (Llama, Mistral, Qwen2/3, Phi-3, OLMo-2 style);
    ``resid_pre``/``resid_post`` work for any block list.
``bridge``
    transformer-lens ``TransformerBridge`` hook points, for users who want them.

Each hook pools the activation over every step inside the hook (on the model's device),
keeps only the pooled vectors, and the forward pass stops right after the deepest hook.

Packed batches (``ExtractConfig.pack``, :mod:`mechgraph.packing`) run on the native backend
only: ``Backend.run(..., position_ids=...)`` gives no 2-D mask and position ids restarting
per trace, and transformers' mask code builds the block-diagonal causal mask (eager, sdpa,
flex) or flash attention runs its varlen kernel on one flat row (``cu_seq_lens_q/k``).
:meth:`Backend.pack_layout` says which, or refuses (the bridge; other attentions).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mechgraph.errors import ConfigError, ExtractionError

__all__ = [
    "HOOK_KINDS",
    "POOLS",
    "Backend",
    "BatchPlan",
    "PoolAccumulator",
    "hook_name",
    "make_backend",
]

HOOK_KINDS = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")  # firing order
POOLS = ("mean", "first", "last", "max")
_NAME = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)$")


def hook_name(layer: int, kind: str) -> str:
    """``blocks.{layer}.hook_{kind}``.

    Examples
    --------
    >>> hook_name(3, "resid_post")
    'blocks.3.hook_resid_post'
    """
    return f"blocks.{layer}.hook_{kind}"


def parse_hook(name: str, n_layers: int) -> tuple[int, str]:
    """(layer, kind) of a full hook name, checked against the model."""
    m = _NAME.match(name)
    if not m:
        raise ConfigError(
            f"unknown hook {name!r}; use blocks.L.hook_K with K one of {', '.join(HOOK_KINDS)}"
        )
    layer = int(m.group(1))
    if layer >= n_layers:
        raise ConfigError(f"hook {name!r}: layer {layer} does not exist (model has {n_layers})")
    return layer, m.group(2)


class _StopForward(Exception):
    """Raised by the deepest hook to end the forward pass early."""


@dataclass
class BatchPlan:
    """Which token of a padded batch belongs to which output row.

    Attributes
    ----------
    owner : LongTensor (B, T)
        Output row of each token (a (piece, step) pair), -1 for tokens of no step and
        for padding.
    n_rows : int
    first, last : LongTensor (n_rows,)
        Flat index (``b * T + t``) of each row's first and last owned token.
    """

    owner: torch.Tensor
    n_rows: int
    first: torch.Tensor
    last: torch.Tensor

    @classmethod
    def build(cls, owner: torch.Tensor, n_rows: int) -> BatchPlan:
        flat = owner.reshape(-1)
        pos = torch.arange(flat.numel(), device=flat.device)
        valid = flat >= 0
        rows, p = flat[valid], pos[valid]
        big = torch.iinfo(torch.int64).max
        first = torch.full((n_rows,), big, dtype=torch.int64, device=flat.device)
        last = torch.full((n_rows,), -1, dtype=torch.int64, device=flat.device)
        first.scatter_reduce_(0, rows, p, "amin")
        last.scatter_reduce_(0, rows, p, "amax")
        if n_rows and (int(last.min()) < 0):
            raise ValueError("every row of a batch plan needs at least one token")
        return cls(owner, n_rows, first, last)


def pool_batch(h: torch.Tensor, plan: BatchPlan, pools: Sequence[str]) -> dict[str, torch.Tensor]:
    """Pool hidden states ``h`` (B, T, d) into one vector per row, in float32.

    ``mean`` is returned as the float64 *sum* with a ``count`` entry, so that pieces of one step
    (sliding windows) combine exactly; callers divide.

    Examples
    --------
    >>> h = torch.arange(12.0).reshape(1, 4, 3)
    >>> plan = BatchPlan.build(torch.tensor([[-1, 0, 0, 1]]), 2)
    >>> pool_batch(h, plan, ["mean", "max"])["max"].tolist()
    [[6.0, 7.0, 8.0], [9.0, 10.0, 11.0]]
    """
    d = h.shape[-1]
    flat = h.reshape(-1, d)
    owner = plan.owner.reshape(-1)
    out: dict[str, torch.Tensor] = {}
    need_valid = any(p in ("mean", "max") for p in pools)
    if need_valid:
        valid = owner >= 0
        rows = owner[valid]
        hv = flat[valid].float()
    for pool in pools:
        if pool == "mean":
            # float64 sums: the mean is exact to float32 rounding, whatever the length
            s = torch.zeros(plan.n_rows, d, dtype=torch.float64, device=h.device)
            out["mean"] = s.index_add_(0, rows, hv.double())
            out["count"] = torch.bincount(rows, minlength=plan.n_rows).float()
        elif pool == "max":
            m = torch.full((plan.n_rows, d), -torch.inf, dtype=torch.float32, device=h.device)
            out["max"] = m.scatter_reduce_(0, rows[:, None].expand_as(hv), hv, "amax")
        elif pool == "first":
            out["first"] = flat[plan.first].float()
        elif pool == "last":
            out["last"] = flat[plan.last].float()
        else:
            raise ConfigError(f"unknown pool {pool!r}; choose from {', '.join(POOLS)}")
    return out


class PoolAccumulator:
    """Running pools of one trace's steps, exact across pieces (sliding windows).

    ``add`` takes the output of :func:`pool_batch` for some of the steps; ``finish``
    returns ``{(hook, pool): (n_steps, d)}`` float32 arrays (means divided out) and
    raises :class:`~mechgraph.errors.ExtractionError` on NaN or inf.
    """

    def __init__(self, n_steps: int, d: int, hooks: Sequence[str], pools: Sequence[str]):
        self.data: dict[tuple[str, str], np.ndarray] = {}
        self.pos: dict[tuple[str, str], np.ndarray] = {}
        self.count = np.zeros(n_steps, dtype=np.float64)
        for h in hooks:
            for p in pools:
                init = -np.inf if p == "max" else 0.0
                dt = np.float64 if p == "mean" else np.float32
                self.data[h, p] = np.full((n_steps, d), init, dtype=dt)
                if p in ("first", "last"):  # best position so far ("last" negated)
                    self.pos[h, p] = np.full(n_steps, np.iinfo(np.int64).max, dtype=np.int64)

    def add(self, hook, pooled, steps, first_pos, last_pos, count_done: bool) -> None:
        for p, v in pooled.items():
            if p == "count":
                if not count_done:
                    np.add.at(self.count, steps, v)
                continue
            arr = self.data[hook, p]
            if p == "mean":
                np.add.at(arr, steps, v)
            elif p == "max":
                np.maximum.at(arr, steps, v)
            else:
                # first/last: keep the piece with the smallest/largest token position;
                # a step can come twice in one batch (two windows)
                pos = first_pos if p == "first" else -last_pos
                order = np.lexsort((pos, steps))
                _, pick = np.unique(steps[order], return_index=True)
                sel = order[pick]
                st, ps, vals = steps[sel], pos[sel], v[sel]
                better = ps < self.pos[hook, p][st]
                arr[st[better]] = vals[better]
                self.pos[hook, p][st[better]] = ps[better]

    def finish(self, trace_id: str) -> dict[tuple[str, str], np.ndarray]:
        out = {}
        for (h, p), arr in self.data.items():
            if p == "mean":
                arr = (arr / self.count[:, None]).astype(np.float32)
            bad = ~np.isfinite(arr).all(axis=1)
            if bad.any():
                raise ExtractionError(
                    f"trace {trace_id!r}: NaN or inf in {h}/{p} at step {int(np.argmax(bad))}; "
                    "nothing of this chunk was written (try dtype float32)"
                )
            out[h, p] = arr
        return out


class Backend:
    """Runs a batch through a model with pooling hooks on the requested hook names."""

    n_layers: int

    def __init__(self, hooks: Sequence[str], pools: Sequence[str]) -> None:
        self.hooks = list(hooks)
        self.pools = list(pools)
        parsed = [parse_hook(h, self.n_layers) for h in self.hooks]
        order = {k: i for i, k in enumerate(HOOK_KINDS)}
        self._last = self.hooks[
            max(range(len(parsed)), key=lambda i: (parsed[i][0], order[parsed[i][1]]))
        ]
        self._parsed = dict(zip(self.hooks, parsed, strict=True))

    def _make_fn(self, name: str, plan: BatchPlan, sink: dict) -> Callable[[torch.Tensor], None]:
        def fn(h: torch.Tensor) -> None:
            sink[name] = pool_batch(h.detach(), plan, self.pools)
            if name == self._last and len(sink) == len(self.hooks):
                raise _StopForward

        return fn

    def run(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        plan: BatchPlan,
        position_ids: torch.Tensor | None = None,
        **extra: Any,
    ):
        """Pooled states of every hook: ``{hook: {pool: (n_rows, d)}}`` (mean as sums).

        ``position_ids`` (and ``extra``, flash-attention varlen kwargs) are for packed
        batches (:mod:`mechgraph.packing`); see :meth:`pack_layout`.
        """
        sink: dict[str, dict[str, torch.Tensor]] = {}
        fns = {name: self._make_fn(name, plan, sink) for name in self.hooks}
        with torch.inference_mode(), self._attached(fns):
            try:
                if position_ids is None and not extra:
                    self._forward(input_ids, attention_mask)
                else:
                    self._forward_packed(input_ids, position_ids, extra)
            except _StopForward:
                pass
        missing = [h for h in self.hooks if h not in sink]
        if missing:
            raise ConfigError(f"hooks never fired: {missing}")
        return sink

    @contextmanager
    def _attached(self, fns: dict[str, Callable[[torch.Tensor], None]]):
        raise NotImplementedError

    def _forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        raise NotImplementedError

    def pack_layout(self) -> str:
        """How this backend runs packed batches: ``"rows"`` (block-diagonal causal mask
        built by transformers from restarting position ids: eager, sdpa, flex attention)
        or ``"varlen"`` (one flat row, flash attention's varlen kernel).

        Raises
        ------
        ConfigError
            The backend or the model's attention cannot keep packed pieces apart.
        """
        raise ConfigError(f"pack=True is not supported by the {type(self).__name__}")

    def _forward_packed(self, input_ids, position_ids, extra) -> None:
        raise ConfigError(f"pack=True is not supported by the {type(self).__name__}")


_ROWS_ATTENTION = ("eager", "sdpa", "flex_attention")
_PACK_ATTENTION = (*_ROWS_ATTENTION, "flash_attention_2", "flash_attention_3")


def _first_tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else x[0]


class NativeBackend(Backend):
    """Forward hooks on the plain HF model; the decoder runs without the LM head."""

    def __init__(self, hf: Any, hooks: Sequence[str], pools: Sequence[str]) -> None:
        self.hf = hf
        self.decoder = hf.get_decoder() if hasattr(hf, "get_decoder") else hf.model
        self.layers = getattr(self.decoder, "layers", None)
        if self.layers is None:
            raise ConfigError(
                f"native backend: {type(hf).__name__} has no decoder block list "
                "(model.model.layers); use backend='bridge'"
            )
        self.n_layers = len(self.layers)
        super().__init__(hooks, pools)
        for name, (layer, kind) in self._parsed.items():
            if kind in ("resid_mid", "attn_out", "mlp_out"):
                blk = self.layers[layer]
                need = {
                    "resid_mid": "post_attention_layernorm",
                    "attn_out": "self_attn",
                    "mlp_out": "mlp",
                }[kind]
                if not hasattr(blk, need):
                    raise ConfigError(
                        f"native backend: {name} needs {need} in {type(blk).__name__}; "
                        "use backend='bridge'"
                    )

    @contextmanager
    def _attached(self, fns):
        handles = []
        try:
            for name, fn in fns.items():
                layer, kind = self._parsed[name]
                blk = self.layers[layer]
                if kind == "resid_pre":
                    handles.append(
                        blk.register_forward_pre_hook(
                            lambda m, a, k, fn=fn: fn(a[0] if a else k["hidden_states"]),
                            with_kwargs=True,
                        )
                    )
                elif kind == "resid_post":
                    handles.append(
                        blk.register_forward_hook(lambda m, a, o, fn=fn: fn(_first_tensor(o)))
                    )
                elif kind == "resid_mid":
                    handles.append(
                        blk.post_attention_layernorm.register_forward_pre_hook(
                            lambda m, a, fn=fn: fn(a[0])
                        )
                    )
                elif kind == "attn_out":
                    handles.append(
                        blk.self_attn.register_forward_hook(
                            lambda m, a, o, fn=fn: fn(_first_tensor(o))
                        )
                    )
                else:  # mlp_out
                    handles.append(
                        blk.mlp.register_forward_hook(lambda m, a, o, fn=fn: fn(_first_tensor(o)))
                    )
            yield
        finally:
            for h in handles:
                h.remove()

    def _forward(self, input_ids, attention_mask):
        self.decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)

    def pack_layout(self) -> str:
        impl = str(getattr(self.hf.config, "_attn_implementation", None) or "eager")
        if "flash" in impl:
            return "varlen"
        if impl in _ROWS_ATTENTION:
            return "rows"
        raise ConfigError(
            f"pack=True: attention {impl!r} cannot keep packed traces apart; "
            f"load the model with attn_implementation one of {', '.join(_PACK_ATTENTION)}"
        )

    def _forward_packed(self, input_ids, position_ids, extra):
        # no 2-D mask: transformers builds the block-diagonal causal mask from the
        # restarting position ids (masking_utils.find_packed_sequence_indices)
        self.decoder(
            input_ids=input_ids,
            attention_mask=None,
            position_ids=position_ids,
            use_cache=False,
            **extra,
        )


class BridgeBackend(Backend):
    """transformer-lens ``TransformerBridge`` hook points on the same HF model."""

    def __init__(
        self, hf: Any, tokenizer: Any, hooks: Sequence[str], pools: Sequence[str], model_name: str
    ) -> None:
        from transformer_lens.model_bridge import TransformerBridge

        self.n_layers = int(hf.config.num_hidden_layers)
        super().__init__(hooks, pools)
        self.bridge = TransformerBridge.boot_transformers(
            model_name,
            hf_model=hf,
            tokenizer=tokenizer,
            device=str(hf.device),
            dtype=hf.dtype,
        )
        unknown = [h for h in self.hooks if h not in self.bridge.hook_dict]
        if unknown:
            raise ConfigError(f"bridge backend: no hook point {unknown}")

    @contextmanager
    def _attached(self, fns):
        wrapped = [(name, lambda x, hook, fn=fn: fn(x)) for name, fn in fns.items()]
        with self.bridge.hooks(fwd_hooks=wrapped):
            yield

    def _forward(self, input_ids, attention_mask):
        self.bridge(input_ids, return_type=None, attention_mask=attention_mask)

    def pack_layout(self) -> str:
        raise ConfigError(
            "pack=True needs backend='native' (the bridge runs its own attention, "
            "which takes no packed position ids)"
        )


def make_backend(kind: str, model: Any, hooks: Sequence[str], pools: Sequence[str]) -> Backend:
    """A backend for a :class:`~mechgraph.models.LoadedModel`.

    Examples
    --------
    >>> from mechgraph.models import load_model
    >>> be = make_backend("native", load_model(), ["blocks.3.hook_resid_post"], ["mean"])
    >>> type(be).__name__
    'NativeBackend'
    """
    for p in pools:
        if p not in POOLS:
            raise ConfigError(f"unknown pool {p!r}; choose from {', '.join(POOLS)}")
    if kind == "native":
        return NativeBackend(model.hf, hooks, pools)
    if kind == "bridge":
        return BridgeBackend(model.hf, model.tokenizer, hooks, pools, model.path)
    raise ConfigError(f"unknown backend {kind!r}; choose native or bridge")
