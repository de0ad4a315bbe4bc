"""Overlap ratio O (eq. 3) and gamma (eq. 4) on masks worked out by hand."""

import numpy as np
import pytest

from conceptmask_tf.concepts import overlap, overlap_sources
from conceptmask_tf.data import coco
from conceptmask_tf.data.types import BoxedImage, ConceptBox, ConceptMask, MaskedImage


def _mask(cells, shape=(4, 4)):
    mask = np.zeros(shape, bool)
    for r, c in cells:
        mask[r, c] = True
    return mask


# Image 1 (4 x 4): person = left half (8 cells), face = 2 cells inside it, sky = top-right
# 2 x 2 (4 cells, disjoint from both).
# Image 2 (2 x 2, another size): person = 2 cells, face = 1 cell inside, dog = 1 cell that
# overlaps person in 1 cell.
# Image 3: sky alone (4 cells).
IMAGE_1 = {"person": _mask([(r, c) for r in range(4) for c in range(2)]),
           "face": _mask([(0, 0), (0, 1)]),
           "sky": _mask([(0, 2), (0, 3), (1, 2), (1, 3)])}
IMAGE_2 = {"person": _mask([(0, 0), (1, 0)], (2, 2)), "face": _mask([(0, 0)], (2, 2)),
           "dog": _mask([(1, 0)], (2, 2))}
IMAGE_3 = {"sky": _mask([(0, 0), (0, 1), (1, 0), (1, 1)])}
# O(face, person) = (2 + 1) / (2 + 1) = 1;     O(person, face) = (2 + 1) / (8 + 2) = 0.3
# O(sky, person) = 0 / 4 (image 1 only; image 3 has no person) = 0; O(person, sky) = 0 / 8
# O(dog, person) = 1 / 1 = 1;                  O(person, dog) = 1 / 2 (image 2 only)
# O(dog, sky), O(sky, dog): never in one image -> no entry (NaN), gamma 0.
# gamma = 1 - O where O < 0.5: (person, face) 0.7, (person, sky) 1, (sky, person) 1,
# (face, sky) 1, (sky, face) 1, (face, dog) 1 (O = 0 / 1), (dog, face) 1;
# (face, person) 0 (O = 1), (dog, person) 0, (person, dog) 0 (O = 0.5, not < 0.5).


def test_hand_worked_overlap_and_gamma():
    result = overlap.overlap_matrix([IMAGE_1, IMAGE_2, IMAGE_3])
    o = {(a, b): result.overlap[result.concepts.index(a), result.concepts.index(b)]
         for a in result.concepts for b in result.concepts}
    g = {(a, b): result.gamma[result.concepts.index(a), result.concepts.index(b)]
         for a in result.concepts for b in result.concepts}
    assert o["face", "person"] == 1 and o["person", "face"] == pytest.approx(0.3)
    assert o["sky", "person"] == 0 and o["dog", "person"] == 1
    assert o["person", "dog"] == 0.5
    assert np.isnan(o["dog", "sky"]) and np.isnan(o["sky", "dog"])
    assert all(o[c, c] == 1 for c in result.concepts)
    assert g["person", "face"] == pytest.approx(0.7) and g["face", "person"] == 0
    assert g["person", "sky"] == 1 and g["sky", "person"] == 1
    assert g["person", "dog"] == 0 and g["dog", "sky"] == 0
    assert all(g[c, c] == 0 for c in result.concepts)
    count = {(a, b): result.cooccurrence[result.concepts.index(a), result.concepts.index(b)]
             for a in result.concepts for b in result.concepts}
    assert count["person", "face"] == 2 and count["sky", "sky"] == 2
    assert count["dog", "sky"] == 0


def test_gamma_threshold_and_no_entry():
    o = np.array([[1.0, 0.49, np.nan], [0.5, 1.0, 0.0]], np.float32)
    np.testing.assert_allclose(overlap.gamma_from_overlap(o), [[0, 0.51, 0], [0, 0, 1]],
                               rtol=1e-6)


def test_vocabulary_order_index_and_round_trip(tmp_path):
    result = overlap.overlap_matrix([IMAGE_1, IMAGE_2, IMAGE_3],
                                    vocab_index={"sky": 0, "person": 5, "tree": 1})
    assert result.concepts == ("sky", "person", "dog", "face")  # then by name
    np.testing.assert_array_equal(result.vocab_index, [0, 5, -1, -1])
    path = str(tmp_path / "overlap.npz")
    result.save(path)
    loaded = overlap.OverlapMatrix.load(path)
    assert loaded.concepts == result.concepts
    for name in ("overlap", "cooccurrence", "gamma", "vocab_index"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))


def test_masks_of_one_image_must_share_a_shape():
    with pytest.raises(ValueError, match="share a shape"):
        overlap.OverlapAccumulator().add_image({"a": np.ones((2, 2)), "b": np.ones((3, 3))})


def test_box_grids_unite_boxes_and_keep_tiny_boxes():
    image = BoxedImage("images/x.jpg", (
        ConceptBox("car", 0.0, 0.0, 0.5, 0.25),
        ConceptBox("car", 0.5, 0.75, 1.0, 1.0),
        ConceptBox("eye", 0.60, 0.60, 0.61, 0.61)))  # covers no cell centre on a 4 grid
    grids = overlap_sources.box_grids(image, 4)
    np.testing.assert_array_equal(grids["car"], _mask([(0, 0), (0, 1), (3, 2), (3, 3)]))
    np.testing.assert_array_equal(grids["eye"], _mask([(2, 2)]))


def test_mask_grids_resample_and_combine_with_boxes():
    full = np.zeros((8, 8), np.uint8)
    full[:4, :] = 1  # top half
    tiny = np.zeros((8, 8), np.uint8)
    tiny[7, 0] = 1  # one pixel: below a cell of a 2 x 2 grid
    masked = MaskedImage("images/a.jpg", 8, 8, (
        ConceptMask("sky", coco.encode_mask(full)), ConceptMask("bird", coco.encode_mask(tiny)),
        ConceptMask("crowd", coco.encode_mask(np.zeros((8, 8), np.uint8)))))
    boxed = [BoxedImage("images/a.jpg", (ConceptBox("sky", 0, 0, 1, 1),
                                         ConceptBox("tree", 0, 0.5, 0.5, 1))),
             BoxedImage("images/b.jpg", (ConceptBox("tree", 0, 0, 1, 1),))]
    images = list(overlap_sources.image_grids([masked], boxed, 2))
    assert len(images) == 2
    first = images[0]
    assert set(first) == {"sky", "bird", "tree"}  # empty (crowd-only) masks are left out
    np.testing.assert_array_equal(first["sky"], [[1, 1], [0, 0]])  # the mask wins
    np.testing.assert_array_equal(first["bird"], [[0, 0], [1, 0]])
    np.testing.assert_array_equal(first["tree"], [[0, 0], [1, 0]])
    np.testing.assert_array_equal(images[1]["tree"], np.ones((2, 2)))
