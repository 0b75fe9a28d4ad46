"""The on-disk activation store: per-step pooled states, steps, tokens and config.

Layout (a folder)::

    STORE/
      manifest.json          schema version, model id + weights fingerprint, dtype, hooks,
                             layers, pools, segmenter, tokenizer, the full extract config
      artifact.json          the artifact record (mechgraph.artifacts), written by extract
                             after the shards: kind "store", the config, the traces' hash
      shards/000000/         one shard per committed chunk of traces
        traces.parquet       one row per trace: fields, input ids, a hash of the text
        steps.parquet        one row per step: char and token spans, text, label, meta
        states.safetensors   one (n_steps, d_model) float tensor per "HOOK/POOL" key

A shard is written into ``shards/.tmp-*`` and renamed into place: the rename is the
commit, so a process killed at any moment leaves either the whole shard or nothing, and
a rerun skips the traces already committed. Store order is shard order, then input order
within a shard. Only safetensors, Parquet and JSON are written (no pickle). Folders and
files get the usual permissions (``0o777`` / ``0o666`` less the umask), so a store is as
readable by a team as any other file its writer creates.

One writer at a time
--------------------
A writer holds an exclusive ``flock`` on ``STORE/.writer.lock`` for its whole life (the
file records the holder's pid, host and start time); a second writer is refused with a
:class:`~mechgraph.errors.StoreError` naming the holder. The OS releases a ``flock``
when its process exits in any way (``kill -9`` and crashes included), so a dead writer
never blocks the next one and there is no stale lock to clean up; the lock file itself
stays in place (removing it would race with a writer that has it open). Readers take no
lock: they only ever see committed shards.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mechgraph import io as _io
from mechgraph.errors import ConfigError, StoreError
from mechgraph.io import write_json_atomic

__all__ = [
    "SCHEMA_VERSION",
    "Store",
    "StoreLock",
    "StoreWriter",
    "check_store_target",
    "open_store",
    "state_key",
]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SHARDS = "shards"
LOCK = ".writer.lock"
SHARD_FILES = ("traces.parquet", "steps.parquet", "states.safetensors")
# Manifest fields that must agree for an append (the rest is informative).
COMPAT_FIELDS = (
    "schema_version",
    "model_id",
    "fingerprint",
    "dtype",
    "hooks",
    "layers",
    "pools",
    "segmenter",
    "tokenizer",
    "window",
    "on_empty_step",
    "store_dtype",
)
_TRACE_HIDDEN = ("prompt", "text", "input_ids", "text_sha", "ord")


def state_key(hook: str, pool: str) -> str:
    """Key of one state tensor in a shard, e.g. ``blocks.3.hook_resid_post/mean``."""
    return f"{hook}/{pool}"


def _read_manifest(path: Path) -> dict[str, Any]:
    mfile = path / MANIFEST
    if not mfile.is_file():
        raise StoreError(f"{path}: not a mechgraph store (no {MANIFEST})")
    try:
        manifest = json.loads(mfile.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{mfile}: corrupt manifest: {e}") from None
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{mfile}: store schema version {version!r}, this mechgraph reads version "
            f"{SCHEMA_VERSION}; re-extract it with this version"
        )
    return manifest


def _shard_dirs(path: Path) -> list[Path]:
    root = path / SHARDS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _corrupt(file: Path, e: BaseException) -> StoreError:
    """A one-line StoreError naming a shard file that cannot be read."""
    lines = str(e).strip().splitlines()
    why = lines[0] if lines else type(e).__name__
    return StoreError(
        f"{file}: corrupt or truncated shard file ({why}); remove the shard folder "
        f"{file.parent} and re-run extract to recompute its traces"
    )


# what reading a damaged Parquet or safetensors file raises (pyarrow's ArrowInvalid is a
# ValueError; safetensors' SafetensorError is a plain Exception subclass)
def _read_errors() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError

    return (OSError, ValueError, KeyError, SafetensorError)


def _read_parquet(file: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    try:
        return pd.read_parquet(file, columns=None if columns is None else list(columns))
    except _read_errors() as e:
        raise _corrupt(file, e) from None


def _read_column(file: Path, column: str) -> list:
    try:
        return pq.read_table(file, columns=[column]).column(column).to_pylist()
    except _read_errors() as e:
        raise _corrupt(file, e) from None


def _parquet_names(file: Path) -> list[str]:
    try:
        return pq.read_schema(file).names
    except _read_errors() as e:
        raise _corrupt(file, e) from None


def _check_shards(shards: Sequence[Path]) -> None:
    for shard in shards:
        for name in SHARD_FILES:
            f = shard / name
            if not f.is_file():
                raise StoreError(
                    f"{f}: missing shard file; remove the shard folder {shard} and re-run "
                    "extract to recompute its traces"
                )


def _dir_mode() -> int:
    return 0o777 & ~_io._UMASK


def _file_mode() -> int:
    return 0o666 & ~_io._UMASK


def _foreign_entries(path: Path) -> list[str]:
    """Entries of a folder without a manifest that a store would not have put there."""
    return sorted(
        p.name
        for p in path.iterdir()
        if p.name not in (SHARDS, LOCK) and not p.name.startswith(".tmp-")
    )


def check_store_target(path: str | os.PathLike[str]) -> None:
    """Refuse, in one line, a store path that cannot be written, before any expensive work.

    Raises
    ------
    StoreError
        ``path`` (or a parent) is a file, the folder (or its nearest existing parent, for
        a new store) is not writable, or it is a non-empty folder that is not a store.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path}: exists and is not a folder; give a store folder")
    if path.is_dir():
        targets = [path] + [path / SHARDS] * (path / SHARDS).is_dir()
        for d in targets:
            if not os.access(d, os.W_OK | os.X_OK):
                raise StoreError(f"{d}: folder is not writable; cannot write the store {path}")
        if not (path / MANIFEST).is_file() and _foreign_entries(path):
            raise StoreError(f"{path}: exists and is not a mechgraph store")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise StoreError(f"{parent}: is a file; cannot create the store {path} under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"{parent}: folder is not writable; cannot create the store {path}")


class StoreLock:
    """The exclusive writer lock of a store folder (created if missing).

    An ``flock`` on ``STORE/.writer.lock``, held until :meth:`release` (or the process
    ends: the OS drops it then, so a killed writer's lock never blocks anyone).

    Raises
    ------
    StoreError
        Another process (or another writer in this one) holds the lock; the message
        names the store and the holder's pid, host and start time.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        lockfile = self.path / LOCK
        for _ in range(20):
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                fd = os.open(lockfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _file_mode())
            except OSError as e:
                raise StoreError(
                    f"{self.path}: cannot create the writer lock ({e.strerror or e})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise StoreError(
                    f"{self.path}: store is being written by another process ({holder}); "
                    "wait for it to finish, or write to another store"
                ) from None
            except OSError as e:
                os.close(fd)
                raise StoreError(
                    f"{self.path}: cannot lock the store ({e.strerror or e})"
                ) from None
            try:  # the file we locked may have been removed (a failed fresh store): retry
                same = os.stat(lockfile).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            self._fd = fd
            return
        raise StoreError(f"{self.path}: cannot lock the store (its folder keeps disappearing)")

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (idempotent). The lock file stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info['host']}, since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


class Store:
    """A read-only view of a store folder; see :func:`open_store`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        self._shards = _shard_dirs(self.path)
        _check_shards(self._shards)
        self._tokens_cache: dict[int, list] = {}

    # -- facts
    @property
    def config(self) -> dict[str, Any]:
        """The full extract config the store was written with, as a dict
        (:attr:`extract_config` is the same as an :class:`~mechgraph.ExtractConfig`)."""
        return dict(self.manifest.get("config", {}))

    @property
    def extract_config(self) -> Any:
        """The :class:`~mechgraph.ExtractConfig` the store was written with (its manifest's
        ``config``, read back: layers resolved, the segmenter as recorded).

        Raises
        ------
        StoreError
            The manifest has no config, or one this mechgraph cannot read (fields of
            another version, invalid values); the message names the manifest.
        """
        from dataclasses import fields

        from mechgraph.extract import ExtractConfig

        mfile = self.path / MANIFEST
        raw = self.manifest.get("config")
        by = self.manifest.get("mechgraph_version", "?")
        if not isinstance(raw, Mapping):
            raise StoreError(f"{mfile}: no extract config (written by mechgraph {by})")
        unknown = sorted(set(raw) - {f.name for f in fields(ExtractConfig)})
        if unknown:
            raise StoreError(
                f"{mfile}: extract config from another mechgraph version ({by}): unknown "
                f"fields {unknown}; re-extract it with this version"
            )
        try:
            return ExtractConfig(**raw)
        except (ConfigError, TypeError, ValueError) as e:
            raise StoreError(
                f"{mfile}: invalid extract config (written by mechgraph {by}): {e}"
            ) from None

    @property
    def model_id(self) -> str:
        return str(self.manifest["model_id"])

    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    @property
    def hooks(self) -> list[str]:
        """Full hook names, e.g. ``blocks.3.hook_resid_post``."""
        return list(self.manifest["hooks"])

    @property
    def pools(self) -> list[str]:
        return list(self.manifest["pools"])

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    # -- tables
    @cached_property
    def traces(self) -> pd.DataFrame:
        """One row per trace, in store order (without the token ids)."""
        return self._concat("traces.parquet", exclude=("input_ids",))

    @cached_property
    def steps(self) -> pd.DataFrame:
        """One row per step, in store order, with labels and trace fields.

        Columns: ``trace_id``, ``step``, ``char_start``, ``char_end`` (into the trace
        text), ``tok_start``, ``tok_end`` (into :meth:`tokens`), ``text``, ``label`` and
        per-step meta when present, then the trace fields (``model``, ``checkpoint``,
        ``correct``, ``answer``, ...).
        """
        steps = self._concat("steps.parquet")
        tr = self.traces
        extra = [c for c in tr.columns if c not in _TRACE_HIDDEN and c not in steps.columns]
        if len(steps) and extra:
            steps = steps.merge(tr[["trace_id", *extra]], on="trace_id", how="left", sort=False)
        return steps.reset_index(drop=True)

    @property
    def trace_ids(self) -> list[str]:
        return self.traces["trace_id"].tolist()

    def __len__(self) -> int:
        return len(self.traces)

    def tokens(self, trace_id: str) -> np.ndarray:
        """The input ids the model saw for a trace (prompt + text, special tokens included).

        ``tok_start``/``tok_end`` of the steps index into this array.
        """
        where = self._token_index.get(trace_id)
        if where is not None:
            return np.asarray(self._shard_tokens(where[0])[where[1]], dtype=np.int64)
        raise KeyError(f"trace {trace_id!r} is not in store {self.path}")

    @cached_property
    def _token_index(self) -> dict[str, tuple[int, int]]:
        """trace id -> (shard number, row) for :meth:`tokens`."""
        out: dict[str, tuple[int, int]] = {}
        for k, shard in enumerate(self._shards):
            ids = _read_column(shard / "traces.parquet", "trace_id")
            out.update((t, (k, row)) for row, t in enumerate(ids))
        return out

    def _shard_tokens(self, shard: int) -> list:
        """The ``input_ids`` column of one shard, read once."""
        if shard not in self._tokens_cache:
            file = self._shards[shard] / "traces.parquet"
            self._tokens_cache[shard] = _read_column(file, "input_ids")
        return self._tokens_cache[shard]

    def states(self, layer: int, pool: str = "mean", hook: str = "resid_post") -> np.ndarray:
        """Pooled states of every step at one layer: ``(n_steps, d_model)``, ``.steps`` order.

        Reads only that tensor from each shard (other layers stay on disk).

        Parameters
        ----------
        layer : int
            Block index; a negative one counts from the model's last block.
        pool : str
            One of the store's pools.
        hook : str
            A short kind (``resid_post``) or a full name (``blocks.3.hook_resid_post``).

        Examples
        --------
        >>> s = open_store("runs/sample")  # doctest: +SKIP
        >>> s.states(15).shape  # doctest: +SKIP
        (412, 576)
        """
        from safetensors import safe_open

        name = self.hook_name(layer, hook)
        if pool not in self.pools:
            raise ConfigError(f"pool {pool!r} is not in store {self.path}; it has {self.pools}")
        key = state_key(name, pool)
        parts = []
        for shard in self._shards:
            file = shard / "states.safetensors"
            try:
                with safe_open(file, framework="numpy") as f:
                    parts.append(f.get_tensor(key))
            except _read_errors() as e:
                raise _corrupt(file, e) from None
        if not parts:
            return np.zeros((0, self.d_model), dtype=np.float32)
        return np.concatenate(parts, axis=0)

    def hook_name(self, layer: int, hook: str = "resid_post") -> str:
        """Full hook name stored for ``layer`` and a hook kind; errors list what exists."""
        n_layers = int(self.manifest.get("n_layers", 0))
        if layer < 0 and n_layers:
            layer += n_layers
        name = hook if hook.startswith("blocks.") else f"blocks.{layer}.hook_{hook}"
        if name not in self.hooks:
            raise ConfigError(
                f"{name!r} is not in store {self.path}; it has {', '.join(self.hooks)}"
            )
        return name

    def _concat(self, fname: str, exclude: Sequence[str] = ()) -> pd.DataFrame:
        frames = []
        for shard in self._shards:
            names = _parquet_names(shard / fname)
            cols = [c for c in names if c not in exclude]
            frames.append(_read_parquet(shard / fname, columns=cols))
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=["trace_id"])
        return pd.concat(frames, ignore_index=True)

    def summary(self) -> str:
        """A human-readable description of the store."""
        m = self.manifest
        steps = self.steps
        n_tok = int(self.traces["n_tokens"].sum()) if len(self) else 0
        lines = [
            f"store      {self.path}",
            f"model      {m['model_id']}  (weights {m['fingerprint']}, {m['dtype']})",
            f"tokenizer  {m['tokenizer']}",
            f"segmenter  {m['segmenter']}",
            f"hooks      {', '.join(m['hooks'])}",
            f"pools      {', '.join(m['pools'])}   d_model {m['d_model']}",
            f"traces     {len(self)}   steps {len(steps)}   tokens {n_tok}   "
            f"shards {len(self._shards)}",
        ]
        if len(steps):
            per = steps.groupby("trace_id", sort=False).size()
            lines.append(
                f"steps/trace  min {per.min()}  median {int(per.median())}  max {per.max()}"
            )
            if "label" in steps and steps["label"].notna().any():
                counts = steps["label"].value_counts().head(8)
                lines.append("labels     " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        lines.append(f"schema     v{m['schema_version']} (mechgraph {m.get('mechgraph_version')})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, traces={len(self)}, hooks={len(self.hooks)})"


def open_store(path: str | os.PathLike[str]) -> Store:
    """Open a store folder written by :func:`mechgraph.extract`.

    Raises
    ------
    StoreError
        No manifest, a corrupt one, a store written by another schema version, or a shard
        missing a file. A shard file that cannot be read is a StoreError naming it when
        the tables or states are read.

    Examples
    --------
    >>> store = open_store("runs/sample")  # doctest: +SKIP
    >>> store.steps[["trace_id", "step", "text"]].head()  # doctest: +SKIP
    """
    return Store(path)


class StoreWriter:
    """Create or reopen a store for appending, and commit shards atomically.

    The writer holds the store's :class:`StoreLock` from construction to :meth:`close`
    (also a context manager); pass ``lock=`` to hand it one already taken (it then owns
    it). A second writer of the same store is refused with a one-line StoreError.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        manifest: Mapping[str, Any],
        *,
        lock: StoreLock | None = None,
    ) -> None:
        self.path = Path(path)
        if lock is None:
            check_store_target(self.path)
            lock = StoreLock(self.path)
        elif not lock.held or lock.path != self.path:
            raise StoreError(f"{self.path}: the writer lock given is not held for this store")
        self._lock = lock
        try:
            self._open(manifest)
        except BaseException:
            self.close()
            raise

    def _open(self, manifest: Mapping[str, Any]) -> None:
        manifest = {**manifest, "schema_version": SCHEMA_VERSION}
        if (self.path / MANIFEST).is_file():
            old = _read_manifest(self.path)
            diff = [k for k in COMPAT_FIELDS if old.get(k) != manifest.get(k)]
            if diff:
                detail = "; ".join(
                    f"{k}: store has {old.get(k)!r}, this run {manifest.get(k)!r}" for k in diff
                )
                raise StoreError(
                    f"{self.path}: cannot append with a different model or config ({detail}); "
                    "write to a new store"
                )
            self.manifest = old
        else:
            if _foreign_entries(self.path):
                raise StoreError(f"{self.path}: exists and is not a mechgraph store")
            write_json_atomic(self.path / MANIFEST, manifest)
            self.manifest = dict(manifest)
        (self.path / SHARDS).mkdir(mode=_dir_mode(), exist_ok=True)
        # leftovers of a killed run (safe to remove: we hold the lock, no one else writes)
        for p in (self.path / SHARDS).glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in self.path.glob(".tmp-*"):
            p.unlink(missing_ok=True)
        self._done: dict[str, str] = {}
        shards = _shard_dirs(self.path)
        _check_shards(shards)
        for shard in shards:
            df = _read_parquet(shard / "traces.parquet", columns=["trace_id", "text_sha"])
            self._done.update(zip(df["trace_id"], df["text_sha"], strict=True))

    def close(self) -> None:
        """Release the writer lock (idempotent)."""
        self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def committed(self) -> dict[str, str]:
        """trace id -> text hash of every trace already in the store."""
        return dict(self._done)

    def n_traces(self) -> int:
        return len(self._done)

    def write_shard(
        self,
        traces: pd.DataFrame,
        steps: pd.DataFrame,
        states: Mapping[str, np.ndarray],
    ) -> Path:
        """Write one shard and commit it with a rename; returns its folder."""
        from safetensors.numpy import save_file

        if not self._lock.held:
            raise StoreError(f"{self.path}: the writer is closed")
        n = len(steps)
        for key, arr in states.items():
            if arr.shape[0] != n:
                raise StoreError(f"state {key}: {arr.shape[0]} rows for {n} steps")
        shards = self.path / SHARDS
        existing = _shard_dirs(self.path)
        index = int(existing[-1].name) + 1 if existing else 0
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=shards))
        try:
            traces.to_parquet(tmp / "traces.parquet", index=False)
            steps.to_parquet(tmp / "steps.parquet", index=False)
            save_file(
                {k: np.ascontiguousarray(v) for k, v in states.items()},
                str(tmp / "states.safetensors"),
            )
            for f in tmp.iterdir():
                os.chmod(f, _file_mode())
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            os.chmod(tmp, _dir_mode())  # mkdtemp makes it 0o700
            final = shards / f"{index:06d}"
            os.rename(tmp, final)
            self._done.update(zip(traces["trace_id"], traces["text_sha"], strict=True))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final
