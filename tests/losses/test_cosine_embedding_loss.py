"""Stage 1 cosine loss against hand-worked values."""

import numpy as np
import pytest

from conceptmask_tf.losses import CosineEmbeddingLoss


def test_per_sample_values_by_hand():
    target = np.array([[1, 1], [0, -3], [3, 4], [1, 2]], np.float32)
    embedding = np.array([[1, 0], [0, 2], [3, 4], [0, 0]], np.float32)
    # 1 - 1/sqrt(2) = 0.292893; opposite directions: 1 - (-1) = 2; same: 0;
    # zero embedding: cosine 0 -> 1.
    per_sample = CosineEmbeddingLoss(reduction=None)(target, embedding)
    np.testing.assert_allclose(per_sample, [0.292893, 2.0, 0.0, 1.0], atol=1e-6)
    # Keras' default reduction is the batch mean: 3.292893 / 4 = 0.823223.
    assert float(CosineEmbeddingLoss()(target, embedding)) == pytest.approx(0.823223, abs=1e-6)


def test_loss_ignores_vector_scales():
    target = np.array([[0.3, -1.2, 2.0]], np.float32)
    embedding = np.array([[1.0, 2.0, -0.5]], np.float32)
    loss = CosineEmbeddingLoss()
    assert float(loss(5 * target, 0.1 * embedding)) == pytest.approx(
        float(loss(target, embedding)), abs=1e-6)
