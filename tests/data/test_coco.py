"""COCO reader: merged masks checked by hand and against pycocotools' own COCO API."""

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from conceptmask_tf.data import coco
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.errors import DataError

try:  # tests/ as a package
    from tests.data import fixtures
except ImportError:  # pytest's rootdir-relative import (no __init__.py)
    import fixtures


def _read(tmp_path, data=None, **kwargs):
    return coco.read_coco_instances(fixtures.write_coco(str(tmp_path), data), **kwargs)


def _by_concept(image):
    return {m.concept: m for m in image.masks}


def _coco_api(path):
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress
        return COCO(path)


def test_instances_of_a_category_are_merged_into_one_mask(tmp_path):
    path = fixtures.write_coco(str(tmp_path))
    image = coco.read_coco_instances(path)[0]
    person = _by_concept(image)["person"]
    # 16 px (polygon) + 8 px (uncompressed RLE) - 1 px of overlap at (4, 4).
    assert int(mask_utils.area(person.rle)) == 23
    mask = coco.decode_mask(person.rle)
    expected = (fixtures.block_mask(8, 10, (1, 4), (1, 4))
                | fixtures.block_mask(8, 10, (4, 5), (4, 7)))
    np.testing.assert_array_equal(mask, expected)
    # Cross-check: union of pycocotools' own annToMask of the two non-crowd instances.
    api = _coco_api(path)
    union = api.annToMask(api.anns[101]) | api.annToMask(api.anns[102])
    np.testing.assert_array_equal(mask, union)


def test_crowd_regions_not_covered_by_instances_become_ignore(tmp_path):
    path = fixtures.write_coco(str(tmp_path))
    masks = _by_concept(coco.read_coco_instances(path)[0])
    # Crowd strip rows 0-7 x cols 0-2 (24 px) minus the person pixels in it (8 px).
    assert int(mask_utils.area(masks["person"].ignore_rle)) == 16
    api = _coco_api(path)
    crowd = api.annToMask(api.anns[104]).astype(bool)
    positives = coco.decode_mask(masks["person"].rle).astype(bool)
    np.testing.assert_array_equal(coco.decode_mask(masks["person"].ignore_rle),
                                  crowd & ~positives)
    # A category annotated only as crowd: no sure positive pixel, its crowd is ignored.
    assert int(mask_utils.area(masks["dog"].rle)) == 0
    assert int(mask_utils.area(masks["dog"].ignore_rle)) == 4
    # No crowd: no ignore region.
    assert masks["traffic light"].ignore_rle is None


def test_crowd_fully_covered_by_instances_gives_no_ignore(tmp_path):
    data = fixtures.coco_dataset()
    data["annotations"] = [a for a in data["annotations"] if a["id"] in (101, 104)]
    data["annotations"][1]["segmentation"] = fixtures.uncompressed_rle(
        fixtures.block_mask(8, 10, (1, 2), (1, 2)))  # inside the polygon's pixels
    masks = _by_concept(_read(tmp_path, data)[0])
    assert masks["person"].ignore_rle is None


def test_compressed_rle_and_category_names(tmp_path):
    images = _read(tmp_path)
    light = _by_concept(images[0])["traffic light"]  # "Traffic_Light" normalised
    np.testing.assert_array_equal(coco.decode_mask(light.rle),
                                  fixtures.block_mask(8, 10, (0, 1), (8, 9)))
    assert isinstance(light.rle["counts"], bytes)  # types.py: compressed, bytes counts
    assert [m.concept for m in images[0].masks] == ["person", "traffic light", "dog"]


def test_images_paths_sizes_and_negative_concepts(tmp_path):
    images = _read(tmp_path)
    assert [(i.image, i.width, i.height, i.image_id) for i in images] == [
        ("images/img1.jpg", 10, 8, 1), ("images/sub/img2.png", 4, 4, 2),
        ("images/img3.jpg", 6, 6, 3)]
    # Image 2: no annotation, neg id 4 listed twice -> "cat" once; image 3: kept, empty.
    assert images[1].masks == () and images[1].neg_concepts == ("cat",)
    assert images[2].masks == () and images[2].neg_concepts == ()
    no_prefix = coco.read_coco_instances(fixtures.write_coco(str(tmp_path)), image_prefix="")
    assert no_prefix[1].image == "sub/img2.png"


