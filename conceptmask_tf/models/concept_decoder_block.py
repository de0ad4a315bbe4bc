"""One decoder level of the label-agnostic segmentation network, run per concept."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from conceptmask_tf.models.tensor_ops import fold_concepts, resize, unfold_concepts


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class ConceptDecoderBlock(keras.layers.Layer):
    """Fuses shared image features with per-concept attention (and the coarser level).

        x_k = relu(BN(P_img f + P_att a_k + up(P_prev y_k)))     1x1 projections
        y_k = relu(BN(conv3x3(x_k)))

    A 1x1 conv over a concatenation is the sum of 1x1 convs over its parts, so P_img f
    is computed once per image and broadcast over the K concepts; only the attention
    and decoder paths run per concept, at the cost of this block, not of the encoder.

    Args:
        filters: Output channels F.

    Call args:
        image_features: float32 [B, H, W, C] encoder features at this level.
        attention: float32 [B, K, H, W, A] attention maps (A scales) at this level, or
            None: no attention input, K = 1 (the concept-blind saliency baseline).
        previous: float32 [B, K, h, w, F'] output of the coarser block, or None.

    Returns:
        float32 [B, K, H, W, F].
    """

    def __init__(self, filters: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.image_projection = keras.layers.Dense(filters, use_bias=False, name="image_proj")
        self.attention_projection = keras.layers.Dense(filters, use_bias=False,
                                                       name="attention_proj")
        self.previous_projection = keras.layers.Dense(filters, use_bias=False,
                                                      name="previous_proj")
        self.fuse_norm = keras.layers.BatchNormalization(name="fuse_bn")
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                        name="conv")
        self.conv_norm = keras.layers.BatchNormalization(name="conv_bn")

    def build(self, image_features_shape: tuple, attention_shape: tuple | None = None,
              previous_shape: tuple | None = None) -> None:
        self.image_projection.build(image_features_shape)
        if attention_shape is not None:
            self.attention_projection.build(attention_shape)
        if previous_shape is not None:
            self.previous_projection.build(previous_shape)
        folded = (None, *image_features_shape[1:3], self.filters)
        self.fuse_norm.build(folded)
        self.conv.build(folded)
        self.conv_norm.build(folded)

    def call(self, image_features, attention=None, previous=None):
        # expand_dims, not [:, None]: a new-axis slice needs Flex ops in TFLite.
        x = tf.expand_dims(self.image_projection(image_features), 1)  # [B, 1, H, W, F]
        num_concepts = 1
        if attention is not None:
            num_concepts = tf.shape(attention)[1]
            x = x + self.attention_projection(attention)  # [B, K, H, W, F]
        if previous is not None:
            # P_prev up(y) = up(P_prev y): both are linear (no bias), so project first and
            # upsample F channels instead of F' (the per-concept resize is the costliest
            # op at K = 32 after the convs; BENCHMARKS.md, "Multi-concept").
            projected = self.previous_projection(fold_concepts(previous))  # [B*K, h, w, F]
            size = tf.shape(image_features)[1:3]
            x = x + unfold_concepts(resize(projected, size), num_concepts)
        x = tf.nn.relu(self.fuse_norm(fold_concepts(x)))  # [B * K, H, W, F]
        x = tf.nn.relu(self.conv_norm(self.conv(x)))
        return unfold_concepts(x, num_concepts)

    def compute_output_shape(self, image_features_shape: tuple,
                             attention_shape: tuple | None = None,
                             previous_shape: tuple | None = None) -> tuple:
        if attention_shape is None:
            return (image_features_shape[0], 1, *image_features_shape[1:3], self.filters)
        return (*attention_shape[:4], self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters}
