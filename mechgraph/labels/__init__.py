"""Labels: Thought Anchors' sentence functions, strategic grams, planning masks.

* :class:`RuleTagger` / :func:`tag_sentences`: the eight functions of Thought Anchors by
  cue rules, no API calls; ``planning`` = plan_generation or uncertainty_management.
* :func:`mine_strategic_grams`, :func:`load_grams`, :class:`GramMatcher`: HICRA's
  strategic grams, mined or loaded, matched on text as char spans.
* :func:`planning_token_mask`, :func:`gram_spans`, :func:`planning_spans`: token masks
  through the tokenizer's offsets (:mod:`mechgraph.align`).
* :func:`as_labeller`: plug in any callable labeller.
* :func:`label_traces`, :func:`get_labeller`: label traces by method name;
  :func:`label_table` lines the labels up with a store's step rows.
* :func:`register_labeller`, :func:`labeller_kinds`: add a labeller kind; kinds of later
  stages (``probe:PATH``) come from the ``mechgraph.labellers`` entry points, so this
  package imports nothing from them.
* :class:`Embedder`: the one sentence-embedder protocol (``list[str] -> (n, d)``).
"""

from mechgraph.labels.base import Labeller, SentenceLabeller, StepLabel
from mechgraph.labels.external import CallableLabeller, as_labeller
from mechgraph.labels.grams import (
    Embedder,
    GramLabeller,
    GramMatcher,
    GramMinerConfig,
    StrategicGrams,
    as_embedder,
    extract_ngrams,
    load_grams,
    mine_strategic_grams,
    minilm_embedder,
)
from mechgraph.labels.masks import (
    gram_spans,
    merge_spans,
    planning_spans,
    planning_token_mask,
    spans_token_mask,
    tokenize_with_offsets,
)
from mechgraph.labels.methods import (
    DEFAULT_GRAMS,
    HICRA_GRAMS,
    get_labeller,
    grams_path,
    label_records,
    label_table,
    label_traces,
    labeller_kinds,
    register_labeller,
)
from mechgraph.labels.tagger import (
    PLANNING_TAGS,
    TAGS,
    RuleLabeller,
    RuleTagger,
    TaggerConfig,
    TagResult,
    is_planning,
    tag_sentences,
)

__all__ = [
    "DEFAULT_GRAMS",
    "HICRA_GRAMS",
    "PLANNING_TAGS",
    "TAGS",
    "CallableLabeller",
    "Embedder",
    "GramLabeller",
    "GramMatcher",
    "GramMinerConfig",
    "Labeller",
    "RuleLabeller",
    "RuleTagger",
    "SentenceLabeller",
    "StepLabel",
    "StrategicGrams",
    "TagResult",
    "TaggerConfig",
    "as_embedder",
    "as_labeller",
    "extract_ngrams",
    "get_labeller",
    "gram_spans",
    "grams_path",
    "is_planning",
    "label_records",
    "label_table",
    "label_traces",
    "labeller_kinds",
    "load_grams",
    "merge_spans",
    "mine_strategic_grams",
    "minilm_embedder",
    "planning_spans",
    "planning_token_mask",
    "register_labeller",
    "spans_token_mask",
    "tag_sentences",
    "tokenize_with_offsets",
]
