"""Overlapped extraction (``overlap=True``): byte-identical to the sequential path, errors of
the prefetch and writer threads reach the caller, commits stay atomic; the GPU benchmark's
CPU smoke mode."""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_extract import make_traces

import mechgraph as mg
from mechgraph.packing import WriteBehind, prefetch
from mechgraph.store import StoreWriter

mx = importlib.import_module("mechgraph.extract")  # the module (mg.extract is the function)
ROOT = Path(__file__).resolve().parents[1]
POOLS = ("mean", "first", "last", "max")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _same(a, b, layers, pools=POOLS):
    assert a.trace_ids == b.trace_ids
    pd.testing.assert_frame_equal(a.steps, b.steps)
    pd.testing.assert_frame_equal(a.traces, b.traces)
    for layer in layers:
        for pool in pools:
            x, y = a.states(layer, pool), b.states(layer, pool)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), (layer, pool)


@pytest.mark.parametrize("pack", [False, True])
def test_overlap_is_byte_identical_to_sequential(tiny_model, tmp_path, pack):
    traces = make_traces(1, "long", reps=30) + make_traces(11)
    opts = dict(
        model=tiny_model,
        layers=(0, 2),
        pools=POOLS,
        shard_traces=4,
        batch_tokens=300,
        window="sliding",
        pack=pack,
        progress=False,
    )
    seq = mg.extract(traces, tmp_path / "seq", overlap=False, **opts)
    ovl = mg.extract(traces, tmp_path / "ovl", overlap=True, **opts)
    _same(ovl, seq, (0, 2))
    assert len(list((tmp_path / "ovl" / "shards").iterdir())) == 3


def test_writer_error_reaches_the_caller_and_resume_completes(tiny_model, tmp_path, monkeypatch):
    traces = make_traces(6)
    opts = dict(model=tiny_model, layers=(1,), pools=("mean",), shard_traces=2, progress=False)
    real = StoreWriter.write_shard
    calls = []

    def flaky(self, *a, **k):
        calls.append(threading.current_thread().name)
        if len(calls) == 2:
            raise OSError("disk full (test)")
        return real(self, *a, **k)

    monkeypatch.setattr(StoreWriter, "write_shard", flaky)
    with pytest.raises(OSError, match=r"^disk full \(test\)$"):
        mg.extract(traces, tmp_path / "s", **opts)
    assert calls[0] == "mechgraph-writer"
    assert mg.open_store(tmp_path / "s").trace_ids == ["t0", "t1"]  # shard 1 never landed
    assert not list((tmp_path / "s" / "shards").glob(".tmp-*"))
    monkeypatch.setattr(StoreWriter, "write_shard", real)
    resumed = mg.extract(traces, tmp_path / "s", **opts)
    ref = mg.extract(traces, tmp_path / "ref", overlap=False, **opts)
    _same(resumed, ref, (1,), ("mean",))


def test_forward_error_keeps_the_shards_done_before_it(tiny_model, tmp_path, monkeypatch):
    real = mx._run_chunk
    n = []

    def fails_third(chunk, *a):
        n.append(1)
        if len(n) == 3:
            raise RuntimeError("device lost (test)")
        return real(chunk, *a)

    monkeypatch.setattr(mx, "_run_chunk", fails_third)
    with pytest.raises(RuntimeError, match="device lost"):
        mg.extract(
            make_traces(6), tmp_path / "s", model=tiny_model, layers=(1,), shard_traces=2,
            progress=False,
        )  # fmt: skip
    assert mg.open_store(tmp_path / "s").trace_ids == ["t0", "t1", "t2", "t3"]


def test_prefetch_and_write_behind_threads():
    def gen():
        yield 1
        raise ValueError("bad batch (test)")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for x in prefetch(gen()):
            got.append(x)
    assert got == [1]
    endless = prefetch(iter(range(10**9)), depth=2)
    assert next(endless) == 0
    endless.close()  # the producer thread stops
    assert not [t for t in threading.enumerate() if t.name == "mechgraph-prefetch"]

    def fail(x):
        if x == 2:
            raise KeyError(x)

    w = WriteBehind(fail)
    w.submit(1)
    w.submit(2)
    w.submit(3)  # may or may not see the error yet
    with pytest.raises(KeyError):
        w.close()


def test_gpu_benchmark_smoke_mode_runs_on_cpu(tmp_path):
    """``benchmarks/gpu_extract.py --smoke``, in this process (torch already imported)."""
    spec = importlib.util.spec_from_file_location("gpu_extract", ROOT / "benchmarks/gpu_extract.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu.json"
    bench.main(["--smoke", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["smoke"] is True and res["peak_tflops"] > 0
    modes = {r["mode"] for r in res["extract"]}
    assert {"forward_same_batches", "overlap=0 pack=0", "overlap=1 pack=1"} <= modes
    assert all(np.isfinite(r["tokens_per_s"]) for r in res["extract"] + res["forward"])
