"""Box merging across sources, the min_examples filter, loading a data root, rasterising."""

import numpy as np
import pytest

from conceptmask_tf.data import boxes
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import BoxedImage, ConceptBox
from conceptmask_tf.errors import DataError

try:  # tests/ as a package
    from tests.data import fixtures
except ImportError:  # pytest's rootdir-relative import (no __init__.py)
    import fixtures


def _box(concept, xmin=0.0, ymin=0.0, xmax=1.0, ymax=1.0):
    return ConceptBox(concept, xmin, ymin, xmax, ymax)


OI = [BoxedImage("images/a.jpg", (_box("car"), _box("tree", 0.1))),
      BoxedImage("images/b.jpg", (_box("car", 0.2),))]
VG = [BoxedImage("images/a.jpg", (_box("tree", 0.1), _box("sky")), width=40, height=30),
      BoxedImage("images/c.jpg", (_box("car", 0.3), _box("tree")), width=10, height=10)]


def test_merge_joins_boxes_of_the_same_image_across_sources():
    images, counts = boxes.merge_box_sources([OI, VG])
    assert images == [
        # The identical "tree" box of both sources is kept once; the size comes from VG.
        BoxedImage("images/a.jpg", (_box("car"), _box("tree", 0.1), _box("sky")), 40, 30),
        BoxedImage("images/b.jpg", (_box("car", 0.2),)),
        BoxedImage("images/c.jpg", (_box("car", 0.3), _box("tree")), 10, 10)]
    # Images per concept: car a, b, c; tree a, c; sky a. Most frequent first.
    assert list(counts.items()) == [("car", 3), ("tree", 2), ("sky", 1)]


def test_min_examples_drops_rare_concepts_and_emptied_images():
    only_sky = [BoxedImage("images/d.jpg", (_box("sky", 0.5),))]
    skips = SkipCounter(strict=True)  # a deliberate filter never raises
    images, counts = boxes.merge_box_sources([OI, VG, only_sky], min_examples=3, skips=skips)
    # sky has 2 images (a, d), tree 2 (a, c): both dropped; d is left with no box.
    assert counts == {"car": 3}
    assert [(i.image, i.concepts) for i in images] == [
        ("images/a.jpg", ("car",)), ("images/b.jpg", ("car",)), ("images/c.jpg", ("car",))]
    filtered = boxes.FILTERED_CONCEPT.format(n=3)
    assert skips.as_dict() == {filtered: 2, boxes.EMPTIED_IMAGE: 1}
    assert skips.examples[filtered] == ["'sky' (2)", "'tree' (2)"]
    assert skips.examples[boxes.EMPTIED_IMAGE] == ["images/d.jpg"]


def test_merge_rejects_conflicting_sizes_and_bad_min_examples():
    other = [BoxedImage("images/a.jpg", (_box("sky"),), width=41, height=30)]
    with pytest.raises(DataError, match=r"different sizes .*\(40, 30\) and \(41, 30\)") as info:
        boxes.merge_box_sources([VG, other])
    assert info.value.record == "images/a.jpg"
    with pytest.raises(ValueError, match="min_examples"):
        boxes.merge_box_sources([OI], min_examples=0)


def test_load_box_images_reads_and_merges_both_sources(tmp_path):
    root = DataRoot(fixtures.write_data_root(str(tmp_path)))
    skips = SkipCounter()
    images = boxes.load_box_images(root, skips=skips)
    # OI: img_a (3 boxes), img_b (1); img_e has no file. VG without aliases: 1.jpg, 2.png.
    assert [(i.image, len(i.boxes)) for i in images] == [
        ("images/img_a.jpg", 3), ("images/img_b.PNG", 1), ("images/1.jpg", 5),
        ("images/2.png", 1)]
    assert skips.counts["image file not found under image_dir"] == 1  # OI img_e
    assert skips.counts["objects for an image_id not in the image data"] == 1  # VG image 3
    # Each of the 8 concepts (car, traffic light, person adult, tree, plant, glasses,
    # grass, men) is in one image only: min_examples=2 drops them all, and the 4 images.
    skips = SkipCounter()
    assert boxes.load_box_images(root, min_examples=2, skips=skips) == []
    assert skips.counts[boxes.FILTERED_CONCEPT.format(n=2)] == 8
    assert skips.counts[boxes.EMPTIED_IMAGE] == 4


def test_load_box_images_with_one_source(tmp_path):
    root = DataRoot(fixtures.write_data_root(str(tmp_path), oi=False))
    images = boxes.load_box_images(root, skips=SkipCounter())
    assert [i.image for i in images] == ["images/1.jpg", "images/2.png"]


def test_load_box_images_missing_files_say_what_is_needed(tmp_path):
    root = DataRoot(fixtures.write_data_root(str(tmp_path), oi=False, vg=False))
    with pytest.raises(FileNotFoundError, match=r"Visual Genome .*boxes/oi_boxes_train.csv"):
        boxes.load_box_images(root)
    fixtures.write_oi_boxes(str(tmp_path / "boxes"))  # no class descriptions
    with pytest.raises(FileNotFoundError, match=r"oi_class_descriptions\.csv"):
        boxes.load_box_images(root)


def test_rasterize_boxes_by_hand():
    # 4 x 4 pixels, centres at 0.125, 0.375, 0.625, 0.875 on both axes.
    mask = boxes.rasterize_boxes([_box("a", 0.25, 0.0, 0.75, 0.5)], 4, 4)
    expected = np.zeros((4, 4), dtype=bool)
    expected[0:2, 1:3] = True  # columns 1, 2 and rows 0, 1
    np.testing.assert_array_equal(mask, expected)
    assert mask.dtype == bool
    # A centre exactly on xmin is inside, on xmax outside: [0.125, 0.375) -> column 0 only.
    assert boxes.rasterize_boxes([_box("a", 0.125, 0.0, 0.375, 1.0)], 4, 4).sum() == 4
    # Two overlapping boxes: 2x2 + 2x2 - 1 shared pixel = 7; whole image = 4 * 4.
    two = [_box("a", 0.0, 0.0, 0.5, 0.5), _box("b", 0.25, 0.25, 0.75, 0.75)]
    assert boxes.rasterize_boxes(two, 4, 4).sum() == 7
    assert boxes.rasterize_boxes([_box("a")], 4, 4).all()
    assert not boxes.rasterize_boxes([], 3, 5).any()


def test_rasterize_boxes_matches_a_per_pixel_reference():
    rng = np.random.default_rng(1)
    height, width = 13, 17
    corners = rng.random((6, 2, 2))
    box_list = [_box("x", min(c[:, 0]), min(c[:, 1]), max(c[:, 0]), max(c[:, 1]))
                for c in corners]
    reference = np.zeros((height, width), dtype=bool)
    for r in range(height):
        for c in range(width):
            x, y = (c + 0.5) / width, (r + 0.5) / height
            reference[r, c] = any(b.xmin <= x < b.xmax and b.ymin <= y < b.ymax
                                  for b in box_list)
    np.testing.assert_array_equal(boxes.rasterize_boxes(box_list, height, width), reference)
