"""Bilinear resizing of per-concept maps to a reference's spatial size."""

from __future__ import annotations

import keras
import tensorflow as tf

from conceptmask_tf.models._tensors import resize


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class ResizeMaps(keras.layers.Layer):
    """maps [B, K, h, w] -> [B, K, H, W], (H, W) the spatial size of `reference` [B, H, W, ...].

    Bilinear with half-pixel centres and no antialiasing (TFLite / ONNX convertible).
    The maps are resized as B * K one-channel images (a reshape, no copy), not as B
    images of K channels: that needs two transposes of the [B, K, H, W] tensor, and with
    K = 32 maps at 512 px they cost more than the resize itself (BENCHMARKS.md,
    "Multi-concept"). Both give the same values.
    """

    def call(self, maps, reference):
        size = tf.shape(reference)[1:3]
        shape = tf.shape(maps)  # [B, K, h, w]
        images = tf.reshape(maps, tf.concat([[-1], shape[2:], [1]], axis=0))  # [B*K, h, w, 1]
        resized = resize(images, size)  # [B * K, H, W, 1]
        return tf.reshape(resized, tf.concat([shape[:2], size], axis=0))

    def compute_output_shape(self, maps_shape: tuple, reference_shape: tuple) -> tuple:
        return (*maps_shape[:2], *reference_shape[1:3])
