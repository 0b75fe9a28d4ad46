"""Parity of pooled states with plain HF hidden states, and bridge == native (default model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mechgraph as mg
from mechgraph.cli import sample_path

pytestmark = pytest.mark.model

LAYERS = (0, 7, 15, 28)
POOLS = ("mean", "first", "last", "max")
REDUCE = {
    "mean": lambda x: x.double().mean(0).float(),
    "first": lambda x: x[0],
    "last": lambda x: x[-1],
    "max": lambda x: x.max(0).values,
}


def _extract(default_model, tmp_path_factory, batch_tokens):
    traces = mg.load_traces(sample_path())[:4]
    out = tmp_path_factory.mktemp("parity") / "s"
    return mg.extract(
        traces,
        out,
        model=default_model,
        layers=LAYERS,
        pools=POOLS,
        batch_tokens=batch_tokens,
        progress=False,
    )


def _worst(store, hidden_of):
    steps, worst = store.steps, 0.0
    X = {(layer, pool): store.states(layer, pool) for layer in LAYERS for pool in POOLS}
    for tid in steps.trace_id.unique():
        hs = hidden_of(tid)
        rows = steps[steps.trace_id == tid]
        for (layer, pool), states in X.items():
            for i, a, b in zip(rows.index, rows.tok_start, rows.tok_end, strict=True):
                ref = REDUCE[pool](hs[layer + 1][a:b]).numpy()
                worst = max(worst, float(np.abs(states[i] - ref).max()))
    return worst


def test_pooled_states_equal_hf_hidden_states(default_model, tmp_path_factory):
    """One trace per forward pass: max abs error <= 1e-5 against output_hidden_states."""
    store = _extract(default_model, tmp_path_factory, batch_tokens=1)

    def hidden_of(tid):
        with torch.no_grad():
            out = default_model.hf(torch.tensor(store.tokens(tid))[None], output_hidden_states=True)
        return [h[0] for h in out.hidden_states]

    assert _worst(store, hidden_of) <= 1e-5


def test_padded_batches_equal_hf_on_the_same_batch(default_model, tmp_path_factory):
    """Padded batches: equal to HF run on the same right-padded batch (same kernels).

    Against one-trace passes they differ by float32 rounding of the batched matmuls
    (about 1e-7 relative to the activations, a few ulp); that is HF's behaviour too.
    """
    store = _extract(default_model, tmp_path_factory, batch_tokens=100_000)
    ids = [store.tokens(t) for t in store.trace_ids]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # mechgraph's batch order
    T = len(ids[order[0]])
    batch = torch.full((len(ids), T), default_model.tokenizer.pad_token_id)
    mask = torch.zeros((len(ids), T), dtype=torch.long)
    for row, i in enumerate(order):
        batch[row, : len(ids[i])] = torch.tensor(ids[i])
        mask[row, : len(ids[i])] = 1
    with torch.no_grad():
        hs = default_model.hf(batch, attention_mask=mask, output_hidden_states=True).hidden_states
    rows = {store.trace_ids[i]: row for row, i in enumerate(order)}
    assert _worst(store, lambda tid: [h[rows[tid]] for h in hs]) <= 1e-5


def test_last_block_is_before_the_final_norm(default_model, tmp_path):
    (t,) = mg.load_traces(sample_path())[:1]
    s = mg.extract(
        [t], tmp_path / "s", model=default_model, layers=(-1,), pools=("last",), progress=False
    )
    assert s.layers == [default_model.n_layers - 1]
    ids = torch.tensor(s.tokens(t.id))[None]
    with torch.no_grad():
        hs = default_model.hf(ids, output_hidden_states=True).hidden_states
    r = s.steps.iloc[0]
    last = s.states(-1, "last")[0]
    normed = default_model.hf.model.norm(torch.tensor(last)).detach().numpy()
    np.testing.assert_allclose(normed, hs[-1][0, r.tok_end - 1].numpy(), atol=1e-4)
    assert np.abs(last - hs[-1][0, r.tok_end - 1].numpy()).max() > 1e-2


def test_bridge_backend_equals_native(default_model, tmp_path):
    traces = mg.load_traces(sample_path())[:2]
    kinds = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")
    opts = dict(
        model=default_model, layers=(2, 11), hooks=kinds, pools=("mean", "last"), progress=False
    )
    native = mg.extract(traces, tmp_path / "n", **opts)
    bridge = mg.extract(traces, tmp_path / "b", backend="bridge", **opts)
    for layer in (2, 11):
        for kind in kinds:
            for pool in ("mean", "last"):
                # the bridge runs its own attention code: equal to float32 rounding
                np.testing.assert_allclose(
                    bridge.states(layer, pool, kind),
                    native.states(layer, pool, kind),
                    rtol=1e-5,
                    atol=1e-5,
                    err_msg=f"{kind} {pool} layer {layer}",
                )
