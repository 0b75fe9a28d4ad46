"""The fast RuleTagger and GramMatcher give exactly the results of the plain implementations.

The plain implementations (one case-insensitive regex search per rule and sentence; one
longest-first alternation of all grams) are kept here, verbatim, as private reference
functions. Parity is checked on the 1,900 RL samples of the shared data (skipped where they
are absent), on hypothesis-generated text, and on the case-folding facts the fast paths
rest on (exhaustively, over all code points).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechgraph.labels import DEFAULT_GRAMS, GramMatcher, RuleTagger, TaggerConfig, load_grams
from mechgraph.labels import _prefilter as prefilter_mod
from mechgraph.labels import tagger as tagger_mod
from mechgraph.labels.grams import _fold_case
from mechgraph.labels.tagger import (
    AC,
    FA,
    FR,
    PG,
    PLANNING_TAGS,
    PS,
    SC,
    TAGS,
    UM,
    TagResult,
)
from mechgraph.segment import segment_text

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MECHGRAPH_SHARED", ROOT.parent / "shared"))
RL_DIR = SHARED / "data" / "rl_checkpoints_qwen15b_grpo"
HICRA = SHARED / "data" / "hicra_strategic_grams.json"

# ------------------------------------------------------------------ reference: tagger
# RuleTagger.scores / tag / _result as they were before the fast path (same rules).


@functools.cache
def _ref_rules():
    return [(t, w, re.compile(p, re.IGNORECASE)) for t, w, p in tagger_mod._RULES]


def _ref_scores(cfg: TaggerConfig, sentence: str, position: int = 0, n_sentences: int = 0):
    s = " ".join(sentence.split())
    sc = {t: cfg.priors.get(t, 0.0) for t in TAGS}
    for tag, w, rx in _ref_rules():
        if rx.search(s):
            sc[tag] += w
    letters = sum(c.isalpha() for c in s)
    mathy = sum(c in tagger_mod._MATH_CHARS for c in s)
    dens = mathy / max(1, mathy + letters)
    sc[AC] += 3.0 * dens
    if dens > 0.45:
        for t in (PG, UM, PS, FR):
            sc[t] -= 1.0
    if letters < 4 and mathy > 0:
        sc[AC] += 1.0
    if n_sentences:
        if position < cfg.setup_window:
            sc[PS] += 1.5 - 0.3 * position
        else:
            sc[PS] -= 0.8
        if position >= n_sentences - cfg.final_window:
            sc[FA] += 0.8
        elif sc[FA] > 0:
            sc[FA] -= 1.5
    return sc


def _ref_result(cfg: TaggerConfig, sc):
    t = cfg.temperature
    m = max(sc.values())
    ex = {k: math.exp((v - m) / t) for k, v in sc.items()}
    z = sum(ex.values())
    probs = {k: v / z for k, v in ex.items()}
    tag = max(TAGS, key=lambda k: sc[k])
    plan = probs[PG] + probs[UM]
    return TagResult(tag, tag in PLANNING_TAGS, float(plan), probs)


def _ref_tag(sentences, cfg: TaggerConfig | None = None):
    cfg = cfg or TaggerConfig()
    n = len(sentences)
    out, checking = [], 0
    for i, s in enumerate(sentences):
        sc = _ref_scores(cfg, s, i, n)
        if checking > 0:
            sc[SC] += cfg.check_bonus
            checking -= 1
        if tagger_mod._CHECK_INTENT.search(s):
            checking = cfg.check_window
        out.append(_ref_result(cfg, sc))
    return out


def _ref_fired(sentence: str) -> tuple[int, ...]:
    s = " ".join(sentence.split())
    return tuple(i for i, (_, _, rx) in enumerate(_ref_rules()) if rx.search(s))


# ------------------------------------------------------------------ reference: grams


@functools.cache
def _ref_gram_rx(grams: tuple[str, ...]):
    # GramMatcher.__init__ before the fast path; ``grams`` is GramMatcher.grams (its order)
    alts = "|".join(r"\s+".join(re.escape(w) for w in g.split(" ")) for g in grams)
    return re.compile(rf"(?<![^\W_])(?:{alts})(?![^\W_])", re.IGNORECASE)


def _ref_find(m: GramMatcher, text: str):
    return [x.span() for x in _ref_gram_rx(tuple(m.grams)).finditer(text)]


def _ref_find_grams(m: GramMatcher, text: str):
    return [
        " ".join(x.group(0).lower().split()) for x in _ref_gram_rx(tuple(m.grams)).finditer(text)
    ]


# ------------------------------------------------------------------ helpers


def _same(a, b) -> bool:
    """Byte-identical results (repr shows every float exactly, probs included)."""
    return repr(a) == repr(b)


@functools.cache
def _matchers() -> tuple[GramMatcher, ...]:
    lists = [load_grams(DEFAULT_GRAMS).grams]
    if HICRA.is_file():
        lists.append(load_grams(HICRA).grams)
    return tuple(GramMatcher(g) for g in lists)


@pytest.fixture(scope="module")
def rl_texts() -> list[str]:
    files = sorted(RL_DIR.glob("step_*.jsonl"))
    if not files:
        pytest.skip(f"RL samples not found at {RL_DIR}")
    texts = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["output"].split("assistant\n", 1)[-1])
    return texts


# ------------------------------------------------------------------ (a) real samples


def test_tagger_parity_on_rl_samples(rl_texts):
    assert len(rl_texts) == 1900
    tagger = RuleTagger()
    tagger._plan.cache.clear()
    n_sent = 0
    for text in rl_texts:
        sents = [text[a:b] for a, b in segment_text(text)]
        n_sent += len(sents)
        ref = _ref_tag(sents)
        assert _same(tagger.tag(sents), ref)  # computed
        assert _same(tagger.tag(sents), ref)  # from the cache
    assert n_sent > 15000


def test_gram_parity_on_rl_samples(rl_texts):
    if not HICRA.is_file():
        pytest.skip("HICRA's list is missing")
    for m in _matchers():
        assert m._fast is not None  # both shipped lists take the fast path
        n = 0
        for text in rl_texts:
            spans = m.find(text)
            assert spans == _ref_find(m, text)
            assert m.find_grams(text) == [" ".join(text[a:b].lower().split()) for a, b in spans]
            n += len(spans)
        assert n > 1000


# ------------------------------------------------------------------ (b) generated text

# words and phrases of the rules (runs of letters, spaces, apostrophes between metachars)
_RULE_WORDS = sorted(
    {
        w
        for _, _, p in tagger_mod._RULES
        for w in re.findall(r"[a-z][a-z'-]*", re.sub(r"\\.", " ", p))
        + re.findall(r"[a-z][a-z' -]*[a-z]", re.sub(r"\\.", "|", p))
    }
)
_GRAM_WORDS = sorted(
    {w for m in _matchers() for g in m.grams for w in g.split()}
    | {g for m in _matchers() for g in m.grams}
)
_ODD = [
    "İ", "ı", "ſ", "\u212a", "K", "é", "É", "数学", "_", "x_1", "2", "3.5", "(1)", "12 * 7", "=",
    "≈", "×", "÷", "√", "π", "✓", "✔", "?", "!", ":", ",", ".", "'", "-", "#", "##", "**",
    "**Final Answer**", "\\boxed{3}", "equation (1):", "x = 4", "so, y = 2.", "right?",
    "\u00a0", "\u2003",
]  # fmt: skip
_SEPS = ["", " ", " ", " ", "  ", "\n", "\n\n", "\t", " \u00a0", ", ", ". ", "-"]
_SPECIAL_FOLD = str.maketrans({"i": "ı", "s": "ſ", "k": "\u212a", "I": "İ"})
_CASES = [
    lambda w: w,
    str.lower,
    str.upper,
    str.title,
    str.capitalize,
    lambda w: w.translate(_SPECIAL_FOLD),
]


def _phrase(words: list[str]):
    token = st.builds(
        lambda w, f: f(w), st.sampled_from(words) | st.sampled_from(_ODD), st.sampled_from(_CASES)
    )
    return st.lists(st.tuples(token, st.sampled_from(_SEPS)), max_size=14).map(
        lambda ts: "".join(t + s for t, s in ts)
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_phrase(_RULE_WORDS), min_size=0, max_size=8))
def test_tagger_parity_generated(sents):
    tagger = RuleTagger()
    assert _same(tagger.tag(sents), _ref_tag(sents))
    for s in sents:  # every rule that fires is found (the prefilter misses none)
        assert tagger._plan.features(s)[0] == _ref_fired(s)
        assert tagger._plan.features(s)[3] == bool(tagger_mod._CHECK_INTENT.search(s))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_phrase(_RULE_WORDS), min_size=1, max_size=6),
    st.dictionaries(
        st.sampled_from(TAGS), st.integers(-2, 2) | st.floats(-3, 3, allow_nan=False), max_size=4
    ),
    st.floats(0.05, 5.0),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_tagger_parity_configs(sents, priors, temperature, setup, final):
    cfg = TaggerConfig(
        setup_window=setup, final_window=final, temperature=temperature, priors=priors
    )
    tagger = RuleTagger(cfg)
    assert _same(tagger.tag(sents), _ref_tag(sents, cfg))
    for i, s in enumerate(sents):
        assert _same(tagger.scores(s, i, len(sents)), _ref_scores(cfg, s, i, len(sents)))
        assert _same(tagger.scores(s), _ref_scores(cfg, s))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_phrase(_GRAM_WORDS))
def test_gram_parity_generated(text):
    for m in _matchers():
        assert m.find(text) == _ref_find(m, text)
        assert m.find_grams(text) == _ref_find_grams(m, text)


_TINY = ["a", "b", "ab", "a-b", "hmm", ",", "#", "##", "step", "x", "let's", "'", "_", "1", "é"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from(_TINY), st.sampled_from(["", " "])), min_size=1, max_size=4
        ).map(lambda ts: "".join(t + s for t, s in ts)),
        min_size=1,
        max_size=8,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(_TINY) | st.sampled_from(["A", "B", "AB", "İ", "ı"]),
            st.sampled_from(["", " ", "  ", "\n", "\t "]),
        ),
        max_size=20,
    ).map(lambda ts: "".join(t + s for t, s in ts)),
)
def test_gram_parity_small_lists(grams, text):
    """Grams that are prefixes of one another, punctuation at either end, odd case."""
    if not any(g.strip() for g in grams):
        return
    m = GramMatcher(grams)
    assert m.find(text) == _ref_find(m, text)
    assert m.find_grams(text) == _ref_find_grams(m, text)
    assert m.coverage(text) == _ref_coverage(m, text)


def _ref_coverage(m: GramMatcher, text: str) -> float:
    total = sum(not c.isspace() for c in text)
    if not total:
        return 0.0
    return sum(sum(not c.isspace() for c in text[a:b]) for a, b in _ref_find(m, text)) / total


def test_non_ascii_grams_use_the_reference_pattern():
    m = GramMatcher(["café au lait", "straße", "ı see", "but wait"])
    assert m._fast is None
    text = "CAFÉ  au\nlait; STRASSE straße; I see ı see; But wait."
    assert m.find(text) == _ref_find(m, text)
    assert m.find_grams(text) == _ref_find_grams(m, text)
    assert m.find_grams(text)[:2] == ["café au lait", "straße"]


def test_subclass_overriding_scores_keeps_working():
    class Shifted(RuleTagger):
        def scores(self, sentence, position=0, n_sentences=0):
            sc = super().scores(sentence, position, n_sentences)
            sc[SC] += 10.0
            return sc

    r = Shifted().tag(["Let me try another approach.", "So 2 + 2 = 4."])
    assert [x.tag for x in r] == ["self_checking", "self_checking"]


def test_cache_is_bounded_and_transparent():
    plan = tagger_mod._plan()
    old = plan.cache_size
    try:
        plan.cache_size = 8
        plan.cache.clear()
        sents = [f"Wait, maybe x = {i} is wrong?" for i in range(50)]
        assert _same(RuleTagger().tag(sents), _ref_tag(sents))
        assert len(plan.cache) <= 8
    finally:
        plan.cache_size = old
        plan.cache.clear()


# ------------------------------------------------------------------ (c) the case-folding facts


@functools.cache
def _all_chars() -> str:
    return "".join(chr(i) for i in range(sys.maxunicode + 1) if not 0xD800 <= i < 0xE000)


def test_fold_case_keeps_every_class_and_boundary():
    """For every code point, a case-insensitive class matches it iff the case-sensitive
    class matches its folded form (the classes and anchors the rules and grams use)."""
    text = _all_chars()
    folded = _fold_case(text)
    assert len(folded) == len(text)
    for cls in [r"\w", r"\W", r"\s", r"\S", r"\d", r"\D", r"[^\W_]", r"[^?]", r"[^.?!]",
                r"[a-z]", r".", r"\b", r"\B"]:  # fmt: skip
        a = [m.start() for m in re.finditer("(?i)" + cls, text)]
        b = [m.start() for m in re.finditer(cls, folded)]
        assert a == b, cls


def test_fold_case_maps_exactly_the_case_insensitive_equivalents_of_ascii():
    """x matches the lower-case ASCII character c case-insensitively iff fold(x) == c."""
    text = _all_chars()
    folded = _fold_case(text)
    for code in range(32, 127):
        c = chr(code)
        if c.isupper():
            continue
        a = [m.start() for m in re.finditer("(?i)" + re.escape(c), text)]
        b = [m.start() for m in re.finditer(re.escape(c), folded)]
        assert a == b, c


def test_safe_non_ascii_literals_match_only_themselves():
    """No other character is case-insensitively equal to a non-ASCII 'safe' literal."""
    import _sre

    extra = set()
    from re import _casefix

    for k, v in _casefix._EXTRA_CASES.items():
        extra.add(chr(k))
        extra.update(map(chr, v))
    for x in _all_chars():
        lo = chr(_sre.unicode_tolower(ord(x)))
        if lo != x and not lo.isascii():
            assert not prefilter_mod._safe_char(lo), hex(ord(x))
    assert not any(prefilter_mod._safe_char(c) and not c.isascii() for c in extra)
    for c in "✔✓≈×÷":  # the ones the rules use
        assert prefilter_mod._safe_char(c)
        assert re.findall("(?i)" + re.escape(c), _all_chars()) == [c]


def test_prefilter_covers_every_rule():
    """Every rule has a trigger or is searched always; the derived words are sane."""
    plan = tagger_mod._plan()
    n = len(tagger_mod._RULES)
    indexed = {r for rules in plan.index.values() for r in rules}
    assert indexed | plan.always == set(range(n + 1))
    assert all(k.startswith(prefilter_mod._B) or re.fullmatch(r"\w+", k) for k in plan.index)
