"""Per-token masks and weights keyed by the trainer's tokenizer.

Weights are always attached to the token ids of the tokenizer that will train on them.
Between two tokenizers they move through char offsets: a token of the target tokenizer
takes the value of the source token whose char range ``[anchor, end)`` holds its anchor
(the anchor rule of :mod:`mechgraph.align`: first non-white-space char of the token).

The text the trainer holds must be the text that was analysed. Every function that keys
weights to a trainer's tokens compares the two and raises :class:`TextMismatchError`
(naming the first differing character) instead of shifting masks silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mechgraph.align import token_anchors, tokenize_with_offsets
from mechgraph.errors import AlignmentError, ConfigError

__all__ = [
    "TextMismatchError",
    "TokenWeights",
    "check_same_text",
    "decode_with_offsets",
    "mask_to_spans",
    "tokenize_with_offsets",
    "transfer_mask",
    "transfer_values",
]


class TextMismatchError(AlignmentError):
    """The text a trainer holds differs from the text whose weights were computed."""


def check_same_text(analysed: str, held: str, *, trace_id: str = "?") -> None:
    """Raise :class:`TextMismatchError` unless ``held == analysed``.

    The message gives the first differing char and a little context on both sides.

    Examples
    --------
    >>> check_same_text("Let x = 1.", "Let x = 1.")
    >>> check_same_text("Let x = 1.", "Let x = 2.")
    Traceback (most recent call last):
    ...
    mechgraph.weights.tokens.TextMismatchError: trace '?': the trainer's completion text differs from the analysed text at char 8: analysed '…x = 1.' vs trainer '…x = 2.' (lengths 10 and 10); weights are never shifted to fit — recompute them on the trainer's text
    """
    if held == analysed:
        return
    n = min(len(held), len(analysed))
    i = next((k for k in range(n) if held[k] != analysed[k]), n)
    lo = max(0, i - 4)

    def ctx(s: str) -> str:
        return ("…" if lo else "") + s[lo : i + 12]

    raise TextMismatchError(
        f"trace {trace_id!r}: the trainer's completion text differs from the analysed text at "
        f"char {i}: analysed {ctx(analysed)!r} vs trainer {ctx(held)!r} (lengths "
        f"{len(analysed)} and {len(held)}); weights are never shifted to fit — recompute them "
        "on the trainer's text"
    )


def _special_ids(tokenizer: Any) -> set[int]:
    """Ids that ``decode(..., skip_special_tokens=True)`` drops: the named special tokens and
    every added token flagged special (e.g. SmolLM2's ``<jupyter_start>``)."""
    ids = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids |= {int(i) for i, t in added.items() if getattr(t, "special", False)}
    return ids


def decode_with_offsets(
    tokenizer: Any, ids: Sequence[int] | np.ndarray, *, skip_special_tokens: bool = True
) -> tuple[str, np.ndarray]:
    """Decode token ids and give each token its char span in the decoded text.

    This keys weights to the ids a trainer *generated* (which need not be the ids the
    tokenizer would give the text). Fast path: re-tokenise the decoded text and use its
    offsets when it gives back the same ids. Otherwise, decode incrementally (a window of
    the previous piece as context, pieces that end inside a multi-byte char are held back);
    tokens that together make one char share its span. Skipped special tokens get an
    empty span.

    Parameters
    ----------
    tokenizer : transformers fast tokenizer
    ids : sequence of int
    skip_special_tokens : bool
        As in ``tokenizer.decode`` (TRL and verl decode completions with ``True``).

    Returns
    -------
    text : str
        ``tokenizer.decode(ids, skip_special_tokens=..., clean_up_tokenization_spaces=False)``.
    offsets : (T, 2) int64

    Raises
    ------
    AlignmentError
        The pieces do not add up to the decoded text (a decoder that is not prefix-stable).

    Examples
    --------
    >>> from mechgraph.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> text, off = decode_with_offsets(tok, tok("Hi there")["input_ids"])
    >>> text, off.tolist()
    ('Hi there', [[0, 2], [2, 8]])
    """
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    kw = {"skip_special_tokens": skip_special_tokens, "clean_up_tokenization_spaces": False}
    text = tokenizer.decode(ids, **kw)
    special = _special_ids(tokenizer) if skip_special_tokens else set()
    keep = [k for k, i in enumerate(ids) if i not in special]
    off = np.zeros((len(ids), 2), dtype=np.int64)
    try:
        re_ids, re_off = tokenize_with_offsets(tokenizer, text)
    except (ConfigError, AlignmentError):
        re_ids = None
    if re_ids is not None and re_ids.tolist() == [ids[k] for k in keep]:
        off[keep] = re_off
    else:
        off = _incremental_offsets(tokenizer, ids, special, kw, text)
    # skipped special tokens: an empty span at the end of what came before
    pos = 0
    for k in range(len(ids)):
        if ids[k] in special:
            off[k] = (pos, pos)
        else:
            pos = int(off[k, 1])
    return text, off


def _incremental_offsets(
    tokenizer: Any, ids: list[int], special: set[int], kw: dict, text: str
) -> np.ndarray:
    off = np.zeros((len(ids), 2), dtype=np.int64)
    prefix = read = 0
    cur = 0
    pieces: list[str] = []

    def emit(upto: int, final: bool) -> bool:
        nonlocal prefix, read, cur
        before = tokenizer.decode(ids[prefix:read], **kw)
        after = tokenizer.decode(ids[prefix:upto], **kw)
        if not final and (len(after) <= len(before) or after.endswith("\ufffd")):
            return False
        piece = after[len(before) :]
        for j in range(read, upto):
            off[j] = (cur, cur + len(piece))
        pieces.append(piece)
        cur += len(piece)
        prefix, read = read, upto
        return True

    for k in range(len(ids)):
        if ids[k] in special:
            continue
        emit(k + 1, final=False)
    if read < len(ids):
        emit(len(ids), final=True)
    if "".join(pieces) != text:
        raise AlignmentError(
            "cannot recover char offsets of these token ids: decoding them one piece at a time "
            "does not give the decoded text (a decoder that is not prefix-stable)"
        )
    return off


def mask_to_spans(
    text: str, offsets: Sequence[Sequence[int]] | np.ndarray, mask: Sequence[bool] | np.ndarray
) -> list[tuple[int, int]]:
    """Merged char spans ``[anchor, end)`` of the masked tokens.

    Examples
    --------
    >>> mask_to_spans("ab cd ef", [(0, 2), (2, 5), (5, 8)], [True, True, False])
    [(0, 2), (3, 5)]
    """
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    m = np.asarray(mask, dtype=bool).reshape(-1)
    if len(m) != len(off):
        raise AlignmentError(f"mask has {len(m)} entries for {len(off)} tokens")
    anchors = token_anchors(text, off)
    spans: list[tuple[int, int]] = []
    for a, e in sorted(
        (int(a), int(e)) for a, e, k in zip(anchors, off[:, 1], m, strict=True) if k and a >= 0
    ):
        if spans and a <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], e))
        else:
            spans.append((a, e))
    return spans