def test_decode_mask_is_c_contiguous_uint8_for_every_rle_form():
    mask = fixtures.block_mask(5, 7, (1, 3), (2, 5))
    for rle in (fixtures.uncompressed_rle(mask), fixtures.compressed_rle(mask),
                mask_utils.encode(np.asfortranarray(mask))):
        decoded = coco.decode_mask(rle)
        assert decoded.dtype == np.uint8 and decoded.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(decoded, mask)


def test_random_compressed_rles_round_trip(tmp_path):
    # Long runs need multi-character numbers and negative run differences: the string
    # check must accept every string pycocotools writes.
    rng = np.random.default_rng(0)
    data = fixtures.coco_dataset()
    data["images"] = [{"id": 1, "file_name": "a.jpg", "width": 300, "height": 200}]
    masks = []
    for _ in range(4):
        mask = np.zeros((200, 300), dtype=np.uint8)
        for _ in range(5):
            r, c = rng.integers(0, 190), rng.integers(0, 290)
            mask[r:r + rng.integers(1, 150), c:c + rng.integers(1, 200)] = 1
        mask |= (rng.random((200, 300)) < 0.01).astype(np.uint8)
        masks.append(mask)
    data["annotations"] = [
        {"id": k, "image_id": 1, "category_id": k + 1, "iscrowd": 0,
         "segmentation": fixtures.compressed_rle(m)} for k, m in enumerate(masks)]
    image = _read(tmp_path, data)[0]
    for mask, concept_mask in zip(masks, image.masks, strict=True):
        np.testing.assert_array_equal(coco.decode_mask(concept_mask.rle), mask)


# ---- bad input -------------------------------------------------------------------------

def _with(mutate):
    data = fixtures.coco_dataset()
    mutate(data)
    return data


def _ann(data, ann_id):
    return next(a for a in data["annotations"] if a["id"] == ann_id)


@pytest.mark.parametrize("mutate, record, words", [
    (lambda d: d.pop("categories"), None, "'categories'"),
    (lambda d: _ann(d, 102).pop("segmentation"), "annotation id 102", "'segmentation'"),
    (lambda d: _ann(d, 103).pop("category_id"), "annotation id 103", "'category_id'"),
    (lambda d: d["annotations"][0].pop("id"), "annotations[0]", "'id'"),
    (lambda d: d["images"][0].update(width="10"), "image id 1", "'width' must be"),
    (lambda d: d["images"][0].update(height=0), "image id 1", "'height' must be"),
    (lambda d: d["images"][1].update(neg_category_ids=["cat"]), "image id 2",
     "neg_category_ids"),
    (lambda d: _ann(d, 102).update(id=101), "annotation id 101", "duplicate annotation id"),
    (lambda d: d["images"].append(dict(d["images"][0], file_name="x.jpg")), "image id 1",
     "duplicate image id"),
    (lambda d: d["categories"].append({"id": 9, "name": "PERSON"}), "category id 9",
     "normalise to the concept 'person'"),
    (lambda d: _ann(d, 101).update(segmentation=[[1, 1, 5, 1, 5]]), "annotation id 101",
     "odd number"),
    (lambda d: _ann(d, 101).update(segmentation=[[1, 1, "5", 1, 5, 5]]), "annotation id 101",
     "finite numbers"),
    (lambda d: _ann(d, 101).update(segmentation="polygon"), "annotation id 101",
     "'segmentation' must be"),
    (lambda d: _ann(d, 103)["segmentation"].update(size=[10, 8]), "annotation id 103",
     "does not match"),
    (lambda d: _ann(d, 102)["segmentation"]["counts"].append(3), "annotation id 102",
     "sum to 83"),
    (lambda d: _ann(d, 103)["segmentation"].update(counts="0~~"), "annotation id 103",
     "corrupt compressed RLE"),
    (lambda d: _ann(d, 103)["segmentation"].update(counts="P" + "0" * 3), "annotation id 103",
     "corrupt compressed RLE"),
    (lambda d: _ann(d, 104).update(iscrowd=2), "annotation id 104", "'iscrowd'"),
])
def test_malformed_records_raise_naming_file_and_record(tmp_path, mutate, record, words):
    path = fixtures.write_coco(str(tmp_path), _with(mutate))
    with pytest.raises(DataError) as info:
        coco.read_coco_instances(path)
    assert info.value.path == path and info.value.record == record
    assert words in str(info.value) and path in str(info.value)


def test_unparseable_json_raises_naming_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [}')
    with pytest.raises(DataError, match="not valid JSON") as info:
        coco.read_coco_instances(str(path))
    assert info.value.path == str(path)


