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
# Paper rule (eq. 4), gamma = 1 - O where O < 0.5: (person, face) 0.7, (person, sky) 1,
# (sky, person) 1, (face, sky) 1, (sky, face) 1, (face, dog) 1 (O = 0 / 1), (dog, face) 1;
# (face, person) 0 (O = 1), (dog, person) 0, (person, dog) 0 (O = 0.5, not < 0.5).
# Symmetric rule (default): the same, except (person, face) = 0 because O(face, person) = 1
# >= 0.5 (a part and its whole are never negatives of each other).

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
    assert g["person", "face"] == 0 and g["face", "person"] == 0  # symmetric rule
    paper = overlap.gamma_from_overlap(result.overlap, gamma_rule="paper")
    assert paper[result.concepts.index("person"), result.concepts.index("face")] == \
        pytest.approx(0.7)
    np.testing.assert_array_equal(  # the rules differ only there
        np.argwhere(paper != result.gamma),
        [[result.concepts.index("person"), result.concepts.index("face")]])
    assert g["person", "sky"] == 1 and g["sky", "person"] == 1
    assert g["person", "dog"] == 0 and g["dog", "sky"] == 0
    assert all(g[c, c] == 0 for c in result.concepts)
    count = {(a, b): result.cooccurrence[result.concepts.index(a), result.concepts.index(b)]
             for a in result.concepts for b in result.concepts}
    assert count["person", "face"] == 2 and count["sky", "sky"] == 2
    assert count["dog", "sky"] == 0


def test_gamma_threshold_and_no_entry():
    o = np.array([[1.0, 0.49, np.nan], [0.5, 1.0, 0.0], [np.nan, 0.2, 1.0]], np.float32)
    # Paper: (0, 1) 1 - 0.49 = 0.51; (1, 0) O = 0.5 -> 0; (1, 2) 1; (2, 1) 0.8; NaN -> 0.
    np.testing.assert_allclose(overlap.gamma_from_overlap(o, gamma_rule="paper"),
                               [[0, 0.51, 0], [0, 0, 1], [0, 0.8, 0]], rtol=1e-6)
    # Symmetric: (0, 1) -> 0 too, since O(1, 0) = 0.5 >= 0.5; (1, 2) and (2, 1) unchanged.
    np.testing.assert_allclose(overlap.gamma_from_overlap(o),
                               [[0, 0, 0], [0, 0, 1], [0, 0.8, 0]], rtol=1e-6)
    with pytest.raises(ValueError, match="gamma_rule"):
        overlap.gamma_from_overlap(o, gamma_rule="softmax")


