"""Min-max normalisation of attention maps (paper §4.3)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class NormalizeAttention(keras.layers.Layer):
    """Scales each map [B, K, h, w] to [0, 1]: (a - min) / (max - min) per (b, k).

    The segmentation network then sees where a concept is, not how sure the attention
    network is that it is present (presence is scored separately). A constant map
    (max == min) becomes all zeros.
    """

    def call(self, maps):  # [B, K, h, w] -> [B, K, h, w]
        low = ops.min(maps, axis=(2, 3), keepdims=True)
        high = ops.max(maps, axis=(2, 3), keepdims=True)
        return ops.divide_no_nan(maps - low, high - low)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape
