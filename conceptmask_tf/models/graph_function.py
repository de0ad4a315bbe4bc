"""A model's call as one `tf.function` for any batch, image size and concept count."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

GraphFunction = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def graph_function(model: Callable[..., Mapping[str, Any]], dim: int,
                   with_truth: bool = False) -> GraphFunction:
    """`model(inputs, training=False)` as a `tf.function`, traced once for any B, H, W, K.

    The input signature leaves every size but D open, so batches of other sizes or
    concept counts reuse the one graph (as fast as a graph traced for fixed shapes here).
    Weights (e.g. the calibration of a `ConceptMask`) are read when the function runs;
    Python attributes are frozen into it when traced.

    Args:
        model: A callable on {"image": float32 [B, H, W, 3], "word_vectors": float32
            [B, K, D]} (a Keras model, or an evaluation predictor).
        dim: D, the word-vector dimension.
        with_truth: The model also takes "truth_masks" float32 [B, K, H, W].

    Returns:
        The function; it takes float32 arrays only.
    """
    signature = {"image": tf.TensorSpec([None, None, None, 3], tf.float32),
                 "word_vectors": tf.TensorSpec([None, None, dim], tf.float32)}
    if with_truth:
        signature["truth_masks"] = tf.TensorSpec([None, None, None, None], tf.float32)
    return tf.function(lambda inputs: model(inputs, training=False),
                       input_signature=[signature])
