"""One parser for ``kind:arg`` option specs.

Many options name a kind and, for some kinds, an argument after a colon: planning sources
(``sg``, ``sg:hicra``, ``sg:PATH``, ``probe:PATH``), segmenters (``regex:PATTERN``),
reasoning rules (``after:MARKER``), checkpoint sources (``field:NAME``)...
:func:`parse_spec` reads them all the same way:

* the text is split on its **first** colon only, so the argument keeps its own colons
  (a Windows path ``probe:C:\\probes\\p``, a URL ``sg:https://host/grams.json``, a
  marker ``after:A:``);
* the kind is stripped and case-insensitive; the argument is kept as written (an empty
  one, ``sg:``, counts as none);
* each kind says whether its argument is required, optional or forbidden
  (:class:`ArgRule`); anything else is a one-line :class:`~mechgraph.errors.ConfigError`
  listing the accepted forms (:func:`spec_forms`).

Examples
--------
>>> KINDS = {"rules": NO_ARG, "sg": optional("PATH", "hicra"), "probe": required("PATH")}
>>> parse_spec("SG:hicra", KINDS)
Spec(kind='sg', arg='hicra')
>>> parse_spec("probe:C:\\\\p", KINDS).arg
'C:\\\\p'
>>> parse_spec("rules", KINDS).arg is None
True
>>> parse_spec("probe", KINDS)
Traceback (most recent call last):
...
mechgraph.errors.ConfigError: unknown planning source 'probe': 'probe' needs an argument (probe:PATH); use one of rules, sg, sg:hicra, sg:PATH, probe:PATH
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mechgraph.errors import ConfigError

__all__ = ["NO_ARG", "ArgRule", "Spec", "optional", "parse_spec", "required", "spec_forms"]


@dataclass(frozen=True)
class ArgRule:
    """What a kind accepts after its colon.

    Parameters
    ----------
    need : {"forbidden", "optional", "required"}
    metavar : str
        Name of the argument in messages (``PATH``, ``PATTERN``).
    examples : tuple of str
        Literal arguments worth listing among the forms (``hicra`` for ``sg:hicra``).
    """

    need: Literal["forbidden", "optional", "required"] = "forbidden"
    metavar: str = "ARG"
    examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.need not in ("forbidden", "optional", "required"):
            raise ValueError(f"need must be forbidden, optional or required, not {self.need!r}")


#: A kind that takes no argument (``rules``, ``none``).
NO_ARG = ArgRule()


def optional(metavar: str = "ARG", *examples: str) -> ArgRule:
    """A kind whose argument may be left out (``sg`` / ``sg:PATH``)."""
    return ArgRule("optional", metavar, examples)


def required(metavar: str = "ARG", *examples: str) -> ArgRule:
    """A kind that needs an argument (``probe:PATH``)."""
    return ArgRule("required", metavar, examples)


@dataclass(frozen=True)
class Spec:
    """A parsed spec: the lower-cased ``kind`` and its ``arg`` (None when absent or empty)."""

    kind: str
    arg: str | None = None

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"


def spec_forms(kinds: Mapping[str, ArgRule]) -> tuple[str, ...]:
    """The accepted forms, in the order of ``kinds``.

    Examples
    --------
    >>> spec_forms({"rules": NO_ARG, "sg": optional("PATH", "hicra"), "probe": required("PATH")})
    ('rules', 'sg', 'sg:hicra', 'sg:PATH', 'probe:PATH')
    """
    out: list[str] = []
    for kind, rule in kinds.items():
        if rule.need != "required":
            out.append(kind)
        if rule.need != "forbidden":
            out += [f"{kind}:{x}" for x in (*rule.examples, rule.metavar)]
    return tuple(out)


def parse_spec(text: str, kinds: Mapping[str, ArgRule], what: str = "planning source") -> Spec:
    """Split ``kind:arg`` on its first colon and check it against ``kinds``.

    Parameters
    ----------
    text : str
        The spec as given.
    kinds : mapping of str to ArgRule
        Accepted kinds (lower case), in the order the error message lists them.
    what : str
        What the spec is, for messages (``"segmenter"``, ``"reasoning rule"``).

    Returns
    -------
    Spec

    Raises
    ------
    ConfigError
        One line, ``unknown <what> '<text>'[: why]; use one of <forms>``: an unknown kind,
        a missing required argument, an argument to a kind that takes none, not a string.

    Examples
    --------
    >>> parse_spec("after:A:", {"after": required("MARKER")}, "reasoning rule")
    Spec(kind='after', arg='A:')
    >>> parse_spec("sg:", {"sg": optional("PATH")})
    Spec(kind='sg', arg=None)
    """
    forms = ", ".join(spec_forms(kinds))
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a string, got {type(text).__name__}; use one of {forms}")
    head, _, tail = text.partition(":")
    kind = head.strip().lower()
    arg = tail or None
    rule = kinds.get(kind)
    why = ""
    if rule is not None and rule.need == "required" and arg is None:
        why = f": {kind!r} needs an argument ({kind}:{rule.metavar})"
    elif rule is not None and rule.need == "forbidden" and arg is not None:
        why = f": {kind!r} takes no argument"
    elif rule is not None:
        return Spec(kind, arg)
    raise ConfigError(f"unknown {what} {text!r}{why}; use one of {forms}")
