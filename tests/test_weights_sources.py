"""Weight sources: planning spans by name or callable, step scores, token entropy, online batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechgraph.align import token_mask
from mechgraph.errors import ConfigError, TraceError
from mechgraph.labels import merge_spans
from mechgraph.segment import segment_text
from mechgraph.traces import Step, Trace
from mechgraph.weights import (
    PlanningSource,
    TextMismatchError,
    WeightsConfig,
    completion_entropy,
    planning_source,
    spread_to_tokens,
    step_scores,
    token_entropy,
    token_weights,
    tokenize_with_offsets,
)
from mechgraph.weights.online import batch_tokens

TEXT = "Okay, so I have this problem. Let me try another approach. So 3 * 4 = 12."


def test_planning_sources_by_name(ta_dir):
    hicra = ta_dir.parent / "hicra_strategic_grams.json"
    sg = PlanningSource(f"sg:{hicra}")
    assert "another approach" in [TEXT[a:b].lower() for a, b in sg(TEXT)]
    assert PlanningSource("sg")(TEXT)  # the list shipped with mechgraph.labels
    rules = PlanningSource("rules")
    assert [TEXT[a:b] for a, b in rules(TEXT)] == ["Let me try another approach."]
    assert PlanningSource("none")(TEXT) == []
    assert PlanningSource(["so 3"])(TEXT) == [(59, 63)]
    from mechgraph.labels import GramMatcher, StrategicGrams

    assert PlanningSource(GramMatcher(["so 3"]))(TEXT) == [(59, 63)]
    assert PlanningSource(StrategicGrams(["so 3"]))(TEXT) == [(59, 63)]
    from mechgraph.labels import as_labeller

    lab = as_labeller(lambda s: "plan_generation" if "approach" in s else "x", per_sentence=True)
    assert PlanningSource(lab)(TEXT) == rules(TEXT)
    assert planning_source(sg) is sg
    # empty and white-space completions (e.g. an immediate EOS) have no planning
    assert rules.batch(["", "  ", TEXT])[:2] == [[], []]
    with pytest.raises(ConfigError, match="unknown planning source"):
        PlanningSource("llm")


def test_callable_source_is_checked():
    assert PlanningSource(lambda t: [(5, 9), (0, 3), (2, 4)])(TEXT) == [(0, 4), (5, 9)]
    with pytest.raises(ConfigError, match="outside"):
        PlanningSource(lambda t: [(0, len(t) + 5)])(TEXT)


def test_sentence_sources_use_the_traces_own_steps():
    text = "Let me try another approach. So 2 + 2 = 4."
    rules = PlanningSource("rules")
    assert rules(text) == [(0, 28)]  # split into sentences: only the first is planning
    t = Trace("t", text, steps=[Step(0, len(text), text)])
    assert rules.trace_spans([t]) == [[(0, len(text))]]  # the given single step is planning


def test_spread_to_tokens_and_step_scores():
    off = [(0, 4), (4, 5), (5, 9), (9, 10), (10, 14)]
    text = "Abc. Def. Ghij"
    out = spread_to_tokens(text, off, [(0, 4), (5, 9)], [0.5, 3.0], fill=-1.0)
    assert out.tolist() == [0.5, -1.0, 3.0, -1.0, -1.0]
    with pytest.raises(ConfigError, match="values"):
        spread_to_tokens(text, off, [(0, 4)], [1.0, 2.0])
    with pytest.raises(ConfigError, match="sorted"):
        spread_to_tokens(text, off, [(5, 9), (0, 6)], [1.0, 2.0])
    t = Trace("t", text, steps=[Step(0, 4, "Abc.", meta={"s": 2}), Step(5, 9, "Def.")])
    assert step_scores(t, "s") == ([(0, 4), (5, 9)], [2.0, 0.0])
    with pytest.raises(TraceError, match="no step has 'kl'"):
        step_scores(t, "kl")
    with pytest.raises(TraceError, match="no steps"):
        step_scores(Trace("u", "x y"), "s")


def test_token_entropy_values():
    assert float(token_entropy(torch.zeros(8))) == pytest.approx(np.log(8), rel=1e-6)
    assert float(token_entropy([100.0, 0.0, 0.0])) == pytest.approx(0.0, abs=1e-6)


def test_completion_entropy_matches_a_forward_pass(tiny_model):
    hf, tok = tiny_model.hf, tiny_model.tokenizer
    prompt, text = "Q: what is 3 * 4?\n", "Let me think. 3 * 4 = 12."
    ids, off, h = completion_entropy(hf, tok, prompt, text)
    full_ids, _ = tokenize_with_offsets(tok, prompt + text)
    n_prompt = len(full_ids) - len(ids)
    np.testing.assert_array_equal(ids, full_ids[n_prompt:])
    assert "".join(text[a:b] for a, b in off) == text
    with torch.no_grad():
        logits = hf(input_ids=torch.as_tensor(full_ids)[None]).logits[0]
    want = token_entropy(logits).numpy()[n_prompt - 1 : len(full_ids) - 1]
    np.testing.assert_allclose(h, want, rtol=1e-4)
    # as weights, keyed by the completion's own tokens
    (tw,) = token_weights(
        [Trace("t", text, prompt=prompt)], tok, WeightsConfig(importance="entropy"), model=hf
    )
    np.testing.assert_allclose(tw.weight, want, rtol=1e-4)


def test_batch_tokens_grid_and_text_check(smol):
    texts = ["But wait, 2 + 2 = 4.", "So 5."]
    rows = [tokenize_with_offsets(smol, t)[0] for t in texts]
    T = max(map(len, rows)) + 2
    ids = np.full((2, T), smol.pad_token_id)
    mask = np.zeros((2, T), dtype=bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = True
    bt = batch_tokens(
        smol, ids, mask, planning=["but wait"], weights=lambda t, o: np.full(len(o), 2.0)
    )
    assert bt.texts == texts
    assert smol.decode(ids[0][bt.planning[0]]) == "But wait"
    assert not bt.planning[~mask].any() and np.all(bt.weights[~mask] == 0)
    assert np.all(bt.weights[mask] == 2.0)
    assert bt.planning_share(mask) == pytest.approx(bt.planning[mask].mean())
    with pytest.raises(TextMismatchError, match="row 1"):
        batch_tokens(smol, ids, mask, texts=[texts[0], "So 6."])
    with pytest.raises(ConfigError, match="weight function"):
        batch_tokens(smol, ids, mask, weights=lambda t, o: [1.0])


def test_probe_source_marks_the_sentences_the_probe_calls_planning(tiny_model, tmp_path):
    pytest.importorskip("probes.labeller")
    from probes.artifacts import ProbeConfig, save_probe
    from probes.estimators import LinearProbe
    from probes.labeller import ProbeLabeller

    d = tiny_model.d_model
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, d))
    est = LinearProbe().fit(X, (X[:, 0] > 0).astype(int))
    cfg = ProbeConfig(
        "logistic",
        est.get_params(),
        "planning",
        [0, 1],
        1,
        "resid_post",
        "mean",
        str(tiny_model.model_id),
        None,
        d,
    )
    path = save_probe(est, cfg, tmp_path / "probe")
    text = "Let me try another approach. So 3 * 4 = 12. Wait, that seems off. Then 12 / 4 = 3."
    src = PlanningSource(f"probe:{path}", model=tiny_model)
    spans = src(text)
    sents = segment_text(text, "sentences")
    t = Trace("t", text, steps=[Step(a, b, text[a:b]) for a, b in sents])
    labels = ProbeLabeller(path, model=tiny_model).label_traces([t])[0]
    want = [s for s, lab in zip(sents, labels, strict=True) if lab.planning]
    assert spans == merge_spans(want)
    (tw,) = token_weights([Trace("t", text)], tiny_model.tokenizer, planning=src)
    np.testing.assert_array_equal(tw.planning_mask, token_mask(text, tw.offsets, merge_spans(want)))


def test_receiver_scores_as_weights(tiny_model):
    from mechgraph.importance import prepare, receiver_scores

    text = " ".join(f"Step {i}: we add {i} and {i + 1} to get {2 * i + 1}." for i in range(8))
    t = Trace("r", text)
    (tw,) = token_weights(
        [t], tiny_model.tokenizer, WeightsConfig(importance="receivers"), model=tiny_model
    )
    steps = [Step(a, b, text[a:b]) for a, b in segment_text(text, "sentences")]
    p = prepare(Trace("r", text, steps=steps), tiny_model.tokenizer)
    r = receiver_scores(tiny_model, p, top_k=12)
    vals = np.where(np.isnan(r.scores), 1.0, r.scores)
    want = spread_to_tokens(text, tw.offsets, [(s.start, s.end) for s in p.steps], vals)
    np.testing.assert_allclose(tw.weight, want, rtol=1e-5)
    assert np.isnan(r.scores).any() and not np.isnan(tw.weight).any()
    with pytest.raises(ConfigError, match="LoadedModel"):
        token_weights(
            [t], tiny_model.tokenizer, WeightsConfig(importance="receivers"), model=tiny_model.hf
        )
