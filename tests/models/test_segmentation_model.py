"""Stage 3 network: per-concept decoding over shared features, normalisation, round-trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.models import (
    NormalizeAttention,
    ResizeMaps,
    SegmentationModel,
    build_segmentation_model,
)
from tests.models.tiny import assert_same_outputs, images, segmentation_model


def _attention(k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"attention_0": rng.uniform(0, 1, (2, k, 4, 4)).astype(np.float32),
            "attention_1": rng.uniform(0, 1, (2, k, 8, 8)).astype(np.float32)}


def test_masks_are_at_input_resolution_for_any_number_of_concepts():
    model = segmentation_model()
    for k in (1, 3):
        out = model({"image": images(2), **_attention(k)}, training=False)
        assert out["logits"].shape == (2, k, 32, 32)
        np.testing.assert_allclose(out["masks"], 1 / (1 + np.exp(-np.asarray(out["logits"]))),
                                   atol=1e-6)


def test_each_concept_is_decoded_on_its_own_from_shared_image_features():
    # Concept 1's mask is the same alone or with two other concepts: the K concepts share
    # the encoder pass and nothing else.
    model = segmentation_model()
    x = images(2)
    three = _attention(3)
    together = model({"image": x, **three}, training=False)["logits"]
    alone = model({"image": x, **{k: v[:, 1:2] for k, v in three.items()}},
                  training=False)["logits"]
    np.testing.assert_allclose(alone[:, 0], together[:, 1], atol=1e-5)


def test_masks_ignore_the_scale_and_offset_of_attention_maps():
    # Label agnostic: min-max normalisation removes how confident the attention was.
    model = segmentation_model()
    x = images(2)
    maps = _attention(2)
    shifted = {k: 7.0 * v - 3.0 for k, v in maps.items()}
    assert_same_outputs(model({"image": x, **shifted}, training=False),
                        model({"image": x, **maps}, training=False), atol=1e-5)


def test_masks_depend_on_the_attention():
    model = segmentation_model()
    x = images(1)
    maps = _attention(1)
    flipped = {k: v[..., ::-1].copy() for k, v in maps.items()}
    first = np.asarray(model({"image": x, **maps}, training=False)["logits"])
    second = np.asarray(model({"image": x, **flipped}, training=False)["logits"])
    assert np.abs(first - second).max() > 1e-3


def test_single_att_variant_takes_one_attention_map():
    model = build_segmentation_model(single_att=True, encoder_widths=(4, 4, 4, 4),
                                     decoder_widths=(4, 4, 4))
    assert sorted(model.input.keys()) == ["attention_0", "image"]
    out = model({"image": images(1), "attention_0": _attention(2)["attention_0"][:1]},
                training=False)
    assert out["masks"].shape == (1, 2, 32, 32)
    assert build_segmentation_model().num_attention_maps == 2


def test_normalize_attention_by_hand():
    maps = np.array([[[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]]], np.float32)
    # map 0: min 1, max 5 -> (x - 1) / 4; map 1 is constant -> all 0.
    expected = [[[[0.0, 0.5], [0.25, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]]
    np.testing.assert_allclose(NormalizeAttention()(maps), expected, atol=1e-6)


def test_resize_maps_to_a_reference_size_keeps_constants_and_corners():
    maps = np.zeros((1, 2, 2, 2), np.float32)
    maps[0, 0] = 3.0
    maps[0, 1] = [[0.0, 1.0], [0.0, 1.0]]
    out = np.asarray(ResizeMaps()(maps, np.zeros((1, 8, 6, 5), np.float32)))
    assert out.shape == (1, 2, 8, 6)
    np.testing.assert_allclose(out[0, 0], 3.0, atol=1e-6)
    # Half-pixel bilinear: the outer columns keep the source values 0 and 1.
    np.testing.assert_allclose(out[0, 1, :, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[0, 1, :, -1], 1.0, atol=1e-6)


def test_bad_widths_are_refused():
    with pytest.raises(ValueError, match="widths"):
        SegmentationModel(decoder_widths=(8, 8))


def test_config_round_trip_and_save_load(tmp_path):
    model = segmentation_model()
    clone = SegmentationModel.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    inputs = {"image": images(2), **_attention(2)}
    expected = model(inputs, training=False)
    clone.set_weights(model.get_weights())
    assert_same_outputs(clone(inputs, training=False), expected)
    path = str(tmp_path / "segmentation.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SegmentationModel)
    assert_same_outputs(loaded(inputs, training=False), expected)



def test_training_step_reaches_every_decoder_level():
    model = segmentation_model()
    inputs = {"image": images(2), **_attention(3)}
    kernels = [model.get_layer(f"decoder{level}").attention_projection.kernel
               for level in (3, 1, 0)]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(inputs, training=True)["logits"])
    for gradient in tape.gradient(loss, kernels):
        assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0
