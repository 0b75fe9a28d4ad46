"""The Ray engine of extract on a local Ray instance (2 CPUs, 2 actors): same store as
the local engine, resume across engines and after a killed driver, a killed actor retried.

One Ray instance serves the module (started once: ~5 s on an idle machine, up to ~45 s on
a loaded one); a driver subprocess joins it by address.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
from test_extract import make_traces

import mechgraph as mg
from mechgraph.errors import AlignmentError, ConfigError, StoreError
from mechgraph.traces import Step, Trace

ray = pytest.importorskip("ray")
torch.set_num_threads(1)

OPTS = dict(layers=(0, 2), pools=("mean", "max"), shard_traces=2, batch_tokens=64, progress=False)


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance for the module (2 CPUs); its GCS address."""
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    from mechgraph.engines.ray import start_local_ray

    start_local_ray(ray, num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def traces_with_given(n, prefix="t"):
    """Traces where every third one carries its own steps (the auto segmenter's mix)."""
    out = make_traces(n, prefix)
    for t in out[::3]:
        cut = t.text.index(".") + 1
        t.steps = [Step(0, cut, t.text[:cut], "plan"), Step(cut, len(t.text), t.text[cut:])]
    return out


def assert_same_store(a, b, resumed=False):
    """Same traces, steps, shards and states (float32 rounding); the same manifest but for
    the segmentation counts of the first run, which a resumed store keeps."""
    assert a.trace_ids == b.trace_ids
    pd.testing.assert_frame_equal(a.steps, b.steps)
    ma, mb = dict(a.manifest), dict(b.manifest)
    if resumed:
        ma.pop("segmentation"), mb.pop("segmentation")
    assert ma == mb
    for layer in a.layers:
        for pool in a.pools:
            x, y = a.states(layer, pool), b.states(layer, pool)
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    if not resumed:  # same shards, same rows in each
        for name in ("traces", "steps"):
            assert [len(x) for x in _shard_rows(a, name)] == [len(x) for x in _shard_rows(b, name)]


def _shard_rows(store, name):
    return [
        pd.read_parquet(p / f"{name}.parquet") for p in sorted((store.path / "shards").iterdir())
    ]


def test_ray_store_equals_local_store(ray_address, tiny_model, tiny_model_dir, tmp_path):
    traces = traces_with_given(9)
    local = mg.extract(traces, tmp_path / "local", model=tiny_model, **OPTS)
    remote = mg.extract(traces, tmp_path / "ray", model=str(tiny_model_dir), engine="ray", **OPTS)
    assert_same_store(local, remote)
    assert local.manifest["segmenter"] == "auto"
    assert remote.extract_config.engine == "local"  # where states ran is not recorded
    info = [json.loads((s.path / "artifact.json").read_text())["config"] for s in (local, remote)]
    assert info[0] == info[1]


def test_default_model_matches_local(ray_address, default_model, tmp_path):
    traces = make_traces(3)
    opts = dict(shard_traces=2, progress=False)  # the default layer, int(0.9 * n_layers)
    local = mg.extract(traces, tmp_path / "local", model=default_model, **opts)
    remote = mg.extract(traces, tmp_path / "ray", model="default", engine="ray", actors=1, **opts)
    assert_same_store(local, remote)
    assert remote.manifest["model_id"] == default_model.model_id


def test_engines_resume_each_other(ray_address, tiny_model, tiny_model_dir, tmp_path):
    a, b, c = make_traces(4, "a"), make_traces(3, "b"), make_traces(3, "c")
    ref = mg.extract(a + b + c, tmp_path / "ref", model=tiny_model, **OPTS)
    out = tmp_path / "s"
    mg.extract(a, out, model=tiny_model, **OPTS)  # begun locally
    # a LoadedModel stands for its folder: the actors reload it and check its fingerprint
    mg.extract(a + b, out, model=tiny_model, engine="ray", actors=2, **OPTS)
    s = mg.extract(a + b + c, out, model=tiny_model, **OPTS)  # and locally again
    assert_same_store(ref, s, resumed=True)
    with pytest.raises(StoreError, match="layers: store has"):  # a mismatch, refused
        bad = {**OPTS, "layers": (1,)}
        mg.extract(c, out, model=str(tiny_model_dir), engine="ray", actors=1, **bad)
    assert len(mg.open_store(out)) == 10


DRIVER = """
import sys, torch, mechgraph as mg
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_extract import make_traces
mg.extract(make_traces(40), {out!r}, model={model!r}, engine="ray", address={address!r},
           layers=(0, 2), pools=("mean", "max"), shard_traces=1, batch_tokens=64,
           progress=False)
"""


def _n_shards(path):
    shards = path / "shards"
    return (
        len([p for p in shards.iterdir() if not p.name.startswith(".")]) if shards.is_dir() else 0
    )


def test_resume_after_killed_driver(ray_address, tiny_model, tiny_model_dir, tmp_path):
    killed = tmp_path / "killed"
    code = DRIVER.format(
        tests=os.path.dirname(__file__),
        out=str(killed),
        model=str(tiny_model_dir),
        address=ray_address,
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and _n_shards(killed) < 1 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(mg.open_store(killed))
    assert 1 <= n_before < 40, "the driver finished before it could be killed"
    opts = {**OPTS, "shard_traces": 1}
    resumed = mg.extract(
        make_traces(40), killed, model=str(tiny_model_dir), engine="ray", actors=2, **opts
    )
    ref = mg.extract(make_traces(40), tmp_path / "ref", model=tiny_model, **opts)
    assert resumed.trace_ids == [f"t{i}" for i in range(40)]  # none lost, none twice
    assert_same_store(ref, resumed, resumed=True)
    assert not list((killed / "shards").glob(".tmp-*"))


def test_killed_actor_is_retried(ray_address, tiny_model, tiny_model_dir, tmp_path):
    out = tmp_path / "s"
    killed: list[int] = []

    def kill_one_actor():  # once the first shard is in, kill an actor mid-run
        deadline = time.time() + 240
        while time.time() < deadline and _n_shards(out) < 1:
            time.sleep(0.005)
        for a in ray.util.list_named_actors(all_namespaces=True):
            if a["name"].startswith("mechgraph-extract-"):
                ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]), no_restart=False)
                killed.append(_n_shards(out))
                return

    watcher = threading.Thread(target=kill_one_actor, daemon=True)
    watcher.start()
    opts = {**OPTS, "shard_traces": 1}
    s = mg.extract(make_traces(40), out, model=str(tiny_model_dir), engine="ray", **opts)
    watcher.join(timeout=10)
    assert killed and killed[0] < 40, "no actor was killed mid-run"
    ref = mg.extract(make_traces(40), tmp_path / "ref", model=tiny_model, **opts)
    assert s.trace_ids == [f"t{i}" for i in range(40)]
    assert_same_store(ref, s)


