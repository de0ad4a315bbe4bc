"""Which concepts each stage trains on: zero-shot concepts, and concepts containing a
zero-shot word, are never a target."""

from __future__ import annotations

import numpy as np
import pytest

from conceptmask_tf.concepts.concept_sets import (
    BOX_LEVELS,
    HELD_OUT_FACT,
    MASK_LEVELS,
    NO_TARGET,
    NOT_A_TARGET,
    TAG_NOT_IN_VOCABULARY,
    ZERO_SHOT_FACT,
    TrainingConcepts,
    contains_concept,
    held_out_concepts,
    load_training_concepts,
    soft_topic_targets,
    tag_row_matrix,
)
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.concepts.vocabulary import Vocabulary
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.tags import TagCorpus, read_tag_corpus
from conceptmask_tf.data.types import TaggedImage


def test_soft_topic_targets_give_zero_shot_tags_no_weight(world):
    concepts = load_training_concepts(world.root, world.concepts_dir)
    vocabulary = concepts.embeddings.vocabulary
    zero_shot = sorted(c for c in concepts.zero_shot if c in vocabulary)
    seen = [c for c in vocabulary.concepts if c not in concepts.zero_shot][:2]
    assert zero_shot and len(seen) == 2
    corpus = TagCorpus.from_records([
        TaggedImage("images/a.jpg", (seen[0], zero_shot[0], "not a concept")),
        TaggedImage("images/b.jpg", (zero_shot[0], zero_shot[1])),  # nothing left
        TaggedImage("images/c.jpg", (seen[1],)),
    ])
    skips = SkipCounter()
    paths, targets = soft_topic_targets(corpus, concepts, skips)
    assert paths == ["images/a.jpg", "images/c.jpg"]
    vectors, idf = concepts.embeddings.vectors, vocabulary.idf
    rows = [vocabulary.index(c) for c in seen]
    # t = sum of idf_i w_i over the image's non-zero-shot vocabulary tags, worked by hand.
    np.testing.assert_allclose(targets, [idf[rows[0]] * vectors[rows[0]],
                                         idf[rows[1]] * vectors[rows[1]]], rtol=1e-5)
    assert skips.counts[NO_TARGET] == 1 and skips.counts[TAG_NOT_IN_VOCABULARY] == 1


def test_tag_rows_keep_only_trainable_vocabulary_tags_in_the_order_asked(world):
    concepts = load_training_concepts(world.root, world.concepts_dir)
    vocabulary = concepts.embeddings.vocabulary
    zero_shot = sorted(c for c in concepts.zero_shot if c in vocabulary)
    seen = [c for c in vocabulary.concepts if c not in concepts.zero_shot][:3]
    corpus = TagCorpus.from_records([
        TaggedImage("images/a.jpg", (seen[0], zero_shot[0], "not a concept", seen[1])),
        TaggedImage("images/b.jpg", (seen[2],)),
    ])
    rows = tag_row_matrix(corpus, concepts, ["images/b.jpg", "images/a.jpg"])
    index = vocabulary.index
    np.testing.assert_array_equal(rows, [[index(seen[2]), -1],
                                         [index(seen[0]), index(seen[1])]])
    assert rows.dtype == np.int32
    with pytest.raises(ValueError, match="images/c.jpg"):
        tag_row_matrix(corpus, concepts, ["images/c.jpg"])


def test_world_targets_match_the_naive_per_image_soft_topic(world):
    concepts = load_training_concepts(world.root, world.concepts_dir)
    corpus = read_tag_corpus(f"{world.root}/tags.jsonl", with_images=True)
    paths, targets = soft_topic_targets(corpus, concepts, SkipCounter())
    by_path = dict(zip(paths, targets))
    for n in range(corpus.num_images):
        tags = corpus.tags_of(n)
        kept = [t for t in tags if t not in concepts.zero_shot]
        expected = concepts.embeddings.soft_topic(kept)
        if not kept:
            assert str(corpus.images[n]) not in by_path
        else:
            np.testing.assert_allclose(by_path[str(corpus.images[n])], expected, rtol=1e-5,
                                       atol=1e-6)


def test_box_and_mask_targets_follow_the_supervision_levels(world):
    concepts = load_training_concepts(world.root, world.concepts_dir)
    splits = concepts.splits
    annotated = {*splits["strong"], *splits["weak_box"], *splits["weak_image"],
                 *splits["zero_shot"], "unknown thing"}
    skips = SkipCounter()
    box = concepts.target_index(annotated, BOX_LEVELS, skips)
    mask = concepts.target_index(annotated, MASK_LEVELS)
    index_of = concepts.embeddings.vocabulary.index_of
    assert set(box) == {c for c in (*splits["strong"], *splits["weak_box"]) if c in index_of}
    assert set(mask) == {c for c in splits["strong"] if c in index_of}
    assert all(index_of[c] == row for c, row in box.items())
    assert skips.counts[NOT_A_TARGET] == len(annotated) - len(box)
    rows = set(concepts.excluded_rows().tolist())
    assert rows == {index_of[c] for c in splits["zero_shot"] if c in index_of} and rows
    assert not rows & (set(box.values()) | set(mask.values()))


