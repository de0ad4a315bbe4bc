"""The three stages train on the tiny world and leave what later steps need.

The stage fixtures (conftest.py) run `train` once each: 4 epochs x 5 steps at 32 px.
"""

from __future__ import annotations

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats
from tensorflow.core.util import event_pb2

from conceptmask_tf.concepts.concept_sets import BOX_LEVELS, load_training_concepts
from conceptmask_tf.data import coco
from conceptmask_tf.data.boxes import load_box_images
from conceptmask_tf.data.datasets import refinement_dataset, segmentation_dataset
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.models import freeze_backbone_before, stage_files
from conceptmask_tf.training import refinement, saliency, segmentation
from conceptmask_tf.training.config import (
    RefinementConfig,
    SaliencyConfig,
    SegmentationConfig,
    load_config,
)
from conceptmask_tf.training.strategy import precision_policy
from tests.trained_world import COMMON, tiny_config

TOTAL_STEPS = COMMON["epochs"] * COMMON["steps"]


def _images(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (n, 32, 32, 3)).astype(np.float32)


def _events(directory: str) -> list[event_pb2.Event]:
    events = []
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        events += [event_pb2.Event.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    return events


def _runtime(model_dir: str) -> dict:
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)["runtime"]


@pytest.mark.slow
def test_stage1_lowers_its_loss_and_leaves_model_config_and_checkpoint(stage1):
    losses = stage1.history["loss"]
    assert len(losses) == COMMON["epochs"] and losses[-1] < losses[0]
    assert stage1.steps == TOTAL_STEPS
    model_dir = stage1.config.model_dir
    assert load_config(model_dir) == stage1.config and stage1.config.steps == COMMON["steps"]
    assert not os.path.exists(os.path.join(model_dir, "backup"))  # deleted after success
    expected = stage1.model.predict(_images(), verbose=0)
    loaded = stage_files.load_stage_model(model_dir, "embedding")
    np.testing.assert_allclose(loaded.predict(_images(), verbose=0), expected, atol=1e-5)
    # keep_checkpoints=1: only the last epoch's checkpoint, which is the final model.
    checkpoints = os.listdir(os.path.join(model_dir, "checkpoints"))
    assert checkpoints == [f"embedding-epoch{COMMON['epochs']:03d}.keras"]
    checkpoint = keras.saving.load_model(os.path.join(model_dir, "checkpoints",
                                                      checkpoints[0]))
    np.testing.assert_allclose(checkpoint.predict(_images(), verbose=0), expected, atol=1e-5)


def test_stage1_with_the_tag_loss_reports_both_terms_and_saves_only_the_embedding_model(
        stage1):
    assert stage1.config.tag_loss_weight > 0
    history = stage1.history
    assert history["tags_loss"][-1] < history["tags_loss"][0]
    np.testing.assert_allclose(
        history["loss"], np.add(history["embedding_loss"],
                                stage1.config.tag_loss_weight * np.array(history["tags_loss"])),
        rtol=1e-4)
    loaded = stage_files.load_stage_model(stage1.config.model_dir, "embedding")
    assert "tag_scores" not in [layer.name for layer in loaded.layers]
    assert loaded.output.shape[-1] == stage1.model.embedding_dim


@pytest.mark.slow
def test_tensorboard_gets_epoch_scalars_and_validation_pictures(stage1, stage3):
    logs = os.path.join(stage1.config.model_dir, "logs")
    scalars = [e.step for e in _events(os.path.join(logs, "train"))
               for v in e.summary.value if v.tag == "epoch_loss"]
    assert scalars == list(range(COMMON["epochs"]))
    for result, width in ((stage1, 2 * 32), (stage3, 3 * 32)):
        pictures = [(e.step, v) for e in _events(os.path.join(result.config.model_dir, "logs",
                                                                  "images"))
                    for v in e.summary.value]
        assert [step for step, _ in pictures] == list(range(COMMON["epochs"]))
        # An image summary holds [width, height, png...]: 2 examples side by side panels.
        encoded = tf.make_ndarray(pictures[-1][1].tensor)
        assert len(encoded) == 2 + COMMON["summary_images"]
        assert (int(encoded[0]), int(encoded[1])) == (width, 32)
        assert tf.io.decode_png(encoded[2]).shape == (32, width, 3)


