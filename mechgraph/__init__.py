"""mechgraph: mechanistic analysis of LLM reasoning traces.

Traces -> steps -> per-step hidden states in an on-disk store -> labels, probes,
importance, reasoning graphs, phases across RL checkpoints and per-token weights for RL
trainers. The namespace holds each stage's verbs and types (``__all__``):

* traces and states: :func:`load_traces`, :func:`segment_traces`, :class:`Trace`,
  :class:`Step`, :func:`load_model`, :func:`load_tokenizer`, :func:`extract`,
  :class:`ExtractConfig`, :func:`open_store`, :class:`Store`;
* labels: :func:`label_traces`, :func:`label_table`, :func:`load_grams`,
  :func:`mine_strategic_grams`, :func:`planning_token_mask`;
* importance: :func:`receiver_scores`, :func:`suppression_matrix`,
  :func:`counterfactual_importance`, :func:`steer_test`;
* graphs: :func:`analyze_corpus`, :func:`graph_table`, :func:`topology_metrics`,
  :class:`GraphConfig`, :class:`NodeSpace`;
* weights: :func:`token_weights`, :func:`write_weights`, :func:`read_weights`,
  :func:`hicra_advantages`, :class:`WeightsConfig`, :class:`TokenWeights`;
* phases: :func:`load_run`, :func:`phase_table`, :func:`analyze_phases`,
  :func:`change_points`, :class:`PhaseConfig`;
* the pipeline: :func:`run_pipeline`, :class:`RunConfig`, :func:`load` (any artifact);
* errors: :class:`MechgraphError` (the others in :mod:`mechgraph.errors`).

Everything heavier than numpy loads on first use.

Examples
--------
>>> import json, pathlib, tempfile
>>> import mechgraph as mg
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "traces.jsonl").write_text(json.dumps({"id": "a", "text": "So 2 + 2 = 4. Check: 4 - 2 = 2."}))
>>> traces = mg.load_traces(d / "traces.jsonl")
>>> store = mg.extract(traces, d / "s", layers=(3, 15))  # the default model, one state per step
>>> store.states(15).shape
(2, 576)
"""

import sys
from importlib import import_module
from types import ModuleType

from mechgraph.errors import MechgraphError
from mechgraph.traces import Step, Trace, load_traces, segment_traces

# Everything heavier than numpy loads on first use, so that `import mechgraph` stays light:
# extraction, models and the store (torch, transformers, pandas, pyarrow) as well as the
# analysis stages (scipy, networkx, ...). `mg.graph_table` imports mechgraph.graphs the
# first time it is read.
_LAZY = {
    "mechgraph.align": ("align_spans", "prepare_trace", "token_mask"),
    "mechgraph.errors": (
        "AlignmentError",
        "ArtifactError",
        "ConfigError",
        "ExtractionError",
        "StoreError",
        "TraceError",
    ),
    "mechgraph.segment": ("segment_text",),
    "mechgraph.extract": ("ExtractConfig", "extract"),
    "mechgraph.models": ("LoadedModel", "load_model", "load_tokenizer"),
    "mechgraph.store": ("Store", "open_store"),
    "mechgraph.artifacts": ("load",),
    "mechgraph.pipeline": ("RunConfig", "run_pipeline"),
    "mechgraph.graphs": (
        "GraphConfig",
        "MetricOptions",
        "NodeSpace",
        "NodeSpaceConfig",
        "analyze_corpus",
        "graph_table",
        "metrics_table",
        "topology_metrics",
        "trace_graph",
    ),
    "mechgraph.importance": (
        "counterfactual_importance",
        "receiver_scores",
        "steer_test",
        "suppression_matrix",
    ),
    "mechgraph.labels": (
        "PLANNING_TAGS",
        "TAGS",
        "RuleTagger",
        "as_labeller",
        "label_table",
        "label_traces",
        "load_grams",
        "mine_strategic_grams",
        "planning_token_mask",
        "tag_sentences",
    ),
    "mechgraph.phases": (
        "PhaseConfig",
        "analyze_phases",
        "change_points",
        "load_run",
        "phase_table",
    ),
    "mechgraph.weights": (
        "AdvantageConfig",
        "PlanningSource",
        "TextMismatchError",
        "TokenWeights",
        "WeightsConfig",
        "additive_advantages",
        "hicra_advantages",
        "hicra_code_advantages",
        "multiplicative_advantages",
        "read_weights",
        "token_weights",
        "write_weights",
    ),
}
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}

__version__ = "0.1.0"

#: The public namespace: the verbs and types of each stage (everything else lives in its
#: subpackage: ``mg.labels.RuleTagger``, ``mg.graphs.NodeSpaceConfig``, ``mg.errors.*`` ...;
#: the names of earlier versions still resolve here).
__all__ = [
    "ExtractConfig",
    "GraphConfig",
    "MechgraphError",
    "NodeSpace",
    "PhaseConfig",
    "RunConfig",
    "Step",
    "Store",
    "TokenWeights",
    "Trace",
    "WeightsConfig",
    "__version__",
    "analyze_corpus",
    "analyze_phases",
    "change_points",
    "counterfactual_importance",
    "extract",
    "graph_table",
    "hicra_advantages",
    "label_table",
    "label_traces",
    "load",
    "load_grams",
    "load_model",
    "load_run",
    "load_tokenizer",
    "load_traces",
    "mine_strategic_grams",
    "open_store",
    "phase_table",
    "planning_token_mask",
    "read_weights",
    "receiver_scores",
    "run_pipeline",
    "segment_traces",
    "steer_test",
    "suppression_matrix",
    "token_weights",
    "topology_metrics",
    "write_weights",
]


# Submodules reachable as attributes (`mg.store.Store`) without an explicit import.
_SUBMODULES = frozenset({*(m.rpartition(".")[2] for m in _LAZY), "hooks", "io"} - {"extract"})


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name]), name)
    elif name in _SUBMODULES:
        value = import_module(f"mechgraph.{name}")
    else:
        raise AttributeError(f"module 'mechgraph' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *_SUBMODULES, "align", "errors", "segment", "traces"})


class _Package(ModuleType):
    """Keeps ``mg.extract`` the function once the submodule ``mechgraph.extract`` is loaded.

    Importing a submodule binds it on its package (``mechgraph.extract = <module>``); with
    the function loaded lazily, that binding would shadow it.
    """

    def __setattr__(self, name: str, value) -> None:
        if (
            name in _WHERE
            and isinstance(value, ModuleType)
            and value.__name__ == f"{__name__}.{name}"
        ):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
