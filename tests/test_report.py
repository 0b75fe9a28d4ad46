"""`mechgraph report`: one self-contained HTML page of a run folder, from its artifacts only.

A run folder is built once per session (the tiny random model on the bundled sample, every
stage; ``run_pipeline`` writes ``report.html`` at its end); the tests read its report, then
copies of the folder with artifacts removed or corrupted.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from mechgraph.errors import ArtifactError, ConfigError

SECTIONS = ("summary", "trace-viewer", "matrices", "graph", "probe-sweep", "phases")


def build_sample_run(base: Path, model_dir: Path) -> Path:
    """The tiny model's run folder on the bundled sample (built once under ``base``)."""
    import torch

    from mechgraph.pipeline import RunConfig, run_pipeline

    run = base / "report-sample-run"
    if (run / "report.html").is_file() and (run / "run.json").is_file():
        return run
    torch.set_num_threads(1)
    cfg = RunConfig.from_dict(
        {
            "model": str(model_dir),
            "layers": [0, 2],
            "extract": {"window": "sliding"},
            "graph": {"k": 4, "n_null": 4},
            "importance": {"max_tokens": 240},
            "weights": {"tokenizer": str(model_dir)},
        }
    )
    run_pipeline(cfg, run, echo=lambda s: None)
    return run


@pytest.fixture(scope="session")
def sample_run(tiny_model_dir, tmp_path_factory) -> Path:
    return build_sample_run(tmp_path_factory.getbasetemp(), tiny_model_dir)


def _data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="mg-data">(.*?)</script>', html, re.S)
    assert m, "no data script"
    return json.loads(m.group(1))


def _section(html: str, ident: str) -> str:
    m = re.search(rf'<section id="{ident}">(.*?)</section>', html, re.S)
    assert m, f"no section {ident}"
    return m.group(1)


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _build(run: Path, **kw):
    from mechgraph.report import ReportConfig, build_report

    html, _ = build_report(run, ReportConfig(**kw) if kw else None)
    return html


# ------------------------------------------------------------------------ the page


def test_run_writes_a_self_contained_report(sample_run):
    page = sample_run / "report.html"
    html = page.read_text(encoding="utf-8")
    for ident in SECTIONS:
        assert f'<section id="{ident}">' in html
    assert page.stat().st_size < 10e6
    # plotly.js once, inlined; nothing fetched: no src / href to another file or host
    assert html.count("plotly.js v") == 1 or html.count("* plotly.js") == 1
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)
    assert not re.search(r"<script[^>]+src=", html) and "<link" not in markup
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", markup)  # (the browser test
    # routes every request and fails on any that is not a file)
    rec = json.loads((sample_run / "report.html.artifact.json").read_text())
    assert rec["kind"] == "report" and rec["config"]["max_traces"] == 50
    assert {Path(i["path"]).name for i in rec["inputs"]} >= {"store", "graph.parquet", "probe"}
    assert all(len(i["sha256"]) == 64 for i in rec["inputs"])
    assert _data(html)["config"] == rec["config"]  # the ReportConfig is embedded too


def test_viewer_data_joins_every_artifact_on_exact_keys(sample_run):
    import mechgraph as mg

    d = _data((sample_run / "report.html").read_text(encoding="utf-8"))
    store = mg.load(sample_run / "store")
    labels = {r["id"]: r["steps"] for r in mg.load(sample_run / "labels.jsonl")}
    imp = mg.load(sample_run / "importance.parquet").table
    assert [t["id"] for t in d["traces"]] == list(dict.fromkeys(store.steps["trace_id"]))
    assert [k for k, _ in d["imp"]] == ["receiver", "suppression"]
    for t in d["traces"]:
        steps = store.steps[store.steps["trace_id"] == t["id"]]
        assert [(s["s"], s["e"]) for s in t["sents"]] == list(
            zip(steps["char_start"], steps["char_end"], strict=True)
        )
        assert [s["tag"] for s in t["sents"]] == [x["tag"] for x in labels[t["id"]]]
        assert [s["plan"] for s in t["sents"]] == [x["planning"] for x in labels[t["id"]]]
        scored = imp[imp["trace_id"] == t["id"]]
        assert sum("imp" in s for s in t["sents"]) == len(scored)
        for s, (_, r) in zip(t["sents"], scored.iterrows(), strict=False):
            want = r["suppression_score"]
            got = s["imp"]["suppression"]
            assert (got is None) == (want != want) and (
                got is None or abs(got - want) < 1e-3 * abs(want) + 1e-12
            )
        assert all(isinstance(s["node"], int) for s in t["sents"])
        tok = t["tokens"]
        assert tok is not None and len(tok["offsets"]) == len(tok["plan"]) == tok["shown"]
        assert all(t["text"][a:b] for a, b in tok["offsets"] if b > a)


