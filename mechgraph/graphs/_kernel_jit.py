"""The numba decorators of the graph kernels, with their pure-Python fallback.

When numba is missing (or the environment variable ``MECHGRAPH_DISABLE_NUMBA`` is set)
the decorators return the functions unchanged: the kernels then run as plain Python,
slower, with identical results.  Every kernel module (:mod:`._kernels`,
:mod:`._kernel_paths`, :mod:`._kernel_cycles`, :mod:`._null_kernels`) compiles through
these, with an on-disk cache (``cache=True``) next to its own source.

numba checks only a function's own source file when it loads a cached compile, while
these kernels call one another across the modules (a cached ``graph_metrics`` holds the
``count_cycles`` it was compiled with).  So the first import drops the cached compiles of
all of them whenever any of their sources changed (:func:`_drop_stale_caches`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: The modules whose compiled kernels call one another (cached compiles dropped together).
KERNEL_MODULES: tuple[str, ...] = (
    "_kernel_jit",
    "_kernel_paths",
    "_kernel_cycles",
    "_kernels",
    "_null_kernels",
)


def _drop_stale_caches(folder: Path | None = None) -> bool:
    """Delete the numba cache files of :data:`KERNEL_MODULES` in ``folder/__pycache__``
    if the modules' sources changed since the last call; True when it deleted.

    A hash of the sources is kept in ``__pycache__/mechgraph_kernels.sha1``.  Errors
    (a read-only install, say) are ignored: numba then recompiles or caches elsewhere.
    """
    here = Path(__file__).resolve().parent if folder is None else Path(folder)
    h = hashlib.sha1()
    for name in KERNEL_MODULES:
        try:
            h.update((here / f"{name}.py").read_bytes())
        except OSError:
            h.update(b"-")
    tag = h.hexdigest()
    cache = here / "__pycache__"
    stamp = cache / "mechgraph_kernels.sha1"
    try:
        if stamp.read_text() == tag:
            return False
    except OSError:
        pass
    try:
        if cache.is_dir():
            for name in KERNEL_MODULES:
                for pattern in (f"{name}.*.nbi", f"{name}.*.nbc"):
                    for f in cache.glob(pattern):
                        f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(tag)
    except OSError:
        return False
    return True


try:  # numba ships with umap-learn; keep a pure-Python fallback all the same.
    if os.environ.get("MECHGRAPH_DISABLE_NUMBA"):
        raise ImportError("disabled by MECHGRAPH_DISABLE_NUMBA")
    import numba

    HAVE_NUMBA = True
    _drop_stale_caches()

    def _jit(fn):
        return numba.njit(cache=True, nogil=True)(fn)

    def _jit_parallel(fn):
        return numba.njit(cache=True, nogil=True, parallel=True)(fn)

    _prange = numba.prange
except ImportError:  # pragma: no cover - exercised only without numba
    HAVE_NUMBA = False

    def _jit(fn):
        return fn

    _jit_parallel = _jit
    _prange = range
