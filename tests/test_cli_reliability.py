"""The command line's reliability: --out never clobbers an input, extensions match formats,
user errors are one stderr line with exit 1, probe artifacts are readable and atomic."""

from __future__ import annotations

import doctest
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mechgraph.cli import main, sample_path
from mechgraph.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run_main(monkeypatch, capsys, *args):
    """``mechgraph ARGS`` in-process through the real entry point: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["mechgraph", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    code = e.value.code
    return (0 if code is None else code), out, err


def one_error(code, out, err, *needles):
    assert code == 1, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    assert out == ""


@pytest.fixture
def traces(tmp_path):
    p = tmp_path / "t.jsonl"
    shutil.copy(sample_path(), p)
    return p


# --- 1. --out equal to an input ------------------------------------------------------------


@pytest.mark.parametrize(
    "cmd", [["segment"], ["label"], ["weights"], ["importance", "--method", "suppression"]]
)
def test_out_equal_to_the_input_is_refused_and_the_input_kept(monkeypatch, capsys, traces, cmd):
    before = traces.read_bytes()
    args = [cmd[0], traces, *cmd[1:], "--out", traces]
    one_error(*run_main(monkeypatch, capsys, *args), "is the input")
    # the same file through another spelling and through a symlink
    link = traces.parent / "link.jsonl"
    link.symlink_to(traces)
    odd = traces.parent / "." / traces.name
    for other in (odd, link):
        args = [cmd[0], traces, *cmd[1:], "--out", other]
        one_error(*run_main(monkeypatch, capsys, *args), "is the input")
    assert traces.read_bytes() == before


def test_label_grams_and_probe_paths_are_inputs_too(monkeypatch, capsys, traces, tmp_path):
    grams = tmp_path / "g.jsonl"
    grams.write_text('"but wait"\n')
    r = run_main(monkeypatch, capsys, "label", traces, "-m", "sg", "--grams", grams, "-o", grams)
    one_error(*r, "is the input")
    r = run_main(monkeypatch, capsys, "label", traces, "-m", f"sg:{grams}", "-o", grams)
    one_error(*r, "is the input")
    assert grams.read_text() == '"but wait"\n'


def test_weights_config_sidecar_may_not_clobber_an_input(monkeypatch, capsys, tmp_path):
    src = tmp_path / "w.jsonl.config.json"
    shutil.copy(sample_path(), src)  # traces named like the sidecar of w.jsonl
    r = run_main(monkeypatch, capsys, "weights", src, "-p", "rules", "--out", tmp_path / "w.jsonl")
    one_error(*r, "is the input")
    assert not (tmp_path / "w.jsonl").exists()


def test_extract_into_the_input_is_refused(monkeypatch, capsys, traces):
    one_error(*run_main(monkeypatch, capsys, "extract", traces, "--out", traces), "is the input")


def test_probe_out_may_not_replace_the_store_or_the_labels(monkeypatch, capsys, tmp_path):
    store = tmp_path / "runs" / "store"
    store.mkdir(parents=True)
    (store / "manifest.json").write_text("{}")
    labels = tmp_path / "runs" / "labels.jsonl"
    labels.write_text("")
    one_error(*run_main(monkeypatch, capsys, "probe", store, "--out", store), "is the input")
    r = run_main(monkeypatch, capsys, "probe", store, "--out", tmp_path / "runs")
    one_error(*r, "holds the input", "would be replaced")
    r = run_main(monkeypatch, capsys, "probe", store, "--labels", labels, "--out", tmp_path)
    one_error(*r, "holds the input")
    # an existing folder of the store is part of it
    (store / "states").mkdir()
    r = run_main(monkeypatch, capsys, "probe", store, "--out", store / "states")
    one_error(*r, "inside the input folder")
    assert (store / "manifest.json").read_text() == "{}" and labels.exists()


def test_graph_outputs_may_not_clobber_a_store(monkeypatch, capsys, tmp_path):
    store = tmp_path / "s"
    store.mkdir()
    (store / "steps.parquet").write_text("x")
    r = run_main(monkeypatch, capsys, "graph", store, "--layer", "3", "-o", store / "steps.parquet")
    one_error(*r, "inside the input folder")
    r = run_main(
        monkeypatch, capsys, "graph", store, "--layer", "3", "-o", tmp_path / "m.parquet",
        "--save-nodes", tmp_path,
    )  # fmt: skip
    one_error(*r, "--save-nodes", "holds the input")
    r = run_main(
        monkeypatch, capsys, "graph", store, "--layer", "3", "-o", tmp_path / "m.parquet",
        "--plots", store,
    )  # fmt: skip
    one_error(*r, "--plots", "is the input")
    assert (store / "steps.parquet").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


# --- 2. extensions match formats --------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "out", "accepted"),
    [
        (["weights"], "w.csv", ".parquet, .jsonl, .safetensors"),
        (["weights"], "w", ".parquet, .jsonl, .safetensors"),
        (["segment"], "s.parquet", ".jsonl"),
        (["label"], "l.csv", ".jsonl"),
        (["importance"], "i.csv", ".parquet, .jsonl"),
    ],
)
def test_unknown_extension_is_one_line_listing_the_accepted(
    monkeypatch, capsys, traces, cmd, out, accepted
):
    r = run_main(monkeypatch, capsys, cmd[0], traces, *cmd[1:], "--out", traces.parent / out)
    one_error(*r, "unknown extension", f"accepted: {accepted}")
    assert sorted(p.name for p in traces.parent.iterdir()) == ["t.jsonl"]


def test_weights_format_follows_the_extension(tmp_path):
    from mechgraph.weights.export import read_weights, weights_format, write_weights
    from mechgraph.weights.tokens import TokenWeights

    tw = TokenWeights("a", "ab", [1, 2], [(0, 1), (1, 2)], [True, False], [1.0, 1.0])
    assert weights_format("W.JSONL") == "jsonl"
    with pytest.raises(ConfigError, match=r"unknown extension '\.csv'"):
        write_weights(tmp_path / "w.csv", [tw])
    with pytest.raises(ConfigError, match="format 'jsonl' but the extension says 'parquet'"):
        write_weights(tmp_path / "w.parquet", [tw], format="jsonl")
    assert list(tmp_path.iterdir()) == []
    p = write_weights(tmp_path / "w.jsonl", [tw], format="jsonl")
    assert json.loads(p.read_text().splitlines()[0])["id"] == "a"
    assert read_weights(p)[0].planning_mask.tolist() == [True, False]
    # the command: --format must agree with --out
    src = tmp_path / "t.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "Let me try. 1 + 1 = 2."}) + "\n")
    from mechgraph.weights.cli import run_weights

    with pytest.raises(ConfigError, match="extension says 'parquet'"):
        run_weights(src, tmp_path / "o.parquet", planning="rules", format="safetensors")
    assert not (tmp_path / "o.parquet").exists()


# --- 3. exit codes and streams ----------------------------------------------------------


def test_results_on_stdout_and_nothing_on_stderr(monkeypatch, capsys, traces):
    out_path = traces.with_name("l.jsonl")
    code, out, err = run_main(monkeypatch, capsys, "label", traces, "--out", out_path)
    assert code == 0 and "labelled 6 traces" in out and err == ""


def test_output_paths_checked_up_front(monkeypatch, capsys, traces, tmp_path):
    folder = tmp_path / "d.jsonl"
    folder.mkdir()
    one_error(*run_main(monkeypatch, capsys, "segment", traces, "-o", folder), "is a folder")
    r = run_main(monkeypatch, capsys, "segment", traces, "-o", traces / "x.jsonl")
    one_error(*r, "is not a folder")
    r = run_main(monkeypatch, capsys, "probe", tmp_path / "store", "--out", traces)
    one_error(*r, "is a file; give a folder")
    (tmp_path / "x.txt").write_text("")
    r = run_main(monkeypatch, capsys, "extract", traces, "--out", tmp_path / "x.txt")
    one_error(*r, "is a file; give a folder")


def test_unwritable_parent_is_refused_before_work(monkeypatch, capsys, traces, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if IS_ROOT:  # root writes anywhere: let os.access answer as for a user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: real(p, m) and Path(p) != ro)
    try:
        r = run_main(monkeypatch, capsys, "label", traces, "-o", ro / "sub" / "l.jsonl")
        one_error(*r, "cannot write in", "permission denied")
    finally:
        ro.chmod(0o755)


def test_os_and_import_errors_become_one_line(monkeypatch, capsys, traces, tmp_path):
    import mechgraph.traces as mt

    def boom(*a, **k):
        raise IsADirectoryError(21, "Is a directory", "some/where")

    monkeypatch.setattr(mt, "load_traces", boom)
    r = run_main(monkeypatch, capsys, "segment", traces, "-o", tmp_path / "s.jsonl")
    one_error(*r, "some/where: Is a directory")

    def missing(*a, **k):
        raise ModuleNotFoundError("No module named 'ripser'", name="ripser")

    monkeypatch.setattr(mt, "load_traces", missing)
    r = run_main(monkeypatch, capsys, "segment", traces, "-o", tmp_path / "s.jsonl")
    one_error(*r, "No module named 'ripser'", "pip install 'mechgraph[topology]'")


def test_real_process_exit_codes(tmp_path):
    def proc(*args):
        return subprocess.run(
            [sys.executable, "-m", "mechgraph.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )

    src = tmp_path / "t.jsonl"
    shutil.copy(sample_path(), src)
    p = proc("label", src, "--method", "nope", "--out", tmp_path / "l.jsonl")  # a user error
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("error: ")
    assert "unknown labelling method" in p.stderr
    p = proc("label")  # typer's own usage error
    assert p.returncode == 2 and "Missing argument" in p.stderr


# --- 4. probe artifacts -----------------------------------------------------------------


class TinyStore:
    """What probes.train reads of a store: steps, layers, states, manifest, path."""

    def __init__(self, path, n_traces=6, per=6, d=4):
        rng = np.random.default_rng(0)
        tags = ["plan_generation", "active_computation"]
        label = [tags[(t + k) % 2] for t in range(n_traces) for k in range(per)]
        self.steps = pd.DataFrame(
            {
                "trace_id": [f"t{t}" for t in range(n_traces) for _ in range(per)],
                "label": label,
            }
        )
        self.layers = [0, 1]
        self.path = Path(path)
        self.manifest = {"model_id": "default", "fingerprint": None, "d_model": d}
        plan = np.array([x == tags[0] for x in label], float)
        self._x = {i: rng.normal(size=(len(label), d)) + i * 3 * plan[:, None] for i in (0, 1)}

    def states(self, layer, pool="mean", hook="resid_post"):
        return self._x[layer]


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_probe_artifact_is_readable_and_holds_its_sweep(tmp_path):
    import probes.artifacts as pa
    from probes import load_probe, train_probe

    res = train_probe(TinyStore(tmp_path / "store"), layers="all", n_splits=3, out=tmp_path / "p")
    art = tmp_path / "p"
    assert sorted(p.name for p in art.iterdir()) == [
        "artifact.json",
        "config.json",
        "sweep.csv",
        "sweep.json",
        "weights.safetensors",
    ]
    assert _mode(art) == 0o777 & ~pa._UMASK
    for f in art.iterdir():
        assert _mode(f) == 0o666 & ~pa._UMASK, f.name
    sweep = json.loads((art / "sweep.json").read_text())
    assert sweep["best_layer"] == res.best_layer == 1 and len(sweep["table"]) == 2
    assert pd.read_csv(art / "sweep.csv")["layer"].tolist() == [0, 1]
    assert load_probe(art)[1].layer == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_probe_extra_files_are_in_the_atomic_commit(tmp_path):
    from probes.artifacts import ProbeConfig, load_probe, save_probe
    from probes.estimators import LinearProbe

    X = np.random.default_rng(0).normal(size=(30, 3))
    est = LinearProbe().fit(X, (X[:, 0] > 0).astype(int))
    cfg = ProbeConfig("logistic", est.get_params(), "planning", [0, 1], 0, "resid_post", "mean",
                      "default", None, 3)  # fmt: skip
    art = save_probe(est, cfg, tmp_path / "p", extra={"note.txt": lambda p: p.write_text("v1")})

    def fail(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_probe(est, cfg, art, extra={"note.txt": fail})
    assert (art / "note.txt").read_text() == "v1" and load_probe(art)[1] == cfg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temp folder left
    with pytest.raises(ConfigError, match="plain names"):
        save_probe(est, cfg, art, extra={"../x": fail})


@pytest.mark.parametrize("name", ["mechgraph.cli", "mechgraph.weights.export"])
def test_docstring_examples(name):
    import importlib

    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name}"