def test_every_figure_has_axis_titles_and_the_palette(sample_run):
    d = _data((sample_run / "report.html").read_text(encoding="utf-8"))
    specs = [f for f in d["figs"].values() if f] + [
        f for per in d["tfigs"].values() for f in per.values() if f
    ]
    assert len(specs) >= 8
    kinds = {k for per in d["tfigs"].values() for k, f in per.items() if f}
    assert kinds >= {"suppression", "receiver", "scores", "trace-graph", "trajectory"}
    assert {"probe", "zscores", "dist-model", "dist-correct"} <= {
        k for k, f in d["figs"].items() if f
    }
    for f in specs:
        lay = f["layout"]
        xs = [v for k, v in lay.items() if k.startswith("xaxis")]
        ys = [v for k, v in lay.items() if k.startswith("yaxis")]
        assert xs and ys
        for ax in xs + ys:
            assert ax.get("title", {}).get("text"), (lay.get("title"), ax)
        assert "template" not in lay  # one template for the page
    probe = d["figs"]["probe"]
    assert probe["layout"]["xaxis"]["title"]["text"] == "block (layer index)"
    colours = {tr.get("line", {}).get("color") for tr in probe["data"]}
    assert colours <= {"#0072B2", "#E69F00", "#009E73", None}
    assert d["tags"]["plan_generation"] == "#E69F00" and "template" in d


def test_summary_shows_timings_versions_and_configs(sample_run):
    html = (sample_run / "report.html").read_text(encoding="utf-8")
    s = _section(html, "summary")
    run = json.loads((sample_run / "run.json").read_text())
    assert run["stages"][0]["stage"] == "extract" and run["versions"]["torch"]
    rec = json.loads((sample_run / "graph.parquet.artifact.json").read_text())
    assert rec["timing"]["seconds"] > 0 and rec["config"]["k"] == 4  # config unchanged
    assert "time (s)" in s and "weights fingerprint" in s and "sample_traces.jsonl" in s
    assert "torch" in s and "run config (run.json)" in s and "report config" in s
    assert "the traces carry fewer than two checkpoints" in s
    # the up-to-date check ignores the timing: a second run redoes nothing
    from mechgraph.pipeline import RunConfig, plan_run

    cfg = RunConfig.from_dict(run["config"])
    assert all(w == "up to date" or w.startswith("skip") for _, w in plan_run(cfg, sample_run))


def test_empty_phases_section_says_why(sample_run):
    html = (sample_run / "report.html").read_text(encoding="utf-8")
    s = _section(html, "phases")
    assert 'class="empty"' in s
    assert "phases.parquet is missing: the phases stage was skipped (the traces carry" in s


# ------------------------------------------------------------------ missing artifacts


@pytest.mark.parametrize(
    ("remove", "section", "why"),
    [
        (["probe"], "probe-sweep", "probe is missing"),
        (
            ["graph.parquet", "graph.parquet.json", "graph.parquet.artifact.json"],
            "graph",
            "graph.parquet is missing",
        ),
        (
            ["importance.safetensors", "importance.safetensors.artifact.json"],
            "matrices",
            "",  # the section stays: per-sentence scores, and a why in each matrix box
        ),
        (
            ["importance.parquet", "importance.parquet.artifact.json"],
            "matrices",
            "importance.parquet is missing",
        ),
        (["store", "graph.nodespace"], "trace-viewer", "store is missing"),
    ],
)
def test_missing_artifact_leaves_its_section_empty_saying_why(
    sample_run, tmp_path, remove, section, why
):
    run = _copy(sample_run, tmp_path)
    for name in remove:
        p = run / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    html = _build(run)
    for ident in SECTIONS:
        assert f'<section id="{ident}">' in html
    s = _section(html, section)
    if why:
        assert 'class="empty"' in s and why in s
        assert "removed since" in s  # run.json says the stage ran
    else:
        d = _data(html)
        assert "kept no importance matrices" in d["why"]["suppression"]
        assert all("scores" in f for f in d["tfigs"].values() if f)


def test_missing_labels_and_weights_are_said_in_the_viewer(sample_run, tmp_path):
    run = _copy(sample_run, tmp_path)
    for name in ("labels.jsonl", "weights.parquet"):
        (run / name).unlink()
    (run / "run.json").unlink()  # no pipeline record: the generic reason
    html = _build(run)
    s = _section(html, "trace-viewer")
    assert "labels.jsonl is missing: the label stage has not run in this folder" in s
    assert "weights.parquet is missing" in _data(html)["why"]["tokens"]
    d = _data(html)
    assert all("tag" not in x for t in d["traces"] for x in t["sents"])
    assert all(t["tokens"] is None for t in d["traces"])


