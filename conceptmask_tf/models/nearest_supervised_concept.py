"""Nearest box-supervised concept in word space (paper §4.4)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from conceptmask_tf.models.tensor_ops import l2_normalize


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class NearestSupervisedConcept(keras.layers.Layer):
    """For each concept vector, the most cosine-similar vector of a supervised set.

    The supervised set (concepts with box or mask supervision) is a non-trainable weight
    [P, D], saved with the model. A concept counts as supervised itself when its cosine
    to its neighbour is >= 1 - `tolerance` (its own vector is in the set).

    Args:
        num_supervised: P >= 1.
        embedding_dim: D.
        supervised_vectors: float [P, D] initial values; zeros if None (to be loaded).
        tolerance: See above.

    Call args:
        concept_vectors: float32 [B, K, D].

    Returns:
        (neighbour vectors float32 [B, K, D], is_supervised float32 [B, K] in {0, 1}).
    """

    def __init__(self, num_supervised: int, embedding_dim: int,
                 supervised_vectors: np.ndarray | None = None, tolerance: float = 1e-4,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_supervised < 1:
            raise ValueError("need at least one supervised concept")
        if supervised_vectors is not None:
            supervised_vectors = np.asarray(supervised_vectors, dtype=np.float32)
            if supervised_vectors.shape != (num_supervised, embedding_dim):
                raise ValueError(f"supervised_vectors must be [{num_supervised}, "
                                 f"{embedding_dim}], got {supervised_vectors.shape}")
        self.num_supervised = int(num_supervised)
        self.embedding_dim = int(embedding_dim)
        self.tolerance = float(tolerance)
        self.supervised_vectors = self.add_weight(shape=(num_supervised, embedding_dim),
                                                  initializer="zeros", trainable=False,
                                                  name="supervised_vectors")
        if supervised_vectors is not None:
            self.supervised_vectors.assign(supervised_vectors)

    def call(self, concept_vectors):
        cosine = ops.einsum("bkd,pd->bkp", l2_normalize(concept_vectors),
                            l2_normalize(self.supervised_vectors))  # [B, K, P]
        # tf.argmax, not ops.argmax: keras 3.15 lowers a float argmax through signbit
        # (Bitcast + BitwiseAnd), which neither TFLite builtins nor tf2onnx convert.
        nearest = tf.argmax(cosine, axis=-1, output_type=tf.int32)  # [B, K]
        neighbours = ops.take(self.supervised_vectors, nearest, axis=0)  # [B, K, D]
        # The cosine at the argmax, not ops.max: keras' TF max refuses empty tensors (K = 0).
        best = ops.take_along_axis(cosine, ops.expand_dims(nearest, -1), axis=-1)[..., 0]
        is_supervised = ops.cast(best >= 1.0 - self.tolerance, "float32")  # [B, K]
        return neighbours, is_supervised

    def compute_output_spec(self, concept_vectors):
        return (keras.KerasTensor(concept_vectors.shape),
                keras.KerasTensor(concept_vectors.shape[:2]))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_supervised": self.num_supervised,
                "embedding_dim": self.embedding_dim, "tolerance": self.tolerance}