def transfer_values(
    text: str,
    src_offsets: Sequence[Sequence[int]] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    dst_offsets: Sequence[Sequence[int]] | np.ndarray,
    *,
    fill: float = 0.0,
) -> np.ndarray:
    """Move per-token values from one tokenisation of ``text`` to another.

    A target token takes the value of the source token whose ``[anchor, end)`` holds the
    target token's anchor (the largest value where several do); ``fill`` where none does
    (e.g. white-space tokens, special tokens).

    Examples
    --------
    >>> transfer_values("ab cd", [(0, 2), (2, 5)], [1.0, 2.0], [(0, 1), (1, 2), (2, 5)]).tolist()
    [1.0, 1.0, 2.0]
    """
    so = np.asarray(src_offsets, dtype=np.int64).reshape(-1, 2)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(v) != len(so):
        raise AlignmentError(f"{len(v)} values for {len(so)} source tokens")
    chars = np.full(len(text) + 1, np.nan)
    for a, e, x in zip(token_anchors(text, so), so[:, 1], v, strict=True):
        if a >= 0:
            seg = chars[a:e]
            chars[a:e] = np.where(np.isnan(seg), x, np.fmax(seg, x))
    da = token_anchors(text, dst_offsets)
    out = np.where(da >= 0, chars[np.where(da >= 0, da, len(text))], np.nan)
    return np.where(np.isnan(out), fill, out)


def transfer_mask(
    text: str,
    src_offsets: Sequence[Sequence[int]] | np.ndarray,
    mask: Sequence[bool] | np.ndarray,
    dst_offsets: Sequence[Sequence[int]] | np.ndarray,
) -> np.ndarray:
    """Move a boolean token mask from one tokenisation of ``text`` to another.

    Examples
    --------
    >>> transfer_mask("ab cd", [(0, 2), (2, 5)], [False, True], [(0, 1), (1, 2), (3, 5)]).tolist()
    [False, False, True]
    """
    m = np.asarray(mask, dtype=bool).astype(np.float64)
    return transfer_values(text, src_offsets, m, dst_offsets, fill=0.0) > 0.5