def test_stage2_total_is_the_sum_of_its_reported_terms(stage2):
    history = stage2.history
    assert set(history) == {"loss", "box_loss", "matching_loss", "spatial_loss"}
    assert history["loss"][-1] < history["loss"][0]
    assert history["box_loss"][-1] < history["box_loss"][0]
    np.testing.assert_allclose(history["loss"], np.sum(
        [history[k] for k in ("box_loss", "matching_loss", "spatial_loss")], axis=0), rtol=1e-5)
    assert stage2.steps == TOTAL_STEPS
    assert load_config(stage2.config.model_dir) == stage2.config
    loaded = stage_files.load_stage_model(stage2.config.model_dir, "refinement")
    inputs = {"image": tf.constant(_images()), "concept_ids": tf.constant([[0, 3]] * 3)}
    np.testing.assert_allclose(loaded(inputs)["logits"], stage2.model(inputs)["logits"],
                               atol=1e-5)


def test_stage2_never_trains_on_zero_shot_concepts(world, stage2):
    concepts = load_training_concepts(world.root, world.concepts_dir)
    excluded_rows = set(concepts.excluded_rows().tolist())
    targets = _runtime(stage2.config.model_dir)["target_concepts"]
    allowed = {c for level in BOX_LEVELS for c in concepts.splits[level]}
    assert targets and set(targets) <= allowed and not set(targets) & concepts.zero_shot
    index = {c: concepts.embeddings.vocabulary.index(c) for c in targets}
    boxed = load_box_images(DataRoot(world.root))
    features, _ = next(iter(refinement_dataset(
        world.root, boxed, index, image_size=32, mask_size=4, max_concepts=6, batch_size=8,
        training=False)))
    outputs = stage2.trainer(features)
    matching = outputs["matching_ids"].numpy()  # [B, N]
    assert matching.shape == (8, 8)
    assert not set(matching.ravel().tolist()) & excluded_rows
    spatial = stage2.trainer.spatial_loss.candidate_ids
    assert len(spatial) and not set(spatial.tolist()) & excluded_rows
    for ids, chosen in zip(features["concept_ids"].numpy(), matching):  # LwF: other concepts
        assert not set(ids.tolist()) & set(chosen.tolist())


def test_stage2_padding_slots_stay_finite_under_float16(world, stage1):
    concepts = load_training_concepts(world.root, world.concepts_dir)
    config = tiny_config(RefinementConfig, world, "float16")
    with precision_policy("mixed_float16"):  # the GPU policy of --mixed_precision
        trainer = refinement.build_trainer(config, concepts)
        features = {"image": tf.constant(_images(2)),
                    "concept_ids": tf.constant([[1, -1, -1], [2, 3, -1]])}
        outputs = trainer(features)
    for key in ("box_logits", "matching_logits", "spatial_logits"):
        assert np.isfinite(outputs[key].numpy()).all(), key


@pytest.mark.parametrize("training", [False, True])
def test_stage2_shared_lower_backbone_gives_the_outputs_of_two_separate_networks(
        world, stage1, training):
    concepts = load_training_concepts(world.root, world.concepts_dir)
    shared = refinement.build_trainer(
        tiny_config(RefinementConfig, world, "shared", finetune_from="conv2"), concepts)
    separate = refinement.build_trainer(tiny_config(RefinementConfig, world, "separate"),
                                        concepts)
    freeze_backbone_before(separate.refinement.embedding.backbone, "conv2")
    rng = np.random.default_rng(0)
    for variable in shared.refinement.trainable_variables:  # as if fine-tuned
        variable.assign(variable + rng.normal(0, 0.1, variable.shape).astype(np.float32))
    separate.refinement.set_weights(shared.refinement.get_weights())
    features = {"image": tf.constant(_images(2)),
                "concept_ids": tf.constant([[1, -1, -1], [2, 3, -1]])}
    expected = separate(features, training=training)
    outputs = shared(features, training=training)
    assert set(outputs) == set(expected) >= {"box_logits", "matching_logits",
                                              "spatial_logits"}
    for key, value in expected.items():
        np.testing.assert_allclose(outputs[key], value, atol=1e-5, err_msg=key)
    assert ({id(v) for v in shared.trainable_variables}
            == {id(v) for v in shared.refinement.trainable_variables})


def test_stage2_leaves_the_stage1_network_it_matches_untouched(stage1, stage2):
    original = stage2.trainer.original.backbone.get_weights()
    for before, after in zip(stage1.model.backbone.get_weights(), original):
        np.testing.assert_array_equal(before, after)
    tuned = stage2.model.embedding.backbone.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(original, tuned))  # fine-tuned copy


