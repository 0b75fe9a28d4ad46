"""Store reliability: one writer at a time, permissions, auto segmenter, up-front OS errors."""

from __future__ import annotations

import importlib
import json
import os
import signal
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import mechgraph as mg
from mechgraph import io as mio
from mechgraph.errors import ConfigError, StoreError
from mechgraph.store import LOCK, StoreLock, StoreWriter, state_key
from mechgraph.traces import Step, Trace

mx = importlib.import_module("mechgraph.extract")  # the module (mg.extract is the function)

torch.set_num_threads(1)

TEXTS = [
    "First we add the numbers. Then we check it.",
    "Let me think. The answer is 4. Done.",
    "Okay so. We multiply. It is 12.",
]


def traces(n=3, prefix="t"):
    return [Trace(id=f"{prefix}{i}", text=TEXTS[i % 3], prompt="Q: go.\n") for i in range(n)]


def no_forward(*a, **k):
    raise AssertionError("a forward pass ran")


def no_load(*a, **k):
    raise AssertionError("weights were loaded")


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


FAKE = {"model_id": "fake", "layers": [0], "hooks": ["blocks.0.hook_resid_post"], "pools": ["mean"]}

HOLDER = """
import sys, time
from mechgraph.store import StoreLock
lock = StoreLock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A second process holding the writer lock of tmp_path/'s'; yields (proc, path)."""
    path = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc, path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# ------------------------------------------------------------------ 1. one writer at a time
def test_second_writer_is_refused_naming_the_holder(holder, tiny_model, monkeypatch):
    proc, path = holder
    with pytest.raises(StoreError) as e:
        StoreWriter(path, FAKE)
    msg = one_line(e)
    assert str(path) in msg and f"pid {proc.pid} on " in msg and "since 20" in msg
    monkeypatch.setattr(mx, "_run_chunk", no_forward)
    monkeypatch.setattr(mx, "load_model", no_load)
    with pytest.raises(StoreError, match=f"pid {proc.pid}"):  # by name: refused before load
        mg.extract(traces(), path, model="some/model", progress=False)
    with pytest.raises(StoreError, match=f"pid {proc.pid}"):
        mg.extract(traces(), path, model=tiny_model, progress=False)
    assert path.is_dir() and (path / LOCK).is_file()  # the holder's folder is left alone
    assert not (path / "manifest.json").exists()


def test_killed_holders_lock_does_not_block(holder):
    proc, path = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with StoreWriter(path, FAKE) as w:  # the OS dropped the flock with the process
        info = json.loads((path / LOCK).read_text())
        assert info["pid"] == os.getpid() and {"host", "started"} <= set(info)
        with pytest.raises(StoreError, match=f"pid {os.getpid()}"):  # same process, 2nd writer
            StoreWriter(path, FAKE)
        assert w.n_traces() == 0
    StoreWriter(path, FAKE).close()  # released on close
    # released when the writer fails in its constructor (incompatible manifest)
    with pytest.raises(StoreError, match="cannot append"):
        StoreWriter(path, {**FAKE, "layers": [1]})
    with StoreLock(path):
        pass


