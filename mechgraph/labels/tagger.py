"""Rule-based tagger for Thought Anchors' eight sentence functions, and the planning flag.

Thought Anchors (Bogdan et al. 2025) labels every sentence of a reasoning trace with one of
eight functions, using an LLM. This module does it with hand-written cue rules, no API
calls: each rule is a regular expression with a weight for one tag; a sentence's score for
a tag is a prior plus the weights of the rules that fire (each rule fires at most once),
plus a few context cues (position in the trace, density of math symbols). The tag is the
arg-max; a softmax over the scores gives probabilities, and the *planning score* is
``p(plan_generation) + p(uncertainty_management)``.

A sentence is **planning** when its tag is ``plan_generation`` or
``uncertainty_management`` (:data:`PLANNING_TAGS`).

The rules were written while reading the *correct* traces of the shared Thought Anchors
data only; the *incorrect* traces are the held-out split (see ``docs/labels.md`` and
``benchmarks/labels_evidence.py`` for the numbers on both).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mechgraph.errors import ConfigError
from mechgraph.labels._prefilter import RulePlan
from mechgraph.labels.base import SentenceLabeller, StepLabel

__all__ = [
    "PLANNING_TAGS",
    "TAGS",
    "RuleLabeller",
    "RuleTagger",
    "TagResult",
    "TaggerConfig",
    "is_planning",
    "tag_sentences",
]

TAGS: tuple[str, ...] = (
    "problem_setup",
    "plan_generation",
    "fact_retrieval",
    "active_computation",
    "result_consolidation",
    "uncertainty_management",
    "final_answer_emission",
    "self_checking",
)
PLANNING_TAGS: frozenset[str] = frozenset({"plan_generation", "uncertainty_management"})

PS, PG, FR, AC, RC, UM, FA, SC = TAGS
_PS, _PG, _FR, _AC, _RC, _UM, _FA, _SC = range(len(TAGS))
_IDX = range(len(TAGS))


def is_planning(tag: str | None) -> bool:
    """True when ``tag`` is a planning function (plan generation or uncertainty management).

    Examples
    --------
    >>> is_planning("plan_generation"), is_planning("active_computation")
    (True, False)
    """
    return tag in PLANNING_TAGS


# ------------------------------------------------------------------ the rules
# (tag, weight, pattern). Patterns are matched case-insensitively on the sentence with
# white space collapsed. "^" means the start of the sentence (after white space).
_LEAD = (
    r"^(?:(?:so|and|but|now|okay|ok|alright|well|hmm+|wait|then|first|also|yes|no|oh)\b[,.!:]*\s*)*"
)

_RULES: tuple[tuple[str, float, str], ...] = (
    # ---- problem setup: restating the problem, mostly at the very start
    (
        PS,
        2.0,
        r"\b(?:i have|i've got|i'm given|we have|we're given|there's) (?:this|a|the) (?:math )?problem",
    ),
    (
        PS,
        1.5,
        r"\bthe (?:problem|question) (?:says|states|is asking|asks|gives|is about|involves|is:)",
    ),
    (PS, 1.2, r"\b(?:the problem|the question|this problem)\b"),
    (PS, 0.8, r"\bi need to (?:find|figure out|determine|compute|calculate|solve)\b"),
    (PS, 0.6, r"\b(?:asks|asking) (?:for|me|us|about)\b"),
    (PS, 1.0, r"\blet me (?:read|restate|parse|re-read)\b"),
    # ---- plan generation: deciding what to do next
    (PG, 1.4, r"\b(?:approach|strategy|method|plan|technique)\b"),
    (
        PG,
        1.6,
        r"\b(?:let me|let's|i'll|i will|we can|i can|i could|we could|i should|we should) (?:try|use|apply|start|begin|consider|set up|think of|think about|approach|figure|find|break|look for|look at|tackle|attempt|express|rewrite|write|model|denote|define|assume|treat|fix|proceed|focus|instead)\b",
    ),
    (
        PG,
        1.2,
        r"\b(?:let me|let's) (?:solve|compute|calculate|determine|evaluate|simplify|check|see|think)\b(?! again)",
    ),
    (
        PG,
        1.5,
        r"\b(?:i|we) (?:need|have|want) to (?:find|figure out|determine|solve|compute|calculate|count|express|check|consider|subtract|add|evaluate|use|set up|relate|make)\b",
    ),
    (
        PG,
        2.0,
        r"^(?:\w+\W+){0,2}(?:alternatively|another (?:way|approach|method|idea|thought|option))\b",
    ),
    (
        PG,
        0.8,
        _LEAD
        + r"(?:let me|let's|let us|i'll|we'll|i will|we will|i'm going to|we're going to|i am going to|i need to|we need to|i have to|we have to|i should|we should|i must|we must)\b",
    ),
    (PG, 0.4, _LEAD + r"(?:if|suppose|assume|assuming|imagine|say)\b"),
    (PG, 0.4, r"^(?:\w+\W+){0,2}(?:how|what|which|where|why) [^?]*\?\s*$"),
    (PG, 1.0, r"\b(?:maybe|perhaps) (?:i|we) (?:can|could|should|need|might)\b"),
    (
        PG,
        0.9,
        r"\b(?:maybe|perhaps) (?:it's|it is|it would be) (?:better|easier|simpler|helpful)\b",
    ),
    (
        PG,
        0.9,
        r"\b(?:step by step|one by one|first step|next step|the key is|the idea is|the trick is|the goal is)\b",
    ),
    (PG, 0.8, _LEAD + r"(?:first|next|now|then|finally),? (?:let's|let me|i|we)\b"),
    (PG, 0.8, r"\b(?:moving on|to do (?:that|this)|in order to|so that i can|to find)\b"),
    (PG, 0.7, r"\b(?:i think|maybe|perhaps|probably) (?:i|we)(?:'ll| will| should| need| can)\b"),
    (PG, 0.8, _LEAD + r"(?:maybe|perhaps)\b"),
    (
        PG,
        1.0,
        r"\b(?:maybe|perhaps|possibly|suppose|what if|one way|a way to|if that's the case|in that case)\b",
    ),
    (
        PG,
        0.8,
        r"\b(?:let me|let's) (?:first |now |then )?(?:think about|focus on|look at|consider|handle|deal with|tackle|move on)\b",
    ),
    (PG, 0.6, r"\bif (?:i|we) (?:consider|think|treat|fix|take|imagine|let|assume|use|set)\b"),
    (PG, 0.5, r"\b(?:how (?:do|can|should|would) (?:i|we))\b"),
    (PG, 0.7, r"\blet me (?:write|set) (?:that|this|it) (?:down|up)\b"),
    (PG, 0.6, r"\binstead\b"),
    # ---- uncertainty management: doubt, confusion, backtracking, reconsidering
    (UM, 1.6, _LEAD + r"(?:wait|hold on|hmm+)\b"),
    (UM, 1.4, r"\b(?:but wait|wait,? (?:but|no|maybe|that|hold|is|did|am|actually|hmm))\b"),
    (
        UM,
        2.0,
        r"\b(?:not sure|unsure|confus\w*|contradict\w*|conflict\w*|doesn't make sense|does not make sense|that can't be|can't be right|overcomplicat\w*|misunderst\w*|misread|mistake|went wrong|doesn't add up|doesn't seem right|doesn't work|didn't work|inconsistent|discrepanc\w*|hmm, that|something's wrong|something is wrong)\b",
    ),
    (
        UM,
        1.3,
        r"\b(?:that|this|it) (?:doesn't|does not|can't|cannot|isn't|is not|wouldn't|won't) (?:seem|make|match|fit|involve|use|work|help|account|add|right|correct)\b",
    ),
    (
        UM,
        1.2,
        r"\b(?:is that|was that|did i|am i|could that|would that|does that|is this|is it|do i|are they|was i) [^?]{0,60}\?",
    ),
    (UM, 1.0, r"\?\s*$"),
    (UM, 0.4, r"^(?:but|however|although|though|yet)\b"),
    (
        UM,
        1.2,
        r"\b(?:let me|let's|i need to|i should) (?:think|look at this|reconsider|re-examine|re-evaluate|rethink|revisit|go back)\b(?: about)?(?: (?:this|that|it))? ?again\b",
    ),
    (
        UM,
        1.3,
        r"\b(?:reconsider|re-examine|re-evaluate|rethink|backtrack|second thought|on the other hand|that might not be|might be wrong|might not be correct|seems (?:off|too|quite|very|a bit|unexpected|high|low|large|small|strange|odd))\b",
    ),
    (
        UM,
        0.8,
        r"\b(?:this is getting|getting complicated|a bit tricky|tricky|complicat\w*|unclear|ambiguous)\b",
    ),
    (UM, 0.9, r"\b(?:but|however),? (?:that|this|it|if)\b"),
    (UM, 0.7, r",\s*right\?\s*$"),
    (
        UM,
        1.0,
        r"\b(?:just to (?:make sure|be sure|be safe)|to be (?:thorough|safe|sure)|let me try another (?:way|approach)|another way to verify)\b",
    ),
    # ---- fact retrieval: recalling definitions, formulas, given facts
    (
        FR,
        1.6,
        r"\b(?:i (?:know|remember|recall)|recall that|remember that|let me recall|we know|it is known|is defined as|by definition|the definition of|the formula (?:for|is)|formula for|the rule (?:for|is)|theorem|identity|property)\b",
    ),
    (FR, 0.7, r"\b(?:each|every|always|in general|generally|there (?:are|is))\b"),
    (FR, 0.6, r"\b(?:since|because) (?:it's|it is|they are|we have|there are|the)\b"),
    (FR, 0.5, r"\b(?:the (?:asymptote|diagram|figure|code|picture)|is drawn|draws?)\b"),
    (FR, 0.5, r"\b(?:means|which means|is equal to|is the same as|corresponds? to)\b"),
    # ---- active computation: doing arithmetic / algebra
    (
        AC,
        1.5,
        r"\b(?:compute|calculat\w*|multiply\w*|multiplied|divid\w*|subtract\w*|add(?:ing)? up|plug\w*|substitut\w*|simplif\w*|expand\w*|factor(?:ing|ed)?|solv(?:e|ing) for|rearrang\w*|convert\w*|cancel\w*|evaluat\w*|square\w* both|take the (?:log|square root))\b",
    ),
    (AC, 0.8, r"\d\s*[-+*/×÷^]\s*\(?\d"),
    (AC, 0.6, r"[=≈]"),
    (
        AC,
        1.2,
        r"^(?:\w+\W+){0,2}(?:let me|let's) (?:compute|calculate|do|work out|multiply|add|subtract|divide|expand|simplify|write out)\b[^.?!]*:\s*$",
    ),
    (AC, 0.5, r"\b(?:gives|becomes|equals|results in|yields)\b"),
    # ---- result consolidation: summarising an intermediate result
    (
        RC,
        1.3,
        _LEAD
        + r"(?:therefore|thus|hence|so|in total|overall|altogether|putting (?:it|this|that) together|combining|adding (?:these|them|those))\b[^.?!]{0,80}\b(?:is|are|was|=|gives|comes to|equals|has|have)\b",
    ),
    (
        RC,
        1.4,
        r"\b(?:so (?:the|our) (?:total|result|value|number|coefficient|polynomial|equation)|in summary|to summarize|to recap|so far|which (?:means|gives) (?:the|that)|let's call this|call this equation|equation \(\d+\)[:.]?$)",
    ),
    (
        RC,
        0.9,
        r"\b(?:total|in total|altogether|overall|all together|summing|sum of|the result is|the value is)\b",
    ),
    (RC, 0.8, r"^(?:so|therefore|thus|hence)\b"),
    (RC, 1.5, r"^(?:so|therefore|thus|hence),? [a-z]\w{0,3}(?:\(\d+\))? = -?[\d./]+(?: \w+)?\.?$"),
    # ---- self checking: verifying, confirming
    (
        SC,
        2.0,
        r"\b(?:double[- ]check\w*|verif\w*|sanity check|cross[- ]check\w*|let me check|check (?:my|the|this|that|if|whether)|confirm\w*|make sure)\b",
    ),
    (
        SC,
        1.8,
        r"\b(?:that|this|it|which) (?:seems|looks|sounds|is|was) (?:correct|right|consistent|reasonable|logical|fine|okay|ok|good|plausible|to make sense|to be correct|to check out|accurate|valid)\b",
    ),
    (
        SC,
        1.5,
        r"\b(?:that's|that is|which is) (?:correct|right|consistent|the same|reasonable)\b|\bchecks out\b|\bboth (?:methods|approaches|ways) (?:give|agree|lead)\b|\bagree\w*\b|\bconsistent\b",
    ),
    (SC, 4.0, r"[✔✓]"),
    (SC, 1.2, r"^(?:yes|yep|yeah|okay|ok|good|great|correct|right)\b[,.!]"),
    (
        SC,
        1.0,
        r"\b(?:i(?:'m| am) (?:confident|sure)|i think (?:that's|this is|it's) (?:right|correct)|the same (?:answer|result))\b",
    ),
    # ---- final answer
    (FA, 3.0, r"\*\*final answer\*\*|\\boxed\b|\bfinal answer\b"),
    (FA, 2.0, r"\b(?:the|my) answer (?:is|should be|would be|must be)\b"),
    (FA, 0.8, r"\bthe answer\b"),
)

_CHECK_INTENT = re.compile(
    r"\b(?:double[- ]check|verify|let me check|check (?:my|the|this|that)|go back and|recap|"
    r"to summarize|make sure)\b",
    re.IGNORECASE,
)
_MATH_CHARS = set("0123456789=+-*/^()[]{}\\_≈×÷√π<>|!")


_PLAN: RulePlan | None = None


def _plan() -> RulePlan:
    global _PLAN
    if _PLAN is None:
        _PLAN = RulePlan(_RULES, _CHECK_INTENT, TAGS, frozenset(_MATH_CHARS))
    return _PLAN


@dataclass(frozen=True)
class TagResult:
    """The tag of one sentence.

    Attributes
    ----------
    tag : str
        One of :data:`TAGS`.
    planning : bool
        ``tag in PLANNING_TAGS``.
    score : float
        Planning score in [0, 1]: ``p(plan_generation) + p(uncertainty_management)``.
    probs : dict
        Softmax probability of every tag.
    """

    tag: str
    planning: bool
    score: float
    probs: dict[str, float] = field(default_factory=dict, compare=False)


@dataclass
class TaggerConfig:
    """Settings of :class:`RuleTagger`.

    Parameters
    ----------
    setup_window : int
        Sentences at the start of a trace that lean to ``problem_setup``.
    final_window : int
        Sentences at the end of a trace that lean to ``final_answer_emission``.
    check_window, check_bonus : int, float
        After a sentence that announces a check ("let me verify"), the next
        ``check_window`` sentences get ``check_bonus`` added to ``self_checking``.
    temperature : float
        Softmax temperature that turns scores into probabilities (> 0).
    priors : dict
        Base score of each tag (missing tags get 0).

    Examples
    --------
    >>> TaggerConfig(temperature=0.5).temperature
    0.5
    """

    setup_window: int = 4
    final_window: int = 3
    temperature: float = 1.0
    check_window: int = 6
    check_bonus: float = 0.6
    priors: dict[str, float] = field(
        default_factory=lambda: {AC: 0.3, FR: 0.7, RC: -0.4, PG: 0.0, UM: 0.0, SC: 0.0}
    )

    def __post_init__(self) -> None:
        if min(self.setup_window, self.final_window, self.check_window) < 0:
            raise ConfigError("setup_window, final_window and check_window must be >= 0")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        bad = set(self.priors) - set(TAGS)
        if bad:
            raise ConfigError(f"unknown tags in priors: {sorted(bad)}; known: {list(TAGS)}")


class RuleTagger:
    """Tag sentences with Thought Anchors' functions by weighted cue rules.

    Parameters
    ----------
    config : TaggerConfig, optional

    Examples
    --------
    >>> tagger = RuleTagger()
    >>> [r.tag for r in tagger.tag(["Okay, so I have this problem about a circle.",
    ...                             "Let me try a different approach.",
    ...                             "Wait, that doesn't make sense.",
    ...                             "So, 3 * 4 = 12.",
    ...                             "**Final Answer** \\\\boxed{12}"])]  # doctest: +NORMALIZE_WHITESPACE
    ['problem_setup', 'plan_generation', 'uncertainty_management', 'active_computation',
     'final_answer_emission']
    """

    def __init__(self, config: TaggerConfig | None = None) -> None:
        self.config = config or TaggerConfig()
        self._rules = [(t, w, re.compile(p, re.IGNORECASE)) for t, w, p in _RULES]
        self._plan = _plan()

    def _score_list(
        self, feats: tuple[tuple[int, ...], int, int, bool], position: int, n_sentences: int
    ) -> list[float]:
        """Scores in :data:`TAGS` order, summed in the same order as the rule loop."""
        cfg = self.config
        fired, letters, mathy, _ = feats
        sc = [cfg.priors.get(t, 0.0) for t in TAGS]
        if fired:
            tag_index, weights = self._plan.tag_index, self._plan.weights
            for r in fired:
                sc[tag_index[r]] += weights[r]
        dens = mathy / max(1, mathy + letters)
        sc[_AC] += 3.0 * dens
        if dens > 0.45:
            for t in (_PG, _UM, _PS, _FR):
                sc[t] -= 1.0
        if letters < 4 and mathy > 0:
            sc[_AC] += 1.0
        if n_sentences:
            if position < cfg.setup_window:
                sc[_PS] += 1.5 - 0.3 * position
            else:
                sc[_PS] -= 0.8
            if position >= n_sentences - cfg.final_window:
                sc[_FA] += 0.8
            elif sc[_FA] > 0:
                sc[_FA] -= 1.5
        return sc

    def scores(self, sentence: str, position: int = 0, n_sentences: int = 0) -> dict[str, float]:
        """Raw score of every tag for one sentence at ``position`` of ``n_sentences``."""
        return dict(
            zip(
                TAGS,
                self._score_list(self._plan.features(sentence), position, n_sentences),
                strict=True,
            )
        )

    def tag(self, sentences: Sequence[str]) -> list[TagResult]:
        """Tag the sentences of one trace, in order (position matters).

        Parameters
        ----------
        sentences : sequence of str
            All sentences of one trace, in order.

        Returns
        -------
        list of TagResult
        """
        cls = type(self)
        if cls.scores is not RuleTagger.scores or cls._result is not RuleTagger._result:
            return self._tag_generic(sentences)
        # _score_list and _result inlined (same operations, in the same order)
        cfg = self.config
        n = len(sentences)
        features = self._plan.features
        tag_index, weights = self._plan.tag_index, self._plan.weights
        base = [cfg.priors.get(t, 0.0) for t in TAGS]
        setup, final_from = cfg.setup_window, n - cfg.final_window
        t, bonus, window = cfg.temperature, cfg.check_bonus, cfg.check_window
        exp = math.exp
        out, checking = [], 0
        for i, s in enumerate(sentences):
            fired, letters, mathy, intent = features(s)
            sc = base.copy()
            for r in fired:
                sc[tag_index[r]] += weights[r]
            dens = mathy / max(1, mathy + letters)
            sc[_AC] += 3.0 * dens
            if dens > 0.45:
                sc[_PG] -= 1.0
                sc[_UM] -= 1.0
                sc[_PS] -= 1.0
                sc[_FR] -= 1.0
            if letters < 4 and mathy > 0:
                sc[_AC] += 1.0
            if i < setup:
                sc[_PS] += 1.5 - 0.3 * i
            else:
                sc[_PS] -= 0.8
            if i >= final_from:
                sc[_FA] += 0.8
            elif sc[_FA] > 0:
                sc[_FA] -= 1.5
            if checking > 0:  # inside a verification pass: restated results are checks
                sc[_SC] += bonus
                checking -= 1
            if intent:
                checking = window
            m = max(sc)
            ex = [exp((v - m) / t) for v in sc]
            z = sum(ex)
            probs = dict(zip(TAGS, [v / z for v in ex], strict=True))
            tag = TAGS[sc.index(m) if m == m else max(_IDX, key=sc.__getitem__)]
            out.append(TagResult(tag, tag in PLANNING_TAGS, float(probs[PG] + probs[UM]), probs))
        return out

    def _tag_generic(self, sentences: Sequence[str]) -> list[TagResult]:
        # the plain loop, for subclasses that override scores() or _result()
        n = len(sentences)
        out, checking = [], 0
        for i, s in enumerate(sentences):
            sc = self.scores(s, i, n)
            if checking > 0:
                sc[SC] += self.config.check_bonus
                checking -= 1
            if self._plan.features(s)[3]:
                checking = self.config.check_window
            out.append(self._result(sc))
        return out

    def _result(self, sc: dict[str, float]) -> TagResult:
        t = self.config.temperature
        m = max(sc.values())
        ex = {k: math.exp((v - m) / t) for k, v in sc.items()}
        z = sum(ex.values())
        probs = {k: v / z for k, v in ex.items()}
        tag = max(TAGS, key=lambda k: sc[k])
        plan = probs[PG] + probs[UM]
        return TagResult(tag, tag in PLANNING_TAGS, float(plan), probs)

    def __call__(self, sentences: Sequence[str]) -> list[str]:
        """Tags only: the labeller signature ``list[str] -> list[str]``."""
        return [r.tag for r in self.tag(sentences)]


def tag_sentences(sentences: Sequence[str], config: TaggerConfig | None = None) -> list[TagResult]:
    """Tag the sentences of one trace with the default rules.

    Examples
    --------
    >>> [r.planning for r in tag_sentences(["Let me think about how to approach this.",
    ...                                     "2 + 2 = 4."])]
    [True, False]
    """
    return RuleTagger(config).tag(sentences)


class RuleLabeller(SentenceLabeller):
    """The rule tagger as a :class:`~mechgraph.labels.base.Labeller` (``--method rules``).

    Examples
    --------
    >>> RuleLabeller().label_sentences(["Alternatively, maybe we can use symmetry."])[0].tag
    'plan_generation'
    """

    name = "rules"

    def __init__(self, config: TaggerConfig | None = None) -> None:
        self.tagger = RuleTagger(config)

    def label_sentences(self, sentences: Sequence[str]) -> list[StepLabel]:
        return [StepLabel(r.tag, r.planning, r.score) for r in self.tagger.tag(sentences)]
