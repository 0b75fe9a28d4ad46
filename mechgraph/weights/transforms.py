"""Advantage transforms: sequence advantages (B,) -> per-token advantages (B, T).

Every transform takes the advantages a trainer computed (one per completion, shape
``(B,)``, or already per token, ``(B, T)``) and per-token information of shape
``(B, T)`` (a planning mask or a weight), and returns ``(B, T)`` advantages. Inputs can be
torch tensors or numpy arrays (or nested lists); the result is a torch tensor (on the
device of the first tensor input) when any input is one, else a numpy array. Tokens
outside ``response_mask`` (padding) get 0.

What each transform does to the **sign** and the **mean** of the advantage:

=========================  ==========================================  ==============================================
transform                  sign                                        mean (over a sequence's response tokens)
=========================  ==========================================  ==============================================
``hicra_advantages``       kept for ``0 <= alpha < 1``: ``A > 0`` ->    rises by ``alpha * |A| * share of planning``
                           ``(1 + alpha) A`` on planning tokens,        tokens: never falls, so group-normalised
                           ``A < 0`` -> ``(1 - alpha) A``; ``alpha = 1``  advantages (mean 0) get a positive bias
                           zeroes negative planning tokens
``hicra_code_advantages``  as ``hicra`` on the rows it touches          as ``hicra`` on eligible rows; unchanged
                                                                        elsewhere
``multiplicative``         kept where ``w > 0``, zero where ``w == 0``,  multiplied by the sequence's mean weight: kept
(``A * w``)                flipped where ``w < 0``                      when ``w`` has mean 1 over the sequence
``additive`` (``A + w``)   flips on tokens where ``w`` opposes ``A``    shifted by the sequence's mean weight: kept
                           and ``|w| > |A|``                            when ``w`` has mean 0 over the sequence
=========================  ==========================================  ==============================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError

__all__ = [
    "TRANSFORMS",
    "AdvantageConfig",
    "additive_advantages",
    "apply_transform",
    "group_ids",
    "hicra_advantages",
    "hicra_code_advantages",
    "hicra_code_eligible",
    "multiplicative_advantages",
    "normalize_weights",
    "top_entropy_mask",
]

TRANSFORMS = ("hicra", "hicra_code", "multiplicative", "additive")


# ------------------------------------------------------------------ array plumbing


def _is_torch(x: Any) -> bool:
    t = type(x)
    return t.__module__.startswith("torch") and t.__name__ in ("Tensor", "Parameter")


def _numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array (a tensor is detached and moved to the CPU)."""
    return np.asarray(x.detach().cpu().numpy() if _is_torch(x) else x)


class _Ops:
    """The few array operations the transforms need, on torch or numpy."""

    def __init__(self, *arrays: Any) -> None:
        self.ref = next((a for a in arrays if _is_torch(a)), None)
        self.torch = self.ref is not None
        if self.torch:
            import torch

            self.t = torch

    def float(self, x: Any, dtype: Any = None) -> Any:
        """``x`` as a float array of this namespace (``dtype``, or its own float dtype)."""
        if self.torch:
            t = self.t
            x = x if _is_torch(x) else t.as_tensor(np.asarray(x))
            if dtype is None:
                ref = self.ref.dtype if self.ref.is_floating_point() else t.float32
                dtype = x.dtype if x.is_floating_point() else ref
            return x.to(device=self.ref.device, dtype=dtype)
        a = np.asarray(x)
        return a.astype(dtype or (a.dtype if a.dtype.kind == "f" else np.float32), copy=False)

    def abs(self, x: Any) -> Any:
        return x.abs() if self.torch else np.abs(x)


def _advantage_2d(ops: _Ops, A: Any, shape: tuple[int, int], name: str = "A") -> Any:
    a = ops.float(A)
    if a.ndim == 1:
        if a.shape[0] != shape[0]:
            raise ConfigError(f"{name} has {a.shape[0]} rows but the token arrays have {shape[0]}")
        a = a[:, None]
    elif a.ndim == 2:
        if a.shape[0] != shape[0] or a.shape[1] not in (1, shape[1]):
            raise ConfigError(f"{name} of shape {tuple(a.shape)} does not match (B, T) = {shape}")
    else:
        raise ConfigError(f"{name} must have shape (B,) or (B, T), got {tuple(a.shape)}")
    return a


