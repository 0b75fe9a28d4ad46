"""Per-rollout sampling: exact temperature / top-p draws, independent of the batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechgraph.errors import ConfigError
from mechgraph.importance.generation import HFGenerator, RowSampler


def _target(logits: torch.Tensor, temperature: float, top_p: float) -> np.ndarray:
    p = torch.softmax(logits / temperature, -1).numpy().astype(np.float64)
    order = np.argsort(-p)
    keep = np.zeros_like(p, dtype=bool)
    mass = 0.0
    for j in order:  # the smallest set of most likely tokens reaching top_p
        keep[j] = True
        mass += p[j]
        if mass >= top_p:
            break
    q = np.where(keep, p, 0.0)
    return q / q.sum()


@pytest.mark.parametrize("temperature,top_p", [(0.6, 0.95), (1.0, 1.0), (1.5, 0.5)])
def test_row_sampler_draws_the_filtered_softmax(temperature, top_p):
    torch.manual_seed(0)
    logits = torch.randn(12) * 2
    n = 5000
    sampler = RowSampler(range(n), temperature, top_p)
    picks = sampler(torch.zeros(n, 1, dtype=torch.long), logits.expand(n, -1)).argmax(-1)
    freq = np.bincount(picks.numpy(), minlength=12) / n
    want = _target(logits, temperature, top_p)
    assert (freq[want == 0] == 0).all()  # nothing outside the nucleus
    np.testing.assert_allclose(freq, want, atol=4 * np.sqrt(0.25 / n))


def test_row_sampler_streams_are_per_row():
    logits = torch.randn(3, 50)
    a = RowSampler([7, 8, 9])(None, logits)
    b = RowSampler([9])(None, logits[2:])
    assert torch.equal(a[2:], b)
    with pytest.raises(ConfigError):
        RowSampler([1], temperature=0)
    with pytest.raises(ConfigError):
        RowSampler([1, 2])(None, logits)


def test_hf_generator_rollout_depends_on_its_seed_only(tiny_model):
    gen = HFGenerator(tiny_model, max_new_tokens=12, batch_size=3)
    prefix = "Q: what is 2 + 2? A: Let's think."
    four = gen.sample(prefix, [11, 12, 13, 14])  # batches of 3 + 1
    assert len(four) == 4 and len(set(four)) > 1
    assert gen.sample(prefix, [13]) == [four[2]]
    assert gen.sample(prefix, [14, 11]) == [four[3], four[0]]
    assert gen.sample(prefix, []) == []
