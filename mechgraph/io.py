"""Atomic file writes: a temp file beside the target, fsync, then a rename.

A process killed at any moment leaves the old file (or none), never half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_dir",
    "atomic_path",
    "jsonable",
    "read_jsonl",
    "write_atomic",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_text_atomic",
]

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps ``path``'s suffix (writers that pick a format by suffix see
    the right one) and gets the usual permissions (``0o666`` less the umask) before the
    rename.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary path, then rename it onto ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_atomic(pathlib.Path(tempfile.mkdtemp()) / "a.txt", lambda t: t.write_text("x"))
    >>> p.read_text()
    'x'
    """
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def write_jsonl_atomic(path: str | os.PathLike[str], records: Iterable[Any]) -> Path:
    """Write one JSON line per record to ``path`` atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_jsonl_atomic(pathlib.Path(tempfile.mkdtemp()) / "r.jsonl", [{"a": 1}])
    >>> p.read_text()
    '{"a": 1}\\n'
    """
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return write_text_atomic(path, text)


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; swap it onto ``path`` if the block succeeds.

    An existing folder at ``path`` is replaced: it is moved aside, the new one moved in,
    then the old one removed (restored if the move in fails). The folder gets the usual
    mode (``0o777`` less the umask). Readers see the old folder
    or the new one, never a mix; on an error the temporary folder is removed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "artifact"
    >>> with atomic_dir(target) as tmp:
    ...     _ = (tmp / "a.txt").write_text("new")
    >>> sorted(p.name for p in target.iterdir())
    ['a.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes it 0700: give the usual mode
        if not path.exists():
            os.replace(tmp, path)
            return
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars, paths and tuples turned into plain JSON values.

    Dict keys become strings; a float NaN becomes None.

    Examples
    --------
    >>> import numpy as np
    >>> jsonable({1: (np.int64(2), float("nan"))})
    {'1': [2, None]}
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalar
        obj = obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


def read_jsonl(
    path: str | os.PathLike[str], error: type[Exception] = ValueError
) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` of each non-blank line of a UTF-8 JSONL file.

    Lines are split on ``\n`` only, so JSON strings holding U+2028 or other Unicode line
    separators (valid JSON, and what ``ensure_ascii=False`` writers emit) stay whole.

    Raises
    ------
    error
        ``"PATH: not UTF-8 (byte N)"`` or ``"PATH:LINE: invalid JSON: ..."``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> _ = p.write_text('{"a": "x\\u2028y"}\\n\\n{"a": 2}\\n', encoding="utf-8")
    >>> [(n, r["a"]) for n, r in read_jsonl(p)]
    [(1, 'x\\u2028y'), (3, 2)]
    """
    path = Path(path)
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 (byte {e.start}): {e.reason}") from None
    for lineno, line in enumerate(raw.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{path}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
