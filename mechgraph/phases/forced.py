"""Teacher-forced NLL and entropy of a checkpoint's own samples, planning vs execution.

HICRA's Figure 3 (Wang et al. 2025) follows, across RL checkpoints, the perplexity and
the token entropy of each checkpoint's own generations under that checkpoint, split into
planning tokens (inside a strategic-gram match) and execution tokens (the rest).
:func:`forced_token_stats` gives the per-sample *sums* of those quantities, so that the
per-checkpoint means are ratios of sums (``nll_plan_sum.sum() / n_plan.sum()``) and can
be bootstrapped over samples; :func:`relative_perplexity` turns them into the relative
perplexity of the paper (divided by its value at a reference checkpoint).

The tokens are those of :func:`mechgraph.logits.completion_entropy`:
``prompt + text`` is tokenised together (a BOS is put in front when the tokenizer has one
and did not add it), the completion's tokens are those anchored in ``text`` (the anchor
rule of :mod:`mechgraph.align`), and token ``t`` is scored by the distribution it was
drawn from (the logits one position earlier).

Examples
--------
>>> relative_perplexity(2.0, 2, 0.0, 4).round(4)  # exp(1) / exp(0)
np.float64(2.7183)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mechgraph.align import token_anchors, token_mask, tokenize_with_offsets
from mechgraph.errors import ConfigError
from mechgraph.logits import token_entropy

__all__ = [
    "PROBE_TEXT",
    "STAT_COLUMNS",
    "check_same_tokenizer",
    "forced_token_stats",
    "load_checkpoint_models",
    "relative_perplexity",
]

Span = tuple[int, int]

STAT_COLUMNS = (
    "n_tokens",
    "n_plan",
    "n_exec",
    "nll_plan_sum",
    "nll_exec_sum",
    "ent_plan_sum",
    "ent_exec_sum",
)

PROBE_TEXT = (
    "Let's check: 12345 + 0.75 = 12345.75, so x_1 = 3.\n\n"
    "Then $\\frac{a^2}{b} \\leq \\sqrt{2}\\cdot\\pi$ and \\boxed{42}.\n"
    "Wait - naïve café, Straße, 日本語, ∑ ≤ ∞, 🙂\t end"
)
"""Text whose token ids two tokenizers must agree on (digits, LaTeX, unicode, spaces)."""

# rows of logits converted to float32 at once: bounds the extra memory of a long sample
_ROW_ELEMS = 1 << 25


def _n_ctx(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _encode(
    tokenizer: Any, prompt: str, text: str, spans: Sequence[Span]
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(model input ids, positions of the scored tokens in them, their planning mask).

    Tokenisation and BOS as :func:`~mechgraph.logits.completion_entropy`; a
    scored token is a completion token with a predecessor (a prompt token or the BOS).
    """
    full = prompt + text
    ids, off = tokenize_with_offsets(tokenizer, full)
    bos = getattr(tokenizer, "bos_token_id", None)
    lead = [bos] if bos is not None and (not len(ids) or ids[0] != bos) else []
    mine = token_anchors(full, off) >= len(prompt)
    p = len(prompt)
    plan = token_mask(full, off, [(a + p, b + p) for a, b in spans])
    pos = np.flatnonzero(mine) + len(lead)  # positions in the model input
    keep = pos > 0  # position 0 has no predecessor
    return [*lead, *ids.tolist()], pos[keep], plan[mine][keep]


def _clean_spans(spans: Sequence[Sequence[int]], text: str, sid: str) -> list[Span]:
    from mechgraph.labels.masks import merge_spans

    out = merge_spans(spans)
    if out and (out[0][0] < 0 or out[-1][1] > len(text)):
        raise ConfigError(f"sample {sid!r}: planning spans fall outside its text")
    return out


