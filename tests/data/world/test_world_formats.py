"""Record builders: hand-worked boxes, RLE round trip, tag noise."""

import numpy as np
from pycocotools import mask as mask_utils

from conceptmask_tf.data.world import formats
from conceptmask_tf.data.world.regions import InstanceBox

BOX = InstanceBox("car", "object", 0, x0=2, y0=3, x1=5, y1=8, area=20, occluded=True)


def test_oi_row_normalises_pixel_edges():
    row = formats.oi_box_row("img_1", "/m/cw001", BOX, size=10, inside=False)
    assert row == ["img_1", "xclick", "/m/cw001", "1", "0.200000", "0.600000", "0.300000",
                   "0.900000", "1", "0", "0", "0", "0"]
    edge = InstanceBox("sky", "stuff", 0, x0=0, y0=0, x1=9, y1=4, area=50, occluded=False)
    row = formats.oi_box_row("img_1", "/m/cw020", edge, size=10, inside=True)
    assert row[4:8] == ["0.000000", "1.000000", "0.000000", "0.500000"]
    assert row[9] == "1" and row[12] == "1"  # truncated (touches the border), inside


def test_vg_object_inclusive_pixel_box():
    assert formats.vg_object(7, BOX, "car") == {"object_id": 7, "x": 2, "y": 3, "w": 4, "h": 6,
                                                "names": ["car"], "synsets": []}


def test_rle_json_round_trip_and_bbox():
    mask = np.zeros((6, 7), bool)
    mask[1:4, 2:6] = True
    rle = formats.rle_json(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [6, 7]
    decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert np.array_equal(decoded.astype(bool), mask)
    assert formats.mask_bbox(mask) == [2.0, 1.0, 4.0, 3.0]


def test_coco_annotation_polygon_or_rle():
    mask = np.zeros((6, 7), bool)
    mask[1:4, 2:6] = True
    ann, as_polygon = formats.coco_annotation(1, 2, 3, mask, "polygon")
    assert as_polygon and ann["segmentation"] == [[2.0, 1.0, 6.0, 1.0, 6.0, 4.0, 2.0, 4.0]]
    assert ann["area"] == 12.0 and ann["iscrowd"] == 0
    mask[2, 3] = False  # a hole: falls back to RLE
    ann, as_polygon = formats.coco_annotation(1, 2, 3, mask, "polygon")
    assert not as_polygon and isinstance(ann["segmentation"]["counts"], str)


def test_noisy_tags_without_noise_is_exact_and_with_full_drop_keeps_one():
    rng = np.random.default_rng(0)
    tags = formats.noisy_tags(["sky", "car"], ("city",), ("sky", "car", "dog", "city"), rng,
                              drop_rate=0.0, wrong_rate=0.0)
    assert sorted(tags) == ["car", "city", "sky"]
    tags = formats.noisy_tags(["sky", "car"], (), ("sky", "car", "dog"), rng,
                              drop_rate=1.0, wrong_rate=0.0)
    assert len(tags) == 1 and tags[0] in ("sky", "car")
    tags = formats.noisy_tags(["sky"], (), ("sky", "car", "dog"), rng, drop_rate=0.0,
                              wrong_rate=1.0)
    assert min(tags) in ("car", "dog") and "sky" in tags and len(tags) == 2


def test_drop_rate_is_respected_on_average():
    rng = np.random.default_rng(1)
    present = [f"c{i}" for i in range(20)]
    kept = sum(len(formats.noisy_tags(present, (), tuple(present), rng, 0.25, 0.0))
               for _ in range(200))
    assert abs(kept / (200 * 20) - 0.75) < 0.03
