"""Ground truth merged per image across splits, skips, and model batching."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from conceptmask_tf.data import coco
from conceptmask_tf.data.types import ConceptMask
from conceptmask_tf.errors import DataError
from conceptmask_tf.evaluation.eval_set import (
    EMPTY_MASK,
    SIZE_MISMATCH,
    EvalPair,
    load_eval_set,
    make_batches,
    pad_concepts,
)
from tests.evaluation import eval_fixtures as fx


@pytest.fixture
def eval_set(tmp_path):
    return load_eval_set(fx.write_data_root(str(tmp_path)), fx.embeddings())


def _pairs(eval_set):
    return {(i.image.split("/")[-1], p.split, p.concept, p.present)
            for i in eval_set.images for p in i.pairs}


def test_pairs_are_merged_per_image_with_their_split(eval_set):
    assert [i.image for i in eval_set.images] == ["images/img0.png", "images/img1.png",
                                                  "images/img2.png"]
    assert _pairs(eval_set) == {
        ("img0.png", "strong", "dog", True), ("img0.png", "strong", "car", False),
        ("img0.png", "weak_box", "sky", True), ("img0.png", "weak_image", "red car", False),
        ("img1.png", "strong", "dog", True), ("img1.png", "weak_box", "cat", True),
        ("img1.png", "weak_box", "sky", False), ("img1.png", "weak_image", "red car", True),
        ("img1.png", "zero_shot", "cloud", False),
        ("img2.png", "weak_box", "sky", True), ("img2.png", "weak_box", "cat", False),
        ("img2.png", "zero_shot", "cloud", True)}
    img2 = eval_set.images[2]
    assert (img2.height, img2.width) == (24, 32)
    mask, ignore = next(p for p in img2.pairs if p.concept == "cloud").truth()
    np.testing.assert_array_equal(mask, fx.truth("img2.png", "cloud"))
    assert ignore is None


def test_unknown_concepts_crowd_only_masks_and_phrases(eval_set):
    # zebra has no word vector; car in img1 is crowd only; "red car" is a phrase of words.
    assert eval_set.unknown_concepts == {"zebra": 1}
    assert eval_set.skips.counts == {EMPTY_MASK: 1}
    vocabulary = fx.embeddings().vocabulary
    expected = vocabulary.idf[3] * np.eye(8)[3] + vocabulary.idf[2] * np.eye(8)[2]
    np.testing.assert_allclose(eval_set.vectors["red car"], expected, rtol=1e-6)
    assert eval_set.supercategories["weak_image", "red car"] == "phrase"


def test_missing_split_is_listed_and_all_missing_is_an_error(tmp_path):
    root = fx.write_data_root(str(tmp_path / "a"), splits=("strong", "weak_box"))
    eval_set = load_eval_set(root, fx.embeddings())
    assert eval_set.splits == ("strong", "weak_box")
    assert eval_set.missing_splits == ("weak_image", "zero_shot")
    empty = fx.write_data_root(str(tmp_path / "b"), splits=())
    with pytest.raises(DataError, match="eval/strong.json"):
        load_eval_set(empty, fx.embeddings())


def test_max_images_keeps_the_first_images_of_each_split(tmp_path):
    eval_set = load_eval_set(fx.write_data_root(str(tmp_path)), fx.embeddings(), max_images=1)
    # strong: img0; weak_box: img0; weak_image: img0 (negative only); zero_shot: img1.
    assert {(i.image, p.split) for i in eval_set.images for p in i.pairs} == {
        ("images/img0.png", "strong"), ("images/img0.png", "weak_box"),
        ("images/img0.png", "weak_image"), ("images/img1.png", "zero_shot")}


def test_image_of_another_size_than_annotated_is_skipped(tmp_path):
    root = fx.write_data_root(str(tmp_path))
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(os.path.join(root, "images",
                                                                       "img2.png"))
    eval_set = load_eval_set(root, fx.embeddings())
    assert [i.image for i in eval_set.images] == ["images/img0.png", "images/img1.png"]
    assert eval_set.skips.counts[SIZE_MISMATCH] == 1


def test_batches_group_sizes_sort_by_concepts_and_respect_limits():
    sizes = [(32, 32), (24, 32), (32, 32), (32, 32), (32, 32), (24, 32)]
    concepts = [3, 1, 1, 0, 2, 5]
    # Item 3 has no concept; 32x32 items by K: 2 (K 1), 4 (K 2), 0 (K 3).
    assert list(make_batches(sizes, concepts, batch_size=2)) == [[2, 4], [0], [1, 5]]
    # Budget 4096: 2 images x K 2 x 32 x 32 = 4096 fits, adding item 0 would need
    # 3 x 3 x 1024; items 1 and 5 together need 2 x 5 x 24 x 32 = 7680.
    assert list(make_batches(sizes, concepts, batch_size=8, max_elements=4096)) == [
        [2, 4], [0], [1], [5]]
    # A single item over the budget still forms its own batch.
    assert list(make_batches([(32, 32)], [9], batch_size=4, max_elements=10)) == [[0]]
    with pytest.raises(ValueError):
        list(make_batches(sizes, concepts, batch_size=0))


def test_pad_concepts_repeats_the_first_vector():
    a = np.array([[1.0, 2.0]])
    b = np.array([[3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    padded = pad_concepts([a, b])
    assert padded.shape == (2, 3, 2) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[0], [[1, 2], [1, 2], [1, 2]])
    np.testing.assert_array_equal(padded[1], b)
    with pytest.raises(ValueError):
        pad_concepts([a, np.zeros((0, 2))])


def test_box_truth_is_the_union_of_the_instance_boxes(eval_set):
    pairs = {(os.path.basename(i.image), p.concept): p for i in eval_set.images for p in i.pairs
             if p.present}
    cat = pairs["img1.png", "cat"]
    np.testing.assert_array_equal(cat.box_truth(), fx.box_truth("img1.png", "cat"))
    assert cat.box_truth().sum() == 144 and cat.truth()[0].sum() == 64
    np.testing.assert_array_equal(pairs["img0.png", "dog"].box_truth(),
                                  fx.truth("img0.png", "dog"))  # a rectangle: its own box
    with pytest.raises(ValueError, match="verified absent"):
        next(p for i in eval_set.images for p in i.pairs if not p.present).box_truth()


def test_box_truth_of_several_and_of_sub_pixel_boxes():
    mask = np.zeros((8, 8), np.uint8)
    mask[1, 1] = mask[6, 5:7] = 1
    pair = EvalPair("weak_box", "leaf", ConceptMask(
        "leaf", coco.encode_mask(mask), boxes=((1, 1, 1, 1), (5, 6, 2, 1), (3.2, 3.2, 0.4, 0.4))))
    expected = np.zeros((8, 8), bool)
    expected[1, 1] = expected[6, 5:7] = True
    expected[3, 3] = True  # a box holding no pixel centre keeps the pixel under its centre
    np.testing.assert_array_equal(pair.box_truth(), expected)
    # Without boxes (a file without "bbox" read by another tool): the mask's own box.
    no_boxes = EvalPair("weak_box", "leaf", ConceptMask("leaf", coco.encode_mask(mask)))
    expected = np.zeros((8, 8), bool)
    expected[1:7, 1:7] = True
    np.testing.assert_array_equal(no_boxes.box_truth(), expected)
