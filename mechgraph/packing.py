"""Batch layout for extraction (padding or packing) and the host side of its pipeline.

Layouts
-------
``padded`` (the default)
    Pieces (a trace, or one sliding window of it) sorted by length, one per row,
    right-padded to the longest of the batch, with a 2-D attention mask; at most
    ``batch_tokens`` padded tokens and ``max_batch`` rows per batch.
``rows`` (``pack=True`` with eager / sdpa / flex attention)
    Several pieces share a row, first-fit decreasing: a batch's row width is its longest
    piece, it has ``batch_tokens // width`` rows at most (``max_batch`` at most), and
    shorter pieces fill the gaps. Position ids restart at 0 for every piece and no 2-D
    mask is given, so transformers builds the block-diagonal causal mask from the
    position ids (its packed-sequence support, ``masking_utils``); the rest of a row is
    padding with its own positions (a block of its own, owned by no step).
``varlen`` (``pack=True`` with flash attention)
    One flat row of up to ``batch_tokens`` tokens (batch size 1, no padding at all), the
    sequence boundaries passed to flash-attention's varlen kernel as ``cu_seq_lens_q/k``
    (what transformers would otherwise infer from the position ids in every layer).

Pipeline
--------
:func:`prefetch` runs a generator in a background thread (bounded queue, its exception
re-raised in the consumer); :class:`WriteBehind` runs shard commits in order in one
writer thread (bounded queue; an error stops it and is raised in the caller).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mechgraph.hooks import BatchPlan

__all__ = [
    "LAYOUTS",
    "HostBatch",
    "WriteBehind",
    "accumulate",
    "build_batch",
    "fetch_pooled",
    "padding_waste",
    "plan_batches",
    "prefetch",
]

LAYOUTS = ("padded", "rows", "varlen")

#: (trace index in the chunk, (start, end, own_start, own_end, add_bos)) of one piece
Piece = tuple[int, tuple[int, int, int, int, bool]]


def plan_batches(
    lengths: Sequence[int], batch_tokens: int, max_batch: int, layout: str = "padded"
) -> list[list[list[int]]]:
    """Group pieces into batches of rows: ``batches[k][row]`` lists piece indices.

    Parameters
    ----------
    lengths : sequence of int
        Tokens of each piece (a window's repeated BOS included).
    batch_tokens, max_batch : int
        Budget of tokens (padded or packed) and most rows per batch.
    layout : {"padded", "rows", "varlen"}

    Examples
    --------
    >>> plan_batches([5, 2, 3, 1], 10, 8)
    [[[0], [2]], [[1], [3]]]
    >>> plan_batches([5, 2, 3, 1], 10, 8, "rows")
    [[[0], [2, 1]], [[3]]]
    >>> plan_batches([5, 2, 3, 1], 10, 8, "varlen")
    [[[0, 2, 1]], [[3]]]
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if layout == "padded":  # the historical batching, kept exactly
        out, batch = [], []
        for i in order:
            width = lengths[batch[0]] if batch else lengths[i]
            if batch and ((len(batch) + 1) * width > batch_tokens or len(batch) >= max_batch):
                out.append([[j] for j in batch])
                batch = []
            batch.append(i)
        if batch:
            out.append([[j] for j in batch])
        return out
    out = []
    while order:
        width = lengths[order[0]]
        if layout == "varlen":
            width, n_rows = max(width, batch_tokens), 1
        else:
            n_rows = min(max_batch, max(1, batch_tokens // width))
        rows: list[list[int]] = []
        free: list[int] = []
        rest = []
        for i in order:  # first-fit decreasing
            n = lengths[i]
            r = next((k for k, f in enumerate(free) if f >= n), None)
            if r is None and len(rows) < n_rows:
                rows.append([])
                free.append(width)
                r = len(rows) - 1
            if r is None:
                rest.append(i)
                continue
            rows[r].append(i)
            free[r] -= n
        out.append(rows)
        order = rest
    return out


def padding_waste(
    lengths: Sequence[int], batch_tokens: int, max_batch: int, layout: str = "padded"
) -> dict[str, float]:
    """Real and computed tokens of a layout (``waste`` = padded / real tokens).

    Examples
    --------
    >>> padding_waste([4, 2, 2], 8, 8)["waste"]  # rows [4, 2 + 2 pad] and [2]
    0.25
    >>> padding_waste([4, 2, 2], 8, 8, "rows")["waste"]
    0.0
    """
    real = int(sum(lengths))
    computed = 0
    batches = plan_batches(lengths, batch_tokens, max_batch, layout)
    for rows in batches:
        if layout == "varlen":
            computed += sum(lengths[i] for i in rows[0])
        else:
            width = max(sum(lengths[i] for i in r) for r in rows)
            computed += width * len(rows)
    return {
        "real_tokens": real,
        "computed_tokens": computed,
        "padded_tokens": computed - real,
        "waste": (computed - real) / real if real else 0.0,
        "n_batches": len(batches),
        "n_rows": sum(len(r) for r in batches),
    }


@dataclass
class HostBatch:
    """One forward batch, built on the host.

    Attributes
    ----------
    ids, owner, gpos : int64 arrays (B, T)
        Token ids; output row of each token (-1: none); the token's position in its trace
        (-1 for padding and a window's repeated BOS).
    mask : int64 array (B, T) or None
        The 2-D attention mask of the padded layout; None when packed.
    position_ids : int64 array (B, T) or None
        Restarting at 0 for every piece (packed layouts).
    rows_trace, rows_step : int64 arrays (n_rows,)
        Trace (index in the chunk) and step of each output row.
    plan : BatchPlan
        Built on the host (CPU tensors, pinned when asked); see :meth:`to`.
    seq_lens : list of int or None
        Piece lengths of the one flat row (varlen layout).
    n_tokens : int
        Trace tokens in the batch (repeated BOS excluded), for progress.
    """

    ids: np.ndarray
    owner: np.ndarray
    gpos: np.ndarray
    mask: np.ndarray | None
    position_ids: np.ndarray | None
    rows_trace: np.ndarray
    rows_step: np.ndarray
    plan: BatchPlan
    seq_lens: list[int] | None
    n_tokens: int
    _staged: dict[str, torch.Tensor | None] | None = field(default=None, repr=False)
    _pinned: bool = False

    def stage(self, pin: bool = False) -> HostBatch:
        """Make the host tensors of the inputs now (pinned when ``pin``: for CUDA, done in
        the prefetch thread so the main thread only queues copies); returns self."""

        def host(t: torch.Tensor | np.ndarray | None) -> torch.Tensor | None:
            if t is None:
                return None
            t = torch.from_numpy(t) if isinstance(t, np.ndarray) else t
            return t.pin_memory() if pin else t

        cu = None
        if self.seq_lens is not None:
            cu = np.zeros(len(self.seq_lens) + 1, dtype=np.int32)
            np.cumsum(self.seq_lens, out=cu[1:])
        names = ("input_ids", "attention_mask", "position_ids", "owner", "first", "last", "cu")
        arrays = (self.ids, self.mask, self.position_ids, self.plan.owner, self.plan.first)
        self._staged = dict(zip(names, map(host, (*arrays, self.plan.last, cu)), strict=True))
        self._pinned = pin
        return self

    def inputs(self, device: torch.device) -> dict[str, Any]:
        """The model inputs on ``device`` (non-blocking copies from pinned memory when
        staged pinned) and the plan moved there: ``{"input_ids", "attention_mask",
        "position_ids", "plan", "extra"}`` (``extra``: flash-attention varlen kwargs)."""
        if self._staged is None:
            self.stage()
        nb = self._pinned

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=nb)

        x = {k: move(v) for k, v in self._staged.items()}
        plan = BatchPlan(x.pop("owner"), self.plan.n_rows, x.pop("first"), x.pop("last"))
        cu = x.pop("cu")
        extra: dict[str, Any] = {}
        if cu is not None:
            longest = int(max(self.seq_lens))
            extra = dict(
                cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest
            )
        return {**x, "plan": plan, "extra": extra}


def build_batch(
    rows: Sequence[Sequence[int]],
    pieces: Sequence[Piece],
    lengths: Sequence[int],
    chunk: Sequence[Any],
    pad_id: int,
    bos_id: int | None,
    layout: str,
) -> HostBatch:
    """Arrays of one batch: ``rows`` of piece indices (from :func:`plan_batches`) laid out
    one after the other in each row. ``chunk[i]`` has ``ids``, ``owner`` and ``steps``."""
    packed = layout != "padded"
    T = max(sum(lengths[i] for i in r) for r in rows)
    B = len(rows)
    ids = np.full((B, T), pad_id, dtype=np.int64)
    owner = np.full((B, T), -1, dtype=np.int64)
    gpos = np.full((B, T), -1, dtype=np.int64)
    mask = None if packed else np.zeros((B, T), dtype=np.int64)
    pos = np.zeros((B, T), dtype=np.int64) if packed else None
    rows_trace: list[int] = []
    rows_step: list[int] = []
    n_rows = n_tokens = 0
    for b, row in enumerate(rows):
        col = 0
        for i in row:
            ti, (start, end, own_s, own_e, add_bos) = pieces[i]
            p = chunk[ti]
            seg = p.ids[start:end]
            off = col + int(add_bos)
            if add_bos:
                ids[b, col] = bos_id
            ids[b, off : off + len(seg)] = seg
            if mask is not None:
                mask[b, col : off + len(seg)] = 1
            if pos is not None:
                pos[b, col : off + len(seg)] = np.arange(off + len(seg) - col)
            local = p.owner[start:end].copy()
            g = np.arange(start, end)
            local[(g < own_s) | (g >= own_e)] = -1
            present = np.unique(local[local >= 0])
            remap = np.full(len(p.steps), -1, dtype=np.int64)
            remap[present] = np.arange(n_rows, n_rows + len(present))
            owner[b, off : off + len(seg)] = np.where(local >= 0, remap[np.maximum(local, 0)], -1)
            gpos[b, off : off + len(seg)] = g
            rows_trace += [ti] * len(present)
            rows_step += present.tolist()
            n_rows += len(present)
            n_tokens += len(seg)
            col = off + len(seg)
        if pos is not None and col < T:  # the row's padding: a block of its own
            pos[b, col:] = np.arange(T - col)
    plan = BatchPlan.build(torch.from_numpy(owner), n_rows)
    return HostBatch(
        ids=ids,
        owner=owner,
        gpos=gpos,
        mask=mask,
        position_ids=pos,
        rows_trace=np.asarray(rows_trace, dtype=np.int64),
        rows_step=np.asarray(rows_step, dtype=np.int64),
        plan=plan,
        seq_lens=[lengths[i] for i in rows[0]] if layout == "varlen" else None,
        n_tokens=n_tokens,
    )


def fetch_pooled(sink: dict, pin: bool) -> tuple[dict, Any]:
    """Start copying pooled states to the host; with ``pin`` (CUDA) the copies are
    non-blocking into pinned memory and an event marks their end, so the next batch
    can be queued on the device before this one is read."""
    if not pin:
        return sink, None
    out = {
        h: {k: v.to("cpu", non_blocking=True) for k, v in pooled.items()}
        for h, pooled in sink.items()
    }
    event = torch.cuda.Event()
    event.record()
    return out, event


def accumulate(accs: Sequence[Any], hooks: Sequence[str], hb: HostBatch, fetched, bar) -> None:
    """Add a batch's pooled states (from :func:`fetch_pooled`) to the traces'
    :class:`~mechgraph.hooks.PoolAccumulator` (``accs[i]``: trace ``i`` of the chunk)."""
    sink, event = fetched
    if event is not None:
        event.synchronize()
    first = hb.plan.first.numpy()
    last = hb.plan.last.numpy()
    # trace positions of each row's first/last token (for first/last pools)
    g_first, g_last = hb.gpos.reshape(-1)[first], hb.gpos.reshape(-1)[last]
    rt, rs = hb.rows_trace, hb.rows_step
    for h in hooks:
        pooled = {k: v.cpu().numpy() for k, v in sink[h].items()}
        for ti in np.unique(rt):
            sel = rt == ti
            part = {k: v[sel] for k, v in pooled.items()}
            accs[ti].add(h, part, rs[sel], g_first[sel], g_last[sel], count_done=h != hooks[0])
    if bar is not None:
        bar.update(hb.n_tokens)


_DONE = object()


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` computed ``depth`` ahead in a background thread.

    An exception of the producer is raised here, in the consumer; a consumer that stops
    early (break, exception) stops the producer.

    Examples
    --------
    >>> list(prefetch(x * x for x in range(4)))
    [0, 1, 4, 9]
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for x in items:
                if not put((True, x)):
                    return
        except BaseException as e:  # handed to the consumer
            put((False, e))
            return
        put((False, _DONE))

    th = threading.Thread(target=work, name="mechgraph-prefetch", daemon=True)
    th.start()
    try:
        while True:
            ok, x = q.get()
            if ok:
                yield x
            elif x is _DONE:
                return
            else:
                raise x
    finally:
        stop.set()
        th.join()


class WriteBehind:
    """Run ``fn(*args)`` calls in order in one writer thread, at most ``depth`` queued.

    :meth:`submit` and :meth:`close` raise the first error of the thread (the thread
    stops at it: later calls are dropped). :meth:`close` waits for every call submitted
    before it; use it in a ``finally`` so that queued commits land before the caller looks
    at what was written.

    Examples
    --------
    >>> out = []
    >>> w = WriteBehind(out.append)
    >>> w.submit(1); w.submit(2); w.close()
    >>> out
    [1, 2]
    """

    def __init__(self, fn: Callable[..., Any], depth: int = 2) -> None:
        self.fn = fn
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._th = threading.Thread(target=self._work, name="mechgraph-writer", daemon=True)
        self._th.start()

    def _work(self) -> None:
        while True:
            args = self._q.get()
            if args is _DONE:
                return
            if self._error is None:
                try:
                    self.fn(*args)
                except BaseException as e:
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, *args: Any) -> None:
        self._raise()
        self._q.put(args)

    def close(self, raise_error: bool = True) -> None:
        """Wait for the queued calls; raise the thread's error unless ``raise_error`` is
        False (the caller is already handling another one)."""
        if self._th.is_alive():
            self._q.put(_DONE)
            self._th.join()
        if raise_error:
            self._raise()