def test_bad_input_fails_before_work(ray_address, tiny_model_dir, tmp_path):
    out = tmp_path / "s"
    model = str(tiny_model_dir)
    with pytest.raises(ConfigError, match=r"actors: options of engine='ray'"):
        mg.ExtractConfig(actors=2)
    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        mg.ExtractConfig(engine="spark")
    with pytest.raises(ConfigError, match=r"--address '127.0.0.1:9': no Ray cluster answers"):
        mg.extract(make_traces(2), out, model=model, engine="ray", address="127.0.0.1:9")
    with pytest.raises(ConfigError, match="do not fit the Ray cluster"):
        mg.extract(make_traces(2), out, model=model, engine="ray", actors=5, progress=False)
    text = "Thinking hard now."
    bad = [
        Trace(id="ok", text="Fine here."),
        Trace(
            id="e1",
            text=text,
            steps=[Step(0, 4, "Thin"), Step(4, 8, "king"), Step(9, 18, "hard now.")],
        ),
    ]
    with pytest.raises(AlignmentError) as e:  # raised in a prepare task, reported as itself
        mg.extract(bad, out, model=model, engine="ray", progress=False)
    assert "'e1'" in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_cli_engine_options(ray_address, tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from mechgraph.cli import app

    src = tmp_path / "t.jsonl"
    mg.io.write_jsonl_atomic(src, [{"id": t.id, "text": t.text} for t in make_traces(3)])
    run = CliRunner().invoke
    args = ["extract", str(src), "--out", str(tmp_path / "s"), "--model", str(tiny_model_dir)]
    r = run(
        app,
        [
            *args,
            "--engine",
            "ray",
            "--address",
            ray_address,
            "--actors",
            "1",
            "--gpus-per-actor",
            "0",
            "--layers",
            "1",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "traces     3" in r.output
    r = run(app, [*args, "--actors", "2", "--no-progress"])
    assert isinstance(r.exception, ConfigError)  # main() prints it as one error line
    assert "actors: options of engine='ray'" in str(r.exception)
