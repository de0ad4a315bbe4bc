"""Small tensor helpers shared by the model layers (private)."""

from __future__ import annotations

import tensorflow as tf
from keras import ops

EPSILON = 1e-12


def l2_normalize(x, axis: int = -1):
    """x / max(|x|, eps) along `axis`; an all-zero vector stays zero.

    The norm is taken in float32: in float16 the epsilon underflows to 0 and a zero (padding)
    vector would give NaN under mixed precision.
    """
    x32 = ops.cast(x, "float32")
    norm = ops.sqrt(ops.sum(ops.square(x32), axis=axis, keepdims=True))
    return ops.cast(x32 / ops.maximum(norm, EPSILON), x.dtype)


def channels_to_concepts(x):
    """[B, h, w, K] -> [B, K, h, w]."""
    return ops.transpose(x, (0, 3, 1, 2))


def concepts_to_channels(x):
    """[B, K, h, w] -> [B, h, w, K]."""
    return ops.transpose(x, (0, 2, 3, 1))


def resize(images: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize of [N, h, w, C] to size (H, W), no antialiasing (converts to TFLite)."""
    return tf.image.resize(images, size, method="bilinear", antialias=False)


def fold_concepts(x: tf.Tensor) -> tf.Tensor:
    """[B, K, h, w, C] -> [B * K, h, w, C]."""
    shape = tf.shape(x)
    return tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))


def unfold_concepts(x: tf.Tensor, num_concepts: tf.Tensor) -> tf.Tensor:
    """[B * K, h, w, C] -> [B, K, h, w, C]."""
    shape = tf.shape(x)
    return tf.reshape(x, tf.concat([[-1, num_concepts], shape[1:]], axis=0))


def resize_concept_maps(maps: tf.Tensor, size) -> tf.Tensor:
    """Bilinear resize of maps [B, K, h, w] to size (H, W): [B, K, H, W].

    Resized as B * K one-channel images (reshapes, no copies), not as B images of K
    channels, which needs two transposes that cost more than the resize at K = 32 and
    512 px (BENCHMARKS.md, "Multi-concept"). Both give the same values.
    """
    shape = tf.shape(maps)  # [B, K, h, w]
    images = tf.reshape(maps, tf.concat([[-1], shape[2:], [1]], axis=0))  # [B*K, h, w, 1]
    resized = resize(images, size)  # [B * K, H, W, 1]
    return tf.reshape(resized, tf.concat([shape[:2], size], axis=0))
