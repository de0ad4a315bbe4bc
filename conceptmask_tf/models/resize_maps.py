"""Bilinear resizing of per-concept maps to a reference's spatial size."""

from __future__ import annotations

import keras
import tensorflow as tf

from conceptmask_tf.models.tensor_ops import resize_concept_maps


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class ResizeMaps(keras.layers.Layer):
    """maps [B, K, h, w] -> [B, K, H, W], (H, W) the spatial size of `reference` [B, H, W, ...].

    Bilinear with half-pixel centres and no antialiasing (TFLite / ONNX convertible),
    through `resize_concept_maps` (no transposes).
    """

    def call(self, maps, reference):
        return resize_concept_maps(maps, tf.shape(reference)[1:3])

    def compute_output_shape(self, maps_shape: tuple, reference_shape: tuple) -> tuple:
        return (*maps_shape[:2], *reference_shape[1:3])
