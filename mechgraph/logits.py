"""Per-token quantities of a model's next-token distributions (entropy).

Used by the weights (entropy-based token weights) and phases (teacher-forced entropy)
stages; torch is imported on first use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mechgraph.align import token_anchors, tokenize_with_offsets

__all__ = ["completion_entropy", "token_entropy"]


def token_entropy(logits: Any) -> Any:
    """Entropy (nats) of the softmax over the last axis.

    Examples
    --------
    >>> import torch
    >>> round(float(token_entropy(torch.zeros(4))), 4)  # log 4
    1.3863
    """
    import torch

    x = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(np.asarray(logits))
    logp = torch.log_softmax(x.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def completion_entropy(
    model: Any, tokenizer: Any, prompt: str, text: str, *, device: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entropy of the model's next-token distribution at each token of a completion.

    ``prompt + text`` is tokenised together; the completion's tokens are those anchored in
    ``text``. Entry ``t`` is the entropy of the distribution the token was drawn from
    (the logits one position earlier); the first token of a text with no prompt and no
    BOS has none (NaN).

    Parameters
    ----------
    model : transformers causal LM
    tokenizer : fast tokenizer
    prompt, text : str
    device : str, optional
        Defaults to the model's.

    Returns
    -------
    ids : (T,) int64
        Token ids of ``text``'s tokens.
    offsets : (T, 2) int64
        Their char offsets into ``text``.
    entropy : (T,) float32

    Examples
    --------
    >>> ids, off, h = completion_entropy(lm.hf, lm.tokenizer, "Q: 2+2?", " 4")  # doctest: +SKIP
    """
    import torch

    full = prompt + text
    ids, off = tokenize_with_offsets(tokenizer, full)
    bos = getattr(tokenizer, "bos_token_id", None)
    lead = [bos] if bos is not None and (not len(ids) or ids[0] != bos) else []
    anchors = token_anchors(full, off)
    mine = anchors >= len(prompt)
    dev = device or next(model.parameters()).device
    x = torch.as_tensor([*lead, *ids.tolist()], device=dev)[None]
    with torch.inference_mode():
        logits = model(input_ids=x).logits[0]
    h = token_entropy(logits).cpu().numpy()
    # position p predicts token p + 1
    pred = np.concatenate([[np.nan] * (1 - len(lead)), h[: len(ids) - 1 + len(lead)]])
    out_off = off[mine] - len(prompt)
    return ids[mine], np.clip(out_off, 0, None), pred[mine].astype(np.float32)