def test_concurrent_extracts_leave_no_duplicates(tiny_model_dir, tmp_path):
    out = tmp_path / "s"
    code = (
        "import sys, torch, mechgraph as mg\n"
        "torch.set_num_threads(1)\n"
        "from mechgraph.traces import Trace\n"
        "ts = [Trace(id=f't{i}', text='One step. Two steps.') for i in range(40)]\n"
        "try:\n"
        f"    mg.extract(ts, {str(out)!r}, model={str(tiny_model_dir)!r}, layers=(0,),\n"
        "               shard_traces=1, progress=False)\n"
        "except mg.errors.StoreError as e:\n"
        "    print('refused', e); sys.exit(3)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    rcs = [p.wait(timeout=300) for p in procs]
    assert 0 in rcs and set(rcs) <= {0, 3}
    s = mg.open_store(out)
    assert s.trace_ids == [f"t{i}" for i in range(40)]  # each trace once


# ------------------------------------------------------------------ 2. permissions
def _modes(root):
    dirs, files = {}, {}
    for base, ds, fs in os.walk(root):
        for d in ds:
            dirs[os.path.join(base, d)] = stat.S_IMODE(os.stat(os.path.join(base, d)).st_mode)
        for f in fs:
            files[os.path.join(base, f)] = stat.S_IMODE(os.stat(os.path.join(base, f)).st_mode)
    dirs[str(root)] = stat.S_IMODE(os.stat(root).st_mode)
    return dirs, files


@pytest.mark.parametrize(
    ("umask", "dmode", "fmode"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)]
)
def test_store_gets_normal_permissions(tiny_model, tmp_path, monkeypatch, umask, dmode, fmode):
    old = os.umask(umask)
    monkeypatch.setattr(mio, "_UMASK", umask)
    try:
        out = tmp_path / "s"
        mg.extract(traces(), out, model=tiny_model, layers=(0,), shard_traces=2, progress=False)
    finally:
        os.umask(old)
    dirs, files = _modes(out)
    assert len(dirs) == 4 and len(files) == 3 + 2 * 3  # manifest, lock, record; 2 shards
    assert set(dirs.values()) == {dmode}, dirs
    assert set(files.values()) == {fmode}, files


# ------------------------------------------------------------------ 3. --segmenter auto
def test_auto_keeps_given_steps_and_segments_the_rest(tiny_model, tmp_path):
    text = "Check the sum. It is 4."
    given = Trace(
        id="g", text=text, steps=[Step(0, 14, "Check the sum.", "plan"), Step(15, 23, "It is 4.")]
    )
    bare = Trace(id="b", text="First we add the two numbers. Then we are done with it.")
    s = mg.extract([given, bare], tmp_path / "s", model=tiny_model, layers=(0,), progress=False)
    steps = s.steps
    g, b = steps[steps.trace_id == "g"], steps[steps.trace_id == "b"]
    assert g.text.tolist() == ["Check the sum.", "It is 4."]
    assert g.label.tolist()[0] == "plan" and pd.isna(g.label.tolist()[1])
    assert b.text.tolist() == ["First we add the two numbers.", "Then we are done with it."]
    assert bare.steps is None  # the caller's traces are not modified
    m = s.manifest
    assert m["segmenter"] == "auto"
    assert m["segmentation"] == {
        "method": "auto",
        "given": 1,
        "segmented": 1,
        "fallback": "sentences",
    }
    # resume with the same input is compatible; every trace given -> "given"
    again = mg.extract([given, bare], tmp_path / "s", model=tiny_model, layers=(0,), progress=False)
    assert len(again) == 2
    only = mg.extract([given], tmp_path / "g", model=tiny_model, layers=(0,), progress=False)
    assert only.manifest["segmenter"] == "given"
    assert only.manifest["segmentation"]["given"] == 1


# ------------------------------------------------------------------ 4. OS errors up front
def test_output_is_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(mx, "load_model", no_load)
    f = tmp_path / "store"
    f.write_text("x")
    with pytest.raises(StoreError) as e:
        mg.extract(traces(), f, model="m", progress=False)
    assert f"{f}: exists and is not a folder" in one_line(e)
    with pytest.raises(StoreError, match="is a file"):
        mg.extract(traces(), f / "sub", model="m", progress=False)
    assert f.read_text() == "x"


