"""Exceptions raised by mechgraph.

Every error that concerns one trace names it (``trace 'id'``) or, for a file
being read, the file and the line, so that a user can find the bad input.
"""

from __future__ import annotations

__all__ = [
    "AlignmentError",
    "ArtifactError",
    "ConfigError",
    "ExtractionError",
    "MechgraphError",
    "StoreError",
    "TraceError",
]


class MechgraphError(Exception):
    """Base class of all mechgraph errors."""


class TraceError(MechgraphError, ValueError):
    """A trace (or the file it came from) is malformed."""


class AlignmentError(MechgraphError, ValueError):
    """Steps could not be aligned to tokens."""


class ConfigError(MechgraphError, ValueError):
    """An option is invalid (unknown layer, hook, pool, segmenter...)."""


class ExtractionError(MechgraphError, RuntimeError):
    """The forward pass produced unusable states (NaN/inf, too long...)."""


class StoreError(MechgraphError, RuntimeError):
    """The on-disk store is missing, corrupt, incompatible or from another version."""


class ArtifactError(StoreError, ValueError):
    """A file or folder is not a readable mechgraph artifact (names the file)."""
