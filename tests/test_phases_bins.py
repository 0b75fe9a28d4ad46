"""Windowed checkpoints (``bin_steps``): per-step recordings become checkpoints with intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mechgraph.errors import ConfigError
from mechgraph.phases import analyze_phases, phase_table
from mechgraph.phases.table import PhaseConfig, bin_traces
from mechgraph.traces import Trace


def recorded_run(n_steps=40, per_step=4):
    """What PhaseRecorder writes: ``checkpoint`` = global step, a few samples a step."""
    out = []
    for s in range(1, n_steps + 1):
        for i in range(per_step):
            out.append(
                Trace(
                    id=f"{s}-{i}",
                    text="Let me try again. So 3 * 4 = 12." if s > 20 else "So 3 * 4 = 12.",
                    prompt=f"user: problem {(s * per_step + i) % 7}\nassistant: ",
                    checkpoint=str(s),
                    correct=bool((s + i) % 3 == 0),
                )
            )
    return out


def write_log(path, n_steps=40):
    hist = [
        {"step": s, "phases/entropy_exec": 1.0 - 0.01 * s + 0.001 * (s % 3), "loss": 0.1}
        for s in range(1, n_steps + 1)
    ]
    path.write_text(json.dumps({"log_history": hist}))
    return hist


def test_bin_traces_windows_and_recent():
    run = recorded_run(n_steps=20, per_step=1)
    binned = bin_traces(run, 10)
    assert [t.checkpoint for t in binned] == ["10"] * 10 + ["20"] * 10
    assert binned[3].meta["step"] == 4.0 and binned[3].id == run[3].id
    recent = bin_traces(run, 10, recent=3)
    assert [t.id for t in recent] == ["8-0", "9-0", "10-0", "18-0", "19-0", "20-0"]
    with pytest.raises(ConfigError, match="not a step number"):
        bin_traces([Trace("a", "x", checkpoint="final")], 10)


def test_config_checks():
    with pytest.raises(ConfigError, match="bin_recent needs bin_steps"):
        PhaseConfig(bin_recent=2)
    with pytest.raises(ConfigError, match=r"bin_recent must be in 1\.\.bin_steps=5"):
        PhaseConfig(bin_steps=5, bin_recent=6)
    with pytest.raises(ConfigError, match="bin_steps must be >= 1"):
        PhaseConfig(bin_steps=0)


def test_binned_table_and_log_intervals(smol, tmp_path):
    run = recorded_run()
    hist = write_log(tmp_path / "trainer_state.json")
    res = phase_table(
        run,
        tokenizer=smol,
        n_boot=100,
        workers=1,
        bin_steps=10,
        logs=str(tmp_path / "trainer_state.json"),
    )
    t = res.table
    assert t["checkpoint"].tolist() == ["10", "20", "30", "40"]
    assert t["n_traces"].tolist() == [40, 40, 40, 40]
    # accuracy is the window's mean over all its samples
    acc = [
        np.mean([(s + i) % 3 == 0 for s in range(w - 9, w + 1) for i in range(4)])
        for w in (10, 20, 30, 40)
    ]
    np.testing.assert_allclose(t["accuracy"], acc)
    # log columns: the window's mean of the logged steps, with a bootstrap over those steps
    col = "log/phases/entropy_exec"
    want = [
        np.mean([h[col[4:]] for h in hist if w - 10 < h["step"] <= w]) for w in (10, 20, 30, 40)
    ]
    np.testing.assert_allclose(t[col], want)
    assert res.replicates[col].shape == (100, 4)
    assert np.all(t[f"{col}_lo"] <= t[col] + 1e-12) and np.all(t[col] <= t[f"{col}_hi"] + 1e-12)
    assert np.all(t[f"{col}_hi"] - t[f"{col}_lo"] > 0)
    assert np.all(t["log/loss_hi"] - t["log/loss_lo"] == 0)  # a constant has no spread
    # the planning share rises after step 20
    assert t["planning_share"].iloc[2] > t["planning_share"].iloc[1]


def test_recent_keeps_last_steps_of_samples_and_logs(smol, tmp_path):
    hist = write_log(tmp_path / "log.json")
    res = phase_table(
        recorded_run(), tokenizer=smol, n_boot=50, workers=1, bin_steps=10, bin_recent=2,
        logs=str(tmp_path / "log.json"),
    )  # fmt: skip
    t = res.table
    assert t["n_traces"].tolist() == [8, 8, 8, 8]
    col = "log/phases/entropy_exec"
    want = [np.mean([h[col[4:]] for h in hist if w - 2 < h["step"] <= w]) for w in (10, 20, 30, 40)]
    np.testing.assert_allclose(t[col], want)


def test_two_phase_test_takes_the_recorded_execution_entropy(smol, tmp_path):
    write_log(tmp_path / "log.json")
    rep = analyze_phases(
        recorded_run(), PhaseConfig(n_boot=50, workers=1, bin_steps=10, logs=str(tmp_path / "log.json")),
        tokenizer=smol,
    )  # fmt: skip
    assert rep.two_phase["exec_metric"] == "log/phases/entropy_exec"
    # interval columns of the log metrics are not metrics of their own
    assert "log/phases/entropy_exec" in rep.change_points
    assert not [m for m in rep.change_points if m.endswith(("_lo", "_hi"))]
    assert rep.two_phase["verdict"] in ("yes", "no", "undetermined")
