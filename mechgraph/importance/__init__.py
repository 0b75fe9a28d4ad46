"""Sentence importance in reasoning traces (Thought Anchors' three methods).

- :mod:`~mechgraph.importance.receivers`: receiver heads and per-sentence receiver scores.
- :mod:`~mechgraph.importance.suppression`: sentence x sentence attention-suppression KL.
- :mod:`~mechgraph.importance.resampling`: resampling counterfactual importance, with
  pluggable generator and embedder, and a cheaper adaptive estimator.
- :mod:`~mechgraph.importance.steer`: do high-scored (e.g. planning) sentences steer more
  than random ones?

Examples
--------
>>> from mechgraph.importance import receiver_scores, suppression_matrix  # doctest: +SKIP
>>> r = receiver_scores(lm, trace, top_k=20)  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from mechgraph._lazy import attach

if TYPE_CHECKING:  # the names; each module loads on first use (mechgraph._lazy)
    from mechgraph.importance._common import PreparedTrace, prepare
    from mechgraph.importance.adaptive import adaptive_importance
    from mechgraph.importance.answers import extract_answer, extract_boxed, normalize_answer
    from mechgraph.importance.receivers import (
        ReceiverConfig,
        ReceiverResult,
        receiver_scores,
        sentence_attention,
    )
    from mechgraph.importance.resampling import (
        Embedder,
        Generator,
        HFGenerator,
        MiniLMEmbedder,
        RankReliability,
        ResamplingConfig,
        ResamplingResult,
        answer_kl,
        counterfactual_importance,
        ranking_reliability,
    )
    from mechgraph.importance.steer import SteerResult, position_matched_sets, set_kl, steer_test
    from mechgraph.importance.suppression import (
        SuppressionConfig,
        SuppressionResult,
        masked_token_kl,
        suppression_matrix,
        suppression_matrix_naive,
    )

__all__ = [
    "Embedder",
    "Generator",
    "HFGenerator",
    "MiniLMEmbedder",
    "PreparedTrace",
    "RankReliability",
    "ReceiverConfig",
    "ReceiverResult",
    "ResamplingConfig",
    "ResamplingResult",
    "SteerResult",
    "SuppressionConfig",
    "SuppressionResult",
    "adaptive_importance",
    "answer_kl",
    "counterfactual_importance",
    "extract_answer",
    "extract_boxed",
    "masked_token_kl",
    "normalize_answer",
    "position_matched_sets",
    "prepare",
    "ranking_reliability",
    "receiver_scores",
    "sentence_attention",
    "set_kl",
    "steer_test",
    "suppression_matrix",
    "suppression_matrix_naive",
]

__getattr__, __dir__ = attach(__name__, __file__)
