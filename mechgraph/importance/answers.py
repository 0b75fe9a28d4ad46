"""Final answers of generated text: the last ``\\boxed{...}`` (nested braces) and a
surface normalisation so that equal answers compare equal (no symbolic equivalence)."""

from __future__ import annotations

import re

__all__ = ["extract_boxed", "normalize_answer"]

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (braces balanced), or None.

    Examples
    --------
    >>> extract_boxed(r"so \\boxed{\\frac{1}{2}} and then \\boxed{x^{2}}")
    'x^{2}'
    >>> extract_boxed(r"\\boxed{unclosed") is None
    True
    """
    found = None
    for m in _BOX.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found = text[m.end() : i - 1]
    return found


def normalize_answer(ans: str | None) -> str:
    """Surface normalisation of an answer string ('' for none).

    Removes spaces, ``$``, ``\\left``/``\\right``, ``\\!``, ``\\text{}`` wrappers, degree
    signs, a trailing period and a leading ``x =``; ``\\dfrac``/``\\tfrac`` become ``\\frac``.

    Examples
    --------
    >>> normalize_answer(r" x = \\dfrac{3}{4}. ")
    '\\\\frac{3}{4}'
    >>> normalize_answer(r"\\text{12 } cm") == normalize_answer("12cm")
    True
    """
    if not ans:
        return ""
    s = ans.strip()
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:mbox|mathrm)\{([^{}]*)\}", r"\1", s)
    for a, b in (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left", ""), ("\\right", "")):
        s = s.replace(a, b)
    s = re.sub(r"\^\{?\\circ\}?|°", "", s)
    s = s.replace("\\!", "").replace("\\,", "").replace("$", "")
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"^[a-zA-Z]=", "", s)
    return s.rstrip(".")