@pytest.mark.slow
def test_stage2_fine_tunes_only_the_backbone_layers_from_finetune_from_up(world, stage1):
    result = refinement.train(tiny_config(RefinementConfig, world, "finetune_from",
                                          finetune_from="conv2", epochs=1, steps=2,
                                          summary_images=0))
    tuned = stage_files.load_stage_model(result.config.model_dir, "refinement").embedding.backbone
    for layer in stage1.model.backbone.layers:
        if not layer.weights:
            continue
        same = [np.array_equal(a, b) for a, b in zip(layer.get_weights(),
                                                     tuned.get_layer(layer.name).get_weights())]
        if layer.name in ("conv0", "bn0", "conv1", "bn1"):
            assert all(same), layer.name
        elif layer.name in ("conv2", "conv5"):
            assert not any(same), layer.name
    assert load_config(result.config.model_dir).finetune_from == "conv2"


def test_stage3_trains_only_the_segmentation_network_on_strong_concepts(world, stage2, stage3):
    history = stage3.history
    assert history["loss"][-1] < history["loss"][0] and stage3.steps == TOTAL_STEPS
    concepts = load_training_concepts(world.root, world.concepts_dir)
    runtime = _runtime(stage3.config.model_dir)
    assert set(runtime["target_concepts"]) <= set(concepts.splits["strong"])
    assert runtime["attention_sizes"] == [32, 64]
    frozen = stage3.trainer.refinement.get_weights()
    for before, after in zip(stage2.model.get_weights(), frozen):
        np.testing.assert_array_equal(before, after)
    loaded = stage_files.load_stage_model(stage3.config.model_dir, "segmentation")
    assert loaded.num_attention_maps == 2
    assert load_config(stage3.config.model_dir) == stage3.config


def test_cached_attention_gives_the_trainer_the_maps_it_computes_itself(world, stage3):
    trainer, config = stage3.trainer, stage3.config
    concepts = load_training_concepts(world.root, world.concepts_dir)
    masked, index = segmentation.mask_targets(config, concepts, SkipCounter())
    options = {"image_size": config.image_size, "batch_size": 4, "training": False}
    plain = segmentation_dataset(world.root, masked, index, **options)
    cached = segmentation.attention_cache(trainer, plain)
    assert [m.shape[1:] for m in cached] == [(4, 4), (8, 8)]  # 32 and 64 px, stride 8
    with_maps = segmentation_dataset(world.root, masked, index, attention=cached, **options)
    assert sum(len(f["concept_id"]) for f, _ in with_maps) == len(cached[0])
    for (features, _), (carried, _) in zip(plain.take(3), with_maps.take(3)):
        ids = tf.expand_dims(features["concept_id"], 1)
        for computed, given in zip(trainer.attention_maps(features["image"], ids),
                                   (carried["attention_0"], carried["attention_1"])):
            np.testing.assert_allclose(given, computed, atol=1e-5)
        np.testing.assert_allclose(trainer(carried), trainer(features), atol=1e-4)


@pytest.mark.slow
def test_stage3_trains_on_cached_attention(world, stage2):
    result = segmentation.train(tiny_config(SegmentationConfig, world, "cached",
                                            cache_attention=True, epochs=2, steps=3,
                                            summary_images=0))
    assert load_config(result.config.model_dir).cache_attention
    assert np.isfinite(result.history["loss"]).all()
    assert result.history["loss"][-1] < result.history["loss"][0]


@pytest.mark.slow
def test_no_neg_trains_without_the_spatial_term(world, stage1):
    result = refinement.train(tiny_config(RefinementConfig, world, "no_neg", no_neg=True,
                                          epochs=1, steps=2, summary_images=0))
    assert set(result.history) == {"loss", "box_loss", "matching_loss"}
    assert result.trainer.spatial_loss is None
    np.testing.assert_allclose(result.history["loss"], np.add(result.history["box_loss"],
                                                              result.history["matching_loss"]),
                               rtol=1e-5)


@pytest.mark.slow
def test_single_att_trains_with_one_attention_scale(world, stage2):
    result = segmentation.train(tiny_config(SegmentationConfig, world, "single_att",
                                            single_att=True, epochs=1, steps=2,
                                            summary_images=0))
    assert result.model.num_attention_maps == 1
    assert _runtime(result.config.model_dir)["attention_sizes"] == [32]
    assert np.isfinite(result.history["loss"]).all()


