"""Fully-convolutional conversion of the stage-1 network (paper §4.1, "Attention Map").

What the tests prove, together:
1. `test_map_is_the_original_head_at_every_location`: for ANY image, the converted
   network's embedding at location (i, j) equals the original fc head (Dense kernels,
   BatchNorm moving statistics, ReLUs, in inference mode) applied to the backbone
   feature vector f_ij at that location, to 1e-5. So Dense -> 1x1 conv and BN -> spatial
   BN are converted exactly, whatever the backbone's borders do.
2. `test_constant_image_gives_the_original_embedding_everywhere`: with a backbone that
   has no spatial padding (1x1 convs only), a constant image has a constant feature map,
   so global average pooling equals every location and the converted map must equal the
   original network's embedding e at every location, to 1e-5. (With zero padding, as in
   the real backbones, the feature map of a constant image is constant only away from
   the borders, so this exact check needs a padding-free backbone.)
3. `test_one_location_map_is_the_original_embedding`: with the real small_convnet and an
   8 x 8 input (one location at stride 8), GAP is the identity, so the map's only
   location equals e, to 1e-5.
4. `test_pooled_output_is_the_original_embedding`: the pooled output equals e for any
   image.
BN statistics are randomised first, so an identity BN cannot hide a wrong conversion.
Each holds for both head orders (`pooling`: the paper's pool-then-fc and the default
fc-per-location-then-pool).
"""

import keras
import numpy as np
import pytest

from conceptmask_tf.models import (
    EmbeddingModel,
    FullyConvolutionalEmbedding,
    PixelPreprocessing,
    to_fully_convolutional,
)
from conceptmask_tf.models.embedding_model import POOLINGS
from tests.models.tiny import (
    DIM,
    assert_same_outputs,
    embedding_model,
    images,
    randomize_batch_norm,
)

ATOL = 1e-5


def _original_head(model: EmbeddingModel, features: np.ndarray) -> np.ndarray:
    """The trained fc head (inference mode) applied to feature vectors [N, C] -> [N, D]."""
    x = features
    if model.pooling == "after_head":  # its layers were built on [B, h, w, C]
        x = x.reshape(-1, 1, 1, x.shape[-1])
    layers = model.head_layers()
    for i, (dense, norm) in enumerate(layers):
        x = norm(dense(x), training=False)
        if i < len(layers) - 1 or model.final_relu:
            x = keras.ops.relu(x)
    return np.asarray(x).reshape(len(features), -1)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_map_is_the_original_head_at_every_location(pooling):
    model = embedding_model(pooling=pooling)
    fcn = to_fully_convolutional(model)
    x = images(2, 48, width=64)
    embedding_map = np.asarray(fcn(x, training=False)["embedding_map"])  # [2, 6, 8, D]
    features = np.asarray(model.backbone(x, training=False))  # [2, 6, 8, C]
    assert embedding_map.shape == (2, 6, 8, DIM)
    expected = _original_head(model, features.reshape(-1, features.shape[-1]))
    np.testing.assert_allclose(embedding_map.reshape(-1, DIM), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooled_output_is_the_original_embedding(pooling):
    model = embedding_model(pooling=pooling)
    fcn = to_fully_convolutional(model)
    x = images(3, 40)
    np.testing.assert_allclose(fcn(x, training=False)["embedding"],
                               model(x, training=False), atol=ATOL, rtol=0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_constant_image_gives_the_original_embedding_everywhere(pooling):
    inputs = keras.Input((None, None, 3))
    x = PixelPreprocessing("tf")(inputs)
    x = keras.layers.Conv2D(6, 1, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(5, 1, activation="relu")(x)
    backbone = keras.Model(inputs, x)
    model = EmbeddingModel(backbone, DIM, hidden_dims=(7, 9), pooling=pooling)
    randomize_batch_norm(model)
    fcn = to_fully_convolutional(model)
    constant = np.full((2, 16, 16, 3), 0.0, np.float32)
    constant[0] = (40.0, 200.0, 90.0)
    constant[1] = (250.0, 3.0, 128.0)
    e = np.asarray(model(constant, training=False))  # [2, D]
    embedding_map = np.asarray(fcn(constant, training=False)["embedding_map"])
    assert embedding_map.shape == (2, 16, 16, DIM)
    np.testing.assert_allclose(embedding_map, np.broadcast_to(e[:, None, None], (2, 16, 16, DIM)),
                               atol=ATOL, rtol=0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_one_location_map_is_the_original_embedding(pooling):
    model = embedding_model(pooling=pooling)
    fcn = to_fully_convolutional(model)
    x = images(2, 8)
    embedding_map = np.asarray(fcn(x, training=False)["embedding_map"])
    assert embedding_map.shape == (2, 1, 1, DIM)
    np.testing.assert_allclose(embedding_map[:, 0, 0], model(x, training=False), atol=ATOL,
                               rtol=0)


def test_converted_network_owns_its_weights_and_freezes_pooled_head_batch_norm():
    model = embedding_model(pooling="before_head")
    fcn = to_fully_convolutional(model)
    x = images(2)
    before = np.asarray(model(x, training=False))
    for weight in fcn.trainable_weights:
        weight.assign(weight + 0.5)  # stands for stage-2 fine-tuning
    np.testing.assert_array_equal(model(x, training=False), before)
    head_norms = [norm for _, norm in fcn.head_layers()]
    assert not any(norm.trainable for norm in head_norms)
    stats = [np.asarray(norm.moving_mean) for norm in head_norms]
    fcn(x, training=True)
    for norm, mean in zip(head_norms, stats):
        np.testing.assert_array_equal(norm.moving_mean, mean)


def test_per_location_head_keeps_training_its_batch_norm():
    # after_head: the statistics are of per-location features already, so stage 2 may
    # update them; before_head freezes them by default (test above).
    fcn = to_fully_convolutional(embedding_model(pooling="after_head"))
    assert all(norm.trainable for _, norm in fcn.head_layers())
    assert fcn.pooling == "after_head"


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="pooling must be one of"):
        embedding_model(pooling="middle")


def test_config_round_trip_and_save_load(tmp_path):
    fcn = to_fully_convolutional(embedding_model(pooling="before_head"))
    clone = FullyConvolutionalEmbedding.from_config(fcn.get_config())
    assert clone.get_config() == fcn.get_config()
    clone.set_weights(fcn.get_weights())
    x = images(2)
    expected = fcn(x, training=False)
    assert_same_outputs(clone(x, training=False), expected)
    path = str(tmp_path / "fcn.keras")
    fcn.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, FullyConvolutionalEmbedding)
    assert not any(norm.trainable for _, norm in loaded.head_layers())
    assert_same_outputs(loaded(x, training=False), expected)
