"""Every field of a command's config dataclass is reachable from one of its CLI options.

For each (command, config) pair a field must be a parameter of the command by name, by an
explicit alias (``ALIASES``) or be allow-listed (``ALLOW``) with the reason it is not an
option. ``TODO(missing option)`` marks fields that should become options of commands owned
elsewhere. The allow-list is checked for staleness too: an entry that is now an option, or
no longer a field, fails.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest
import typer
from typer.testing import CliRunner

from mechgraph.cli import app
from mechgraph.errors import ConfigError
from mechgraph.extract import ExtractConfig
from mechgraph.graphs.corpus import GraphConfig
from mechgraph.graphs.metrics import MetricOptions
from mechgraph.graphs.nodespace import NodeSpaceConfig
from mechgraph.labels.cli import run_label
from mechgraph.labels.tagger import TaggerConfig
from mechgraph.phases.changepoints import ChangeConfig
from mechgraph.phases.table import PhaseConfig
from mechgraph.weights.build import WeightsConfig
from probes.artifacts import ProbeConfig
from probes.sweep import SweepConfig

COMMANDS = typer.main.get_command(app).commands

#: (command, config) -> {field: the command's parameter(s) that set it}
ALIASES: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("extract", "ExtractConfig"): {"hooks": ("hook",), "pools": ("pool",)},
    ("graph", "NodeSpaceConfig"): {"pca_components": ("pca",), "random_state": ("seed",)},
    ("phases", "ChangeConfig"): {"model": ("change_model",)},
    ("probe", "SweepConfig"): {"params": ("c", "alpha")},
    # the sweep picks the probe's layer among --layers; params from --C / --alpha
    ("probe", "ProbeConfig"): {"layer": ("layers",), "params": ("c", "alpha")},
    # one JSON option (a JSON object or a .json file) carries the rule tagger's settings
    ("label", "TaggerConfig"): {
        f.name: ("tagger_config",) for f in dataclasses.fields(TaggerConfig) if f.init
    },
}

#: (command, config) -> {field: the nested config, checked as a pair of its own}
#: (`graph --nodes` is a node-space folder to reuse, not GraphConfig.nodes)
NESTED: dict[tuple[str, str], dict[str, str]] = {
    ("graph", "GraphConfig"): {"nodes": "NodeSpaceConfig", "metrics": "MetricOptions"},
}

#: (command, config) -> {field: why it is not an option}
ALLOW: dict[tuple[str, str], dict[str, str]] = {
    ("extract", "ExtractConfig"): {},
    ("graph", "GraphConfig"): {},
    ("graph", "NodeSpaceConfig"): {},
    ("graph", "MetricOptions"): {},
    ("phases", "PhaseConfig"): {
        "store": "derived: the reader's store is written next to --out",
    },
    ("phases", "ChangeConfig"): {},  # level: --level sets PhaseConfig.level, copied here
    ("weights", "WeightsConfig"): {},
    ("label", "run_label"): {},
    ("label", "TaggerConfig"): {},  # all through --tagger-config (ALIASES)
    ("probe", "SweepConfig"): {},
    # a saved probe's description: all but the training choices come from the store,
    # the fitted estimator and the sweep
    ("probe", "ProbeConfig"): {
        "classes": "derived: the fitted classifier's classes",
        "model_id": "derived: the store's model",
        "fingerprint": "derived: the store's model",
        "d_model": "derived: the store's states",
        "segmenter": "derived: the store's segmenter",
        "metrics": "derived: the sweep's result at the best layer",
        "sweep": "derived: the sweep's result",
        "source": "derived: store, label file and counts",
        "format": "internal: the artifact format version",
        "features": "derived: --layers x --pools (+ --rules) of a whole-trace estimator "
        "(context / bigru / stacked); empty for the one-block sweep",
    },
}


def _fields(command: str, config: str) -> list[str]:
    """Fields of ``config`` to check (its nested configs are pairs of their own)."""
    if config == "run_label":  # the label command's settings are run_label's keywords
        return list(inspect.signature(run_label).parameters)
    nested = NESTED.get((command, config), {})
    return [f.name for f in dataclasses.fields(CONFIGS[config]) if f.init and f.name not in nested]


CONFIGS = {
    c.__name__: c
    for c in (
        ExtractConfig,
        GraphConfig,
        NodeSpaceConfig,
        MetricOptions,
        PhaseConfig,
        ChangeConfig,
        WeightsConfig,
        TaggerConfig,
        SweepConfig,
        ProbeConfig,
    )
}
PAIRS = sorted(ALLOW)


def _params(command: str) -> set[str]:
    return {p.name for p in COMMANDS[command].params if p.name}


@pytest.mark.parametrize(("command", "config"), PAIRS)
def test_every_field_is_reachable_from_an_option(command, config):
    params = _params(command)
    aliases = ALIASES.get((command, config), {})
    allow = ALLOW[(command, config)]
    missing = [
        f
        for f in _fields(command, config)
        if f not in allow and not all(p in params for p in aliases.get(f, (f,)))
    ]
    assert not missing, f"`mechgraph {command}` has no option for {config} fields {missing}"


@pytest.mark.parametrize(("command", "config"), PAIRS)
def test_allow_list_and_aliases_are_current(command, config):
    all_fields = {f.name for f in dataclasses.fields(CONFIGS[config])} if config in CONFIGS else {}
    for field, sub in NESTED.get((command, config), {}).items():
        assert field in all_fields and (command, sub) in ALLOW  # the nested pair is checked
    fields = set(_fields(command, config))
    params = _params(command)
    allow = ALLOW[(command, config)]
    aliases = ALIASES.get((command, config), {})
    assert set(allow) <= fields, f"not fields of {config}: {sorted(set(allow) - fields)}"
    assert set(aliases) <= fields, f"not fields of {config}: {sorted(set(aliases) - fields)}"
    now_options = sorted(f for f in allow if f in params)
    assert not now_options, f"{now_options} are options of `{command}` now: drop them from ALLOW"
    assert not set(allow) & set(aliases)
    for field, names in aliases.items():
        assert set(names) <= params, f"alias of {config}.{field}: no option {names}"


def test_extract_options_reach_the_config(tmp_path, monkeypatch):
    """Every ExtractConfig option of `mechgraph extract` ends up in the config it runs."""
    ex = importlib.import_module("mechgraph.extract")  # `mechgraph.extract` is the function

    seen = {}

    class FakeStore:
        def summary(self) -> str:
            return "fake store"

    def fake_extract(traces, out, *, model, dtype, device, **options):
        seen["cfg"] = ExtractConfig(**options)
        return FakeStore()

    monkeypatch.setattr(ex, "extract", fake_extract)
    traces = tmp_path / "t.jsonl"
    traces.write_text('{"id": "a", "text": "x"}\n')
    args = [
        *("extract", str(traces), "--out", str(tmp_path / "store")),
        *("--layers", "1,-1", "--pool", "mean,last", "--hook", "resid_post,mlp_out"),
        *("--segmenter", "lines", "--backend", "bridge", "--batch-tokens", "100"),
        *("--max-batch", "3", "--window", "sliding", "--window-overlap", "16"),
        *("--on-empty-step", "merge", "--shard-traces", "5", "--store-dtype", "float16"),
        "--no-progress",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "fake store" in res.output
    assert seen["cfg"] == ExtractConfig(
        layers=(1, -1),
        hooks=("resid_post", "mlp_out"),
        pools=("mean", "last"),
        segmenter="lines",
        backend="bridge",
        batch_tokens=100,
        max_batch=3,
        window="sliding",
        window_overlap=16,
        on_empty_step="merge",
        shard_traces=5,
        store_dtype="float16",
        progress=False,
    )


def test_extract_defaults_match_the_config(tmp_path, monkeypatch):
    ex = importlib.import_module("mechgraph.extract")  # `mechgraph.extract` is the function

    seen = {}
    monkeypatch.setattr(
        ex, "extract", lambda *a, **kw: seen.update(kw) or type("S", (), {"summary": str})()
    )
    traces = tmp_path / "t.jsonl"
    traces.write_text('{"id": "a", "text": "x"}\n')
    res = CliRunner().invoke(app, ["extract", str(traces), "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    options = {k: v for k, v in seen.items() if k not in ("model", "dtype", "device")}
    assert ExtractConfig(**options) == ExtractConfig()


class _Stop(Exception):
    """Raised by a fake stage once it has seen the config a command built."""


def _stop_with(seen: dict, key: str, index: int | None = None):
    def fake(*args, **kwargs):
        seen[key] = args[index] if index is not None else kwargs
        raise _Stop

    return fake


def _graph_config(tmp_path, monkeypatch, *options: str) -> GraphConfig:
    corpus = importlib.import_module("mechgraph.graphs.corpus")
    seen: dict = {}
    monkeypatch.setattr(corpus, "analyze_corpus", _stop_with(seen, "cfg", 1))
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    out = tmp_path / "m.parquet"
    res = CliRunner().invoke(app, ["graph", str(store), "--layer", "3", "-o", str(out), *options])
    assert isinstance(res.exception, _Stop), res.output
    return seen["cfg"]


def test_graph_defaults_match_the_config(tmp_path, monkeypatch):
    assert _graph_config(tmp_path, monkeypatch) == GraphConfig(layer=3)


def test_graph_options_reach_the_config(tmp_path, monkeypatch):
    cfg = _graph_config(
        tmp_path,
        monkeypatch,
        *("--aha-source", "lexicon", "--method", "minibatch", "--n-init", "3"),
        *("--max-iter", "50", "--minibatch-threshold", "7", "--batch-size", "64"),
        *("--min-steps-per-node", "2", "--max-fit-steps", "900", "--max-cycles", "99"),
        *("--distance-agg", "min", "--sigma-clustering", "transitivity"),
        *("--sigma-nrand", "4", "--sigma-niter", "8", "--seed", "5"),
    )
    assert cfg == GraphConfig(
        layer=3,
        aha_source="lexicon",
        seed=5,
        nodes=NodeSpaceConfig(
            method="minibatch",
            random_state=5,
            n_init=3,
            max_iter=50,
            minibatch_threshold=7,
            batch_size=64,
            min_steps_per_node=2,
            max_fit_steps=900,
        ),
        metrics=MetricOptions(
            max_cycles=99,
            distance_agg="min",
            sigma_clustering="transitivity",
            sigma_nrand=4,
            sigma_niter=8,
            seed=5,
        ),
    )


def test_graph_bad_choice_is_a_config_error(tmp_path, monkeypatch):
    corpus = importlib.import_module("mechgraph.graphs.corpus")
    monkeypatch.setattr(corpus, "analyze_corpus", _stop_with({}, "cfg", 1))
    (tmp_path / "s").mkdir()
    args = ["graph", str(tmp_path / "s"), "--layer", "1", "-o", str(tmp_path / "m.parquet")]
    res = CliRunner().invoke(app, [*args, "--distance-agg", "max"])
    # the main entry point prints mechgraph errors as one line (tests/test_cli.py)
    assert isinstance(res.exception, ConfigError) and "distance_agg must be one of" in str(
        res.exception
    )


def _weights_config(tmp_path, monkeypatch, *options: str) -> WeightsConfig:
    build = importlib.import_module("mechgraph.weights.build")
    seen: dict = {}
    monkeypatch.setattr(build, "WeightsConfig", _stop_with(seen, "kw"))
    traces = tmp_path / "t.jsonl"
    traces.write_text('{"id": "a", "text": "x"}\n')
    res = CliRunner().invoke(
        app, ["weights", str(traces), "-o", str(tmp_path / "w.parquet"), *options]
    )
    assert isinstance(res.exception, _Stop), res.output
    return WeightsConfig(**seen["kw"])


def test_weights_defaults_match_the_config(tmp_path, monkeypatch):
    assert _weights_config(tmp_path, monkeypatch) == WeightsConfig()


def test_weights_options_reach_the_config(tmp_path, monkeypatch):
    cfg = _weights_config(tmp_path, monkeypatch, "--weight-fill", "0.25", "--normalize", "mean")
    assert cfg == WeightsConfig(weight_fill=0.25, normalize="mean")


def _sweep_config(tmp_path, monkeypatch, *options: str) -> SweepConfig:
    sweep = importlib.import_module("probes.sweep")  # train_probe imports it on use
    seen: dict = {}
    monkeypatch.setattr(sweep, "SweepConfig", _stop_with(seen, "kw"))
    res = CliRunner().invoke(app, ["probe", str(tmp_path / "store"), *options])
    assert isinstance(res.exception, _Stop), res.output
    return SweepConfig(**seen["kw"])


def test_probe_defaults_match_the_config(tmp_path, monkeypatch):
    assert _sweep_config(tmp_path, monkeypatch) == SweepConfig()


def test_probe_options_reach_the_config(tmp_path, monkeypatch):
    cfg = _sweep_config(tmp_path, monkeypatch, "--task", "multiclass", "--C", "0.1")
    assert cfg == SweepConfig(task="multiclass", params={"C": 0.1})


def test_probe_bad_task_is_one_line(tmp_path):
    res = CliRunner().invoke(app, ["probe", str(tmp_path / "store"), "--task", "ordinal"])
    assert res.exit_code == 1 and "task must be auto or one of" in res.output


def _label_tagger(tmp_path, monkeypatch, *options: str):
    tagger = importlib.import_module("mechgraph.labels.tagger")
    seen: dict = {}
    real = tagger.RuleLabeller

    class Spy(real):
        def __init__(self, config=None):
            seen["config"] = config
            super().__init__(config)

    monkeypatch.setattr(tagger, "RuleLabeller", Spy)
    traces = tmp_path / "t.jsonl"
    traces.write_text('{"id": "a", "text": "Let me try. So 1 + 1 = 2."}\n')
    out = tmp_path / "labels.jsonl"
    res = CliRunner().invoke(app, ["label", str(traces), "-o", str(out), *options])
    return res, seen.get("config"), out


def test_label_tagger_config_reaches_the_labeller(tmp_path, monkeypatch):
    import json

    res, config, out = _label_tagger(tmp_path, monkeypatch)
    assert res.exit_code == 0, res.output
    assert config is None  # RuleLabeller() with the default TaggerConfig
    raw = '{"temperature": 0.5, "priors": {"plan_generation": 1.0}}'
    res, config, out = _label_tagger(tmp_path, monkeypatch, "--tagger-config", raw)
    assert res.exit_code == 0, res.output
    assert config == TaggerConfig(temperature=0.5, priors={"plan_generation": 1.0})
    record = json.loads(out.with_name(out.name + ".artifact.json").read_text())
    assert record["config"]["tagger"]["temperature"] == 0.5
    path = tmp_path / "tagger.json"
    path.write_text('{"setup_window": 1, "check_bonus": 0.1}')
    res, config, _ = _label_tagger(tmp_path, monkeypatch, "--tagger-config", str(path))
    assert res.exit_code == 0, res.output
    assert config == TaggerConfig(setup_window=1, check_bonus=0.1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--tagger-config", '{"temprature": 2}'), "unknown TaggerConfig field(s) ['temprature']"),
        (("--tagger-config", '{"temperature": 0}'), "temperature must be > 0"),
        (("--tagger-config", "[1]"), "neither a JSON object nor a .json file"),
        (("--tagger-config", "{oops"), "not valid JSON"),
        (("--tagger-config", "{}", "--method", "sg"), "is for --method rules"),
    ],
)
def test_label_bad_tagger_config_is_one_line(tmp_path, monkeypatch, options, message):
    res, _, out = _label_tagger(tmp_path, monkeypatch, *options)
    assert res.exit_code == 1 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()