def _token_2d(ops: _Ops, x: Any, name: str, like: Any = None) -> Any:
    a = ops.float(x, dtype=None if like is None else like.dtype)
    if a.ndim != 2:
        raise ConfigError(f"{name} must have shape (B, T), got {tuple(a.shape)}")
    return a


def _finish(ops: _Ops, out: Any, response_mask: Any) -> Any:
    if response_mask is not None:
        m = _token_2d(ops, response_mask, "response_mask", like=out)
        if tuple(m.shape) != tuple(out.shape):
            raise ConfigError(
                f"response_mask of shape {tuple(m.shape)} does not match {tuple(out.shape)}"
            )
        zero = out.new_zeros(()) if ops.torch else out.dtype.type(0)
        out = ops.t.where(m != 0, out, zero) if ops.torch else np.where(m != 0, out, zero)
    return out


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(
            f"alpha must be in [0, 1], got {alpha}: above 1, A + alpha*|A| flips the sign of "
            "negative advantages on planning tokens"
        )


# ------------------------------------------------------------------ transforms


def hicra_advantages(A: Any, mask: Any, alpha: float = 0.2, *, response_mask: Any = None) -> Any:
    """HICRA's planning-token advantage: ``A' = A + alpha * |A|`` on planning tokens, ``A`` elsewhere.

    Parameters
    ----------
    A : (B,) or (B, T) array or tensor
        Advantages; ``(B,)`` is broadcast over the tokens.
    mask : (B, T) bool / 0-1 array or tensor
        Planning tokens (1) and the rest (0).
    alpha : float
        Amplification, in [0, 1] (HICRA uses 0.2).
    response_mask : (B, T), optional
        Tokens to keep; the others (padding) become 0.

    Returns
    -------
    (B, T) tensor or ndarray
        Float; a tensor when any input is one.

    Notes
    -----
    Sign: kept for ``alpha < 1`` (positive advantages grow by ``1 + alpha``, negative ones
    shrink by ``1 - alpha`` on planning tokens: a bad completion's planning tokens are
    penalised less); ``alpha = 1`` makes negative planning advantages 0. Mean: never falls;
    a sequence's token mean rises by ``alpha * |A| * (share of planning tokens)``, so
    group-normalised advantages (mean 0) get a positive bias.

    Examples
    --------
    >>> hicra_advantages([1.0, -1.0], [[1, 0], [1, 0]]).tolist()
    [[1.2, 1.0], [-0.8, -1.0]]
    """
    _check_alpha(alpha)
    ops = _Ops(A, mask, response_mask)
    m0 = np.asarray(mask) if not _is_torch(mask) else mask
    shape = (int(m0.shape[0]), int(m0.shape[1])) if m0.ndim == 2 else (-1, -1)
    if shape[0] < 0:
        raise ConfigError(f"mask must have shape (B, T), got {tuple(m0.shape)}")
    a = _advantage_2d(ops, A, shape)
    m = _token_2d(ops, mask, "mask", like=a)
    return _finish(ops, a + alpha * ops.abs(a) * m, response_mask)


def multiplicative_advantages(A: Any, w: Any, *, response_mask: Any = None) -> Any:
    """Token-weighted advantage ``A' = A * w``.

    Parameters
    ----------
    A : (B,) or (B, T)
    w : (B, T)
        Per-token weights (e.g. sentence importance spread to tokens, or ``1 + alpha * mask``).
    response_mask : (B, T), optional

    Notes
    -----
    Sign: kept where ``w > 0``, 0 where ``w == 0``, flipped where ``w < 0``. Mean: a
    sequence's token mean becomes ``A * mean(w)``: unchanged when ``w`` has mean 1 over the
    sequence's tokens (see :func:`normalize_weights`).

    Examples
    --------
    >>> multiplicative_advantages([2.0], [[0.5, 1.5]]).tolist()
    [[1.0, 3.0]]
    """
    ops = _Ops(A, w, response_mask)
    w2 = _token_2d(ops, w, "w")
    a = _advantage_2d(ops, A, (int(w2.shape[0]), int(w2.shape[1])))
    w2 = w2.to(a.dtype) if ops.torch else w2.astype(a.dtype)
    return _finish(ops, a * w2, response_mask)


