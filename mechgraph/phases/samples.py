"""Per-sample text quantities of a run: tags, planning tokens, strategic grams, lengths.

Every per-checkpoint metric of :mod:`mechgraph.phases` is a ratio of sums of additive
per-sample quantities (``planning_share`` = planning tokens / tokens, ``tag/x`` = steps
tagged x / steps, ...) or a function of summed gram counts (semantic entropy). This module
computes those per-sample quantities once, so that the bootstrap only re-weights rows.

Text work (segmentation, the rule tagger, gram matching) can run in worker processes
(``workers``); tokenisation runs in the main process (the fast tokenizer is multi-threaded).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.labels.sources import parse_planning
from mechgraph.traces import Trace

__all__ = ["SampleTable", "prompt_key", "sample_numbers", "sample_table"]

#: Planning sources of :func:`sample_table` and what each takes after its colon.

_STATE: dict[str, Any] = {}


@dataclass
class SampleTable:
    """Per-sample quantities of a run (rows in trace order).

    Attributes
    ----------
    frame : pandas.DataFrame
        ``trace_id``, ``checkpoint``, ``prompt_key``, ``correct`` (float, NaN unknown),
        ``reward`` (float, NaN unknown), ``n_tokens``, ``n_plan_tokens``, ``n_steps`` and
        one ``tag/<name>`` count per rule-tagger tag.
    grams : scipy.sparse.csr_matrix
        ``(n_samples, n_grams)`` occurrence counts of the semantic-entropy grams.
    vocabulary : list of str
        The grams, column order of ``grams``.
    plan_spans : list of list of (int, int)
        Planning char spans of each sample's text (the planning source's).
    """

    frame: Any
    grams: Any
    vocabulary: list[str]
    plan_spans: list[list[tuple[int, int]]]


def prompt_key(prompt: str) -> str:
    """A short stable key of a prompt (pairs samples of one problem across checkpoints).

    Examples
    --------
    >>> prompt_key("What is 2+2?") == prompt_key("What is 2+2?")
    True
    """
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]


def sample_numbers(traces: Sequence[Trace]) -> tuple[list[float], list[float]]:
    """``correct`` and ``reward`` of each trace as floats (NaN unknown).

    Raises
    ------
    ConfigError
        Naming the trace whose reward (or correctness) is not a number.
    """

    def num(t: Trace, v: Any, name: str) -> float:
        if v is None:
            return np.nan
        if isinstance(v, str) or not isinstance(v, int | float):
            raise ConfigError(f"trace {t.id!r}: {name} must be a number, got {v!r}")
        return float(v)

    correct = [num(t, t.correct, "correct") for t in traces]
    reward = [num(t, t.meta.get("reward"), "reward") for t in traces]
    return correct, reward


def _init(planning: str, plan_grams: list[str] | None, sem_grams: list[str], seg: str) -> None:
    from mechgraph.labels import GramMatcher, RuleTagger
    from mechgraph.segment import get_segmenter

    _STATE.update(
        tagger=RuleTagger(),
        segment=get_segmenter(seg),
        planning=planning,
        plan=GramMatcher(plan_grams) if plan_grams else None,
        sem=GramMatcher(sem_grams),
    )


def _text_chunk(texts: Sequence[str]) -> list[tuple[list[str], list[tuple[int, int]], list[str]]]:
    """Tags, planning spans and matched semantic grams of each text (in a worker)."""
    from mechgraph.labels import merge_spans

    tagger, segment = _STATE["tagger"], _STATE["segment"]
    out = []
    for text in texts:
        spans = segment(text) or [(0, len(text))]
        results = tagger.tag([text[a:b] for a, b in spans])
        tags = [r.tag for r in results]
        if _STATE["planning"] == "rules":
            plan = merge_spans(sp for sp, r in zip(spans, results, strict=True) if r.planning)
        elif _STATE["plan"] is not None:
            plan = merge_spans(_STATE["plan"].find(text))
        else:
            plan = []
        out.append((tags, plan, _STATE["sem"].find_grams(text)))
    return out


def _run_text(texts: list[str], init_args: tuple, workers: int, then) -> tuple[list, Any]:
    """Text work on ``texts`` (in ``workers`` processes), overlapped with ``then()``.

    The worker processes are started (forked) before ``then`` runs in this process, so the
    tokenizer's threads and the workers share the cores instead of taking turns.
    """
    if workers <= 1 or len(texts) < 64:
        _init(*init_args)
        return _text_chunk(texts), then()
    n = max(1, len(texts) // (workers * 8))
    chunks = [texts[i : i + n] for i in range(0, len(texts), n)]
    with ProcessPoolExecutor(workers, initializer=_init, initargs=init_args) as pool:
        futures = [pool.submit(_text_chunk, c) for c in chunks]
        other = then()
        return [r for f in futures for r in f.result()], other


def sample_table(
    traces: Sequence[Trace],
    *,
    tokenizer: Any,
    planning: str = "rules",
    grams: str | None = "hicra",
    segmenter: str = "sentences-all",
    workers: int | None = None,
) -> SampleTable:
    """Compute the per-sample quantities of a run.

    Parameters
    ----------
    traces : sequence of Trace
        The samples (``checkpoint`` set on each).
    tokenizer : fast tokenizer
        Counts tokens (``length_tokens``, ``planning_share``).
    planning : str
        Planning source: ``rules`` (sentences the rule tagger calls planning), ``sg``,
        ``sg:hicra``, ``sg:PATH`` (strategic-gram matches) or ``probe:PATH`` (sentences a
        probe calls planning; runs in the main process, needs its model).
    grams : str
        The strategic-gram list of the semantic entropy: ``hicra`` (HICRA's published
        list, the default), ``mechgraph`` (the list mined from Thought Anchors) or a path.
    segmenter : str
        Sentence splitter for the tagger.
    workers : int, optional
        Processes for the text work (default: ``min(2, cpu count)``; 1 runs inline).

    Returns
    -------
    SampleTable

    Examples
    --------
    >>> from mechgraph.models import load_tokenizer  # doctest: +SKIP
    >>> t = Trace("a", "Let me try another approach. So 2 + 2 = 4.", checkpoint="10")
    >>> st = sample_table([t], tokenizer=load_tokenizer())  # doctest: +SKIP
    >>> st.frame[["n_steps", "tag/plan_generation"]].values.tolist()  # doctest: +SKIP
    [[2, 1]]
    """
    import pandas as pd
    from scipy import sparse

    from mechgraph.align import token_mask, tokenize_with_offsets
    from mechgraph.labels import TAGS, grams_path, load_grams

    if not traces:
        raise ConfigError("no samples given")
    for t in traces:
        if t.checkpoint is None:
            raise ConfigError(f"trace {t.id!r}: no checkpoint (tag every sample with one)")
    sem = load_grams(grams_path(None if grams in (None, "mechgraph") else grams)).grams
    spec = parse_planning(planning)
    kind = spec.kind if spec.kind in ("rules", "sg", "none") else "labeller"
    plan_grams = load_grams(grams_path(spec.arg)).grams if kind == "sg" else None
    correct, reward = sample_numbers(traces)  # checked before any work
    texts = [t.text for t in traces]
    workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    per, encoded = _run_text(
        texts,
        (kind, plan_grams, sem, segmenter),
        workers,
        lambda: tokenize_with_offsets(tokenizer, texts),
    )
    if kind == "labeller":  # probe:PATH or a registered labeller: in this process
        from mechgraph.labels.sources import PlanningSource

        spans = PlanningSource(planning, segmenter=segmenter).batch(texts)
        per = [(tags, sp, g) for (tags, _, g), sp in zip(per, spans, strict=True)]

    n_tok = np.array([len(ids) for ids, _ in encoded], dtype=np.int64)
    n_plan = np.array(
        [
            int(token_mask(text, off, plan).sum()) if plan else 0
            for text, (_, off), (_, plan, _) in zip(texts, encoded, per, strict=True)
        ],
        dtype=np.int64,
    )
    tag_index = {t: i for i, t in enumerate(TAGS)}
    tag_counts = np.zeros((len(traces), len(TAGS)), dtype=np.int64)
    n_steps = np.zeros(len(traces), dtype=np.int64)
    vocab = {g: i for i, g in enumerate(dict.fromkeys(" ".join(g.lower().split()) for g in sem))}
    rows, cols = [], []
    for r, (tags, _, found) in enumerate(per):
        n_steps[r] = len(tags)
        for tag in tags:
            if tag in tag_index:
                tag_counts[r, tag_index[tag]] += 1
        ids = [vocab[g] for g in found if g in vocab]
        rows += [r] * len(ids)
        cols += ids
    counts = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=(len(traces), len(vocab))
    )
    counts.sum_duplicates()

    frame = pd.DataFrame(
        {
            "trace_id": [t.id for t in traces],
            "checkpoint": [str(t.checkpoint) for t in traces],
            "prompt_key": [prompt_key(t.prompt) for t in traces],
            "correct": correct,
            "reward": reward,
            "n_tokens": n_tok,
            "n_plan_tokens": n_plan,
            "n_steps": n_steps,
            **{f"tag/{t}": tag_counts[:, i] for i, t in enumerate(TAGS)},
        }
    )
    spans = [list(plan) for _, plan, _ in per]
    return SampleTable(frame=frame, grams=counts, vocabulary=list(vocab), plan_spans=spans)