@dataclass
class TokenWeights:
    """Planning mask and weights of one completion, keyed by one tokenizer's ids.

    Attributes
    ----------
    id : str
        Trace / completion id.
    text : str
        The analysed completion text.
    input_ids : (T,) int64
    offsets : (T, 2) int64
        Char span of each token in ``text``.
    planning_mask : (T,) bool
    weight : (T,) float32
    fields : dict
        Trace fields carried along (prompt, answer, correct, model, checkpoint, ...).
    weight_fill : float
        Weight given to tokens no source covers when weights move to other tokens.

    Examples
    --------
    >>> tw = TokenWeights("t0", "ab cd", [5, 6], [(0, 2), (2, 5)], [False, True], [1.0, 2.0])
    >>> tw.n_tokens, tw.planning_share
    (2, 0.5)
    """

    id: str
    text: str
    input_ids: np.ndarray
    offsets: np.ndarray
    planning_mask: np.ndarray
    weight: np.ndarray
    fields: Mapping[str, Any] = field(default_factory=dict)
    weight_fill: float = 1.0

    def __post_init__(self) -> None:
        self.input_ids = np.asarray(self.input_ids, dtype=np.int64).reshape(-1)
        self.offsets = np.asarray(self.offsets, dtype=np.int64).reshape(-1, 2)
        self.planning_mask = np.asarray(self.planning_mask, dtype=bool).reshape(-1)
        self.weight = np.asarray(self.weight, dtype=np.float32).reshape(-1)
        n = len(self.input_ids)
        for name in ("offsets", "planning_mask", "weight"):
            if len(getattr(self, name)) != n:
                raise AlignmentError(
                    f"trace {self.id!r}: {name} has {len(getattr(self, name))} entries for "
                    f"{n} tokens"
                )
        if self.offsets.size and (self.offsets.min() < 0 or self.offsets.max() > len(self.text)):
            raise AlignmentError(f"trace {self.id!r}: token offsets fall outside the text")
        self.fields = dict(self.fields)

    @property
    def n_tokens(self) -> int:
        """Number of tokens."""
        return len(self.input_ids)

    @property
    def planning_share(self) -> float:
        """Share of tokens in the planning mask (0 for no token)."""
        return float(self.planning_mask.mean()) if self.n_tokens else 0.0

    def planning_spans(self) -> list[tuple[int, int]]:
        """Char spans of the planning tokens (merged)."""
        return mask_to_spans(self.text, self.offsets, self.planning_mask)

    def retokenize(self, tokenizer: Any) -> TokenWeights:
        """The same weights on ``tokenizer``'s tokens of the same text.

        Examples
        --------
        >>> tw.retokenize(bert_tokenizer).input_ids  # doctest: +SKIP
        """
        ids, off = tokenize_with_offsets(tokenizer, self.text)
        return self._moved(ids, off)

    def for_trainer(
        self,
        text: str,
        input_ids: Sequence[int] | np.ndarray | None = None,
        tokenizer: Any = None,
    ) -> TokenWeights:
        """These weights keyed by the ids a trainer holds for ``text``.

        Parameters
        ----------
        text : str
            The completion text the trainer holds; must equal :attr:`text`.
        input_ids : sequence of int, optional
            The trainer's token ids of that completion. Equal to :attr:`input_ids`: returned
            as is; else moved through char offsets (``tokenizer`` needed).
        tokenizer : optional
            The trainer's tokenizer.

        Raises
        ------
        TextMismatchError
            ``text`` differs from the analysed text, or ``input_ids`` decode to another text.

        Examples
        --------
        >>> tw = TokenWeights("t0", "ab cd", [5, 6], [(0, 2), (2, 5)], [False, True], [1.0, 2.0])
        >>> tw.for_trainer("ab cd") is tw
        True
        """
        check_same_text(self.text, text, trace_id=self.id)
        if input_ids is None:
            return self if tokenizer is None else self.retokenize(tokenizer)
        ids = np.asarray(input_ids, dtype=np.int64).reshape(-1)
        if np.array_equal(ids, self.input_ids):
            return self
        if tokenizer is None:
            raise ConfigError(
                f"trace {self.id!r}: the trainer's ids differ from the analysed ids; pass the "
                "trainer's tokenizer to move the weights through char offsets"
            )
        decoded, off = decode_with_offsets(tokenizer, ids)
        check_same_text(self.text, decoded, trace_id=self.id)
        return self._moved(ids, off)

    def _moved(self, ids: np.ndarray, off: np.ndarray) -> TokenWeights:
        mask = transfer_mask(self.text, self.offsets, self.planning_mask, off)
        w = transfer_values(self.text, self.offsets, self.weight, off, fill=self.weight_fill)
        return replace(self, input_ids=ids, offsets=off, planning_mask=mask, weight=w)