def additive_advantages(A: Any, w: Any, *, scale: float = 1.0, response_mask: Any = None) -> Any:
    """KTAE-style token advantage ``A' = A + scale * w``.

    Parameters
    ----------
    A : (B,) or (B, T)
    w : (B, T)
        Per-token advantage terms (e.g. a token-level key-token score).
    scale : float
    response_mask : (B, T), optional

    Notes
    -----
    Sign: flips on tokens where ``scale * w`` has the opposite sign and a larger size than
    ``A``. Mean: shifted by ``scale * mean(w)``; unchanged when ``w`` is centred (mean 0)
    over the sequence's tokens.

    Examples
    --------
    >>> additive_advantages([1.0], [[-2.0, 0.5]]).tolist()
    [[-1.0, 1.5]]
    """
    ops = _Ops(A, w, response_mask)
    w2 = _token_2d(ops, w, "w")
    a = _advantage_2d(ops, A, (int(w2.shape[0]), int(w2.shape[1])))
    w2 = w2.to(a.dtype) if ops.torch else w2.astype(a.dtype)
    return _finish(ops, a + scale * w2, response_mask)


def top_entropy_mask(
    entropy: Any, response_mask: Any = None, top: float = 0.3, *, per: str = "batch"
) -> Any:
    """Tokens whose entropy is in the top ``top`` share of the response tokens.

    Parameters
    ----------
    entropy : (B, T)
    response_mask : (B, T), optional
    top : float in (0, 1]
        Share of tokens to keep (0.3: the 30 % highest-entropy tokens).
    per : {"batch", "sequence"}
        Quantile over all response tokens of the batch, or within each sequence.

    Returns
    -------
    (B, T) bool tensor or ndarray

    Examples
    --------
    >>> top_entropy_mask([[0.1, 0.9, 0.5, 0.2]], top=0.5).tolist()
    [[False, True, True, False]]
    """
    if not 0.0 < top <= 1.0:
        raise ConfigError(f"top must be in (0, 1], got {top}")
    if per not in ("batch", "sequence"):
        raise ConfigError(f"per must be 'batch' or 'sequence', got {per!r}")
    torch_out = _is_torch(entropy) or _is_torch(response_mask)
    device = next((x.device for x in (entropy, response_mask) if _is_torch(x)), None)
    e = entropy.detach().float().cpu().numpy() if _is_torch(entropy) else np.asarray(entropy, float)
    if e.ndim != 2:
        raise ConfigError(f"entropy must have shape (B, T), got {e.shape}")
    if response_mask is None:
        valid = np.ones(e.shape, dtype=bool)
    else:
        valid = _numpy(response_mask).astype(bool)
    out = np.zeros(e.shape, dtype=bool)
    rows = [slice(None)] if per == "batch" else [slice(i, i + 1) for i in range(e.shape[0])]
    for r in rows:
        v = e[r][valid[r]]
        if v.size == 0:
            continue
        k = max(1, int(np.ceil(top * v.size)))
        thr = np.sort(v)[::-1][k - 1]
        out[r] = valid[r] & (e[r] >= thr)
    if torch_out:
        import torch

        return torch.as_tensor(out, device=device)
    return out


