"""Level assignment: sensible, seed-driven, and stable ids across worlds."""

import collections
import pathlib
import re

import pytest

from conceptmask_tf.data.layout import SPLITS
from conceptmask_tf.data.world import WorldConfig
from conceptmask_tf.data.world.ontology import (
    CONCEPT_TYPES,
    OBJECT_CLASSES,
    PHRASE_CANDIDATES,
    _is_sensible,
    _level_counts,
    build_ontology,
    check_catalogue,
)
from conceptmask_tf.errors import UnknownConceptError

SEEDS = range(12)
FLAGS = pathlib.Path(__file__).resolve().parents[3] / "flags"


def _num_phrases(flagfile: str) -> int:
    return int(re.search(r"^--num_phrases=(\d+)$", (FLAGS / flagfile).read_text(),
                         re.MULTILINE).group(1))


# num_phrases of the flagfile worlds and of the tests' WorldConfig defaults.
NUM_PHRASES = sorted({_num_phrases("world_default.cfg"), _num_phrases("world_alt.cfg"),
                      WorldConfig().num_phrases})


def test_catalogue_is_consistent():
    check_catalogue()  # raises on a contradiction between the tables


def test_level_counts_by_largest_remainder():
    # 17 objects * (.45, .25, .15, .15) = 7.65, 4.25, 2.55, 2.55 -> floors 7, 4, 2, 2 (15);
    # the two spare go to the largest remainders: .65 (strong), then .55 (weak_image, first).
    shares = (("strong", .45), ("weak_box", .25), ("weak_image", .15), ("zero_shot", .15))
    assert _level_counts(17, shares) == [("strong", 8), ("weak_box", 4), ("weak_image", 3),
                                         ("zero_shot", 2)]
    # Every level gets at least one concept even when its share rounds to zero.
    assert _level_counts(3, (("a", .9), ("b", .05), ("c", .05))) == [("a", 1), ("b", 1),
                                                                     ("c", 1)]


@pytest.mark.parametrize("seed", SEEDS)
def test_assignment_is_sensible(seed):
    onto = build_ontology(seed, num_phrases=10)
    level = {c.name: c.level for c in onto.concepts}
    by_type = collections.defaultdict(set)
    for c in onto.concepts:
        by_type[c.type].add(c.level)
    # Strong = objects only (like COCO-80); context tags have no level.
    assert {c.type for c in onto.at_level("strong")} == {"object"}
    assert by_type["context"] == {None}
    # Every region type appears at more than one level; every split is non-empty.
    for kind in ("object", "part", "stuff", "attribute", "phrase"):
        assert len(by_type[kind]) >= 2, kind
    assert all(onto.at_level(s) for s in SPLITS)
    # Zero-shot concepts have a trained relative.
    for c in onto.at_level("zero_shot"):
        if c.type == "part":
            assert any(level[p] != "zero_shot" for p in c.parents), c.name
        elif c.type == "phrase":  # composed of trained words
            assert all(level[w] != "zero_shot" for w in c.words), c.name
        else:
            kin = [o.name for o in onto.concepts
                   if o.type == c.type and o.group == c.group and o.name != c.name]
            assert any(level[k] != "zero_shot" for k in kin), c.name
    # Boxes: strong in both sources, weak_box in one or both, nothing else boxed.
    for c in onto.concepts:
        if c.level == "strong":
            assert c.box_sources == ("oi", "vg")
        elif c.level == "weak_box":
            assert c.box_sources in (("oi",), ("vg",), ("oi", "vg"))
        else:
            assert c.box_sources == ()
    assert onto.box_concepts("oi") and onto.box_concepts("vg")


@pytest.mark.parametrize("num_phrases", NUM_PHRASES)
@pytest.mark.parametrize("seed", range(31))
def test_no_trained_phrase_contains_a_zero_shot_word(seed, num_phrases):
    # DESIGN.md §3: a concept containing a zero-shot concept as a word is never trained.
    onto = build_ontology(seed, num_phrases)
    level = {c.name: c.level for c in onto.concepts}
    zero_shot = {c.name for c in onto.at_level("zero_shot")}
    assert len(onto.phrases) == num_phrases
    for phrase in onto.phrases:
        assert phrase.name.split() == list(phrase.words)
        if phrase.level == "zero_shot":
            assert all(level[w] != "zero_shot" for w in phrase.words), phrase.name
        else:
            assert not set(phrase.words) & zero_shot, phrase.name
    # Every trained concept name, as words, avoids the zero-shot names.
    for c in onto.region_concepts:
        if c.level != "zero_shot":
            assert not set(c.name.split()) & zero_shot, c.name


def test_is_sensible_rejects_a_trained_phrase_with_a_zero_shot_word():
    rows = [("bus", "object", "vehicle", (), ()), ("car", "object", "vehicle", (), ()),
            ("red", "attribute", "colour", (), ()), ("blue", "attribute", "colour", (), ()),
            ("red bus", "phrase", "phrase", (), ("red", "bus"))]
    groups = [("cat", "object", "animal", (), ()), ("tree", "object", "plant", (), ())]
    levels = {"bus": "zero_shot", "car": "strong", "red": "weak_image", "blue": "zero_shot",
              "cat": "strong", "tree": "strong"}
    assert not _is_sensible(rows + groups, {**levels, "red bus": "weak_image"})
    assert not _is_sensible(rows + groups, {**levels, "red bus": "zero_shot"})
    trained_bus = {**levels, "bus": "weak_box"}
    assert _is_sensible(rows + groups, {**trained_bus, "red bus": "weak_image"})
    assert _is_sensible(rows + groups, {**trained_bus, "red bus": "zero_shot"})


def test_too_many_phrases_cannot_avoid_zero_shot_words():
    # Two of the ten attributes are zero-shot and only "orange cat" and "green chair" use
    # orange and green: at most 24 phrase candidates can be drawn.
    assert len(build_ontology(0, num_phrases=24).phrases) == 24
    with pytest.raises(RuntimeError, match="num_phrases=26.*at most 24"):
        build_ontology(0, num_phrases=26)


def test_seed_changes_assignment_but_not_ids():
    a, b = build_ontology(0, 10), build_ontology(7, 10)
    assert a.splits() != b.splits()
    ids_a = {c.name: (c.id, c.mid) for c in a.concepts}
    ids_b = {c.name: (c.id, c.mid) for c in b.concepts}
    for name in ids_a.keys() & ids_b.keys():
        assert ids_a[name] == ids_b[name]
    assert build_ontology(0, 10) == a  # deterministic


def test_phrases_are_chosen_candidates_and_ids_unique():
    onto = build_ontology(5, num_phrases=6)
    assert len(onto.phrases) == 6
    assert {p.words for p in onto.phrases} <= set(PHRASE_CANDIDATES)
    assert len({c.id for c in onto.concepts}) == len(onto.concepts)
    assert len({c.mid for c in onto.concepts}) == len(onto.concepts)
    assert {c.type for c in onto.concepts} == set(CONCEPT_TYPES)
    assert len(onto.names(("object",))) == len(OBJECT_CLASSES)


def test_unknown_concept_raises():
    with pytest.raises(UnknownConceptError):
        build_ontology(0, 10).concept("unicorn")
