"""One rule for config objects given together with keyword options.

Functions such as :func:`~mechgraph.importance.receiver_scores` take a ``config``
dataclass and/or its fields as keyword ``**options``. :func:`merge_config` combines them:
options override the config's fields, and validation (``__post_init__``) runs again on
the result. :func:`config_from_dict` and :func:`config_to_dict` round-trip configs,
nested dataclass fields included, through plain (JSON-able) dicts.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass
... class Cfg:
...     top_k: int = 20
...     seed: int = 0
>>> merge_config(Cfg, Cfg(seed=3), top_k=5)
Cfg(top_k=5, seed=3)
>>> merge_config(Cfg, top_kk=5)
Traceback (most recent call last):
...
mechgraph.errors.ConfigError: Cfg has no field 'top_kk' (did you mean 'top_k'?); valid fields: seed, top_k
>>> config_from_dict(Cfg, config_to_dict(Cfg(seed=1))) == Cfg(seed=1)
True
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from mechgraph.errors import ConfigError

__all__ = ["config_from_dict", "config_to_dict", "merge_config"]

C = TypeVar("C")


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _check_names(cls: type, names, fields: Mapping[str, Any], what: str = "field") -> None:
    unknown = [n for n in names if n not in fields]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, list(fields), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    valid = ", ".join(sorted(fields)) or "(none)"
    raise ConfigError(f"{cls.__name__} has no {what} {name!r}{hint}; valid fields: {valid}")


def merge_config(cls: type[C], config: C | Mapping[str, Any] | None = None, /, **options: Any) -> C:
    """The config to use: ``config`` with ``options`` overriding its fields.

    Parameters
    ----------
    cls : dataclass type
        The config class (e.g. :class:`~mechgraph.importance.ReceiverConfig`).
    config : cls instance, mapping or None
        A mapping is read with :func:`config_from_dict`.
    **options
        Fields of ``cls``; they take precedence over ``config``'s.

    Returns
    -------
    ``config`` itself when there are no options, ``cls(**options)`` when there is no
    config, otherwise a copy (:func:`dataclasses.replace`, which re-runs ``__post_init__``
    validation) with the options applied.

    Raises
    ------
    ConfigError
        An option is not a field of ``cls`` (the message names it and the valid ones),
        or ``config`` is not a ``cls``.
    """
    fields = _init_fields(cls)
    _check_names(cls, options, fields)
    if isinstance(config, Mapping):
        config = config_from_dict(cls, config)
    if config is None:
        return cls(**options)
    if not isinstance(config, cls):
        raise ConfigError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    if not options:
        return config
    return dataclasses.replace(config, **options)


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: no conversion of nested values
        return {}


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type in ``hint`` (``X``, ``X | None``, ``Optional[X]``), if one."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(hint) if _dataclass_in(a) is not None]
        if len(found) == 1:
            return found[0]
    return None


def _convert(hint: Any, value: Any) -> Any:
    sub = _dataclass_in(hint)
    if sub is not None and isinstance(value, Mapping):
        return config_from_dict(sub, value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _convert(args[0], value)
    if origin is tuple and isinstance(value, list):  # tuples come back from JSON as lists
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        if len(args) == len(value):
            return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    if origin in (frozenset, set) and isinstance(value, list):
        return origin(value)
    return value


def config_from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """``cls`` from a dict (e.g. read from JSON): nested dataclass fields from nested dicts.

    Lists become tuples (or sets) where the field is annotated so. Unknown keys raise
    :class:`~mechgraph.errors.ConfigError`; missing ones take the defaults.
    """
    fields = _init_fields(cls)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    _check_names(cls, data, fields, what="field")
    hints = _hints(cls)
    kwargs = {k: _convert(hints.get(k), v) for k, v in data.items()}
    return cls(**kwargs)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(_plain(v) for v in value))
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config's (init) fields as a dict, nested dataclasses as nested dicts.

    The inverse of :func:`config_from_dict`, after a JSON round trip too for fields of
    JSON-able values.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"{config!r} is not a dataclass instance")
    return _plain(config)
