"""Level assignment: sensible, seed-driven, and stable ids across worlds."""

import collections

import pytest

from conceptmask_tf.data.layout import SPLITS
from conceptmask_tf.data.world.ontology import (
    CONCEPT_TYPES,
    OBJECT_CLASSES,
    PHRASE_CANDIDATES,
    _level_counts,
    build_ontology,
    check_catalogue,
)
from conceptmask_tf.errors import UnknownConceptError

SEEDS = range(12)


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
        elif c.type == "phrase":
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
