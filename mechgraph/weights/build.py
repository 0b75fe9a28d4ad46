"""Build :class:`~mechgraph.weights.tokens.TokenWeights` for a batch of traces.

The completion text (``trace.text``) is tokenised by the trainer's tokenizer; planning
spans and step scores found on the text become per-token values through the char
offsets of those tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace
from typing import Any

import numpy as np

from mechgraph.align import token_mask
from mechgraph.errors import ConfigError
from mechgraph.traces import Step, Trace
from mechgraph.weights.sources import (
    PlanningSource,
    completion_entropy,
    planning_source,
    spread_to_tokens,
    step_scores,
)
from mechgraph.weights.tokens import TokenWeights, tokenize_with_offsets, transfer_values
from mechgraph.weights.transforms import normalize_weights

__all__ = ["WeightsConfig", "token_weights"]

_NORMS = ("none", "mean", "center", "max")


@dataclass
class WeightsConfig:
    """How a weights file was made (saved next to it and inside it).

    Parameters
    ----------
    planning : str
        Planning source: ``sg``, ``sg:PATH``, ``rules``, ``probe:PATH`` or ``none``.
    importance : str or None
        Weight source: ``step:FIELD`` (a per-step score carried by the traces, e.g.
        ``step:counterfactual_importance_kl``), ``receivers`` (Thought Anchors' receiver-head
        score of each sentence under ``model``; sentences without one get ``weight_fill``),
        ``entropy`` (token entropy under ``model``), or None (every weight is
        ``weight_fill``).
    tokenizer : str
        The trainer's tokenizer: ``default`` or an HF folder / id.
    model : str or None
        Model for ``entropy`` / ``receivers`` (default: the tokenizer's model).
    normalize : {"none", "mean", "center", "max"}
        Per-completion rescaling of the weights (see
        :func:`~mechgraph.weights.transforms.normalize_weights`).
    weight_fill : float
        Weight of tokens that no source covers (1.0: neutral for ``A * w``).
    segmenter : str
        Sentence splitter for ``rules`` / probes when traces carry no steps.

    Examples
    --------
    >>> WeightsConfig(planning="rules", importance="step:resampling_importance_kl").planning
    'rules'
    """

    planning: str = "sg"
    importance: str | None = None
    tokenizer: str = "default"
    model: str | None = None
    normalize: str = "none"
    weight_fill: float = 1.0
    segmenter: str = "sentences"

    def __post_init__(self) -> None:
        from mechgraph.labels.sources import parse_planning

        parse_planning(self.planning)  # the planning sources every stage accepts
        imp = self.importance
        if imp not in (None, "entropy", "receivers") and not (imp.startswith("step:") and imp[5:]):
            raise ConfigError(f"unknown importance {imp!r}; use step:FIELD, receivers or entropy")
        if self.normalize not in _NORMS:
            raise ConfigError(f"normalize must be one of {_NORMS}, got {self.normalize!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict."""
        return asdict(self)

    def to_json(self) -> str:
        """JSON text (what is stored with the weights)."""
        return json.dumps({"format": "mechgraph.weights/1", **self.to_dict()}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> WeightsConfig:
        """Inverse of :meth:`to_json`."""
        d = json.loads(raw)
        d.pop("format", None)
        return cls(**d)


def token_weights(
    traces: Sequence[Trace],
    tokenizer: Any,
    config: WeightsConfig | None = None,
    *,
    planning: Any = None,
    model: Any = None,
) -> list[TokenWeights]:
    """Planning masks and weights of each trace's completion, on ``tokenizer``'s tokens.

    Parameters
    ----------
    traces : sequence of Trace
        ``trace.text`` is the completion; steps are used by sentence-level planning
        sources and by ``step:FIELD`` importance.
    tokenizer : fast tokenizer
        The trainer's.
    config : WeightsConfig, optional
    planning : PlanningSource or str or callable, optional
        Overrides ``config.planning`` (e.g. a ready source, or a callable).
    model : LoadedModel or transformers model, optional
        For ``entropy`` / ``receivers`` importance (loaded from ``config.model`` when not
        given). Its own tokenizer runs it; the values move to ``tokenizer``'s tokens
        through char offsets. A bare HF model is taken to share ``tokenizer``.

    Returns
    -------
    list of TokenWeights
        One per trace, in order.

    Examples
    --------
    >>> from mechgraph.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> tw = token_weights([Trace("t", "But wait, 2 + 2 = 4.")], tok,
    ...                    planning=["but wait"])
    >>> tok.decode(tw[0].input_ids[tw[0].planning_mask])
    'But wait'
    """
    cfg = config or WeightsConfig()
    src: PlanningSource = planning_source(planning if planning is not None else cfg.planning)
    spans = src.trace_spans(traces)
    lm = _model(model, cfg, tokenizer) if cfg.importance in ("entropy", "receivers") else None
    out = []
    for t, sp in zip(traces, spans, strict=True):
        ids, off = tokenize_with_offsets(tokenizer, t.text)
        mask = token_mask(t.text, off, sp)
        w = _weights(t, ids, off, cfg, tokenizer, lm)
        out.append(TokenWeights(t.id, t.text, ids, off, mask, w, t.fields(), cfg.weight_fill))
    return out


def _model(model: Any, cfg: WeightsConfig, tokenizer: Any) -> Any:
    from mechgraph.models import LoadedModel, load_model

    if model is None:
        return load_model(cfg.model or cfg.tokenizer)
    if isinstance(model, LoadedModel):
        return model
    if cfg.importance == "receivers":
        raise ConfigError("importance 'receivers' needs a mechgraph LoadedModel (load_model)")
    return SimpleNamespace(hf=model, tokenizer=tokenizer)


def _receiver_weights(t: Trace, off: np.ndarray, cfg: WeightsConfig, lm: Any) -> np.ndarray:
    from mechgraph.importance import prepare, receiver_scores
    from mechgraph.segment import segment_text

    if not t.steps:
        t = replace(
            t, steps=[Step(a, b, t.text[a:b]) for a, b in segment_text(t.text, cfg.segmenter)]
        )
    p = prepare(t, lm.tokenizer)
    n_heads = int(lm.hf.config.num_attention_heads) * int(lm.n_layers)
    r = receiver_scores(lm, p, top_k=min(20, n_heads))
    vals = np.where(np.isnan(r.scores), cfg.weight_fill, r.scores)
    return spread_to_tokens(
        t.text, off, [(s.start, s.end) for s in p.steps], vals, fill=cfg.weight_fill
    )


def _weights(
    t: Trace, ids: np.ndarray, off: np.ndarray, cfg: WeightsConfig, tok: Any, lm: Any
) -> np.ndarray:
    imp = cfg.importance
    if imp is None:
        return np.full(len(ids), cfg.weight_fill, dtype=np.float32)
    if imp == "entropy":
        _, e_off, h = completion_entropy(lm.hf, lm.tokenizer, t.prompt, t.text)
        w = transfer_values(t.text, e_off, np.nan_to_num(h, nan=0.0), off, fill=cfg.weight_fill)
    elif imp == "receivers":
        w = _receiver_weights(t, off, cfg, lm)
    else:
        spans, vals = step_scores(t, imp[5:])
        w = spread_to_tokens(t.text, off, spans, vals, fill=cfg.weight_fill)
    if cfg.normalize != "none":
        w = np.asarray(normalize_weights(np.asarray(w, np.float64)[None], how=cfg.normalize))[0]
    return np.asarray(w, dtype=np.float32)
