"""Final answers of generated text: the last ``\\boxed{...}`` (nested braces), optional
fallbacks for models that do not box their answers, and a surface normalisation so that
equal answers compare equal (no symbolic equivalence)."""

from __future__ import annotations

import re

__all__ = ["ANSWER_MODES", "extract_answer", "extract_boxed", "normalize_answer"]

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


ANSWER_MODES = ("boxed", "boxed_or_stated", "boxed_or_last_number")
_STATED = re.compile(
    r"(?:final answer|answer)\s*(?:is|=|:)\s*:?\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?(?:/[0-9]+)?)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?:/[0-9]+)?")


def extract_answer(text: str, mode: str = "boxed") -> str | None:
    """The final answer of ``text`` under ``mode`` (None when there is none).

    - ``"boxed"``: the last ``\\boxed{}`` only (Thought Anchors);
    - ``"boxed_or_stated"``: else the last number after "answer is" / "answer:";
    - ``"boxed_or_last_number"``: else that, else the last number in the text (for small
      models that never box or state an answer; noisy: use with care).

    Numbers lose thousands separators and a trailing ``.0``.

    Examples
    --------
    >>> extract_answer("so x = 4 and the answer is 1,200.", "boxed_or_stated")
    '1200'
    >>> extract_answer("we get 7 then 9", "boxed_or_last_number")
    '9'
    >>> extract_answer("we get 7 then 9") is None
    True
    """
    if mode not in ANSWER_MODES:
        raise ValueError(f"answer mode must be one of {ANSWER_MODES}, not {mode!r}")
    found = extract_boxed(text)
    if found is not None or mode == "boxed":
        return found
    stated = _STATED.findall(text)
    if stated:
        return _clean_number(stated[-1])
    if mode == "boxed_or_last_number":
        nums = _NUMBER.findall(text)
        return _clean_number(nums[-1]) if nums else None
    return None


def _clean_number(s: str) -> str:
    s = s.replace(",", "")
    return s[:-2] if s.endswith(".0") else s


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
