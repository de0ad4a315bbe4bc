"""The three stage pipelines: shapes, joint augmentation, RLE and box masks, skips, seeds."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools import mask as mask_utils

from conceptmask_tf.data import images as image_files
from conceptmask_tf.data.datasets import (
    augment,
    embedding_dataset,
    num_refinement_examples,
    num_segmentation_examples,
    rasterize_boxes,
    refinement,
    refinement_dataset,
    rle,
    segmentation,
    segmentation_dataset,
    steps_per_epoch,
)
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import BoxedImage, ConceptBox, ConceptMask, MaskedImage
from conceptmask_tf.errors import DataError


def _save(root, rel: str, array: np.ndarray) -> str:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)
    return rel


def _flat(value: int, height=10, width=14) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def _left_white(height=8, width=8) -> np.ndarray:
    """Grey image whose left half is white: tells a flipped view from an unflipped one."""
    image = np.full((height, width, 3), 40, np.uint8)
    image[:, :width // 2] = 255
    return image


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _batches(dataset) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset]


def _examples(dataset) -> list:
    """Unbatched examples as nested numpy structures."""
    return _batches(dataset.unbatch())


def _nearest(array: np.ndarray, size: int) -> np.ndarray:
    """Reference nearest resize: output pixel i takes source pixel floor((i + 0.5) * n / size)."""
    rows = np.floor((np.arange(size) + 0.5) * array.shape[0] / size).astype(int)
    cols = np.floor((np.arange(size) + 0.5) * array.shape[1] / size).astype(int)
    return array[rows][:, cols]


# ---------------------------------------------------------------- stage 1: embedding


def test_embedding_eval_keeps_order_and_pixels_and_every_example(tmp_path):
    paths = [_save(tmp_path, f"images/{i}.png", _flat(40 * i, 10 + i, 14)) for i in range(5)]
    targets = np.arange(10, dtype=np.float64).reshape(5, 2)
    dataset = embedding_dataset(str(tmp_path), paths, targets, image_size=6, batch_size=2,
                                training=False, flip=True, scale_jitter=0.5)
    batches = _batches(dataset)
    assert [b[0].shape for b in batches] == [(2, 6, 6, 3), (2, 6, 6, 3), (1, 6, 6, 3)]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), targets)
    # No augmentation in eval: each image is exactly its plain resize.
    for i, image in enumerate(np.concatenate([b[0] for b in batches])):
        np.testing.assert_array_equal(image, np.full((6, 6, 3), 40.0 * i, np.float32))


def test_embedding_training_batches_are_full_and_keep_image_target_pairs(tmp_path):
    paths = [_save(tmp_path, f"images/{i}.png", _flat(40 * i)) for i in range(5)]
    targets = np.arange(5, dtype=np.float32)[:, None] * [1.0, -1.0]  # [5, 2]
    dataset = embedding_dataset(str(tmp_path), paths, targets, image_size=8, batch_size=2,
                                training=True, seed=3, scale_jitter=0.3)
    batches = _batches(dataset)
    assert len(batches) == steps_per_epoch(5, 2) == 2  # cardinality unknown: bad images drop
    for images, target in batches:
        assert images.shape == (2, 8, 8, 3) and target.shape == (2, 2)
        # A flat image of value 40 i stays flat under crop, resize and flip.
        np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 40 * target[:, 0])


def test_embedding_reads_grey_rgba_and_jpeg_as_rgb(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    rgba = np.dstack([_flat(200, 8, 8), np.full((8, 8), 9, np.uint8)])
    paths = [_save(tmp_path, "images/grey.png", grey), _save(tmp_path, "images/rgba.png", rgba),
             _save(tmp_path, "images/rgb.jpg", _flat(120, 8, 8))]
    dataset = embedding_dataset(str(tmp_path), paths, np.zeros((3, 1)), image_size=8,
                                batch_size=3, training=False)
    (images, _), = _batches(dataset)
    assert images.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(images[0], np.repeat(grey[..., None], 3, -1))
    np.testing.assert_array_equal(images[1], np.full((8, 8, 3), 200))
    np.testing.assert_allclose(images[2], np.full((8, 8, 3), 120), atol=2)


def test_embedding_drops_bad_files_with_their_targets_where_it_reads_them(tmp_path):
    good = [_save(tmp_path, f"images/{i}.png", _flat(40 * i)) for i in range(3)]
    jpeg = tmp_path / "images" / "big.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(jpeg)
    (tmp_path / "images" / "cut.jpg").write_bytes(jpeg.read_bytes()[:-100])
    (tmp_path / "images" / "empty.jpg").write_bytes(b"")
    (tmp_path / "images" / "noise.jpg").write_bytes(os.urandom(200))
    bad = ["images/missing.png", "images/cut.jpg", "images/empty.jpg", "images/noise.jpg"]
    paths = [good[0], bad[0], good[1], bad[1], bad[2], bad[3], good[2]]
    targets = np.array([[0], [-1], [1], [-1], [-1], [-1], [2]], np.float32)
    skips = SkipCounter()
    dataset = embedding_dataset(str(tmp_path), paths, targets, image_size=4, batch_size=2,
                                training=False, skips=skips)
    examples = _examples(dataset)  # iterating would fail on any bad file
    np.testing.assert_array_equal([t for _, t in examples], [[0], [1], [2]])
    np.testing.assert_array_equal([im.mean() for im, _ in examples], [0, 40, 80])
    assert skips.as_dict() == {image_files.MISSING: 1, image_files.TRUNCATED: 1,
                               image_files.EMPTY: 1, image_files.UNREADABLE: 1}


def test_embedding_rejects_misaligned_targets_and_an_empty_result(tmp_path):
    path = _save(tmp_path, "images/a.png", _flat(1))
    with pytest.raises(ValueError, match="targets"):
        embedding_dataset(str(tmp_path), [path], np.zeros((2, 3)), image_size=4, batch_size=1,
                          training=False)
    skips = SkipCounter()
    nothing = embedding_dataset(str(tmp_path), ["images/gone.png"], np.zeros((1, 3)),
                                image_size=4, batch_size=1, training=False, skips=skips)
    with pytest.raises(tf.errors.OpError, match="no usable embedding image"):
        list(nothing)  # found where it is read: the pipeline stops, naming why
    assert isinstance(skips.over_limit, DataError)
    assert "every image file is bad" in str(skips.over_limit)
    assert "missing image file" in str(skips.over_limit)
    with pytest.raises(ValueError, match="no full batch"):  # training would yield nothing
        embedding_dataset(str(tmp_path), [path], np.zeros((1, 3)), image_size=4, batch_size=2,
                          training=True)


def test_bad_images_are_found_while_training_and_the_limit_holds_on_running_counts(
        tmp_path):
    good = [_save(tmp_path, f"images/{i}.png", _flat(10 * i)) for i in range(8)]
    (tmp_path / "images" / "noise.jpg").write_bytes(os.urandom(300))
    paths = good + ["images/missing.png", "images/noise.jpg"]  # 2 bad of 10 records
    targets = np.zeros((10, 1), np.float32)
    skips = SkipCounter()
    within = embedding_dataset(str(tmp_path), paths, targets, image_size=4, batch_size=2,
                               training=True, seed=0, repeat=True, max_bad_fraction=0.2,
                               skips=skips)
    assert skips.total == 0  # nothing is read before the first batch
    assert len(list(within.take(12))) == 12  # three passes: each bad file counted once
    assert skips.as_dict() == {image_files.MISSING: 1, image_files.UNREADABLE: 1}
    skips = SkipCounter()
    over = embedding_dataset(str(tmp_path), paths, targets, image_size=4, batch_size=2,
                             training=True, seed=0, repeat=True, max_bad_fraction=0.1,
                             skips=skips)
    with pytest.raises(tf.errors.OpError, match="more than --max_bad_fraction=0.1 allows"):
        list(over.take(12))
    assert "2 of 10 training records (20.0%) are bad" in str(skips.over_limit)


def test_repeat_gives_an_endless_stream_that_steps_per_epoch_cuts(tmp_path):
    paths = [_save(tmp_path, f"images/{i}.png", _flat(i)) for i in range(3)]
    dataset = embedding_dataset(str(tmp_path), paths, np.zeros((3, 1)), image_size=4,
                                batch_size=2, training=True, seed=0, repeat=True)
    assert len(list(dataset.take(5))) == 5
    assert steps_per_epoch(3, 2) == 1 and steps_per_epoch(3, 2, drop_remainder=False) == 2


# ---------------------------------------------------------------- stage 2: refinement


def test_rasterize_boxes_matches_a_hand_worked_mask():
    # m = 4: cell centres at 0.125, 0.375, 0.625, 0.875.
    # x in [0.1, 0.6) holds centres 0.125, 0.375 -> columns 0-1;
    # y in [0.3, 0.9) holds centres 0.375, 0.625, 0.875 -> rows 1-3.
    expected = np.zeros((4, 4), np.float32)
    expected[1:4, 0:2] = 1
    # A box thinner than a cell in both axes keeps the cell holding its middle: (1, 2).
    thin = np.zeros((4, 4), np.float32)
    thin[1, 2] = 1
    masks = rasterize_boxes(tf.constant([[0.1, 0.3, 0.6, 0.9], [0.52, 0.3, 0.6, 0.35]]), 4)
    np.testing.assert_array_equal(masks.numpy(), [expected, thin])


def test_rasterize_boxes_agrees_with_the_numpy_rasteriser():
    boxes_module = pytest.importorskip("conceptmask_tf.data.boxes")
    if not hasattr(boxes_module, "rasterize_boxes"):
        pytest.skip("no numpy rasteriser")
    rng = np.random.default_rng(1)
    size = 7
    low = rng.uniform(0, 1 - 1 / size, (50, 2))
    high = np.minimum(low + rng.uniform(1 / size, 1, (50, 2)), 1.0)  # >= one cell wide
    coords = np.concatenate([low, high], axis=1).astype(np.float32)  # xmin, ymin, xmax, ymax
    ours = rasterize_boxes(tf.constant(coords), size).numpy()
    for box, mask in zip(coords.astype(np.float64), ours):
        theirs = boxes_module.rasterize_boxes([ConceptBox("c", *box)], size, size)
        np.testing.assert_array_equal(mask, theirs)


def test_crop_boxes_maps_clips_and_flags_boxes_outside_the_window():
    window = tf.constant([0.0, 0.5, 0.5, 1.0])  # ymin, xmin, ymax, xmax: the top-right quarter
    boxes = tf.constant([[0.6, 0.1, 0.8, 0.2],   # inside: x (0.6-0.5)/0.5 = 0.2 .. 0.6
                         [0.25, 0.25, 0.75, 0.75],  # clipped to x 0..0.5, y 0.5..1
                         [0.0, 0.6, 0.4, 0.9]])  # below and left of the window: gone
    cropped, visible = augment.crop_boxes(boxes, window)
    np.testing.assert_allclose(cropped.numpy()[:2], [[0.2, 0.2, 0.6, 0.4], [0.0, 0.5, 0.5, 1.0]],
                               atol=1e-6)
    np.testing.assert_array_equal(visible.numpy(), [True, True, False])


def _boxed(path, *boxes):
    return BoxedImage(path, tuple(ConceptBox(*b) for b in boxes))


def test_refinement_eval_gives_padded_concept_slots_with_box_masks(tmp_path):
    paths = [_save(tmp_path, f"images/{i}.png", _flat(30 * i, 12, 16)) for i in range(3)]
    records = [
        _boxed(paths[0], ("car", 0.0, 0.0, 0.5, 0.5), ("sky", 0.0, 0.0, 1.0, 0.25),
               ("car", 0.75, 0.75, 1.0, 1.0)),
        _boxed(paths[1], ("unknown thing", 0.0, 0.0, 1.0, 1.0), ("sky", 0.5, 0.0, 1.0, 0.5)),
        _boxed(paths[2], ("unknown thing", 0.0, 0.0, 1.0, 1.0)),  # nothing left: dropped
    ]
    index = {"car": 5, "sky": 2}
    skips = SkipCounter()
    dataset = refinement_dataset(str(tmp_path), records, index, image_size=8, mask_size=4,
                                 max_concepts=3, batch_size=2, training=False, skips=skips)
    assert num_refinement_examples(records, index) == 2
    (features, targets), = _batches(dataset)
    assert features["image"].shape == (2, 8, 8, 3) and features["image"].dtype == np.float32
    assert features["concept_ids"].dtype == np.int32
    assert targets["box_masks"].shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(features["concept_ids"], [[5, 2, -1], [2, -1, -1]])
    np.testing.assert_array_equal(targets["concept_valid"], [[1, 1, 0], [1, 0, 0]])
    car = np.zeros((4, 4))
    car[0:2, 0:2] = 1  # the first box
    car[3, 3] = 1  # the second box of the same concept
    sky = np.zeros((4, 4))
    sky[0, :] = 1
    np.testing.assert_array_equal(targets["box_masks"][0], [car, sky, np.zeros((4, 4))])
    right_top = np.zeros((4, 4))
    right_top[0:2, 2:4] = 1
    np.testing.assert_array_equal(targets["box_masks"][1], [right_top] + [np.zeros((4, 4))] * 2)
    assert skips.as_dict() == {refinement.UNKNOWN_CONCEPT: 2, refinement.NO_KNOWN_CONCEPT: 1}


def test_refinement_counts_overflow_and_draws_subsets_in_training(tmp_path):
    path = _save(tmp_path, "images/a.png", _flat(0, 8, 8))
    # Concept c_k has one box in column k of a 4-column grid.
    concepts = [(f"c{k}", k / 4, 0.0, (k + 1) / 4, 1.0) for k in range(4)]
    index = {f"c{k}": 10 + k for k in range(4)}
    records = [_boxed(path, *concepts)]

    skips = SkipCounter()
    eval_set = refinement_dataset(str(tmp_path), records, index, image_size=8, mask_size=4,
                                  max_concepts=2, batch_size=1, training=False, skips=skips)
    (features, _), = _batches(eval_set)
    np.testing.assert_array_equal(features["concept_ids"], [[10, 11]])  # first seen, first kept
    assert skips.as_dict() == {refinement.TOO_MANY_CONCEPTS: 1}

    train_set = refinement_dataset(str(tmp_path), records * 2, index, image_size=8,
                                   mask_size=4, max_concepts=2, batch_size=2, training=True,
                                   seed=0, flip=False, skips=SkipCounter())
    seen = set()
    for _ in range(4):  # passes: each draws new subsets
        for features, targets in _examples(train_set):
            seen.add(tuple(sorted(features["concept_ids"])))
            for concept_id, mask in zip(features["concept_ids"], targets["box_masks"]):
                expected = np.zeros((4, 4))
                expected[:, concept_id - 10] = 1  # the mask still belongs to its concept
                np.testing.assert_array_equal(mask, expected)
    assert len(seen) > 1


def test_refinement_label_slots_follow_their_image_and_are_subsampled(tmp_path):
    paths = [_save(tmp_path, f"images/{i}.png", _flat(30 * i, 8, 8)) for i in range(3)]
    records = [_boxed(p, ("car", 0.0, 0.0, 0.5, 0.5)) for p in paths]
    labels = {paths[0]: (np.array([7, 8, 9], np.int32), np.array([1, 0, 0], np.float32)),
              paths[1]: (np.array([3], np.int32), np.array([0], np.float32))}  # 2: none
    common = {"image_size": 8, "mask_size": 4, "max_concepts": 1, "image_labels": labels,
              "max_labels": 2}
    dataset = refinement_dataset(str(tmp_path), records, {"car": 5}, batch_size=3,
                                 training=False, **common)
    (features, targets), = _batches(dataset)
    np.testing.assert_array_equal(features["label_ids"], [[7, 8], [3, -1], [-1, -1]])
    np.testing.assert_array_equal(targets["label_present"], [[1, 0], [0, 0], [0, 0]])
    train_set = refinement_dataset(str(tmp_path), records[:1] * 2, {"car": 5}, batch_size=2,
                                   training=True, seed=0, flip=False, **common)
    seen = set()
    for _ in range(4):
        for features, targets in _examples(train_set):
            pairs = dict(zip(features["label_ids"], targets["label_present"]))
            assert pairs.items() <= {7: 1.0, 8: 0.0, 9: 0.0}.items()  # each keeps its value
            seen.add(tuple(sorted(pairs)))
    assert len(seen) > 1
    no_labels = refinement_dataset(str(tmp_path), records, {"car": 5}, image_size=8,
                                   mask_size=4, max_concepts=1, batch_size=3, training=False)
    (features, targets), = _batches(no_labels)
    assert "label_ids" not in features and "label_present" not in targets


def test_refinement_flip_moves_image_and_box_masks_together(tmp_path):
    path = _save(tmp_path, "images/a.png", _left_white(8, 8))
    records = [_boxed(path, ("left", 0.0, 0.0, 0.5, 1.0))] * 4
    dataset = refinement_dataset(str(tmp_path), records, {"left": 0}, image_size=8,
                                 mask_size=4, max_concepts=1, batch_size=4, training=True,
                                 seed=1)
    left = np.zeros((4, 4))
    left[:, :2] = 1
    flipped = 0
    for _ in range(3):
        for features, targets in _examples(dataset):
            white_left = features["image"][:, :4].min() == 255
            assert white_left or features["image"][:, 4:].min() == 255
            expected = left if white_left else left[:, ::-1]
            np.testing.assert_array_equal(targets["box_masks"][0], expected)
            flipped += not white_left
    assert 0 < flipped < 12  # both views occur


def test_refinement_crop_jitter_keeps_box_masks_on_the_object(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:24, 4:20] = 255  # the object, x in [4/32, 20/32), y in [8/32, 24/32)
    path = _save(tmp_path, "images/a.png", image)
    records = [_boxed(path, ("obj", 4 / 32, 8 / 32, 20 / 32, 24 / 32))] * 8
    dataset = refinement_dataset(str(tmp_path), records, {"obj": 0}, image_size=16,
                                 mask_size=16, max_concepts=1, batch_size=8, training=True,
                                 seed=2, scale_jitter=0.5)
    for features, targets in _examples(dataset):
        mask = targets["box_masks"][0]
        white = features["image"].mean(axis=-1) > 127
        # Bilinear resize blurs one pixel at the edges; everything else must agree.
        assert (mask != white).mean() < 0.1
        assert 0 < mask.sum() < mask.size


# ---------------------------------------------------------------- stage 3: segmentation


def test_unpack_counts_reads_pycocotools_strings():
    rng = np.random.default_rng(4)
    for height, width in [(1, 1), (5, 9), (9, 5), (30, 40)]:
        mask = rng.random((height, width)) < 0.4
        runs = rle.unpack_counts(_rle(mask)["counts"])
        flat = np.repeat(np.arange(len(runs)) % 2, runs)  # column-major pixels
        np.testing.assert_array_equal(flat.reshape(width, height).T, mask)


def test_compressed_counts_rejects_corrupt_or_mismatched_rles():
    good = _rle(np.eye(4))
    assert rle.compressed_counts(good, 4, 4) == good["counts"]
    uncompressed = {"size": [4, 4], "counts": [0, 1, 4, 1, 4, 1, 4, 1]}  # the same eye
    assert rle.compressed_counts(uncompressed, 4, 4) == good["counts"]
    for bad, message in [(good, "differs from image size"),
                         ({"size": [4, 4], "counts": good["counts"][:-1]}, "pixels"),
                         ({"size": [4, 4], "counts": b"\x01"}, "alphabet")]:
        with pytest.raises(ValueError, match=message):
            rle.compressed_counts(bad, 4, 5 if bad is good else 4)


def test_nearest_window_pixels_equal_crop_then_nearest_resize():
    rng = np.random.default_rng(7)
    augmentation = augment.Augmentation(scale_jitter=0.9)
    for trial in range(60):
        height, width, size = (int(v) for v in rng.integers(1, 48, 3))
        windows = tf.stack([augmentation.view(tf.constant([trial, k], tf.int64)).window
                            for k in range(3)])
        rows, cols = augment.nearest_window_pixels(tf.constant([[height, width]] * 3),
                                                   windows, size)
        source = np.arange(height * width).reshape(height, width, 1)
        for k in range(3):
            cropped, _ = augment.crop(tf.constant(source), windows[k])
            expected = image_files.resize_mask(cropped, size).numpy()[..., 0]
            np.testing.assert_array_equal(source[rows[k].numpy()][:, cols[k].numpy(), 0],
                                          expected, err_msg=f"{height}x{width} -> {size}")


def test_resample_window_keeps_the_full_window_and_matches_a_cell_aligned_crop():
    rng = np.random.default_rng(11)
    values = rng.random((8, 12, 2)).astype(np.float32)
    np.testing.assert_allclose(augment.resample_window(values, tf.constant([0., 0., 1., 1.])),
                               values, atol=1e-6)
    # A window on cell boundaries: cropping those cells and resizing them back (TF's
    # half-pixel bilinear) reads the same points; only samples that fall outside the crop
    # differ (the crop clamps them, the window reads the cell beyond), so compare inside.
    window = tf.constant([2 / 8, 3 / 12, 6 / 8, 9 / 12])
    expected = tf.image.resize(values[2:6, 3:9], (8, 12), method="bilinear").numpy()
    got = augment.resample_window(values, window).numpy()
    np.testing.assert_allclose(got[1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-5)
    # Hand-worked, one row: cells 0..3 hold 0, 10, 20, 30; the window [0.25, 0.75] puts the
    # output centres at source cells 0.75, 1.25, 1.75, 2.25 -> 7.5, 12.5, 17.5, 22.5.
    ramp = np.tile(np.array([0., 10., 20., 30.], np.float32), (2, 1))[..., None]
    got = augment.resample_window(ramp, tf.constant([0., 0.25, 1., 0.75])).numpy()
    np.testing.assert_allclose(got[0, :, 0], [7.5, 12.5, 17.5, 22.5], atol=1e-5)


def test_sample_masks_read_the_decoded_masks_at_the_given_pixels():
    rng = np.random.default_rng(8)
    sizes = [(5, 9), (30, 17), (1, 1), (64, 48)]
    masks = [rng.random(size) < 0.3 for size in sizes]
    ignores = [rng.random(size) < 0.5 if k % 2 else None for k, size in enumerate(sizes)]
    rows = np.stack([rng.integers(0, h, 12) for h, _ in sizes]).astype(np.int32)
    cols = np.stack([rng.integers(0, w, 7) for _, w in sizes]).astype(np.int32)
    sampled = rle.sample_masks(
        tf.constant([_rle(m)["counts"] for m in masks]),
        tf.constant([b"" if i is None else _rle(i)["counts"] for i in ignores]),
        tf.constant(sizes, tf.int32), tf.constant(rows), tf.constant(cols)).numpy()
    assert sampled.shape == (4, 12, 7, 2) and sampled.dtype == np.uint8
    for k, (mask, ignore) in enumerate(zip(masks, ignores)):
        np.testing.assert_array_equal(sampled[k, ..., 0], mask[rows[k]][:, cols[k]])
        expected = np.zeros_like(mask) if ignore is None else ignore
        np.testing.assert_array_equal(sampled[k, ..., 1], expected[rows[k]][:, cols[k]])


@pytest.mark.parametrize("height, width", [(12, 20), (20, 12), (16, 16)])
def test_segmentation_masks_equal_pycocotools_decode_resized(tmp_path, height, width):
    rng = np.random.default_rng(height)
    masks = [rng.random((height, width)) < 0.5 for _ in range(2)]
    crowd = np.zeros((height, width), bool)
    crowd[-4:, :5] = True
    path = _save(tmp_path, "images/a.png", _flat(9, height, width))
    record = MaskedImage(path, width, height, (
        ConceptMask("a", _rle(masks[0] & ~crowd), _rle(crowd)), ConceptMask("b", _rle(masks[1]))))
    dataset = segmentation_dataset(str(tmp_path), [record], {"a": 0, "b": 1}, image_size=16,
                                   batch_size=2, training=False)
    (features, targets), = _batches(dataset)
    np.testing.assert_array_equal(features["concept_id"], [0, 1])
    assert targets["mask"].shape == (2, 16, 16, 1) and targets["mask"].dtype == np.float32
    for k, concept_mask in enumerate(record.masks):
        decoded = mask_utils.decode(concept_mask.rle)
        np.testing.assert_array_equal(targets["mask"][k, ..., 0], _nearest(decoded, 16))
    np.testing.assert_array_equal(targets["mask_weight"][0, ..., 0], 1 - _nearest(crowd, 16))
    np.testing.assert_array_equal(targets["mask_weight"][1], np.ones((16, 16, 1)))


def test_segmentation_one_example_per_mask_and_skips_are_counted(tmp_path):
    paths = [_save(tmp_path, f"images/{i}.png", _flat(50 * i, 6, 8)) for i in range(2)]
    full = np.ones((6, 8), bool)
    records = [
        MaskedImage(paths[0], 8, 6, (ConceptMask("a", _rle(full)), ConceptMask("b", _rle(~full)),
                                     ConceptMask("zebra", _rle(full)))),
        MaskedImage(paths[1], 8, 6, (ConceptMask("b", _rle(full)),
                                     ConceptMask("a", _rle(np.ones((3, 3), bool))))),
        MaskedImage("images/missing.png", 8, 6, (ConceptMask("a", _rle(full)),)),
    ]
    index = {"a": 0, "b": 1}
    skips = SkipCounter()
    dataset = segmentation_dataset(str(tmp_path), records, index, image_size=4, batch_size=8,
                                   training=False, skips=skips)
    examples = _examples(dataset)
    assert [int(f["concept_id"]) for f, _ in examples] == [0, 1, 1]
    assert [float(f["image"].mean()) for f, _ in examples] == [0, 0, 50]
    assert [float(t["mask"].mean()) for _, t in examples] == [1, 0, 1]
    assert skips.as_dict() == {segmentation.UNKNOWN_CONCEPT: 1, segmentation.BAD_MASK: 1,
                               image_files.MISSING: 1}
    assert num_segmentation_examples(records, index) == 5  # before RLE and file checks
    unlabelled = segmentation_dataset(str(tmp_path), records[:1], None, image_size=4,
                                      batch_size=3, training=False)
    assert [int(f["concept_id"]) for f, _ in _examples(unlabelled)] == [-1, -1, -1]


def test_segmentation_flip_moves_image_mask_and_weight_together(tmp_path):
    path = _save(tmp_path, "images/a.png", _left_white(8, 8))
    left = np.zeros((8, 8), bool)
    left[:, :4] = True
    crowd = np.zeros((8, 8), bool)
    crowd[0, 7] = True  # top-right pixel
    record = MaskedImage(path, 8, 8, (ConceptMask("a", _rle(left), _rle(crowd)),))
    dataset = segmentation_dataset(str(tmp_path), [record] * 4, {"a": 0}, image_size=8,
                                   batch_size=4, training=True, seed=5)
    flipped = 0
    for _ in range(3):
        for features, targets in _examples(dataset):
            white_left = features["image"][:, :4].min() == 255
            mask, weight = targets["mask"][..., 0], targets["mask_weight"][..., 0]
            np.testing.assert_array_equal(mask, left if white_left else left[:, ::-1])
            np.testing.assert_array_equal(weight, 1 - (crowd if white_left else crowd[:, ::-1]))
            flipped += not white_left
    assert 0 < flipped < 12


def test_segmentation_crop_jitter_keeps_masks_on_the_object(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:24, 4:20] = 255
    path = _save(tmp_path, "images/a.png", image)
    record = MaskedImage(path, 32, 32, (ConceptMask("obj", _rle(image[..., 0] > 0)),))
    dataset = segmentation_dataset(str(tmp_path), [record] * 8, {"obj": 0}, image_size=16,
                                   batch_size=8, training=True, seed=2, scale_jitter=0.5)
    for features, targets in _examples(dataset):
        mask = targets["mask"][..., 0]
        white = features["image"].mean(axis=-1) > 127
        assert (mask != white).mean() < 0.1  # bilinear edges aside, they agree
        assert 0 < mask.sum() < mask.size


def test_segmentation_carries_precomputed_maps_with_each_examples_view(tmp_path):
    # Each image's "attention" is its own grey level, 8 x 8 (the image is 32 x 32, a
    # diagonal ramp): with any crop and flip the carried map must still be the image's
    # content, so it equals the output image averaged down to 8 x 8, up to resampling.
    rng = np.random.default_rng(4)
    records, maps = [], []
    for k in range(4):
        ramp = np.add.outer(np.arange(32), np.arange(32) * (k + 1)).astype(np.float64)
        image = (255 * ramp / ramp.max()).astype(np.uint8)
        image = np.repeat(image[..., None], 3, axis=-1)
        path = _save(tmp_path, f"images/{k}.png", image)
        records.append(MaskedImage(path, 32, 32, (ConceptMask("a", _rle(image[..., 0] > 99)),)))
        maps.append(image[..., 0].reshape(8, 4, 8, 4).mean(axis=(1, 3)))
    extra = rng.random((4, 16, 16)).astype(np.float32)  # a second scale
    plain = segmentation_dataset(str(tmp_path), records, {"a": 0}, image_size=16, batch_size=3,
                                 training=False, attention=[np.stack(maps), extra])
    examples = _examples(plain)
    for k, (features, _) in enumerate(examples):  # eval: record order, maps unchanged
        np.testing.assert_allclose(features["attention_0"][0], maps[k], atol=1e-4)
        np.testing.assert_allclose(features["attention_1"][0], extra[k], atol=1e-6)
    jittered = segmentation_dataset(str(tmp_path), records * 4, {"a": 0}, image_size=32,
                                    batch_size=4, training=True, seed=3, scale_jitter=0.5,
                                    attention=[np.stack(maps * 4), np.concatenate([extra] * 4)])
    flipped = 0
    for features, _ in _examples(jittered):
        assert features["attention_0"].shape == (1, 8, 8)
        seen = features["image"][..., 0].reshape(8, 4, 8, 4).mean(axis=(1, 3))
        assert np.abs(features["attention_0"][0] - seen).mean() < 4.0  # of 0..255
        flipped += seen[0, 0] > seen[0, -1]  # the ramp rises to the right unless flipped
    assert 0 < flipped < 16
    with pytest.raises(ValueError, match="one map per usable example"):
        segmentation_dataset(str(tmp_path), records, {"a": 0}, image_size=16, batch_size=2,
                             training=False, attention=[np.stack(maps)[:3]])


# ---------------------------------------------------------------- all stages


def _three_pipelines(root, seed):
    paths = [_save(root, f"images/{i}.png", _left_white(8 + i, 10)) for i in range(4)]
    half = np.zeros((8, 10), bool)
    half[:, :5] = True
    boxed = [_boxed(p, ("a", 0.1, 0.2, 0.6, 0.7), ("b", 0.5, 0.0, 1.0, 1.0),
                    ("c", 0.0, 0.5, 0.3, 1.0)) for p in paths]
    masked = [MaskedImage(p, 10, 8 + i, (ConceptMask("a", _rle(np.pad(half, ((0, i), (0, 0))))),))
              for i, p in enumerate(paths)]
    index = {"a": 0, "b": 1, "c": 2}
    common = {"batch_size": 2, "training": True, "seed": seed, "scale_jitter": 0.4}
    return [
        embedding_dataset(root, paths, np.eye(4), image_size=8, **common),
        refinement_dataset(root, boxed, index, image_size=8, mask_size=4, max_concepts=2,
                           skips=SkipCounter(), **common),
        segmentation_dataset(root, masked, index, image_size=8, **common),
    ]


def test_seeded_pipelines_repeat_exactly_and_reshuffle_each_pass(tmp_path):
    first, second = _three_pipelines(str(tmp_path), 7), _three_pipelines(str(tmp_path), 7)
    for a, b in zip(first, second):
        passes_a = [_batches(a) for _ in range(2)]
        passes_b = [_batches(b) for _ in range(2)]
        for batches_a, batches_b in zip(passes_a, passes_b):
            tf.nest.map_structure(np.testing.assert_array_equal, batches_a, batches_b)
        assert not all(np.array_equal(x, y) for x, y in zip(tf.nest.flatten(passes_a[0]),
                                                            tf.nest.flatten(passes_a[1])))