def _batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped longest first, each group at most ``batch_tokens`` padded tokens.

    A sample longer than ``batch_tokens`` makes a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        if out and lengths[out[-1][0]] * (len(out[-1]) + 1) <= batch_tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def forced_token_stats(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | str,
    texts: Sequence[str],
    spans: Sequence[Sequence[Span]],
    *,
    batch_tokens: int = 8192,
    device: str | None = None,
    ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Teacher-forced NLL and entropy sums of completions, planning vs execution tokens.

    Parameters
    ----------
    model : transformers causal LM or LoadedModel
        The checkpoint that generated ``texts`` (in eval mode, as
        :func:`mechgraph.models.load_model` leaves it).
    tokenizer : fast tokenizer
        Its tokenizer (``None`` takes a LoadedModel's own).
    prompts : list of str, or str
        The prompt of each sample (one string: the same prompt for all).
    texts : list of str
        The completions.
    spans : list of list of (int, int)
        Planning char spans into each text (merged here). Tokens anchored inside a span
        are planning tokens, the completion's other tokens execution tokens.
    batch_tokens : int
        Most padded tokens per forward pass (the logits of a batch take
        ``batch_tokens x vocab`` values in the model's dtype). Samples are sorted by
        length; a sample longer than this runs alone.
    device : str, optional
        Where the inputs go; defaults to the model's device.
    ids : list of str, optional
        Sample ids named in errors and written to the ``id`` column (default: the index).

    Returns
    -------
    pandas.DataFrame
        One row per sample, in input order: ``id``, ``n_tokens`` (= ``n_plan +
        n_exec``), ``n_plan``, ``n_exec``, ``nll_plan_sum``, ``nll_exec_sum``,
        ``ent_plan_sum``, ``ent_exec_sum`` (nats). Token ``t``'s NLL is
        ``-log p(token_t | prefix)``, its entropy that of the same distribution. The first
        token of a completion with no prompt and no BOS has no prefix and is not counted.

    Raises
    ------
    ConfigError
        Inputs of different lengths, spans outside a text, or a sample longer than the
        model's context (``max_position_embeddings``), named by id, before any forward
        pass.

    Examples
    --------
    >>> from mechgraph.models import load_model
    >>> lm = load_model("default")
    >>> df = forced_token_stats(lm, None, ["Q: 2+2? A:"], [" Let me think. 4"],
    ...                         [[(0, 14)]])
    >>> list(df.columns)
    ['id', 'n_tokens', 'n_plan', 'n_exec', 'nll_plan_sum', 'nll_exec_sum', 'ent_plan_sum', 'ent_exec_sum']
    >>> df.loc[0, ["n_tokens", "n_plan", "n_exec"]].tolist()
    [6, 4, 2]
    >>> mean_exec_nll = df.nll_exec_sum.sum() / df.n_exec.sum()
    >>> bool(mean_exec_nll > 0)
    True
    """
    import torch

    if hasattr(model, "hf") and hasattr(model, "tokenizer"):  # a LoadedModel
        tokenizer = model.tokenizer if tokenizer is None else tokenizer
        model = model.hf
    if tokenizer is None:
        raise ConfigError("forced_token_stats needs a tokenizer")
    texts = list(texts)
    prompts = [prompts] * len(texts) if isinstance(prompts, str) else list(prompts)
    spans = list(spans)
    if not (len(prompts) == len(texts) == len(spans)):
        raise ConfigError(
            f"{len(prompts)} prompts, {len(texts)} texts and {len(spans)} span lists: "
            "give one of each per sample"
        )
    sids = [str(i) for i in range(len(texts))] if ids is None else [str(i) for i in ids]
    if len(sids) != len(texts):
        raise ConfigError(f"{len(sids)} ids for {len(texts)} samples")
    if batch_tokens < 1:
        raise ConfigError(f"batch_tokens must be positive, not {batch_tokens}")

    n_ctx = _n_ctx(model)
    enc = []
    for sid, p, t, sp in zip(sids, prompts, texts, spans, strict=True):
        x, pos, plan = _encode(tokenizer, p, t, _clean_spans(sp, t, sid))
        if n_ctx is not None and len(x) > n_ctx:
            raise ConfigError(
                f"sample {sid!r}: {len(x)} tokens (prompt + completion) exceed the model's "
                f"context of {n_ctx}"
            )
        enc.append((x, pos, plan))

    out = np.zeros((len(texts), len(STAT_COLUMNS)), dtype=np.float64)
    todo = [i for i, (_, pos, _) in enumerate(enc) if len(pos)]
    dev = device or next(model.parameters()).device
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = 0 if pad is None else int(pad)
    with torch.inference_mode():
        for group in _batches([len(enc[i][0]) for i in todo], batch_tokens):
            rows = [todo[g] for g in group]
            width = max(len(enc[i][0]) for i in rows)
            x = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                x[r, : len(enc[i][0])] = torch.as_tensor(enc[i][0])
                mask[r, : len(enc[i][0])] = 1
            x, mask = x.to(dev), mask.to(dev)
            logits = model(input_ids=x, attention_mask=mask, use_cache=False).logits
            step = max(1, _ROW_ELEMS // max(1, logits.shape[-1]))
            for r, i in enumerate(rows):
                _, pos, plan = enc[i]
                nll = np.empty(len(pos))
                ent = np.empty(len(pos))
                for a in range(0, len(pos), step):
                    p = torch.as_tensor(pos[a : a + step], device=logits.device)
                    lg = logits[r, p - 1].float()  # position p - 1 predicts token p
                    ent[a : a + step] = token_entropy(lg).double().cpu().numpy()
                    logp = torch.log_softmax(lg, dim=-1)
                    tok = x[r, p].unsqueeze(-1)
                    nll[a : a + step] = -logp.gather(-1, tok)[:, 0].double().cpu().numpy()
                out[i] = _sums(nll, ent, plan)
            del logits
    df = pd.DataFrame(out, columns=list(STAT_COLUMNS))
    for c in ("n_tokens", "n_plan", "n_exec"):
        df[c] = df[c].astype(np.int64)
    df.insert(0, "id", sids)
    return df


def _sums(nll: np.ndarray, ent: np.ndarray, plan: np.ndarray) -> list[float]:
    ex = ~plan
    return [
        len(nll),
        int(plan.sum()),
        int(ex.sum()),
        float(nll[plan].sum()),
        float(nll[ex].sum()),
        float(ent[plan].sum()),
        float(ent[ex].sum()),
    ]


def _tokenizer_facts(tok: Any) -> dict[str, Any]:
    special = getattr(tok, "special_tokens_map", {}) or {}
    return {
        "vocabulary size": (len(tok), getattr(tok, "vocab_size", None)),
        "special tokens": (
            sorted((k, str(v)) for k, v in special.items()),
            [getattr(tok, f"{k}_id", None) for k in ("bos_token", "eos_token", "pad_token")],
            sorted(map(str, getattr(tok, "all_special_tokens", []))),
        ),
        "ids of the probe text": list(tok(PROBE_TEXT, add_special_tokens=False)["input_ids"]),
        "ids with special tokens": list(tok("1 2", add_special_tokens=True)["input_ids"]),
    }


def check_same_tokenizer(tokenizers: Mapping[str, Any]) -> None:
    """Raise unless all checkpoints' tokenizers agree.

    Compares the vocabulary size, the special tokens and the ids of :data:`PROBE_TEXT`
    (digits, LaTeX, unicode) against the first checkpoint's: cheap, and enough to catch a
    checkpoint saved with another or an extended tokenizer.

    Parameters
    ----------
    tokenizers : mapping of str to tokenizer
        Checkpoint name -> its tokenizer.

    Raises
    ------
    ConfigError
        Naming the first two checkpoints that differ and what differs.

    Examples
    --------
    >>> from mechgraph.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> check_same_tokenizer({"step-0": tok, "step-100": tok})  # the same: no error
    """
    items = list(tokenizers.items())
    if len(items) < 2:
        return
    ref_name, ref = items[0]
    ref_facts = _tokenizer_facts(ref)
    for name, tok in items[1:]:
        if tok is ref:
            continue
        facts = _tokenizer_facts(tok)
        for what, v in ref_facts.items():
            if facts[what] != v:
                raise ConfigError(
                    f"checkpoints {ref_name!r} and {name!r} have different tokenizers "
                    f"({what} differ): their per-token statistics are not comparable"
                )


def load_checkpoint_models(spec: str | Mapping[str, str]) -> dict[str, str]:
    """Checkpoint name -> model path, from the CLI form ``CKPT=PATH,CKPT=PATH``.

    Order is kept (give checkpoints in training order). ``default`` as a path means
    mechgraph's default model; any other path must exist.

    Parameters
    ----------
    spec : str or mapping of str to str

    Returns
    -------
    dict of str to str

    Raises
    ------
    ConfigError
        An entry without ``=``, an empty name or path, a checkpoint given twice, or a path
        that does not exist.

    Examples
    --------
    >>> load_checkpoint_models("step0=default, step100=default")
    {'step0': 'default', 'step100': 'default'}
    >>> load_checkpoint_models("step0")
    Traceback (most recent call last):
    ...
    mechgraph.errors.ConfigError: malformed checkpoint entry 'step0': use CKPT=PATH
    """
    from mechgraph.models import DEFAULT_MODEL_ID

    pairs: list[tuple[str, str]] = []
    if isinstance(spec, str):
        if not spec.strip():
            raise ConfigError("no checkpoint models given: use CKPT=PATH,CKPT=PATH")
        for entry in spec.split(","):
            name, eq, path = entry.partition("=")
            if not eq or not name.strip() or not path.strip():
                raise ConfigError(f"malformed checkpoint entry {entry.strip()!r}: use CKPT=PATH")
            pairs.append((name.strip(), path.strip()))
    elif isinstance(spec, Mapping):
        for name, path in spec.items():
            if not str(name).strip() or not str(path).strip():
                raise ConfigError(f"malformed checkpoint entry {name!r}: {path!r}")
            pairs.append((str(name).strip(), str(path).strip()))
    else:
        raise ConfigError(f"checkpoint models must be a str or a mapping, not {type(spec)}")
    if not pairs:
        raise ConfigError("no checkpoint models given: use CKPT=PATH,CKPT=PATH")
    out: dict[str, str] = {}
    for name, path in pairs:
        if name in out:
            raise ConfigError(f"checkpoint {name!r} is given twice")
        if path not in ("default", DEFAULT_MODEL_ID) and not os.path.exists(
            os.path.expanduser(path)
        ):
            raise ConfigError(f"checkpoint {name!r}: model path {path!r} does not exist")
        out[name] = path
    return out


def relative_perplexity(nll_sum: Any, n: Any, ref_nll_sum: Any, ref_n: Any) -> Any:
    """``exp(mean NLL) / exp(reference mean NLL)``, element-wise (numpy broadcasting).

    Works on scalars and on bootstrap arrays of resampled sums alike; a zero count gives
    NaN.

    Parameters
    ----------
    nll_sum, n : float or array
        Summed NLL (nats) and token count at a checkpoint.
    ref_nll_sum, ref_n : float or array
        The same at the reference checkpoint (HICRA: the first one).

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> relative_perplexity(np.array([3.0, 1.5]), 3, 1.0, 1).round(4).tolist()
    [1.0, 0.6065]
    >>> bool(np.isnan(relative_perplexity(1.0, 0, 1.0, 1)))
    True
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.asarray(nll_sum, dtype=np.float64) / np.asarray(n, dtype=np.float64)
        ref = np.asarray(ref_nll_sum, dtype=np.float64) / np.asarray(ref_n, dtype=np.float64)
        out = np.exp(mean - ref)
    out = np.where(np.isfinite(mean) & np.isfinite(ref), out, np.nan)
    return out[()] if out.ndim == 0 else out
