"""Bilinear resizing of images to a fixed square size."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from conceptmask_tf.models.tensor_ops import resize


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class ResizeImages(keras.layers.Layer):
    """images [B, H, W, C] -> [B, size, size, C], squashed (aspect not kept) like the
    data pipelines; bilinear, no antialiasing.

    Args:
        size: Output side.
    """

    def __init__(self, size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.size = int(size)

    def call(self, images):
        return resize(ops.cast(images, self.compute_dtype), (self.size, self.size))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.size, self.size, input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}