def test_guided_attention_blends_each_example_with_its_coarse_mask(stage3):
    trainer = stage3.trainer
    rng = np.random.default_rng(3)
    maps = [rng.uniform(0.0, 0.9, (6, 1, 4, 4)).astype(np.float32),
            rng.uniform(0.0, 0.9, (6, 1, 8, 8)).astype(np.float32)]
    mask = np.zeros((6, 16, 16, 1), np.float32)
    mask[:, :, :8] = 1.0  # left half: area-averaged to 4x4 and 8x8 it stays left half 1
    rate = trainer.guided_attention_rate
    try:
        trainer.guided_attention_rate = 0.0
        for kept, attention in zip(trainer.guide_attention(maps, mask), maps):
            np.testing.assert_array_equal(np.asarray(kept), attention)
        trainer.guided_attention_rate = 1.0
        blended = [np.asarray(b) for b in trainer.guide_attention(maps, mask)]
    finally:
        trainer.guided_attention_rate = rate
    weights = []
    for attention, result in zip(maps, blended):
        side = attention.shape[-1]
        coarse = np.zeros_like(attention)
        coarse[..., : side // 2] = 1.0
        # result = a * coarse + (1 - a) * attention: recover a from the mask pixels.
        a = (result - attention)[..., : side // 2] / (1.0 - attention[..., : side // 2])
        a = a.reshape(6, -1)
        np.testing.assert_allclose(a, a[:, :1].repeat(a.shape[1], 1), atol=1e-5)
        np.testing.assert_allclose(result, a[:, 0, None, None, None] * coarse
                                   + (1 - a[:, 0, None, None, None]) * attention, atol=1e-5)
        weights.append(a[:, 0])
    np.testing.assert_allclose(weights[0], weights[1], atol=1e-5)  # one weight per example
    assert ((weights[0] >= 0) & (weights[0] <= 1)).all() and np.ptp(weights[0]) > 0


@pytest.mark.slow
def test_guided_attention_training_feeds_the_mask_to_the_trainer(world, stage2):
    result = segmentation.train(tiny_config(SegmentationConfig, world, "guided",
                                            guided_attention_rate=0.5, epochs=1, steps=2,
                                            summary_images=0))
    assert result.trainer.guided_attention_rate == 0.5
    assert load_config(result.config.model_dir).guided_attention_rate == 0.5
    assert np.isfinite(result.history["loss"]).all()


def test_saliency_targets_are_the_union_of_the_stage3_target_masks(world):
    config = tiny_config(SaliencyConfig, world, "saliency_targets")
    images, merged = saliency.foreground_masks(config, SkipCounter())
    concepts = load_training_concepts(world.root, world.concepts_dir)
    stage3_index = segmentation.mask_targets(
        tiny_config(SegmentationConfig, world, "unused"), concepts, SkipCounter())[1]
    assert merged == sorted(stage3_index) and not set(merged) & concepts.zero_shot
    originals = {i.image: i for i in coco.read_coco_instances(DataRoot(world.root).coco_instances)}
    assert len(images) == sum(any(m.concept in stage3_index for m in i.masks)
                              for i in originals.values())
    for image in images:
        (foreground,) = image.masks
        union = np.zeros((image.height, image.width), bool)
        for mask in originals[image.image].masks:
            if mask.concept in stage3_index:
                union |= coco.decode_mask(mask.rle).astype(bool)
        np.testing.assert_array_equal(coco.decode_mask(foreground.rle).astype(bool), union)


@pytest.mark.slow
def test_saliency_baseline_trains_a_network_without_attention_input(world):
    # Longer than the other stages' fixtures: it must learn where the foreground is.
    result = saliency.train(tiny_config(SaliencyConfig, world, "saliency", epochs=12,
                                        steps=20))
    losses = result.history["loss"]
    assert len(losses) == 12 and losses[-1] < losses[0]
    loaded = stage_files.load_stage_model(result.config.model_dir, "saliency")
    assert loaded.num_attention_maps == 0 and [t.name for t in loaded.inputs] == ["image"]
    outputs = loaded({"image": _images()})
    assert outputs["masks"].shape == (3, 1, 32, 32)
    np.testing.assert_allclose(outputs["logits"], result.model({"image": _images()})["logits"],
                               atol=1e-5)
    assert load_config(result.config.model_dir) == result.config
    assert _runtime(result.config.model_dir)["merged_concepts"]
    # Not a degenerate baseline: its mask ranks foreground pixels above the others (pixel
    # ROC AUC over training images; a constant or empty mask scores 0.5).
    images, _ = saliency.foreground_masks(result.config, SkipCounter())
    probs, truth = [], []
    for image in images[:24]:
        pixels = tf.image.resize(tf.io.decode_image(tf.io.read_file(
            os.path.join(world.root, image.image)), channels=3)[None], (32, 32))
        probs.append(np.asarray(loaded({"image": pixels})["masks"])[0, 0].ravel())
        truth.append(coco.decode_mask(image.masks[0].rle).astype(bool).ravel())  # 32 px
    probs, truth = np.concatenate(probs), np.concatenate(truth)
    ranks = stats.rankdata(probs)
    positives = truth.sum()
    auc = (ranks[truth].sum() - positives * (positives + 1) / 2) / (
        positives * (~truth).sum())
    assert auc > 0.8, auc
