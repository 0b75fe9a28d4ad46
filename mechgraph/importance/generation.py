"""Rollout generation and sentence embedding for resampling importance.

A :class:`Generator` returns one continuation per seed, and a continuation depends on its
seed alone, not on what else is in the batch: the rollout ``k`` at position ``i`` of a
trace is the same text whether it was drawn by the full estimator or by an adaptive one
that stopped early, so a cheap run is literally a prefix of the full run and can be
topped up later. :class:`HFGenerator` gets this from plain HF ``generate`` (never the
TransformerLens bridge) with a per-row Gumbel-max sampler (:class:`RowSampler`), which
draws exactly from the temperature / top-p distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.labels.grams import Embedder

__all__ = [
    "Embedder",
    "Generator",
    "HFGenerator",
    "MiniLMEmbedder",
    "RowSampler",
    "rollout_seeds",
]


@runtime_checkable
class Generator(Protocol):
    """Samples one continuation (new text only) of ``prefix`` per seed.

    The continuation for a seed must not depend on the other seeds of the call.
    """

    def sample(self, prefix: str, seeds: Sequence[int]) -> list[str]: ...


def rollout_seeds(seed: int, position: int, start: int, n: int) -> list[int]:
    """Seeds of rollouts ``start .. start + n - 1`` at ``position`` (independent streams).

    Examples
    --------
    >>> rollout_seeds(0, 3, 0, 4)[2:] == rollout_seeds(0, 3, 2, 2)
    True
    """
    return [
        int(np.random.SeedSequence([seed, position, k]).generate_state(1, np.uint32)[0])
        for k in range(start, start + n)
    ]


class RowSampler:
    """A logits processor that samples each batch row from its own random stream.

    Temperature, then top-p (the smallest set of most likely tokens whose probability
    reaches ``top_p``), then Gumbel-max: ``argmax(logits / T + G)`` with ``G`` standard
    Gumbel noise drawn from the row's generator is an exact sample of the filtered
    softmax. Used with greedy decoding, so ``generate`` picks the sampled token.

    Examples
    --------
    >>> import torch
    >>> s = RowSampler([1, 2], temperature=0.6, top_p=0.95)
    >>> s(torch.zeros(2, 1, dtype=torch.long), torch.randn(2, 10)).shape
    torch.Size([2, 10])
    """

    def __init__(self, seeds: Sequence[int], temperature: float = 0.6, top_p: float = 0.95):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ConfigError(
                f"need temperature > 0 and 0 < top_p <= 1, got {temperature}, {top_p}"
            )
        self.seeds = list(seeds)
        self.temperature = temperature
        self.top_p = top_p
        self._gens: list[Any] | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self._gens is None:
            self._gens = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        if scores.shape[0] != len(self._gens):
            raise ConfigError(f"RowSampler has {len(self._gens)} seeds for {scores.shape[0]} rows")
        logits = scores.float() / self.temperature
        if self.top_p < 1:
            probs, order = logits.softmax(-1).sort(-1, descending=True)
            drop_sorted = probs.cumsum(-1) - probs >= self.top_p  # mass before it reaches top_p
            drop_sorted[:, 0] = False
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        u = torch.stack(
            [torch.rand(logits.shape[-1], generator=g, device=scores.device) for g in self._gens]
        )
        exp1 = (-torch.log(u.clamp_min(1e-30))).clamp_min(1e-30)  # Exp(1) noise
        return logits - torch.log(exp1)  # + standard Gumbel noise


@dataclass
class HFGenerator:
    """Sampling with plain HF ``generate``, one random stream per rollout.

    Parameters
    ----------
    lm : LoadedModel
        From :func:`mechgraph.load_model` (its ``hf`` model and ``tokenizer``).
    max_new_tokens, temperature, top_p : sampling (Thought Anchors: T = 0.6, top-p 0.95)
    batch_size : int
        Rollouts generated together.

    Examples
    --------
    >>> gen = HFGenerator(load_model("default"), max_new_tokens=256)  # doctest: +SKIP
    >>> a, b = gen.sample("Q: 2+2? A:", [11, 12])  # doctest: +SKIP
    >>> gen.sample("Q: 2+2? A:", [12]) == [b]  # doctest: +SKIP
    True
    """

    lm: Any
    max_new_tokens: int = 1024
    temperature: float = 0.6
    top_p: float = 0.95
    batch_size: int = 8

    def sample(self, prefix: str, seeds: Sequence[int]) -> list[str]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        tok, hf = self.lm.tokenizer, self.lm.hf
        add = not (tok.bos_token and prefix.startswith(tok.bos_token))
        ids = torch.tensor([tok(prefix, add_special_tokens=add)["input_ids"]], device=hf.device)
        eos = hf.generation_config.eos_token_id
        cfg = GenerationConfig(
            do_sample=False,
            max_new_tokens=self.max_new_tokens,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            eos_token_id=eos if eos is not None else tok.eos_token_id,
        )
        out: list[str] = []
        seeds = list(seeds)
        for a in range(0, len(seeds), self.batch_size):
            chunk = seeds[a : a + self.batch_size]
            batch = ids.expand(len(chunk), -1)
            sampler = RowSampler(chunk, self.temperature, self.top_p)
            with torch.no_grad():
                gen = hf.generate(
                    batch,
                    attention_mask=torch.ones_like(batch),
                    generation_config=cfg,
                    logits_processor=LogitsProcessorList([sampler]),
                )
            out += tok.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)
        return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (unit norm), loaded offline on first use.

    The model is :func:`mechgraph.labels.minilm_embedder` (the one strategic-gram mining
    uses), wrapped in the :class:`Embedder` protocol.

    Examples
    --------
    >>> MiniLMEmbedder().encode(["We add 3.", "Then 3 is added."]).shape  # doctest: +SKIP
    (2, 384)
    """

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._embed: Any = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._embed is None:
            from mechgraph.labels.grams import minilm_embedder

            self._embed = minilm_embedder(self.device)
        return self._embed(list(texts))

    __call__ = encode  # an Embedder: texts -> (n, d) unit-norm rows
