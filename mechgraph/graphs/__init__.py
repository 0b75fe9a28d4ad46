"""Reasoning graphs: node space, per-trace walks and their topology.

Topology of Reasoning (Minegishi et al. 2025), made general and exact: a shared k-means
node space over step states, a directed graph per trace, cycles / revisits / diameter /
small-world index with null baselines, aha-moment statistics, persistent homology and
pictures.  Everything works on arrays and tables; see ``docs/graphs.md``.

>>> from mechgraph.graphs import topology_metrics
>>> topology_metrics([0, 1, 2, 1, 0, 2, 0])["loop_count"]
1
"""

from typing import TYPE_CHECKING

from mechgraph._lazy import attach

if TYPE_CHECKING:  # the names; each module loads on first use (mechgraph._lazy)
    # (the homology and plots names need extras and stay outside __all__)
    from mechgraph.graphs.aha import (
        RECONSIDERATION_LEXICON,
        RECONSIDERATION_TAGS,
        aha_table,
        odds_ratio_ci,
        reconsideration_mask,
    )
    from mechgraph.graphs.corpus import (
        Corpus,
        GraphConfig,
        GraphResult,
        analyze_corpus,
        graph_table,
        load_corpus,
    )
    from mechgraph.graphs.homology import homology_table, trajectory_homology  # noqa: F401
    from mechgraph.graphs.matching import match_corpus
    from mechgraph.graphs.metrics import (
        MetricOptions,
        avg_path_length,
        clustering,
        diameter,
        has_loop,
        loop_count,
        n_cycles,
        revisits,
        small_world_sigma,
    )
    from mechgraph.graphs.nodespace import NodeSpace, NodeSpaceConfig, NodeSpaceWarning
    from mechgraph.graphs.nulls import (
        NULL_KINDS,
        NULL_METRICS,
        corpus_walks,
        null_zscores,
        shuffled_orders,
    )
    from mechgraph.graphs.paths import (
        collapse_repeats,
        offsets_from_ids,
        revisit_mask,
        step_distances,
        trace_graph,
        transition_matrix,
    )
    from mechgraph.graphs.plots import (  # noqa: F401
        embed_2d,
        plot_metric_comparison,
        plot_trace_graph,
        plot_trajectories,
    )
    from mechgraph.graphs.topology import METRIC_COLUMNS, metrics_table, topology_metrics

__all__ = [
    "METRIC_COLUMNS",
    "NULL_KINDS",
    "NULL_METRICS",
    "RECONSIDERATION_LEXICON",
    "RECONSIDERATION_TAGS",
    "Corpus",
    "GraphConfig",
    "GraphResult",
    "MetricOptions",
    "NodeSpace",
    "NodeSpaceConfig",
    "NodeSpaceWarning",
    "aha_table",
    "analyze_corpus",
    "avg_path_length",
    "clustering",
    "collapse_repeats",
    "corpus_walks",
    "diameter",
    "graph_table",
    "has_loop",
    "load_corpus",
    "loop_count",
    "match_corpus",
    "metrics_table",
    "n_cycles",
    "null_zscores",
    "odds_ratio_ci",
    "offsets_from_ids",
    "reconsideration_mask",
    "revisit_mask",
    "revisits",
    "shuffled_orders",
    "small_world_sigma",
    "step_distances",
    "topology_metrics",
    "trace_graph",
    "transition_matrix",
]

__getattr__, __dir__ = attach(__name__, __file__)