def test_read_only_store(tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "s"
    mg.extract(traces(1), out, model=tiny_model, layers=(0,), progress=False)
    os.chmod(out / "shards", 0o555)
    os.chmod(out, 0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as root: chmod does not make a folder read-only")
        monkeypatch.setattr(mx, "load_model", no_load)
        with pytest.raises(StoreError) as e:
            mg.extract(traces(2, "n"), out, model="m", progress=False)
        assert "not writable" in one_line(e) and str(out) in str(e.value)
        parent = tmp_path / "ro"
        parent.mkdir(mode=0o555)
        with pytest.raises(StoreError, match="not writable"):
            mg.extract(traces(), parent / "new", model="m", progress=False)
    finally:
        os.chmod(out, 0o755)
        os.chmod(out / "shards", 0o755)
    assert len(mg.open_store(out)) == 1


def test_missing_model_or_tokenizer_path(tmp_path):
    nope = tmp_path / "no-such-model"
    for fn, what in ((mg.load_model, "model"), (mg.load_tokenizer, "tokenizer")):
        with pytest.raises(ConfigError) as e:
            fn(nope)
        assert f"{what} {str(nope)!r}: no such folder" in one_line(e)
    with pytest.raises(ConfigError, match="not a hub id in the local HF cache"):
        mg.load_model("nobody-xyz/no-such-model-123")
    with pytest.raises(ConfigError, match="no such folder"):
        mg.extract(traces(), tmp_path / "s", model=str(nope), progress=False)
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(tiny_model_dir, tmp_path, monkeypatch):
    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    for dev in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError) as e:
            mg.load_model(tiny_model_dir, device=dev)
        assert f"device {dev!r}: CUDA is not available" in one_line(e)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        mg.extract(traces(), tmp_path / "s", model=str(tiny_model_dir), device="cuda")
    with pytest.raises(ConfigError, match="device 'gpu"):
        mg.load_model(tiny_model_dir, device="gpu")
    assert not (tmp_path / "s").exists()


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_corrupt_shard_is_a_store_error_naming_it(tiny_model, tmp_path):
    out = tmp_path / "s"
    opts = dict(model=tiny_model, layers=(0,), shard_traces=1, progress=False)
    mg.extract(traces(), out, **opts)
    bad = out / "shards" / "000001"
    for name, read in [
        ("steps.parquet", lambda s: s.steps),
        ("states.safetensors", lambda s: s.states(0)),
        ("traces.parquet", lambda s: len(s)),
        ("traces.parquet", lambda s: s.tokens("t0")),
    ]:
        orig = (bad / name).read_bytes()
        _truncate(bad / name)
        with pytest.raises(StoreError) as e:
            read(mg.open_store(out))
        msg = one_line(e)
        assert msg.startswith(f"{bad / name}: corrupt or truncated shard file"), msg
        if name == "traces.parquet":  # resume reads every shard's trace table
            with pytest.raises(StoreError, match="corrupt or truncated"):
                mg.extract(traces(), out, **opts)
        (bad / name).write_bytes(orig)
    (bad / "states.safetensors").unlink()
    with pytest.raises(StoreError) as e:
        mg.open_store(out)
    assert f"{bad / 'states.safetensors'}: missing shard file" in one_line(e)


def test_writer_shard_roundtrip_with_lock(tmp_path):
    """The writer used directly (no model): commit, reopen, states read back."""
    path = tmp_path / "s"
    with StoreWriter(path, {**FAKE, "d_model": 2, "n_layers": 1}) as w:
        tr = pd.DataFrame({"trace_id": ["a"], "text": ["x"], "text_sha": ["h"], "n_tokens": [1]})
        st = pd.DataFrame({"trace_id": ["a"], "step": [0]})
        x = np.ones((1, 2), dtype=np.float32)
        w.write_shard(tr, st, {state_key("blocks.0.hook_resid_post", "mean"): x})
    with pytest.raises(StoreError, match="closed"):
        w.write_shard(tr, st, {})
    np.testing.assert_array_equal(mg.open_store(path).states(0), x)


def test_not_writable_store_as_seen_by_access(tiny_model, tmp_path, monkeypatch):
    """The read-only check without chmod (which root ignores): os.access says no."""
    import mechgraph.store as ms

    out = tmp_path / "s"
    mg.extract(traces(1), out, model=tiny_model, layers=(0,), progress=False)
    real = os.access
    monkeypatch.setattr(ms.os, "access", lambda p, m: False if str(p) == str(out) else real(p, m))
    monkeypatch.setattr(mx, "load_model", no_load)
    with pytest.raises(StoreError) as e:
        mg.extract(traces(2, "n"), out, model="m", progress=False)
    assert one_line(e) == f"{out}: folder is not writable; cannot write the store {out}"
