"""Per-token weights for RL trainers: planning masks, advantage transforms, exports, adapters.

* Transforms (:mod:`~mechgraph.weights.transforms`): :func:`hicra_advantages` (HICRA,
  ``A + alpha * |A|`` on planning tokens), :func:`hicra_code_advantages`,
  :func:`multiplicative_advantages` (``A * w``), :func:`additive_advantages` (``A + w``).
* Tokens (:mod:`~mechgraph.weights.tokens`): :class:`TokenWeights` keyed by the trainer's
  tokenizer; masks move between tokenizers through char offsets; a completion text that
  differs from the analysed one raises :class:`TextMismatchError`.
* Sources (:mod:`~mechgraph.weights.sources`): strategic grams, the rule tagger, probes,
  per-step scores spread to tokens, token entropy.
* Export (:mod:`~mechgraph.weights.export`): Parquet / JSONL / (B, T) safetensors.
* Adapters, importing their trainer lazily: :mod:`mechgraph.weights.trl`,
  :mod:`mechgraph.weights.verl`, :mod:`mechgraph.weights.openrlhf`.

Examples
--------
>>> from mechgraph.weights import hicra_advantages
>>> hicra_advantages([2.0], [[1, 0]]).tolist()
[[2.4, 2.0]]
"""

from mechgraph.weights.build import WeightsConfig, token_weights
from mechgraph.weights.export import pad_batch, read_batch, read_config, read_weights, write_weights
from mechgraph.weights.sources import (
    PlanningSource,
    completion_entropy,
    planning_source,
    spread_to_tokens,
    step_scores,
    token_entropy,
)
from mechgraph.weights.tokens import (
    TextMismatchError,
    TokenWeights,
    check_same_text,
    decode_with_offsets,
    mask_to_spans,
    tokenize_with_offsets,
    transfer_mask,
    transfer_values,
)
from mechgraph.weights.transforms import (
    TRANSFORMS,
    AdvantageConfig,
    additive_advantages,
    apply_transform,
    group_ids,
    hicra_advantages,
    hicra_code_advantages,
    hicra_code_eligible,
    multiplicative_advantages,
    normalize_weights,
    top_entropy_mask,
)

__all__ = [
    "TRANSFORMS",
    "AdvantageConfig",
    "PlanningSource",
    "TextMismatchError",
    "TokenWeights",
    "WeightsConfig",
    "additive_advantages",
    "apply_transform",
    "check_same_text",
    "completion_entropy",
    "decode_with_offsets",
    "group_ids",
    "hicra_advantages",
    "hicra_code_advantages",
    "hicra_code_eligible",
    "mask_to_spans",
    "multiplicative_advantages",
    "normalize_weights",
    "pad_batch",
    "planning_source",
    "read_batch",
    "read_config",
    "read_weights",
    "spread_to_tokens",
    "step_scores",
    "token_entropy",
    "token_weights",
    "tokenize_with_offsets",
    "top_entropy_mask",
    "transfer_mask",
    "transfer_values",
    "write_weights",
]
