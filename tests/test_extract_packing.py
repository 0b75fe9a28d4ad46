"""Packing several traces into one row (``pack=True``): parity with padded runs, refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_extract import make_traces

import mechgraph as mg
from mechgraph import hooks as mh
from mechgraph.cli import sample_path
from mechgraph.errors import ConfigError
from mechgraph.packing import build_batch, padding_waste, plan_batches

POOLS = ("mean", "first", "last", "max")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _states(store, layers, pools=POOLS):
    return {(la, p): store.states(la, p) for la in layers for p in pools}


def _assert_close(a, b, layers, pools=POOLS, tol=1e-5):
    pd.testing.assert_frame_equal(a.steps, b.steps)
    assert a.trace_ids == b.trace_ids
    for key, x in _states(a, layers, pools).items():
        np.testing.assert_allclose(x, b.states(*key), rtol=tol, atol=tol, err_msg=str(key))


@pytest.mark.parametrize("layout", ["rows", "varlen"])
def test_plan_covers_every_piece_once_within_budget(layout):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=200).tolist()
    batches = plan_batches(lengths, 1024, 6, layout)
    seen = sorted(i for rows in batches for r in rows for i in r)
    assert seen == list(range(len(lengths)))
    for rows in batches:
        fills = [sum(lengths[i] for i in r) for r in rows]
        if layout == "varlen":
            assert len(rows) == 1 and fills[0] <= 1024
        else:
            width = max(lengths[i] for r in rows for i in r)
            assert len(rows) <= 6 and max(fills) == width and len(rows) * width <= 1024
    padded = padding_waste(lengths, 1024, 6)
    packed = padding_waste(lengths, 1024, 6, layout)
    assert packed["real_tokens"] == padded["real_tokens"] == sum(lengths)
    assert packed["padded_tokens"] < padded["padded_tokens"]


def test_packed_batch_layout():
    class P:  # a prepared trace: ids, owner (step of each token), steps
        def __init__(self, n, steps):
            self.ids = np.arange(100, 100 + n)
            self.owner = np.repeat(np.arange(len(steps)), steps)
            self.steps = steps

    chunk = [P(5, [2, 3]), P(3, [3])]
    pieces = [(0, (0, 5, 0, 5, False)), (1, (0, 3, 0, 3, False))]
    hb = build_batch([[0, 1]], pieces, [5, 3], chunk, 0, 1, "rows")
    assert hb.mask is None and hb.ids.tolist() == [[100, 101, 102, 103, 104, 100, 101, 102]]
    assert hb.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    assert hb.owner.tolist() == [[0, 0, 1, 1, 1, 2, 2, 2]]
    assert hb.gpos.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    assert hb.rows_trace.tolist() == [0, 0, 1] and hb.rows_step.tolist() == [0, 1, 0]
    flat = build_batch([[0, 1]], pieces, [5, 3], chunk, 0, 1, "varlen")
    x = flat.inputs(torch.device("cpu"))
    assert x["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    assert x["extra"]["cu_seq_lens_q"].tolist() == [0, 5, 8] and x["extra"]["max_length_q"] == 5


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_states_equal_padded(tiny_model_dir, tmp_path, attn):
    lm = mg.load_model(tiny_model_dir, attn_implementation=attn)
    traces = make_traces(2, "L", reps=7) + make_traces(9)  # 29 to 221 tokens
    opts = dict(model=lm, layers=(0, 2), pools=POOLS, batch_tokens=300, progress=False)
    padded = mg.extract(traces, tmp_path / "a", **opts)
    packed = mg.extract(traces, tmp_path / "b", pack=True, **opts)
    lengths = [len(padded.tokens(t.id)) for t in traces]
    assert any(len(r) > 1 for rows in plan_batches(lengths, 300, 64, "rows") for r in rows)
    _assert_close(packed, padded, (0, 2))
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["config"]["pack"] is True


def test_packed_sliding_windows_equal_padded(tiny_model, tmp_path):
    traces = make_traces(1, "long", reps=30) + make_traces(5)
    opts = dict(
        model=tiny_model,
        layers=(1,),
        pools=POOLS,
        window="sliding",
        window_overlap=64,
        batch_tokens=512,
        progress=False,
    )
    padded = mg.extract(traces, tmp_path / "a", **opts)
    packed = mg.extract(traces, tmp_path / "b", pack=True, **opts)
    assert len(padded.tokens("long0")) > 256
    _assert_close(packed, padded, (1,))


def test_pack_is_not_store_identity(tiny_model, tmp_path):
    """A store written padded is resumed / appended packed (and back): allowed, the
    manifest keeps the first run's config, states agree to float rounding."""
    a, b = make_traces(4, "a"), make_traces(4, "b")
    opts = dict(model=tiny_model, layers=(1,), pools=("mean", "last"), progress=False)
    mg.extract(a, tmp_path / "s", **opts)
    s = mg.extract(a + b, tmp_path / "s", pack=True, **opts)
    ref = mg.extract(a + b, tmp_path / "ref", **opts)
    assert s.trace_ids == ref.trace_ids
    assert s.config["pack"] is False
    _assert_close(s, ref, (1,), ("mean", "last"))


def test_unsupported_pack_is_refused_before_writing(tiny_model, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="pack=True needs backend='native'"):
        mg.extract(make_traces(2), tmp_path / "a", model=tiny_model, backend="bridge", pack=True)
    assert not (tmp_path / "a").exists()
    monkeypatch.setattr(mh, "_ROWS_ATTENTION", ())
    with pytest.raises(ConfigError, match=r"pack=True: attention 'sdpa' cannot keep") as e:
        mg.extract(make_traces(2), tmp_path / "b", model=tiny_model, pack=True, progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "b").exists()


@pytest.mark.model
def test_packed_equals_padded_on_the_default_model(default_model, tmp_path):
    traces = mg.load_traces(sample_path())[:3]
    opts = dict(model=default_model, layers=(7, 27), pools=("mean", "last"), batch_tokens=4096)
    padded = mg.extract(traces, tmp_path / "a", progress=False, **opts)
    packed = mg.extract(traces, tmp_path / "b", progress=False, pack=True, **opts)
    _assert_close(packed, padded, (7, 27), ("mean", "last"), tol=1e-4)