@pytest.mark.parametrize("concept, other, expected", [
    ("red bus", "bus", True),
    ("red bus", "red", True),
    ("red bus", "red bus", True),
    ("bus", "bus", True),
    ("busy road", "bus", False),  # words, not characters
    ("minibus", "bus", False),
    ("bus", "red bus", False),
    ("chocolate ice cream", "ice cream", True),
    ("ice cream cone", "ice cream", True),
    ("ice cream", "ice", True),
    ("ice", "ice cream", False),
    ("ice cream", "ice cream cone", False),
    ("cream ice", "ice cream", False),  # order matters
    ("ice and cream", "ice cream", False),  # contiguous
    ("big red bus stop", "bus stop", True),
    ("t-shirt", "shirt", False),
])
def test_contains_concept_is_a_contiguous_word_sequence(concept, other, expected):
    assert contains_concept(concept, other) is expected


def test_held_out_concepts_follow_contains_concept():
    names = ["red bus", "bus", "busy road", "chocolate ice cream", "ice", "ice cream cone",
             "cream ice", "cat", "striped cat", "dog"]
    zero_shot = ["bus", "ice cream", "zebra"]
    held_out = held_out_concepts(names, zero_shot)
    assert held_out == {"red bus", "chocolate ice cream", "ice cream cone"}
    assert held_out == {n for n in names if n not in zero_shot
                        and any(contains_concept(n, z) for z in zero_shot)}
    assert held_out_concepts(names, []) == frozenset()


def _concepts(names, splits):
    vocabulary = Vocabulary(tuple(names), np.ones(len(names), np.int64), 4)
    vectors = np.eye(len(names), dtype=np.float32)
    return TrainingConcepts(ConceptEmbeddings(vocabulary, vectors), splits)


def test_training_concepts_exclude_zero_shot_and_held_out_alike():
    names = ["bus", "red bus", "red", "car", "red car", "busy road"]
    splits = {"strong": ("car",), "weak_box": ("red car", "bus stop sign"),
              "weak_image": ("red", "red bus", "busy road"), "zero_shot": ("bus",)}
    concepts = _concepts(names, splits)
    assert concepts.zero_shot == {"bus"}
    # Vocabulary and splits.json concepts ("bus stop sign" has no word vector).
    assert concepts.held_out == {"red bus", "bus stop sign"}
    assert concepts.excluded == {"bus", "red bus", "bus stop sign"}
    assert sorted(concepts.excluded_rows().tolist()) == [0, 1]
    assert concepts.exclusion_facts() == {ZERO_SHOT_FACT: ["bus"],
                                          HELD_OUT_FACT: ["bus stop sign", "red bus"]}
    skips = SkipCounter()
    everything = {"bus", "red bus", "car", "red car", "bus stop sign"}
    assert concepts.target_index(everything, BOX_LEVELS, skips) == {"car": 3, "red car": 4}
    assert skips.counts[NOT_A_TARGET] == 3
    # Without splits.json nothing is held out.
    bare = _concepts(names, None)
    assert bare.held_out == bare.excluded == frozenset()
    assert set(bare.target_index(everything, BOX_LEVELS)) == everything - {"bus stop sign"}


def test_stage2_image_labels_match_box_images_by_stem_and_never_use_held_out(tmp_path):
    from conceptmask_tf.data.types import BoxedImage, ConceptBox
    from conceptmask_tf.training.refinement import LABEL_NOT_USED, image_labels

    names = ["bus", "red bus", "red", "car", "sky"]
    splits = {"strong": ("car",), "weak_box": (), "weak_image": ("red", "sky", "red bus"),
              "zero_shot": ("bus",)}
    concepts = _concepts(names, splits)
    (tmp_path / "boxes").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "boxes" / "oi_class_descriptions.csv").write_text(
        "/m/1,Bus\n/m/2,Red bus\n/m/3,Red\n/m/4,Car\n/m/5,Sky\n/m/6,Tree\n")
    (tmp_path / "labels" / "oi_image_labels_train.csv").write_text(
        "ImageID,Source,LabelName,Confidence\n"
        "a,verification,/m/3,1\na,verification,/m/5,0\na,verification,/m/1,0\n"
        "a,verification,/m/2,1\na,verification,/m/6,0\nb,verification,/m/4,0\n"
        "c,verification,/m/1,1\nnot_boxed,verification,/m/3,1\n")
    box = ConceptBox("car", 0.0, 0.0, 1.0, 1.0)
    boxed = [BoxedImage("images/a.png", (box,)), BoxedImage("images/b.jpg", (box,)),
             BoxedImage("images/c.jpg", (box,)), BoxedImage("images/d.jpg", (box,))]
    skips = SkipCounter()
    labels = image_labels(str(tmp_path), boxed, concepts, skips)
    # a: red present, sky absent; bus (zero-shot), red bus (held out) and tree (no
    # vector) dropped. c has only a zero-shot label; d has no labels.
    assert sorted(labels) == ["images/a.png", "images/b.jpg"]
    np.testing.assert_array_equal(labels["images/a.png"][0], [2, 4])
    np.testing.assert_array_equal(labels["images/a.png"][1], [1.0, 0.0])
    np.testing.assert_array_equal(labels["images/b.jpg"][0], [3])
    np.testing.assert_array_equal(labels["images/b.jpg"][1], [0.0])
    assert skips.counts[LABEL_NOT_USED] == 4
    with pytest.raises(FileNotFoundError, match="label_weight"):
        image_labels(str(tmp_path / "missing"), boxed, concepts, SkipCounter())
