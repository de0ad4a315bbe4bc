"""The concept world and the real-format readers/pipelines agree: one reader path serves both.

A small world is generated once; every file is read back with the readers in strict mode (any
skip is an error), and the stage pipelines produce targets that match the files.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conceptmask_tf.data import boxes, coco, splits, tags
from conceptmask_tf.data.datasets import refinement_dataset, segmentation_dataset
from conceptmask_tf.data.layout import SPLITS, DataRoot
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.world import WorldConfig, generate_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> DataRoot:
    root = str(tmp_path_factory.mktemp("e2e") / "world")
    generate_world(WorldConfig(seed=11, num_images=40, image_size=64, num_eval_images=12,
                               min_eval_positives=2), root, progress=False)
    return DataRoot(root)


def test_every_world_file_reads_back_without_a_single_skip(world):
    strict = SkipCounter(strict=True)
    level = splits.read_splits(world.splits)
    tagged = tags.read_tag_manifest(world.tags, skips=strict)
    masked = coco.read_coco_instances(world.coco_instances, skips=strict)
    boxed = boxes.load_box_images(world, skips=strict)
    assert len(tagged) == 40
    # Supervision levels hold in the files: masks only for strong concepts, boxes for strong
    # and weak_box (like OIVG-750 includes COCO-80), zero-shot concepts nowhere but tags.
    mask_concepts = {m.concept for image in masked for m in image.masks if m.rle["counts"]}
    box_concepts = {b.concept for image in boxed for b in image.boxes}
    assert mask_concepts <= set(level["strong"])
    assert box_concepts <= set(level["strong"]) | set(level["weak_box"])
    assert set(level["weak_box"]) & box_concepts
    zero_shot = set(level["zero_shot"])
    assert not zero_shot & (mask_concepts | box_concepts)
    assert zero_shot & {t for image in tagged for t in image.tags}
    # Held-out ground truth exists for every split and never names a training image.
    train_images = {t.image for t in tagged}
    for split in SPLITS:
        for which in ("eval", "val"):
            truth = splits.read_split_ground_truth(world, split, which=which, skips=strict)
            assert truth and not {t.image for t in truth} & train_images
            assert all(m.concept in level[split] for t in truth for m in t.masks)


def test_refinement_pipeline_box_masks_cover_the_boxes_read_from_files(world):
    boxed = boxes.load_box_images(world)
    concepts = sorted({b.concept for image in boxed for b in image.boxes})
    index = {c: i for i, c in enumerate(concepts)}
    ds = refinement_dataset(world.root, boxed, index, image_size=64, mask_size=16,
                            max_concepts=8, batch_size=1, training=False)
    for (features, targets), image in zip(ds.take(5), boxed):
        ids = features["concept_ids"].numpy()[0]
        for slot, concept_id in enumerate(ids):
            if concept_id < 0:
                continue
            concept = concepts[concept_id]
            expected = boxes.rasterize_boxes([b for b in image.boxes if b.concept == concept],
                                             16, 16)
            got = targets["box_masks"].numpy()[0, slot] > 0.5
            assert (got | ~expected).all(), concept  # every rasterised box cell is positive


def test_segmentation_pipeline_masks_match_coco_masks(world):
    masked = [m for m in coco.read_coco_instances(world.coco_instances) if m.masks][:4]
    ds = segmentation_dataset(world.root, masked, None, image_size=64, batch_size=1,
                              training=False)
    expected = [coco.decode_mask(m.rle) for image in masked for m in image.masks]
    got = [targets["mask"].numpy()[0, ..., 0] for _, targets in ds]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)  # 64 px world, 64 px pipeline: exact


def test_world_json_describes_every_split_concept(world):
    with open(os.path.join(world.root, "world.json")) as f:
        description = json.load(f)
    level = splits.read_splits(world.splits)
    described = {c["name"]: c["level"] for c in description["concepts"]}
    for split in SPLITS:
        assert all(described[c] == split for c in level[split])
