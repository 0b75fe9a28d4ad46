"""The report's options: :class:`ReportConfig` (embedded in the report and in its record)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from mechgraph.errors import ConfigError

__all__ = ["DEFAULT_METRICS", "ReportConfig"]

#: Graph metrics shown in the corpus table and the distribution plots, in this order.
DEFAULT_METRICS = ("n_cycles", "revisits", "loop_count", "diameter_norm", "small_world_sigma")


@dataclass
class ReportConfig:
    """What goes into a report (every figure's numbers come from the run's artifacts).

    Parameters
    ----------
    title : str
        Page title (default: ``mechgraph report: <run folder name>``).
    max_traces : int
        Traces embedded in the trace viewer, matrices and trace graphs (the first ones in
        store order); the corpus table and the distributions always cover every trace.
    max_tokens : int
        Tokens per trace in the token-weight view (the rest is cut, and says so).
    max_sentences : int
        Sentences per side of a matrix heatmap (larger matrices show their first ones).
    metrics : tuple of str
        Graph metrics of the corpus table and of the distribution plots.
    null : {"shuffle", "walk"}
        Null model whose z-scores the corpus table shows first (both when present).

    Examples
    --------
    >>> ReportConfig(max_traces=5).to_dict()["max_traces"]
    5
    >>> ReportConfig.from_dict(ReportConfig().to_dict()) == ReportConfig()
    True
    >>> ReportConfig(max_traces=0)
    Traceback (most recent call last):
    ...
    mechgraph.errors.ConfigError: max_traces must be >= 1, got 0
    """

    title: str = ""
    max_traces: int = 50
    max_tokens: int = 4000
    max_sentences: int = 120
    metrics: tuple[str, ...] = DEFAULT_METRICS
    null: str = "shuffle"

    def __post_init__(self) -> None:
        for name in ("max_traces", "max_tokens", "max_sentences"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be >= 1, got {v!r}")
        if isinstance(self.metrics, str):
            self.metrics = (self.metrics,)
        self.metrics = tuple(self.metrics)
        if not self.metrics:
            raise ConfigError("metrics must name at least one graph metric")
        if self.null not in ("shuffle", "walk"):
            raise ConfigError(f"null must be 'shuffle' or 'walk', got {self.null!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = list(self.metrics)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReportConfig:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"unknown report options {bad}; known: {sorted(known)}")
        return cls(**d)
