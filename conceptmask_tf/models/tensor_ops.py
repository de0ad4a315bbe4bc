"""Small tensor helpers shared by the model layers (private)."""

from __future__ import annotations

import numpy as np
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
    """Bilinear resize of [N, h, w, C] to size (H, W), no antialiasing (converts to TFLite).

    Keeps the input's dtype (`tf.image.resize` gives float32; mixed precision needs
    float16 / bfloat16 back; a no-op for float32).
    """
    return tf.cast(tf.image.resize(images, size, method="bilinear", antialias=False),
                   images.dtype)


def area_resize(images: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """`tf.image.resize(method="area")` of [N, h, w, C] with static h, w, as two matrix
    products (XLA has no kernel for ResizeArea); keeps the input's dtype.

    Output cell i averages the input cells its interval [i h / H, (i + 1) h / H) covers,
    each weighted by the length it covers.
    """
    rows = _area_weights(images.shape[1], size[0])  # [H, h]
    cols = _area_weights(images.shape[2], size[1])  # [W, w]
    return tf.einsum("ys,bstc,xt->byxc", tf.constant(rows, images.dtype), images,
                     tf.constant(cols, images.dtype))


def _area_weights(source: int, target: int) -> np.ndarray:
    edges = np.arange(target + 1) * source / target
    cells = np.arange(source)
    overlap = np.clip(np.minimum(edges[1:, None], cells + 1)
                      - np.maximum(edges[:-1, None], cells), 0.0, None)  # [target, source]
    return overlap / overlap.sum(axis=1, keepdims=True)


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