@pytest.mark.parametrize("mutate, reason, record", [
    (lambda d: _ann(d, 103).update(image_id=77), coco.SKIP_UNKNOWN_IMAGE,
     "annotation id 103, image_id 77"),
    (lambda d: _ann(d, 103).update(category_id=77), coco.SKIP_UNKNOWN_CATEGORY,
     "annotation id 103, category_id 77"),
    (lambda d: _ann(d, 103).update(segmentation=[]), coco.SKIP_EMPTY_SEGMENTATION,
     "annotation id 103"),
    (lambda d: _ann(d, 103).update(segmentation=[[8, 0, 9, 1]]), coco.SKIP_SHORT_POLYGON,
     "annotation id 103, polygon 0"),
    (lambda d: _ann(d, 103).update(segmentation=[[20, 20, 30, 20, 30, 30]]),
     coco.SKIP_EMPTY_MASK, "annotation id 103"),  # polygon entirely outside the image
    (lambda d: d["images"][1].update(neg_category_ids=[4, 55]), coco.SKIP_UNKNOWN_NEG,
     "image id 2, neg_category_id 55"),
    (lambda d: d["images"][0].update(neg_category_ids=[2]), coco.SKIP_CONFLICTING_NEG,
     "image id 1, neg_category_id 2"),
])
def test_bad_references_are_counted_skips_or_errors_when_strict(tmp_path, mutate, reason,
                                                                 record):
    path = fixtures.write_coco(str(tmp_path), _with(mutate))
    skips = SkipCounter()
    images = coco.read_coco_instances(path, skips=skips)
    assert skips.as_dict() == {reason: 1}
    assert skips.examples[reason] == [f"{path} [{record}]"]
    # The rest is read as usual: the person mask is untouched.
    assert int(mask_utils.area(_by_concept(images[0])["person"].rle)) == 23
    with pytest.raises(DataError, match=reason) as info:
        coco.read_coco_instances(path, skips=SkipCounter(strict=True))
    assert info.value.path == path and info.value.record == record


def test_skipped_annotation_leaves_no_mask_for_its_category(tmp_path):
    data = _with(lambda d: _ann(d, 103).update(category_id=77))
    images = _read(tmp_path, data, skips=SkipCounter())
    assert "traffic light" not in images[0].concepts


def test_eval_format_with_rle_only_and_neg_ids(tmp_path):
    # eval/<split>.json: compressed RLE for every annotation, neg ids per image.
    data = fixtures.coco_dataset()
    for ann in data["annotations"]:
        ann["segmentation"] = fixtures.compressed_rle(
            coco.decode_mask(_pycoco_rle(ann["segmentation"], 8, 10)))
    data["images"][0]["neg_category_ids"] = [4]
    path = fixtures.write_coco(str(tmp_path / "eval"), data, name="strong.json")
    image = coco.read_coco_instances(path)[0]
    assert int(mask_utils.area(_by_concept(image)["person"].rle)) == 23
    assert image.neg_concepts == ("cat",)


def _pycoco_rle(segmentation, height, width):
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(copy.deepcopy(segmentation), height,
                                                       width))
    return segmentation


def test_each_non_crowd_instance_keeps_its_box(tmp_path):
    # person: polygon 101 (bbox [1, 1, 4, 4]) and RLE 102 ([4, 4, 4, 2]); crowd 104 has no
    # box in the result. The traffic light's box is missing here, and the person's second
    # one malformed: both are taken from their masks (pycocotools' toBbox).
    data = fixtures.coco_dataset()
    annotations = {a["id"]: a for a in data["annotations"]}
    del annotations[103]["bbox"]
    annotations[102]["bbox"] = [4, 4, 0, 2]  # zero width
    skips = SkipCounter()
    masks = _by_concept(_read(tmp_path, data, skips=skips)[0])
    assert masks["person"].boxes == ((1.0, 1.0, 4.0, 4.0), (4.0, 4.0, 4.0, 2.0))
    assert masks["traffic light"].boxes == ((8.0, 0.0, 2.0, 2.0),)
    assert masks["dog"].boxes == ()  # crowd only
    assert skips.counts[coco.SKIP_BAD_BBOX] == 1


def test_boxes_are_read_as_written(tmp_path):
    data = fixtures.coco_dataset()
    next(a for a in data["annotations"] if a["id"] == 101)["bbox"] = [0.5, 1, 6, 3.5]
    person = _by_concept(_read(tmp_path, data)[0])["person"]
    assert person.boxes[0] == (0.5, 1.0, 6.0, 3.5)