def test_max_traces_embeds_fewer_and_says_so(sample_run):
    html = _build(sample_run, max_traces=2)
    d = _data(html)
    assert len(d["traces"]) == 2 and set(d["tfigs"]) == {t["id"] for t in d["traces"]}
    assert "2 of 6 traces are embedded" in _section(html, "trace-viewer")
    assert _section(html, "graph").count("data-trace=") == 6  # the corpus table has all
    with pytest.raises(ConfigError, match="max_traces"):
        _build(sample_run, max_traces=0)


def test_phases_section_from_a_phases_artifact(sample_run, tmp_path):
    from dataclasses import replace

    from mechgraph.cli import sample_path
    from mechgraph.phases import analyze_phases, write_phases
    from mechgraph.traces import load_traces

    run = _copy(sample_run, tmp_path)
    base = load_traces(sample_path())
    traces = []
    for c in ("10", "20", "30", "40"):
        for t in base[:3]:
            traces.append(replace(t, id=f"{c}/{t.id}", checkpoint=c))
    write_phases(analyze_phases(traces, n_boot=20, topology=False), run / "phases.parquet")
    html = _build(run)
    s = _section(html, "phases")
    assert 'class="empty"' not in s and "Two-phase test" in s
    fig = _data(html)["figs"]["phases"]
    assert fig and any(
        k.startswith("yaxis") and v["title"]["text"] for k, v in fig["layout"].items()
    )
    names = {tr.get("name") for tr in fig["data"]}
    assert "accuracy" in names
    tab10 = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"}
    assert not {tr.get("line", {}).get("color") for tr in fig["data"]} & tab10


# ---------------------------------------------------------------------- bad input


def _main(monkeypatch, capsys, *args):
    from mechgraph import cli

    monkeypatch.setattr(sys, "argv", ["mechgraph", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_writes_the_report_and_refuses_bad_output(sample_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.html"
    code, stdout, _ = _main(monkeypatch, capsys, "report", sample_run, "--out", out)
    assert code in (0, None) and out.is_file() and f"-> {out}" in stdout
    code, _, err = _main(monkeypatch, capsys, "report", sample_run, "--out", tmp_path / "r.txt")
    assert code == 1 and err.count("\n") == 1 and "r.txt" in err and ".html" in err


def test_not_a_run_folder_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "x.txt").write_text("x")
    code, _, err = _main(monkeypatch, capsys, "report", tmp_path)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert str(tmp_path) in err and "not a mechgraph run folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]
    code, _, err = _main(monkeypatch, capsys, "report", tmp_path / "nope")
    assert code == 1 and "no such folder" in err
    with pytest.raises(ArtifactError, match="a file, not a run folder"):
        _build(tmp_path / "x.txt")


@pytest.mark.parametrize(
    "victim", ["graph.parquet", "probe/config.json", "labels.jsonl", "graph.parquet.artifact.json"]
)
def test_corrupt_artifact_is_one_line_naming_it(sample_run, tmp_path, monkeypatch, capsys, victim):
    run = _copy(sample_run, tmp_path)
    before = (run / "report.html").read_bytes()
    (run / victim).write_text("{ not what it should be", encoding="utf-8")
    code, _, err = _main(monkeypatch, capsys, "report", run)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert victim.split("/")[0] in err
    assert (run / "report.html").read_bytes() == before  # the old report is untouched
    assert not [p.name for p in run.iterdir() if p.name.startswith(".tmp-")]


def test_report_package_import_is_light():
    import subprocess

    code = (
        "import json, sys; import mechgraph.report, mechgraph.report.cli; "
        "print(json.dumps([m for m in ('plotly', 'pandas', 'torch') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_probe_section_of_a_whole_trace_probe(sample_run, tmp_path):
    # the run's probe stage with a whole-trace estimator ([probe] of mechgraph run)
    from types import SimpleNamespace

    from mechgraph.pipeline import _run_probe

    run = _copy(sample_run, tmp_path)
    opts = {"estimator": "context", "layers": [2], "pools": ["mean"], "n_splits": 2}
    ctx = SimpleNamespace(cfg=SimpleNamespace(probe={"target": "planning", **opts}))
    msg = _run_probe(ctx, run / "traces.jsonl", run)
    assert msg.startswith("context probe (f1 ")
    s = _section(_build(run), "probe-sweep")
    assert 'class="empty"' not in s and "context probe on blocks 2:mean" in s
    assert "fold mean: 95% interval" in s and "folds grouped by" in s
