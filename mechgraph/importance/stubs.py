"""Stub generator and embedder with known behaviour, for tests and cost studies."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mechgraph.traces import Trace

__all__ = ["HashEmbedder", "StubGenerator"]


class HashEmbedder:
    """Equal strings get equal unit vectors; different strings nearly orthogonal ones."""

    def __init__(self, dim: int = 256):
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.strip().encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows)

    __call__ = encode  # an Embedder: texts -> (n, d) unit-norm rows


@dataclass
class StubGenerator:
    """Rollouts with a known answer distribution per position.

        Resampling at sentence i: with probability ``p_dissimilar[i]`` the first sentence is
        new text (dissimilar) and the answer is correct with probability ``acc_dissimilar[i]``;
        otherwise the original sentence is kept and the answer is correct with probability
        ``acc_keep[i]``. Position ``S`` (after the last sentence) always keeps and uses
        ``acc_keep[S]``. The correct answer is ``correct`` (default: the trace's answer, else
    "42"); wrong answers are drawn from ``wrong`` uniformly. So the true
        accuracy importance of sentence i (when ``p_dissimilar[i] > 0``) is
        ``acc_dissimilar[i] - (1 - p_dissimilar[i+1]) acc_keep[i+1] - p_dissimilar[i+1] acc_dissimilar[i+1]``.
    """

    trace: Trace
    p_dissimilar: np.ndarray
    acc_dissimilar: np.ndarray
    acc_keep: np.ndarray
    correct: str | None = None
    wrong: tuple[str, ...] = ("41", "43", "7")

    def __post_init__(self) -> None:
        if self.correct is None:  # the trace's own answer, so that accuracy means something
            self.correct = self.trace.answer or "42"
        if self.correct in self.wrong:
            raise ValueError(f"the correct answer {self.correct!r} is among the wrong ones")
        steps = self.trace.steps or []
        self._pos = {len(self.trace.prompt) + s.start: i for i, s in enumerate(steps)}
        self._pos[len(self.trace.prompt) + steps[-1].end] = len(steps)
        self.calls = 0

    def sample(self, prefix: str, seeds: Sequence[int]) -> list[str]:
        self.calls += len(seeds)
        i = self._pos[len(prefix)]
        steps = self.trace.steps or []
        out = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            if i < len(steps) and rng.random() < self.p_dissimilar[i]:
                sent, acc = f"Another idea number {rng.integers(1 << 30)}.", self.acc_dissimilar[i]
            else:
                sent = steps[i].text if i < len(steps) else "Done."
                acc = self.acc_keep[i]
            ans = self.correct if rng.random() < acc else self.wrong[rng.integers(len(self.wrong))]
            out.append(f"{sent} More reasoning. \\boxed{{{ans}}}")
        return out

    def _rates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(p_dissimilar with position S never resampled, acc_dissimilar, acc_keep, S)."""
        f, ad, ak = (
            np.asarray(a, dtype=np.float64)
            for a in (self.p_dissimilar, self.acc_dissimilar, self.acc_keep)
        )
        S = len(self.trace.steps or [])
        f = f.copy()
        f[S] = 0.0
        return f, ad, ak, S

    def true_accuracy_importance(self) -> np.ndarray:
        """The accuracy importance each sentence has in expectation (0 where never resampled).

        Examples
        --------
        >>> from mechgraph.traces import Trace, segment_traces
        >>> trace = segment_traces([Trace("t", "So 2 + 2 = 4.\\nCheck it again.", answer="4")],
        ...                        "lines")[0]
        >>> gen = StubGenerator(trace, p_dissimilar=[0.5, 0.5, 0.0],
        ...                     acc_dissimilar=[0.2, 0.4, 0.0], acc_keep=[0.9, 0.9, 0.9])
        >>> gen.true_accuracy_importance().round(2).tolist()  # one value per sentence
        [-0.45, -0.5]
        """
        f, ad, ak, S = self._rates()
        acc_at = f * ad + (1 - f) * ak
        return np.where(f[:S] > 0, ad[:S] - acc_at[1 : S + 1], 0.0)

    def true_kl_importance(self) -> np.ndarray:
        """The KL importance in the limit of infinitely many rollouts (no smoothing).

        ``KL(P_dissimilar(i) || P(i + 1))`` over the answers {correct, *wrong}; 0 where
        sentence i is never resampled away.

        Examples
        --------
        >>> from mechgraph.traces import Trace, segment_traces
        >>> trace = segment_traces([Trace("t", "So 2 + 2 = 4.\\nCheck it again.", answer="4")],
        ...                        "lines")[0]
        >>> gen = StubGenerator(trace, p_dissimilar=[0.5, 0.5, 0.0],
        ...                     acc_dissimilar=[0.2, 0.4, 0.0], acc_keep=[0.9, 0.9, 0.9])
        >>> gen.true_kl_importance().shape  # one value per sentence
        (2,)
        """
        f, ad, ak, S = self._rates()
        w = len(self.wrong)

        def dist(acc: np.ndarray) -> np.ndarray:  # (n, 1 + w): correct, then each wrong
            return np.column_stack([acc] + [(1 - acc) / w] * w)

        p = dist(ad[:S])
        nxt = slice(1, S + 1)  # position i + 1 of each sentence i (rate arrays may be longer)
        q = f[nxt, None] * dist(ad[nxt]) + (1 - f[nxt, None]) * dist(ak[nxt])
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p / q), 0.0)
        return np.where(f[:S] > 0, terms.sum(1), 0.0)
