"""Step-count matching of a corpus: the same number of steps where traces are compared.

Graph metrics grow with the number of steps, so comparing checkpoints or models whose
responses differ in length needs traces cut to matched step counts: the first N steps of
every trace, or (``"paired"``) for each prompt the step count of its shortest trace in any
of the compared groups. :func:`match_corpus` cuts steps and states rows together, before
the node space is fitted (see :func:`mechgraph.graphs.analyze_corpus`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mechgraph.errors import ConfigError
from mechgraph.graphs.corpus import Corpus
from mechgraph.graphs.paths import _trace_of_step

__all__ = ["match_corpus"]


def _trace_pair_keys(corpus: Corpus) -> np.ndarray:
    """``pair_key`` of each trace of ``corpus.keys`` (None when unknown)."""
    if "pair_key" not in corpus.traces.columns:
        raise ConfigError("the corpus was loaded without pair_by: no prompt to pair traces by")
    m = corpus.keys.merge(
        corpus.traces[["store", "trace_id", "pair_key"]].drop_duplicates(["store", "trace_id"]),
        on=["store", "trace_id"],
        how="left",
    )
    return m["pair_key"].astype(object).where(m["pair_key"].notna(), None).to_numpy(dtype=object)


def match_corpus(
    corpus: Corpus,
    match_steps: int | str,
    *,
    groups: np.ndarray | None = None,
    pair_by: str = "prompt",
) -> tuple[Corpus, dict[str, Any]]:
    """Cut the traces of a corpus to matched step counts (steps and states rows together).

    Parameters
    ----------
    corpus : Corpus
        For ``"paired"``, loaded with ``load_corpus(..., pair_by=...)``.
    match_steps : int or "paired"
        An int N: every trace keeps its first N steps (shorter ones stay whole).
        ``"paired"``: traces are paired by ``pair_key`` across ``groups``; every trace of a
        prompt keeps as many steps as the shortest trace of that prompt in any group.
        Traces whose prompt is missing (or absent from some group) are dropped, and so
        are the traces without steps.
    groups : ndarray, optional
        Group of each trace of ``corpus.keys`` (None: one group).
    pair_by : str
        Name of the field behind ``pair_key`` (for the messages and the record).

    Returns
    -------
    corpus : Corpus
        The cut corpus; ``n_steps_full`` keeps the step counts before the cut.
    info : dict
        ``match_steps``, ``pair_by``, ``n_groups``, ``n_prompts`` (paired: prompts shared
        by all groups), ``n_traces`` and ``n_steps`` (before / kept), ``n_traces_cut``,
        ``n_dropped_unpaired`` and ``n_dropped_empty`` (traces dropped from the table).

    Raises
    ------
    ConfigError
        ``"paired"`` with no prompt shared by all groups.
    """
    if match_steps != "paired" and (
        isinstance(match_steps, bool)
        or not isinstance(match_steps, int | np.integer)
        or match_steps < 2
    ):
        raise ConfigError(f"match_steps must be an int >= 2 or 'paired', got {match_steps!r}")
    n = np.diff(np.asarray(corpus.offsets, np.int64))
    full = np.asarray(corpus.n_steps_full, np.int64)
    traces = corpus.traces
    info: dict[str, Any] = {"match_steps": match_steps}
    if match_steps == "paired":
        keys = _trace_pair_keys(corpus)
        g = np.zeros(len(n), dtype=object) if groups is None else np.asarray(groups, object)
        df = pd.DataFrame({"g": g, "key": keys, "n": n})
        n_groups = len(pd.unique(df["g"]))
        present = df.dropna(subset=["key"]).groupby("key")["g"].nunique()
        shared = set(present.index[present == n_groups])
        if not shared:
            raise ConfigError(
                f"match_steps='paired': no {pair_by!r} is shared by all {n_groups} groups; "
                "nothing to compare step for step"
            )
        keep = df["key"].isin(shared).to_numpy()
        cut = df.groupby("key")["n"].transform("min").fillna(0).to_numpy(np.int64)
        cut = np.where(keep, cut, 0)
        tkeys = pd.MultiIndex.from_frame(traces[["store", "trace_id"]])
        in_table = tkeys.isin(pd.MultiIndex.from_frame(corpus.keys[keep]))
        no_steps = ~tkeys.isin(pd.MultiIndex.from_frame(corpus.keys))
        info |= {
            "pair_by": pair_by,
            "n_groups": n_groups,
            "n_prompts": len(shared),
            "n_dropped_unpaired": int((~keep).sum()),
            "n_dropped_empty": int(tkeys[no_steps].nunique()),
        }
        traces = traces[in_table].reset_index(drop=True)
    else:
        keep = np.ones(len(n), bool)
        cut = np.minimum(n, int(match_steps))
    seg = _trace_of_step(corpus.offsets)
    pos = np.arange(len(seg)) - np.asarray(corpus.offsets, np.int64)[seg]
    rows = pos < cut[seg]
    kept_n = cut[keep]
    out = Corpus(
        steps=corpus.steps[rows].reset_index(drop=True),
        states=corpus.states[rows],
        traces=traces,
        offsets=np.r_[0, np.cumsum(kept_n)].astype(np.int64),
        keys=corpus.keys[keep].reset_index(drop=True),
        n_steps_full=full[keep],
    )
    info |= {
        "n_traces": len(n),
        "n_traces_kept": int(keep.sum()),
        "n_traces_cut": int((kept_n < n[keep]).sum()),
        "n_steps": int(n.sum()),
        "n_steps_kept": int(kept_n.sum()),
    }
    return out, info
