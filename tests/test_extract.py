"""Extraction and the store on a tiny random model: round trip, append, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

import mechgraph as mg
from mechgraph.errors import AlignmentError, ConfigError, ExtractionError, StoreError, TraceError
from mechgraph.traces import Step, Trace

SENT = [
    "Okay, so we need the total.",
    "Let me plan: first multiply, then subtract.",
    "3 times 12 is 36.",
    "Wait, I should double-check that.",
    "Yes, 36 minus 9 is 27.",
]


def make_traces(n, prefix="t", reps=1):
    out = []
    for i in range(n):
        body = " ".join(SENT[(i + k) % len(SENT)] for k in range(2 + i % 4)) * reps
        out.append(
            Trace(
                id=f"{prefix}{i}",
                text=body,
                prompt=f"Problem {i}: compute.\n<think>\n",
                correct=bool(i % 2),
                model="tiny",
                checkpoint=str(i % 3),
            )
        )
    return out


def direct_states(lm, ids, layer):
    with torch.no_grad():
        return lm.hf(torch.tensor(ids)[None], output_hidden_states=True).hidden_states[layer + 1][0]


def test_roundtrip_states_and_tables(tiny_model, tmp_path):
    traces = make_traces(7)
    store = mg.extract(
        traces,
        tmp_path / "s",
        model=tiny_model,
        layers=(0, 1),
        pools=("mean", "first", "last", "max"),
        batch_tokens=64,
        progress=False,
    )
    steps = store.steps
    assert list(steps.trace_id.unique()) == [t.id for t in traces]  # store order = input order
    assert {
        "trace_id",
        "step",
        "char_start",
        "char_end",
        "tok_start",
        "tok_end",
        "text",
        "model",
        "checkpoint",
        "correct",
    } <= set(steps.columns)
    for t in traces:
        rows = steps[steps.trace_id == t.id]
        assert [
            t.text[a:b] for a, b in zip(rows.char_start, rows.char_end, strict=True)
        ] == rows.text.tolist()
    for layer in (0, 1):
        for pool, fn in [
            ("mean", lambda x: x.mean(0)),
            ("first", lambda x: x[0]),
            ("last", lambda x: x[-1]),
            ("max", lambda x: x.max(0).values),
        ]:
            X = store.states(layer, pool)
            assert X.shape == (len(steps), 64) and X.dtype == np.float32
            for i, r in enumerate(steps.itertuples()):
                h = direct_states(tiny_model, store.tokens(r.trace_id), layer)
                np.testing.assert_allclose(X[i], fn(h[r.tok_start : r.tok_end]).numpy(), atol=1e-5)
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["fingerprint"] == tiny_model.fingerprint and m["segmenter"] == "sentences"
    assert m["config"]["pools"] == ["mean", "first", "last", "max"]
    with pytest.raises(ConfigError, match="not in store"):
        store.states(2)
    with pytest.raises(ConfigError, match="pool 'median'"):
        store.states(0, "median")


def test_append_resume_and_refusals(tiny_model, tmp_path):
    out = tmp_path / "s"
    a, b = make_traces(3, "a"), make_traces(2, "b")
    mg.extract(a, out, model=tiny_model, layers=(1,), progress=False)
    s = mg.extract(a + b, out, model=tiny_model, layers=(1,), progress=False)  # a skipped
    assert s.trace_ids == ["a0", "a1", "a2", "b0", "b1"]
    assert s.states(1).shape[0] == len(s.steps)
    with pytest.raises(StoreError, match="layers: store has"):
        mg.extract(b, out, model=tiny_model, layers=(0,), progress=False)
    changed = [Trace(id="a0", text="A different text here.")]
    with pytest.raises(TraceError, match="trace 'a0' is already in store"):
        mg.extract(changed, out, model=tiny_model, layers=(1,), progress=False)


def test_store_of_another_version_is_refused(tiny_model, tmp_path):
    out = tmp_path / "s"
    mg.extract(make_traces(1), out, model=tiny_model, layers=(1,), progress=False)
    m = json.loads((out / "manifest.json").read_text())
    m["schema_version"] = 99
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StoreError, match="schema version 99"):
        mg.open_store(out)
    with pytest.raises(StoreError, match="schema version 99"):
        mg.extract(make_traces(1, "z"), out, model=tiny_model, layers=(1,), progress=False)


def test_bad_options_write_nothing(tiny_model, tmp_path):
    out = tmp_path / "s"
    with pytest.raises(ConfigError, match="layer 9 does not exist"):
        mg.extract(make_traces(1), out, model=tiny_model, layers=(9,), progress=False)
    with pytest.raises(ConfigError, match="unknown hook 'resid'"):
        mg.extract(make_traces(1), out, model=tiny_model, hooks=("resid",), progress=False)
    with pytest.raises(ConfigError, match="unknown pool"):
        mg.extract(make_traces(1), out, model=tiny_model, pools=("median",), progress=False)
    assert not out.exists()


def test_trace_over_context(tiny_model, tmp_path):
    long = make_traces(1, "long", reps=30)  # well over the tiny model's 256 positions
    with pytest.raises(
        ExtractionError, match=r"trace 'long0': \d+ tokens exceed the model's context of 256"
    ):
        mg.extract(
            long + make_traces(2), tmp_path / "s", model=tiny_model, layers=(1,), progress=False
        )
    assert not (tmp_path / "s").exists()


def test_sliding_window_matches_each_windows_forward(tiny_model, tmp_path):
    (t,) = make_traces(1, "long", reps=30)
    store = mg.extract(
        [t],
        tmp_path / "s",
        model=tiny_model,
        layers=(1,),
        pools=("mean", "first", "last"),
        window="sliding",
        window_overlap=64,
        progress=False,
    )
    ids = store.tokens("long0")
    assert len(ids) > 256
    # the same states by hand: window k owns [own_start, end), context from its start
    width, stride = 256, 256 - 64
    states = np.zeros((len(ids), 64), dtype=np.float32)
    start = 0
    while True:
        end = min(start + width, len(ids))
        h = direct_states(tiny_model, ids[start:end], 1).numpy()
        own = start if start == 0 else start + 64
        states[own:end] = h[own - start :]
        if end >= len(ids):
            break
        start += stride
    X, F, L = store.states(1, "mean"), store.states(1, "first"), store.states(1, "last")
    for i, r in enumerate(store.steps.itertuples()):
        np.testing.assert_allclose(X[i], states[r.tok_start : r.tok_end].mean(0), atol=1e-5)
        np.testing.assert_allclose(F[i], states[r.tok_start], atol=1e-5)
        np.testing.assert_allclose(L[i], states[r.tok_end - 1], atol=1e-5)


def test_step_without_tokens_error_or_merge(tiny_model, tmp_path):
    t = Trace(
        id="m",
        text="Thinking hard now. Done here.",
        steps=[
            Step(0, 4, "Thin"),
            Step(4, 8, "king", "x"),
            Step(9, 18, "hard now."),
            Step(19, 29, "Done here."),
        ],
    )
    with pytest.raises(AlignmentError, match=r"trace 'm': step 1 \('king'\) owns no token"):
        mg.extract(
            [t], tmp_path / "a", model=tiny_model, layers=(1,), segmenter="given", progress=False
        )
    s = mg.extract(
        [t],
        tmp_path / "b",
        model=tiny_model,
        layers=(1,),
        segmenter="given",
        on_empty_step="merge",
        progress=False,
    )
    assert s.steps.text.tolist() == ["Thinking", "hard now.", "Done here."]


def test_nan_states_are_refused(tiny_model_dir, tmp_path):
    lm = mg.load_model(tiny_model_dir)
    with torch.no_grad():
        lm.hf.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    with pytest.raises(ExtractionError, match=r"trace 't0': NaN or inf"):
        mg.extract(make_traces(2), tmp_path / "s", model=lm, layers=(1,), progress=False)
    assert not (tmp_path / "s").exists()


WORKER = """
import sys, mechgraph as mg
sys.path.insert(0, {tests!r})
from test_extract import make_traces
mg.extract(make_traces(150), {out!r}, model={model!r}, layers=(0, 2), pools=("mean", "max"),
           shard_traces=1, batch_tokens=64, progress=False)
"""


def test_resume_after_killed_process(tiny_model_dir, tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    code = WORKER.format(
        tests=os.path.dirname(__file__), out=str(killed), model=str(tiny_model_dir)
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while time.time() < deadline:
        shards = killed / "shards"
        if (
            shards.is_dir()
            and len([p for p in shards.iterdir() if not p.name.startswith(".")]) >= 5
        ):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(mg.open_store(killed))
    assert 5 <= n_before < 150, "the worker finished before it could be killed"
    lm = mg.load_model(tiny_model_dir)
    opts = dict(
        model=lm,
        layers=(0, 2),
        pools=("mean", "max"),
        shard_traces=1,
        batch_tokens=64,
        progress=False,
    )
    resumed = mg.extract(make_traces(150), killed, **opts)
    ref = mg.extract(make_traces(150), clean, **opts)
    assert resumed.trace_ids == ref.trace_ids == [f"t{i}" for i in range(150)]
    pd.testing.assert_frame_equal(resumed.steps, ref.steps)
    for layer in (0, 2):
        for pool in ("mean", "max"):
            np.testing.assert_array_equal(resumed.states(layer, pool), ref.states(layer, pool))
    assert not list((killed / "shards").glob(".tmp-*"))