def test_vocabulary_order_index_and_round_trip(tmp_path):
    result = overlap.overlap_matrix([IMAGE_1, IMAGE_2, IMAGE_3],
                                    vocab_index={"sky": 0, "person": 5, "tree": 1})
    assert result.concepts == ("sky", "person", "dog", "face")  # then by name
    np.testing.assert_array_equal(result.vocab_index, [0, 5, -1, -1])
    path = str(tmp_path / "overlap.npz")
    result.save(path)
    loaded = overlap.OverlapMatrix.load(path)
    assert loaded.concepts == result.concepts
    for name in ("overlap", "cooccurrence", "gamma", "vocab_index", "source"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    assert set(np.unique(result.source)) == {overlap.SOURCE_NONE, overlap.SOURCE_MASKS}


def test_an_overlap_file_without_source_still_loads(tmp_path):
    result = overlap.overlap_matrix([IMAGE_1, IMAGE_2, IMAGE_3])
    path = str(tmp_path / "old.npz")
    np.savez(path, concepts=np.asarray(result.concepts, dtype=str), overlap=result.overlap,
             cooccurrence=result.cooccurrence, gamma=result.gamma,
             vocab_index=result.vocab_index)  # as written before "source" existed
    loaded = overlap.OverlapMatrix.load(path)
    np.testing.assert_array_equal(loaded.overlap, result.overlap)
    np.testing.assert_array_equal(  # defined entries: unknown source; NaN: none
        loaded.source, np.where(np.isnan(result.overlap), overlap.SOURCE_NONE,
                                overlap.SOURCE_UNKNOWN))


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


def test_mask_grids_resample_and_keep_tiny_masks():
    full = np.zeros((8, 8), np.uint8)
    full[:4, :] = 1  # top half
    tiny = np.zeros((8, 8), np.uint8)
    tiny[7, 0] = 1  # one pixel: below a cell of a 2 x 2 grid
    masked = MaskedImage("images/a.jpg", 8, 8, (
        ConceptMask("sky", coco.encode_mask(full)), ConceptMask("bird", coco.encode_mask(tiny)),
        ConceptMask("crowd", coco.encode_mask(np.zeros((8, 8), np.uint8)))))
    grids = overlap_sources.mask_grids(masked, 2)
    assert set(grids) == {"sky", "bird"}  # empty (crowd-only) masks are left out
    np.testing.assert_array_equal(grids["sky"], [[1, 1], [0, 0]])
    np.testing.assert_array_equal(grids["bird"], [[0, 0], [1, 0]])


# A boat on an 8 x 8 image, rasterised on an 8 x 8 grid (one cell per pixel):
#   sail = right triangle, row r (0..4) covers columns 1..r+1: 1+2+3+4+5 = 15 cells;
#   hull = rows 5-6, all 8 columns (16 cells); boat mask = sail + hull = 31 cells;
#   sea  = row 7 (8 cells), a mask only (never boxed), disjoint from the boat.
# Boxes: sail box x 1/8..6/8, y 0..5/8 -> rows 0-4, columns 1-5 = 25 cells;
#        boat box x 0..1, y 0..7/8 -> rows 0-6 = 56 cells.
# Image a.jpg: masks of sail, boat, sea (COCO) and boxes of sail and boat (Open Images).
# Image b.jpg: the boat's mask only in COCO, the sail's box only in the box file. The old
#   code compared these two (sail box vs boat mask: 15 of the box's 25 cells -> 0.6); now
#   b.jpg gives no (sail, boat) entry from either kind.
# Boxes only, a.jpg: O(sail, boat) = 25 / 25 = 1; O(boat, sail) = 25 / 56 = 0.446429.
# (Masks only would give O(sail, boat) = 15 / 15 = 1, O(boat, sail) = 15 / 31 = 0.483871;
# both sail and boat are box-supervised and boxes define the pair, so boxes win.)
# sea has no box: (sea, boat) from masks, O = 0 / 8 = 0 both ways (boat: 0 / 31).
SAIL = [(r, c) for r in range(5) for c in range(1, r + 2)]
HULL = [(r, c) for r in (5, 6) for c in range(8)]
SEA = [(7, c) for c in range(8)]


def _rle(cells):
    return coco.encode_mask(_mask(cells, (8, 8)).astype(np.uint8))


def _boat_images():
    masked = [MaskedImage("images/a.jpg", 8, 8, (ConceptMask("sail", _rle(SAIL)),
                                                  ConceptMask("boat", _rle(SAIL + HULL)),
                                                  ConceptMask("sea", _rle(SEA)))),
              MaskedImage("images/b.jpg", 8, 8, (ConceptMask("boat", _rle(SAIL + HULL)),))]
    boxed = [BoxedImage("images/a.jpg", (ConceptBox("sail", 1 / 8, 0.0, 6 / 8, 5 / 8),
                                         ConceptBox("boat", 0.0, 0.0, 1.0, 7 / 8))),
             BoxedImage("images/b.jpg", (ConceptBox("sail", 1 / 8, 0.0, 6 / 8, 5 / 8),))]
    return masked, boxed


def test_each_pair_takes_its_overlap_from_one_kind_of_annotation():
    masked, boxed = _boat_images()
    assert len(overlap_sources.mask_grids(masked[0], 8)["sail"].nonzero()[0]) == 15
    assert overlap_sources.box_grids(boxed[0], 8)["boat"].sum() == 56
    result = overlap_sources.overlap_from_images(masked, boxed, 8,
                                                 vocab_index={"boat": 0, "sail": 1, "sea": 2})
    assert result.concepts == ("boat", "sail", "sea")
    boat, sail, sea = 0, 1, 2
    assert result.overlap[sail, boat] == pytest.approx(1.0)  # the sail is inside the boat
    assert result.overlap[boat, sail] == pytest.approx(25 / 56)
    assert result.cooccurrence[sail, boat] == 1  # a.jpg only: b.jpg mixes kinds
    assert result.source[sail, boat] == result.source[boat, sail] == overlap.SOURCE_BOXES
    assert result.overlap[sea, boat] == 0 and result.overlap[boat, sea] == 0
    assert result.source[sea, boat] == result.source[sea, sail] == overlap.SOURCE_MASKS
    np.testing.assert_array_equal(np.diagonal(result.source), [2, 2, 1])
    np.testing.assert_array_equal(np.diagonal(result.cooccurrence), [1, 2, 1])  # boxes
    # gamma (symmetric): (boat, sail) 0 as O(sail, boat) = 1; (sea, boat) = (boat, sea) = 1.
    assert result.gamma[boat, sail] == 0 and result.gamma[sail, boat] == 0
    assert result.gamma[sea, boat] == 1 and result.gamma[boat, sea] == 1
    paper = overlap.gamma_from_overlap(result.overlap, gamma_rule="paper")
    assert paper[boat, sail] == pytest.approx(1 - 25 / 56)


def test_one_source_runs_one_accumulator():
    masked, boxed = _boat_images()
    masks = overlap_sources.overlap_from_images(masked, None, 8)
    assert masks.concepts == ("boat", "sail", "sea")
    assert masks.overlap[1, 0] == pytest.approx(1.0)  # sail in boat, a.jpg only
    assert masks.overlap[0, 1] == pytest.approx(15 / 31)
    assert masks.cooccurrence[0, 0] == 2  # the boat's mask in a.jpg and b.jpg
    assert set(np.unique(masks.source)) == {overlap.SOURCE_MASKS}
    boxes = overlap_sources.overlap_from_images(None, boxed, 8)
    assert boxes.concepts == ("boat", "sail")
    assert boxes.overlap[0, 1] == pytest.approx(25 / 56)
    assert set(np.unique(boxes.source)) == {overlap.SOURCE_BOXES}
    assert overlap_sources.overlap_from_images(None, None, 8).concepts == ()


def test_combine_falls_back_to_masks_and_leaves_unknown_pairs_empty():
    # Masks: a, b in one image (O(a, b) = 1 / 4, O(b, a) = 1 / 3). Boxes: b, c in one image
    # (O(b, c) = 0.2, O(c, b) = 1). (a, c) meet in no image of one kind -> NaN, gamma 0.
    masks = overlap.overlap_matrix([{"a": _mask([(0, 0), (0, 1), (0, 2), (0, 3)]),
                                     "b": _mask([(0, 0), (1, 0), (2, 0)])}])
    boxes = overlap.overlap_matrix([{"b": _mask([(r, 0) for r in range(4)] + [(0, 1)]),
                                     "c": _mask([(0, 0)])}], kind="boxes")
    result = overlap.combine_overlaps(masks, boxes)
    assert result.concepts == ("a", "b", "c")
    np.testing.assert_allclose(result.overlap, [[1, 0.25, np.nan], [1 / 3, 1, 0.2],
                                                [np.nan, 1, 1]], rtol=1e-6)
    np.testing.assert_array_equal(result.source, [[1, 1, 0], [1, 2, 2], [0, 2, 2]])
    # gamma: (a, b) 1 - 1/4, (b, a) 1 - 1/3; (b, c) 0 since O(c, b) = 1 (symmetric rule).
    np.testing.assert_allclose(result.gamma, [[0, 0.75, 0], [2 / 3, 0, 0], [0, 0, 0]],
                               rtol=1e-6)
    np.testing.assert_array_equal(result.cooccurrence, [[1, 1, 0], [1, 1, 1], [0, 1, 1]])
