"""Engines of :func:`mechgraph.extract`: where the forward passes run.

``engine="local"`` (the default) runs everything in the calling process
(:mod:`mechgraph.extract`). ``engine="ray"`` (:mod:`mechgraph.engines.ray`) prepares the
traces in Ray tasks, computes states in a pool of Ray actors (one model each) and
commits the shards on the driver with the same writer, so both engines write the same
store and either resumes a store begun by the other. Ray is imported only when the Ray
engine runs (``pip install ray``); guide: the *Scaling out* page of the docs.
"""

from __future__ import annotations

__all__ = ["ENGINES"]

#: Values of :attr:`mechgraph.ExtractConfig.engine`.
ENGINES = ("local", "ray")
