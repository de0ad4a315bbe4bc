"""In-graph pixel preprocessing: models take float32 pixels in [0, 255]."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# Per-channel means of ImageNet in BGR order (the "caffe" convention of ResNet50 weights).
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
MODES = ("caffe", "tf")


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class PixelPreprocessing(keras.layers.Layer):
    """Maps RGB pixels in [0, 255] to what a backbone expects.

    Modes:
        "caffe": RGB -> BGR, minus the ImageNet channel means (keras.applications ResNet50).
        "tf": x / 127.5 - 1, into [-1, 1].

    Args:
        mode: One of `MODES`.
    """

    def __init__(self, mode: str = "tf", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode

    def call(self, images):  # [B, H, W, 3] -> [B, H, W, 3]
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        bgr = ops.flip(images, axis=-1)
        return bgr - ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}
