"""Tiny model factories shared by the model tests (32 px images, D = 8, V = 12)."""

from __future__ import annotations

import json
import os

import keras
import numpy as np

from conceptmask_tf.models import (
    EmbeddingModel,
    RefinementModel,
    SegmentationModel,
    to_fully_convolutional,
)

DIM = 8
VOCAB = 12


def randomize_batch_norm(model: keras.Model, seed: int = 0) -> None:
    """Gives every BatchNorm non-trivial scale, offset and moving statistics.

    Fresh BN layers are the identity at inference (mean 0, variance 1), which would let
    a wrong conversion of BN pass the tests unnoticed.
    """
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False):  # nested and custom sublayers
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.3, shape),
                               rng.normal(0, 0.3, shape), rng.uniform(0.5, 2.0, shape)])


def images(batch: int, size: int = 32, seed: int = 0, width: int | None = None) -> np.ndarray:
    """float32 [B, size, width, 3] random pixels in [0, 255]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, size, width or size, 3)).astype(np.float32)


def word_vectors(seed: int = 1) -> np.ndarray:
    """float32 [VOCAB, DIM]."""
    return np.random.default_rng(seed).normal(size=(VOCAB, DIM)).astype(np.float32)


def embedding_model(final_relu: bool = False, pooling: str = "after_head") -> EmbeddingModel:
    model = EmbeddingModel("small_convnet", DIM, hidden_dims=(16, 16), final_relu=final_relu,
                           pooling=pooling)
    randomize_batch_norm(model)
    return model


def refinement_model(concept_input: str = "ids", coarse_skip: bool = True,
                     location_term: bool = False) -> RefinementModel:
    fcn = to_fully_convolutional(embedding_model())
    return RefinementModel(fcn, VOCAB, word_vectors(), hidden_dim=16, coarse_skip=coarse_skip,
                           concept_input=concept_input, location_term=location_term)


def segmentation_model(num_attention_maps: int = 2) -> SegmentationModel:
    model = SegmentationModel(num_attention_maps, encoder_widths=(8, 8, 8, 8),
                              decoder_widths=(8, 8, 8))
    randomize_batch_norm(model)
    return model


def assert_same_outputs(first, second, atol: float = 0.0) -> None:
    """Equal dicts (or arrays) of model outputs."""
    if isinstance(first, dict):
        assert first.keys() == second.keys()
        for key in first:
            np.testing.assert_allclose(np.asarray(first[key]), np.asarray(second[key]),
                                       atol=atol, rtol=0, err_msg=key)
    else:
        np.testing.assert_allclose(np.asarray(first), np.asarray(second), atol=atol, rtol=0)


def update_model_config(model_dir: str, **values) -> None:
    """Sets `values` in the "config" section of `<model_dir>/config.json`."""
    path = os.path.join(model_dir, "config.json")
    with open(path) as f:
        record = json.load(f)
    record["config"].update(values)
    with open(path, "w") as f:
        json.dump(record, f)
