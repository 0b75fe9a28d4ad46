"""A tiny random Llama for tests, examples and benchmarks where a real model is not the point.

Examples
--------
>>> m = tiny_llama(vocab_size=100, layers=2, hidden_size=32)
>>> m.config.num_hidden_layers, m.config.hidden_size, m.training
(2, 32, False)
"""

from __future__ import annotations

from typing import Any

__all__ = ["tiny_llama"]


def tiny_llama(
    tokenizer: Any = None,
    *,
    vocab_size: int | None = None,
    hidden_size: int = 64,
    layers: int = 3,
    heads: int = 4,
    kv_heads: int = 2,
    max_positions: int = 256,
    seed: int = 0,
):
    """A randomly initialised ``LlamaForCausalLM`` in eval mode (seeded, float32, CPU).

    Parameters
    ----------
    tokenizer : tokenizer or None
        Gives the vocabulary size and the bos / eos / pad ids.
    vocab_size : int or None
        Without a tokenizer (or to override its size).
    hidden_size, layers, heads, kv_heads, max_positions : int
        The shape (``intermediate_size`` is twice ``hidden_size``; grouped-query
        attention when ``kv_heads < heads``).
    seed : int
        ``torch.manual_seed`` before the weights are drawn.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if vocab_size is None:
        if tokenizer is None:
            raise ValueError("give a tokenizer or a vocab_size")
        vocab_size = len(tokenizer)
    ids = {}
    if tokenizer is not None:
        ids = {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        **ids,
    )
    return LlamaForCausalLM(cfg).eval()