def group_ids(n: int, num_generations: int) -> np.ndarray:
    """Group index of each of ``n`` completions laid out in consecutive groups.

    Examples
    --------
    >>> group_ids(6, 3).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    if num_generations < 1 or n % num_generations:
        raise ConfigError(f"{n} completions do not split into groups of {num_generations}")
    return np.repeat(np.arange(n // num_generations), num_generations)


def hicra_code_eligible(correct: Any, lengths: Any, groups: Any) -> np.ndarray:
    """Completions HICRA's code amplifies: correct and longer than their group's mean length.

    Parameters
    ----------
    correct : (B,) bool
    lengths : (B,) number of response tokens
    groups : (B,) group (prompt) ids

    Examples
    --------
    >>> hicra_code_eligible([True, True, False, True], [5, 3, 9, 1], [0, 0, 1, 1]).tolist()
    [True, False, False, False]
    """
    corr, n, grp = _numpy(correct).astype(bool), _numpy(lengths).astype(np.float64), _numpy(groups)
    if not (corr.shape == n.shape == grp.shape) or corr.ndim != 1:
        raise ConfigError("correct, lengths and groups need one entry per completion")
    eligible = np.zeros(len(corr), dtype=bool)
    for g in np.unique(grp):
        rows = grp == g
        eligible[rows] = n[rows] > n[rows].mean()
    return eligible & corr


def hicra_code_advantages(
    A: Any,
    planning_mask: Any,
    *,
    correct: Sequence[bool] | Any,
    groups: Sequence[Any] | Any,
    response_mask: Any = None,
    entropy: Any = None,
    alpha: float = 0.2,
    top_entropy: float = 0.3,
) -> Any:
    """The variant reported for HICRA's code: amplify only long correct completions.

    A completion is *eligible* when it is correct and longer (in response tokens) than the
    mean length of its group. On eligible completions, planning tokens (strategic-gram
    tokens, or — when ``entropy`` is given — also the top ``top_entropy`` share of tokens by
    entropy, over the batch) get ``A + alpha * |A|``; everything else keeps ``A``.

    Parameters
    ----------
    A : (B,) or (B, T)
    planning_mask : (B, T)
    correct : (B,) bool
    groups : (B,)
        Group (prompt) id of each completion; see :func:`group_ids`.
    response_mask : (B, T), optional
        Response tokens; lengths are its row sums (``T`` for every row when omitted).
    entropy : (B, T), optional
        Token entropies; adds the top ``top_entropy`` tokens to the planning tokens.
    alpha, top_entropy : float

    Notes
    -----
    Sign and mean: as :func:`hicra_advantages` on eligible completions; other completions
    are unchanged. Eligible completions are correct, so their advantage is usually
    positive and grows by ``1 + alpha`` on planning tokens.

    Examples
    --------
    >>> out = hicra_code_advantages([1.0, -1.0], [[1, 1, 0], [1, 0, 0]], correct=[True, False],
    ...                             groups=[0, 0], response_mask=[[1, 1, 1], [1, 0, 0]])
    >>> out.round(2).tolist()
    [[1.2, 1.2, 1.0], [-1.0, 0.0, 0.0]]
    """
    _check_alpha(alpha)
    pm = _numpy(planning_mask)
    if pm.ndim != 2:
        raise ConfigError(f"planning_mask must have shape (B, T), got {pm.shape}")
    B, T = pm.shape
    if response_mask is None:
        lengths = np.full(B, T, dtype=np.float64)
    else:
        lengths = _numpy(response_mask).astype(np.float64).sum(1)
    eligible = hicra_code_eligible(correct, lengths, groups)
    plan = pm.astype(bool)
    if entropy is not None:
        hi = top_entropy_mask(entropy, response_mask, top_entropy)
        plan = plan | _numpy(hi)
    m = plan & eligible[:, None]
    if _is_torch(planning_mask) or any(_is_torch(x) for x in (A, response_mask, entropy)):
        import torch

        ref = next(x for x in (A, planning_mask, response_mask, entropy) if _is_torch(x))
        m = torch.as_tensor(m, device=ref.device)
    return hicra_advantages(A, m, alpha, response_mask=response_mask)


def normalize_weights(w: Any, response_mask: Any = None, how: str = "mean") -> Any:
    """Rescale per-token weights per sequence.

    Parameters
    ----------
    w : (B, T)
    response_mask : (B, T), optional
    how : {"none", "mean", "center", "max"}
        ``mean``: divide by the mean over the sequence's response tokens (mean becomes 1,
        so :func:`multiplicative_advantages` keeps each sequence's mean); ``center``:
        subtract that mean (mean 0, so :func:`additive_advantages` keeps it); ``max``:
        divide by the largest absolute value.

    Examples
    --------
    >>> normalize_weights([[1.0, 3.0]]).tolist()
    [[0.5, 1.5]]
    """
    if how not in ("none", "mean", "center", "max"):
        raise ConfigError(f"how must be none, mean, center or max; got {how!r}")
    ops = _Ops(w, response_mask)
    x = _token_2d(ops, w, "w")
    if how == "none":
        return x
    m = ops.float(np.ones(tuple(x.shape)) if response_mask is None else response_mask, x.dtype)
    n = m.sum(1, keepdims=True) if not ops.torch else m.sum(1, keepdim=True)
    n = n.clamp(min=1) if ops.torch else np.maximum(n, 1)
    if how == "max":
        s = (
            (ops.abs(x) * m).amax(1, keepdim=True)
            if ops.torch
            else (np.abs(x) * m).max(1, keepdims=True)
        )
        s = s.clamp(min=1e-12) if ops.torch else np.maximum(s, 1e-12)
        return x / s * m
    mean = (x * m).sum(1, keepdim=True) / n if ops.torch else (x * m).sum(1, keepdims=True) / n
    if how == "center":
        return (x - mean) * m
    if ops.torch:
        safe = ops.t.where(mean.abs() < 1e-12, ops.t.ones_like(mean), mean)
    else:
        safe = np.where(np.abs(mean) < 1e-12, 1.0, mean)
    return x / safe * m


# ------------------------------------------------------------------ config and dispatch


@dataclass
class AdvantageConfig:
    """Which transform the adapters apply, with its parameters (saved with runs).

    Parameters
    ----------
    transform : {"hicra", "hicra_code", "multiplicative", "additive"}
    alpha : float
        HICRA amplification in [0, 1].
    top_entropy : float
        ``hicra_code``: share of highest-entropy tokens added to the planning tokens
        (0 disables the entropy part).
    correct_threshold : float
        ``hicra_code``: a completion is correct when its total reward is above this.
    scale : float
        ``additive``: multiplier of the weights.

    Examples
    --------
    >>> AdvantageConfig(transform="hicra", alpha=0.2).to_dict()["alpha"]
    0.2
    """

    transform: str = "hicra"
    alpha: float = 0.2
    top_entropy: float = 0.3
    correct_threshold: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"unknown transform {self.transform!r}; choose from {TRANSFORMS}")
        _check_alpha(self.alpha)
        if not 0.0 <= self.top_entropy <= 1.0:
            raise ConfigError(f"top_entropy must be in [0, 1], got {self.top_entropy}")

    @property
    def needs_planning(self) -> bool:
        """True for the transforms that read a planning mask."""
        return self.transform in ("hicra", "hicra_code")

    @property
    def needs_weights(self) -> bool:
        """True for the transforms that read per-token weights."""
        return self.transform in ("multiplicative", "additive")

    @property
    def sign_preserving(self) -> bool:
        """True when the transform never flips a token's advantage sign (given ``w >= 0``)."""
        return self.transform != "additive"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return asdict(self)


