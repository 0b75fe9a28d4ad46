r"""The rule tagger's fast path: a sound prefilter that skips rules that cannot fire.

Every rule is still searched with its own compiled pattern; what makes tagging fast is a
*sound prefilter* that skips the rules that cannot fire. From the parse tree of each
pattern (``re._parser``) we derive words that any match must contain as a whole word
(a run of ``\w`` between non-word characters), or failing that literal strings it must
contain; a sentence's words are found once (one ``\w+`` scan of its case-folded text)
and looked up in an index word -> rules. Only the rules whose words or strings are there
are searched. Case folding (``mechgraph.labels.grams._fold_case``) maps every
character that ``re.IGNORECASE`` equates with a lower-case ASCII letter onto that letter
and keeps length and ``\w``-ness, so a pattern with lower-case ASCII literals that
matches a text case-insensitively matches its folded text case-sensitively and vice
versa; the prefilter can therefore miss no match, and rules whose pattern passes that
check are searched case-sensitively on the folded text (faster), the others with the
original pattern on the original text. The scores are then summed in the original order,
so results are identical to the one-regex-per-rule loop (tests/test_labels_speed_parity.py
keeps that loop as the reference).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from re import _constants as _sc
from re import _parser as _sre_parse

from mechgraph.labels.grams import _fold_case as fold_case

__all__ = ["RulePlan"]


_ASCII_LETTERS = bytes(range(65, 91)) + bytes(range(97, 123))
_WORDS_RX = re.compile(r"\w+")
_ASCII_WORD_TABLE = bytes(c if chr(c).isalnum() or c == 95 else 32 for c in range(128)) + b" " * 128
_B = "\x00"  # marker: a position where a word cannot continue (\b, ^, $)
_EXACT_CAP = 64
_BOUND_AT = frozenset(
    {
        _sc.AT_BOUNDARY,
        _sc.AT_BEGINNING,
        _sc.AT_BEGINNING_LINE,
        _sc.AT_BEGINNING_STRING,
        _sc.AT_END,
        _sc.AT_END_LINE,
        _sc.AT_END_STRING,
    }
)
_REPEATS = (_sc.MAX_REPEAT, _sc.MIN_REPEAT, _sc.POSSESSIVE_REPEAT)
# frequent words make poor triggers (a rule keyed on them is searched almost always)
_COMMON = frozenset(
    "a about after all also an and any are as at be because been but by can could did do "
    "does each for from get had has have he her here him his how i if in into is it its "
    "just let like make may me more most much must my need no not now of on one only or "
    "other our out over same see she should so some such than that the their them then "
    "there these they this those to too two up us use was way we were what when where "
    "which while who why will with would yes you your".split()
)


def _safe_char(ch: str) -> bool:
    """A pattern literal whose case-insensitive matches all fold to itself."""
    if ch.isascii():
        return ch != _B and not ch.isupper()
    return ch.lower() == ch == ch.upper() and unicodedata.category(ch)[0] in "NPSZ"


def _cross(a: set[str] | None, b: set[str] | None) -> set[str] | None:
    if a is None or b is None or len(a) * len(b) > _EXACT_CAP:
        return None
    return {x + y for x in a for y in b}


def _exact_node(op, av) -> set[str] | None:
    """Every string the node can match (markers for boundaries), or None (too many)."""
    if op is _sc.LITERAL:
        return {chr(av)} if _safe_char(chr(av)) else None
    if op is _sc.AT:
        return {_B} if av in _BOUND_AT else {""}
    if op in (_sc.ASSERT, _sc.ASSERT_NOT):
        return {""}
    if op is _sc.IN:
        chars = set()
        for o, a in av:
            if o is not _sc.LITERAL or not _safe_char(chr(a)):
                return None
            chars.add(chr(a))
        return chars
    if op is _sc.SUBPATTERN:
        return _exact_seq(av[-1])
    if op is _sc.ATOMIC_GROUP:
        return _exact_seq(av)
    if op is _sc.BRANCH:
        out: set[str] = set()
        for alt in av[1]:
            e = _exact_seq(alt)
            if e is None:
                return None
            out |= e
        return out if len(out) <= _EXACT_CAP else None
    if op in _REPEATS:
        lo, hi, body = av
        e = _exact_seq(body)
        if e is None or hi > 4:
            return None
        out, cur = set(), {""}
        for k in range(hi + 1):
            if k >= lo:
                out |= cur
            if k < hi:
                cur = _cross(cur, e)
                if cur is None:
                    return None
        return out if len(out) <= _EXACT_CAP else None
    return None


def _exact_seq(items) -> set[str] | None:
    cur: set[str] | None = {""}
    for op, av in items:
        cur = _cross(cur, _exact_node(op, av))
        if cur is None:
            return None
    return cur


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _whole_words(x: str) -> set[str]:
    """The \\w-runs of ``x`` with a non-word character or marker on both sides."""
    return {m.group() for m in _WORDS_RX.finditer(x) if m.start() > 0 and m.end() < len(x)}


def _word_cost(w: str) -> int:
    return 10 if len(w) <= 2 or w in _COMMON else 1


# A trigger is (words, literals, cost): every match contains one of the words as a whole
# word of the folded text or one of the literals as a substring of it. ``cost`` estimates
# how often the trigger lets a sentence through (frequent and short words cost more).
_Trigger = tuple[frozenset[str], frozenset[str], int]


def _lit_cost(x: str) -> int:
    # a substring test per sentence, and a search of the rule when it is there
    n = len(x)
    return 10 if n <= 2 else 6 if n <= 4 else 4 if n <= 7 else 3


def _make_trigger(words: set[str], lits: set[str]) -> _Trigger:
    lits = {x for x in lits if not any(y != x and y in x for y in lits)}
    cost = sum(map(_word_cost, words)) + sum(map(_lit_cost, lits))
    return frozenset(words), frozenset(lits), cost


def _options(x: str) -> set[tuple[str, str]]:
    """What a match of the exact string ``x`` shows: ("w", whole word) or ("l", literal)."""
    lit = x.replace(_B, "")
    opts = {("w", w) for w in _whole_words(x)} | {("l", lit)}
    opts |= {("l", m.group()) for m in _WORDS_RX.finditer(lit) if len(m.group()) > 3}
    return opts


def _trigger(
    strings: set[str], banned: frozenset[tuple[str, str]] = frozenset()
) -> _Trigger | None:
    """Cheapest trigger of a set of exact strings (greedy cover of the strings), using no
    option of ``banned``."""
    options: list[set[tuple[str, str]]] = []
    for x in strings:
        if not x.replace(_B, ""):
            return None
        opts = _options(x) - banned
        if not opts:
            return None
        options.append(opts)
    chosen: set[tuple[str, str]] = set()
    while options:
        counts: dict[tuple[str, str], int] = {}
        for opts in options:
            for o in opts:
                counts[o] = counts.get(o, 0) + 1
        best = max(
            sorted(counts),
            key=lambda o: (
                counts[o] / (_word_cost(o[1]) if o[0] == "w" else _lit_cost(o[1])),
                o[0] == "w",
                len(o[1]),
            ),
        )
        chosen.add(best)
        options = [opts for opts in options if best not in opts]
    return _make_trigger({v for k, v in chosen if k == "w"}, {v for k, v in chosen if k == "l"})


def _best(cands: list[_Trigger]) -> _Trigger | None:
    return min(cands, key=lambda c: c[2]) if cands else None


def _ends_bounded(strings: set[str]) -> bool:
    """Every string ends where a following word character starts a new word."""
    return all(x and (x[-1] == _B or not _is_word_char(x[-1])) for x in strings)


def _starts_bounded(strings: set[str] | None) -> bool:
    return strings is not None and all(
        x and (x[0] == _B or not _is_word_char(x[0])) for x in strings
    )


def _nonword_class(av) -> bool:
    """A character class (not negated) of non-word characters only."""
    for o, a in av:
        if o is _sc.LITERAL:
            if not _safe_char(chr(a)) or _is_word_char(chr(a)):
                return False
        elif o is _sc.CATEGORY:
            if a not in (_sc.CATEGORY_NOT_WORD, _sc.CATEGORY_SPACE):
                return False
        else:
            return False
    return True


def _end_bounded(items, before: bool) -> bool:
    """True when every match of the sequence ends after a non-word character (or at a
    boundary marker); ``before``: the same holds for the text just before the sequence."""
    if not items:
        return before
    (op, av), prefix = items[-1], items[:-1]
    if op is _sc.AT:
        return av in _BOUND_AT or _end_bounded(prefix, before)
    if op in (_sc.ASSERT, _sc.ASSERT_NOT):
        return _end_bounded(prefix, before)
    if op is _sc.LITERAL:
        return _safe_char(chr(av)) and not _is_word_char(chr(av))
    if op is _sc.IN:
        return _nonword_class(av)
    if op is _sc.CATEGORY:
        return av in (_sc.CATEGORY_NOT_WORD, _sc.CATEGORY_SPACE)
    if op is _sc.SUBPATTERN:
        return _end_bounded(list(av[-1]), _end_bounded(prefix, before))
    if op is _sc.ATOMIC_GROUP:
        return _end_bounded(list(av), _end_bounded(prefix, before))
    if op is _sc.BRANCH:
        pre = _end_bounded(prefix, before)
        return all(_end_bounded(list(alt), pre) for alt in av[1])
    if op in _REPEATS:
        lo, _, body = av
        # the last repetition starts after the prefix or after another repetition
        inner = _end_bounded(list(body), False)
        return inner and (lo >= 1 or _end_bounded(prefix, before))
    return False


def _required_seq(items, left: bool = False, right: bool = False) -> list[_Trigger]:
    """Triggers that every match of the sequence satisfies (each one on its own).

    ``left`` / ``right``: the text just before / after the sequence is known not to be a
    word character.
    """
    cands: list[_Trigger] = []
    items = list(items)
    cur: set[str] = {_B if left else ""}
    for k, (op, av) in enumerate(items):
        e = _exact_node(op, av)
        nxt = _cross(cur, e)
        if nxt is not None:
            cur = nxt
            continue
        cands.extend(_chunk_triggers(cur))
        if e is not None:  # too many strings: start a new run, keeping the boundary
            cur = {(_B if _ends_bounded(cur) else "") + y for y in e}
        else:
            after = right if k + 1 == len(items) else _starts_bounded(_exact_node(*items[k + 1]))
            cands.extend(_required_node(op, av, _ends_bounded(cur), after))
            cur = {_B if _end_bounded(items[: k + 1], left) else ""}
    if right:
        cur = {x + _B for x in cur}
    cands.extend(_chunk_triggers(cur))
    return cands


def _chunk_triggers(strings: set[str]) -> list[_Trigger]:
    """The cheapest trigger of a run of exact strings, and a second one disjoint from it."""
    first = _trigger(strings)
    if first is None:
        return []
    # a second trigger that the first one implies is useless: ban its options' variants
    used = frozenset(
        {(k, w) for w in first[0] for k in "wl"}
        | {(k, v) for x in first[1] for k, v in _options(x) if x in v or v in x}
    )
    second = _trigger(strings, used)
    return [first] if second is None else [first, second]


def _required_node(op, av, left: bool, right: bool) -> list[_Trigger]:
    if op is _sc.SUBPATTERN:
        return _required_seq(av[-1], left, right)
    if op is _sc.ATOMIC_GROUP:
        return _required_seq(av, left, right)
    if op in _REPEATS and av[0] >= 1:
        return _required_seq(av[2], left, right and av[1] == 1)
    if op is _sc.BRANCH:
        words: set[str] = set()
        lits: set[str] = set()
        for alt in av[1]:
            b = _best(_required_seq(alt, left, right))
            if b is None:
                return []
            words |= b[0]
            lits |= b[1]
        return [_make_trigger(words, lits)]
    return []


def _pattern_triggers(pattern: str, most: int = 3) -> list[_Trigger]:
    """Up to ``most`` distinct triggers of a case-insensitive pattern, cheapest first; a
    match satisfies all of them (an empty list: search the pattern always)."""
    parsed = _sre_parse.parse(pattern, re.IGNORECASE)
    if parsed.state.flags & (re.ASCII | re.LOCALE):
        return []  # other word boundaries than the Unicode ones the words are cut at
    out: list[_Trigger] = []
    for t in sorted(_required_seq(parsed), key=lambda c: c[2]):
        if all(t[:2] != u[:2] for u in out):
            out.append(t)
    return out[:most]


def _foldable(items) -> bool:
    """True when the case-insensitive pattern may be searched case-sensitively on folded text.

    Needs every literal (and class member) to be a character whose case-insensitive
    matches all fold to it, and no back-references.
    """
    if isinstance(items, _sre_parse.SubPattern) and items.state.flags & (re.ASCII | re.LOCALE):
        return False
    for op, av in items:
        if op is _sc.LITERAL or op is _sc.NOT_LITERAL:
            if not _safe_char(chr(av)):
                return False
        elif op is _sc.IN:
            for o, a in av:
                if o in (_sc.LITERAL, _sc.NOT_LITERAL) and not _safe_char(chr(a)):
                    return False
                if o is _sc.RANGE and not all(_safe_char(chr(c)) for c in range(a[0], a[1] + 1)):
                    return False
                if o not in (_sc.LITERAL, _sc.NOT_LITERAL, _sc.RANGE, _sc.CATEGORY, _sc.NEGATE):
                    return False
        elif op is _sc.SUBPATTERN:
            if av[1] or av[2] or not _foldable(av[-1]):  # no inline flags
                return False
        elif op is _sc.ATOMIC_GROUP:
            if not _foldable(av):
                return False
        elif op is _sc.BRANCH:
            if not all(_foldable(alt) for alt in av[1]):
                return False
        elif op in _REPEATS:
            if not _foldable(av[2]):
                return False
        elif op in (_sc.ASSERT, _sc.ASSERT_NOT):
            if not _foldable(av[1]):
                return False
        elif op not in (_sc.AT, _sc.ANY, _sc.CATEGORY):
            return False
    return True


def _scan_is_cheap(pattern: str, trig: _Trigger) -> bool:
    """Searching beats testing the trigger: single characters, and a pattern that starts
    with a character or class (``re`` then scans for it in C)."""
    words, lits, _ = trig
    first = _sre_parse.parse(pattern, re.IGNORECASE)[0][0]
    return not words and all(len(x) == 1 for x in lits) and first in (_sc.LITERAL, _sc.IN)


class RulePlan:
    """Compiled rules, their triggers and the key index (built once, shared by taggers).

    The first trigger of a rule is looked up through ``index``: a whole word of the folded
    sentence is its own key, a literal ``x`` that must be a substring of it is the key
    ``"\\x00" + x`` (the literals of first triggers are tested on every sentence). The
    other triggers (``extra``) are tested only on the rules that pass the first one.
    ``features`` works on bit masks of rules (bit ``r`` for rule ``r``), so the candidate
    rules come out in rule order.
    """

    def __init__(
        self,
        rules: Sequence[tuple[str, float, str]],
        intent: re.Pattern[str],
        tags: Sequence[str],
        math_chars: frozenset[str],
    ):
        n = len(rules)
        self.tag_index = tuple(list(tags).index(t) for t, _, _ in rules)
        self.math_chars = math_chars
        self.ascii_math = "".join(sorted(c for c in math_chars if c.isascii())).encode("ascii")
        self.weights = tuple(w for _, w, _ in rules)
        self.intent_id = n  # the check-intent pattern is the last "rule"
        searches: list[tuple[bool, Callable[[str], re.Match[str] | None]]] = []
        index: dict[str, list[int]] = {}
        literals: set[str] = set()
        always: list[int] = []
        non_ascii_only: set[int] = set()
        extra: dict[int, tuple[tuple[frozenset[str], tuple[str, ...]], ...]] = {}
        for i, pattern in enumerate([p for _, _, p in rules] + [intent.pattern]):
            if i < n and _foldable(_sre_parse.parse(pattern, re.IGNORECASE)):
                searches.append((True, re.compile(pattern).search))
            else:
                searches.append((False, re.compile(pattern, re.IGNORECASE).search))
            trigs = _pattern_triggers(pattern)
            if i == n:
                # searched on the raw sentence: its literals are tested on the collapsed one,
                # so keep only triggers whose literals hold no white space
                trigs = [t for t in trigs if not any(c.isspace() for x in t[1] for c in x)]
            if not trigs or _scan_is_cheap(pattern, trigs[0]):
                always.append(i)
                if trigs and all(not x.isascii() for x in trigs[0][1]):
                    non_ascii_only.add(i)  # cannot fire on an ASCII sentence
                continue
            words, lits, _ = trigs[0]
            literals |= lits
            for k in words | {_B + x for x in lits}:
                index.setdefault(k, []).append(i)
            if len(trigs) > 1:
                extra[i] = tuple((w, tuple(sorted(x))) for w, x, _ in trigs[1:])
        self.searches = tuple(searches)
        self.index = {k: tuple(v) for k, v in index.items()}
        self.always = frozenset(always)
        self.always_ascii = self.always - non_ascii_only
        self.extra = extra
        # the same as bit masks (bit r: rule r), the form features() uses
        masks = {k: sum(1 << r for r in v) for k, v in index.items()}
        self.word_masks = {k: m for k, m in masks.items() if not k.startswith(_B)}
        self.word_keys = frozenset(self.word_masks)
        self.literal_masks = {k[1:]: m for k, m in masks.items() if k.startswith(_B)}
        self.literals = tuple(sorted(self.literal_masks))
        self.always_mask = sum(1 << r for r in self.always)
        self.always_ascii_mask = sum(1 << r for r in self.always_ascii)
        self.cache: dict[str, tuple[tuple[int, ...], int, int, bool]] = {}
        self.cache_size = 1 << 15

    def features(self, sentence: str) -> tuple[tuple[int, ...], int, int, bool]:
        """(rules that fire, letters, math characters, announces a check) of one sentence."""
        hit = self.cache.get(sentence)
        if hit is not None:
            return hit
        s = " ".join(sentence.split())
        if s.isascii():
            f = s.lower()
            b = f.encode("ascii")
            letters = len(b) - len(b.translate(None, _ASCII_LETTERS))
            mathy = len(b) - len(b.translate(None, self.ascii_math))
            # the \\w-runs of an ASCII text: everything else becomes a space
            words = set(b.translate(_ASCII_WORD_TABLE).decode("ascii").split())
            mask = self.always_ascii_mask
        else:
            f = fold_case(s)
            letters = sum(map(str.isalpha, s))
            mathy = sum(map(self.math_chars.__contains__, s))
            words = set(_WORDS_RX.findall(f))
            mask = self.always_mask
        masks = self.word_masks
        for k in self.word_keys.intersection(words):
            mask |= masks[k]
        masks = self.literal_masks
        for x in [x for x in self.literals if x in f]:
            mask |= masks[x]
        fired = []
        intent = False
        searches, extra = self.searches, self.extra
        while mask:  # the candidate rules, in order
            low = mask & -mask
            mask ^= low
            r = low.bit_length() - 1
            more = extra.get(r)
            if more is not None:
                passed = True
                for ws, xs in more:
                    if ws.isdisjoint(words):
                        for x in xs:
                            if x in f:
                                break
                        else:
                            passed = False
                            break
                if not passed:
                    continue
            if r == self.intent_id:
                intent = searches[r][1](sentence) is not None
            else:
                folded, search = searches[r]
                if search(f if folded else s) is not None:
                    fired.append(r)
        out = (tuple(fired), letters, mathy, intent)
        if len(self.cache) >= self.cache_size:
            self.cache.clear()
        self.cache[sentence] = out
        return out
