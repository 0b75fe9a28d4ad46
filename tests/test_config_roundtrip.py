"""Every config dataclass round-trips: to a dict, through JSON, and back to an equal config."""

from __future__ import annotations

import importlib
import json

import pytest

from mechgraph.configs import config_from_dict, config_to_dict, merge_config
from mechgraph.errors import ConfigError

CONFIGS = [
    ("mechgraph.extract", "ExtractConfig", {}),
    ("mechgraph.graphs.metrics", "MetricOptions", {}),
    ("mechgraph.graphs.nodespace", "NodeSpaceConfig", {}),
    ("mechgraph.graphs.corpus", "GraphConfig", {"layer": 3}),
    ("mechgraph.phases.changepoints", "ChangeConfig", {}),
    ("mechgraph.phases.table", "PhaseConfig", {}),
    ("mechgraph.labels.grams", "GramMinerConfig", {}),
    ("mechgraph.labels.tagger", "TaggerConfig", {}),
    ("mechgraph.weights.transforms", "AdvantageConfig", {}),
    ("mechgraph.weights.build", "WeightsConfig", {}),
    ("mechgraph.importance.cli", "ImportanceConfig", {}),
    ("mechgraph.importance.receivers", "ReceiverConfig", {}),
    ("mechgraph.importance.resampling", "ResamplingConfig", {}),
    ("mechgraph.importance.suppression", "SuppressionConfig", {}),
    ("mechgraph.pipeline", "RunConfig", {}),
    ("probes.sweep", "SweepConfig", {}),
]


@pytest.mark.parametrize(("module", "name", "args"), CONFIGS, ids=[c[1] for c in CONFIGS])
def test_config_round_trips_through_json(module, name, args):
    cls = getattr(importlib.import_module(module), name)
    cfg = cls(**args)
    d = json.loads(json.dumps(config_to_dict(cfg)))
    back = config_from_dict(cls, d)
    assert back == cfg
    assert config_to_dict(back) == config_to_dict(cfg)
    with pytest.raises(ConfigError, match="no_such_field"):
        config_from_dict(cls, {**d, "no_such_field": 1})
    assert merge_config(cls, cfg) == cfg  # a config with no overrides is kept as it is
