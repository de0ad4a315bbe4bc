"""The concept-blind variant, the compiled calibration wrapper and batch padding."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.evaluation.predictors import (
    CompiledConceptMask,
    ConceptBlind,
    attention_sides,
    run_batch,
)
from conceptmask_tf.models import ConceptMask
from conceptmask_tf.training.calibration import set_weak_theta
from tests.models import tiny


class SpySegmentation:
    """Records its inputs; returns zero logits for one concept."""

    def __init__(self):
        self.inputs = []

    def __call__(self, inputs, training=False):
        self.inputs.append({k: np.asarray(v) for k, v in inputs.items()})
        batch, size = inputs["image"].shape[0], inputs["image"].shape[1]
        return {"logits": tf.zeros((batch, 1, size, size))}


def test_concept_blind_feeds_all_ones_attention_and_repeats_the_mask():
    spy = SpySegmentation()
    blind = ConceptBlind(spy, image_size=16, sides=[2, 4])
    images = tiny.images(2, 24, width=40)
    out = blind({"image": images, "word_vectors": np.ones((2, 3, 8), np.float32)})
    (seen,) = spy.inputs
    assert set(seen) == {"image", "attention_0", "attention_1"}
    np.testing.assert_array_equal(seen["attention_0"], np.ones((2, 1, 2, 2)))
    np.testing.assert_array_equal(seen["attention_1"], np.ones((2, 1, 4, 4)))
    np.testing.assert_allclose(seen["image"], tf.image.resize(images, (16, 16),
                                                              antialias=False), atol=1e-4)
    probs = np.asarray(out["mask_probs"])
    assert probs.shape == (2, 3, 24, 40)
    np.testing.assert_allclose(probs, 0.5)  # sigmoid(0)


def test_concept_blind_equals_the_network_without_concept_information():
    # A uniform map is normalised to zeros: the same as feeding all-zero maps. Every
    # concept gets the same mask.
    segmentation = tiny.segmentation_model(2)
    images = tiny.images(1, 32, seed=4)
    blind = ConceptBlind(segmentation, 32, attention_sides(32, (1.0, 2.0), 8))
    out = np.asarray(blind({"image": images, "word_vectors": np.zeros((1, 2, 8)),
                            })["mask_probs"])
    zeros = segmentation({"image": images, "attention_0": np.zeros((1, 1, 4, 4), np.float32),
                          "attention_1": np.zeros((1, 1, 8, 8), np.float32)})["masks"]
    np.testing.assert_allclose(out[:, 0], np.asarray(zeros)[:, 0], atol=1e-6)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])


def test_attention_sides_follow_same_padding():
    assert attention_sides(128, (1.0, 2.0), 8) == [16, 32]
    assert attention_sides(100, (1.0, 1.5), 8) == [13, 19]  # ceil(100/8), ceil(150/8)


def test_run_batch_drops_padded_concepts():
    def predict(inputs):  # mask k = the first vector component of concept k, everywhere
        vectors = np.asarray(inputs["word_vectors"])  # [B, K, D]
        h, w = inputs["image"].shape[1:3]
        return {"mask_probs": np.broadcast_to(vectors[..., :1, None], (*vectors.shape[:2],
                                                                        h, w)),
                "presence": vectors[..., 0]}

    vectors = [np.array([[0.1, 0], [0.2, 0]]), np.array([[0.3, 0], [0.4, 0], [0.5, 0]])]
    out = run_batch(predict, [np.zeros((2, 3, 3))] * 2, vectors, ("mask_probs", "presence"))
    assert out[0]["mask_probs"].shape == (2, 2, 3)
    np.testing.assert_allclose(out[0]["presence"], [0.1, 0.2])
    np.testing.assert_allclose(out[1]["presence"], [0.3, 0.4, 0.5])


@pytest.mark.slow
def test_compiled_concept_mask_follows_theta_like_the_eager_model():
    vectors = tiny.word_vectors()
    model = ConceptMask(tiny.refinement_model("vectors"), tiny.segmentation_model(2), 32,
                        (1.0, 2.0), supervised_vectors=vectors[:4], weak_theta=0.5)
    wrapper = CompiledConceptMask(model)
    assert wrapper.num_supervised == 4  # attributes are the model's
    weak = np.random.default_rng(3).normal(size=(1, 1, tiny.DIM)).astype(np.float32)
    inputs = {"image": tiny.images(1, 32), "word_vectors": weak}
    results = {}
    for theta in (1.0, 0.0):
        set_weak_theta(wrapper, theta)
        results[theta] = np.asarray(wrapper(inputs)["attention"])
        eager = np.asarray(model(inputs, training=False)["attention"])
        np.testing.assert_allclose(results[theta], eager, atol=1e-5)
    assert np.abs(results[1.0] - results[0.0]).max() > 1e-4
