"""Mask -> COCO polygon conversion is exact under pycocotools, or declines."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scipy import ndimage

from conceptmask_tf.data.world.polygons import mask_to_polygons


def _decode(polygons, h, w):
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(bool)


def test_square_traced_on_pixel_corners():
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:4] = True  # rows 1-2, cols 2-3 -> corners x 2..4, y 1..3
    assert mask_to_polygons(mask) == [[2.0, 1.0, 4.0, 1.0, 4.0, 3.0, 2.0, 3.0]]


def test_hole_is_declined():
    mask = np.ones((5, 5), bool)
    mask[2, 2] = False
    assert mask_to_polygons(mask) is None
    assert mask_to_polygons(np.zeros((4, 4), bool)) is None


def test_pixels_touching_at_a_corner_round_trip():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = mask[2, 2] = True  # two pixels sharing only a corner
    polygons = mask_to_polygons(mask)
    assert polygons is not None and len(polygons) == 2
    assert np.array_equal(_decode(polygons, 4, 4), mask)


@pytest.mark.parametrize("seed", range(5))
def test_random_blobs_round_trip_exactly(seed):
    rng = np.random.default_rng(seed)
    done = 0
    for _ in range(60):
        field = ndimage.gaussian_filter(rng.random((24, 31)), rng.uniform(1.0, 2.5))
        mask = ndimage.binary_fill_holes(field > np.quantile(field, rng.uniform(0.4, 0.8)))
        polygons = mask_to_polygons(mask)
        assert polygons is not None  # hole-free masks are always representable
        assert np.array_equal(_decode(polygons, *mask.shape), mask)
        done += 1
    assert done == 60