def apply_transform(
    config: AdvantageConfig,
    A: Any,
    *,
    planning: Any = None,
    weights: Any = None,
    response_mask: Any = None,
    correct: Any = None,
    groups: Any = None,
    entropy: Any = None,
) -> Any:
    """Apply the transform named in ``config`` with the inputs it needs.

    Examples
    --------
    >>> apply_transform(AdvantageConfig(), [1.0], planning=[[1, 0]]).round(2).tolist()
    [[1.2, 1.0]]
    """
    name = config.transform
    if config.needs_planning and planning is None:
        raise ConfigError(f"transform {name!r} needs a planning mask")
    if config.needs_weights and weights is None:
        raise ConfigError(f"transform {name!r} needs per-token weights")
    if name == "hicra":
        return hicra_advantages(A, planning, config.alpha, response_mask=response_mask)
    if name == "hicra_code":
        if correct is None or groups is None:
            raise ConfigError("transform 'hicra_code' needs `correct` and `groups`")
        return hicra_code_advantages(
            A,
            planning,
            correct=correct,
            groups=groups,
            response_mask=response_mask,
            entropy=entropy if config.top_entropy > 0 else None,
            alpha=config.alpha,
            top_entropy=config.top_entropy or 1.0,
        )
    if name == "multiplicative":
        return multiplicative_advantages(A, weights, response_mask=response_mask)
    return additive_advantages(A, weights, scale=config.scale, response_mask=response_mask)
