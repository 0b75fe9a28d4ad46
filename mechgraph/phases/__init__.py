"""Phases across RL checkpoints: metrics with intervals, change points, the two-phase test.

HICRA (Wang et al. 2025) reads two phases off the curves of an RL run by eye: execution
entropy and perplexity fall, then flatten; then the diversity of planning (semantic
entropy of strategic grams) rises. This package measures those curves on the samples of
a run, gives every value a bootstrap interval, detects change points with intervals, tests
whether the execution side changes before the planning side, and relates planning to the
topology of the reasoning graphs. See ``docs/phases.md``.

* :func:`load_run`, :func:`load_logs`, :func:`checkpoint_order`: inputs.
* :func:`phase_table`: one row per checkpoint (:class:`PhaseConfig`, :class:`PhaseResult`).
* :func:`change_points` (one series), :func:`table_change_points` (every metric).
* :func:`two_phase_test`, :func:`topology_link`, :func:`analyze_phases`, :func:`write_phases`.
* :func:`plot_phases` (needs ``mechgraph[plots]``).

>>> from mechgraph.phases import checkpoint_order
>>> checkpoint_order(["checkpoint-16", "checkpoint-8"])[0]
['checkpoint-8', 'checkpoint-16']
"""

from typing import TYPE_CHECKING

from mechgraph._lazy import attach

if TYPE_CHECKING:  # the names; each module loads on first use (mechgraph._lazy)
    from mechgraph.phases.analysis import PhaseReport, analyze_phases, write_phases
    from mechgraph.phases.changepoints import ChangeConfig, ChangeResult, change_points
    from mechgraph.phases.inference import (
        block_permutation_pvalue,
        table_change_points,
        topology_link,
        two_phase_test,
    )
    from mechgraph.phases.plots import plot_phases  # noqa: F401  (optional: plots extra)
    from mechgraph.phases.runs import checkpoint_order, load_logs, load_run, reasoning_text
    from mechgraph.phases.table import PhaseConfig, PhaseResult, phase_table

__all__ = [
    "ChangeConfig",
    "ChangeResult",
    "PhaseConfig",
    "PhaseReport",
    "PhaseResult",
    "analyze_phases",
    "block_permutation_pvalue",
    "change_points",
    "checkpoint_order",
    "load_logs",
    "load_run",
    "phase_table",
    "reasoning_text",
    "table_change_points",
    "topology_link",
    "two_phase_test",
    "write_phases",
]

__getattr__, __dir__ = attach(__name__, __file__)
