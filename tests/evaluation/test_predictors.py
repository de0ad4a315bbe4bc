"""The saliency and oracle-attention predictors, compiled predictors and batch padding."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.evaluation.predictors import (
    OracleAttention,
    SaliencyMasks,
    compiled,
    run_batch,
)
from conceptmask_tf.models import ConceptMask
from tests.models import tiny


class SpySegmentation:
    """Records its inputs; returns logits [B, K, S, S] = the first attention map, resized
    (zeros for K = 1 without attention: the saliency network's interface)."""

    def __init__(self):
        self.inputs = []

    def __call__(self, inputs, training=False):
        self.inputs.append({k: np.asarray(v) for k, v in inputs.items()})
        batch, size = inputs["image"].shape[0], inputs["image"].shape[1]
        if "attention_0" not in inputs:
            return {"logits": tf.zeros((batch, 1, size, size))}
        maps = tf.transpose(inputs["attention_0"], (0, 2, 3, 1))  # [B, s, s, K]
        resized = tf.image.resize(maps, (size, size), method="nearest")
        return {"logits": tf.transpose(resized, (0, 3, 1, 2))}


def test_saliency_sees_only_the_resized_image_and_gives_every_concept_its_mask():
    spy = SpySegmentation()
    saliency = SaliencyMasks(spy, image_size=16)
    images = tiny.images(2, 24, width=40)
    out = saliency({"image": images, "word_vectors": np.ones((2, 3, 8), np.float32)})
    (seen,) = spy.inputs
    assert set(seen) == {"image"}  # concept blind: no word vector, no attention
    np.testing.assert_allclose(seen["image"], tf.image.resize(images, (16, 16),
                                                              antialias=False), atol=1e-4)
    probs = np.asarray(out["mask_probs"])
    assert probs.shape == (2, 3, 24, 40)
    np.testing.assert_allclose(probs, 0.5)  # sigmoid(0)


def test_saliency_of_a_real_network_is_its_mask_for_every_concept():
    network = tiny.segmentation_model(0)
    images = tiny.images(1, 32, seed=4)
    out = np.asarray(SaliencyMasks(network, 32)({"image": images,
                                                 "word_vectors": np.zeros((1, 2, 8))}
                                                )["mask_probs"])
    expected = np.asarray(network({"image": images})["masks"])[:, 0]  # [1, 32, 32]
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-6)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])


def test_oracle_attention_is_the_truth_area_averaged_to_each_map_side():
    spy = SpySegmentation()
    oracle = OracleAttention(spy, image_size=16, sides=[4, 8], blur_sigma=0.0)
    truth = np.zeros((1, 2, 32, 32), np.float32)
    truth[0, 0, :16, :16] = 1  # concept 0: the top-left quadrant
    truth[0, 1, :, 6:8] = 1  # concept 1: a 2-column stripe, a quarter of a 4 x 4 cell
    out = oracle({"image": tiny.images(1, 32), "word_vectors": np.zeros((1, 2, 8)),
                  "truth_masks": truth})
    (seen,) = spy.inputs
    first = np.zeros((2, 4, 4))
    first[0, :2, :2] = 1
    first[1, :, 0] = 0.25  # columns 6-7 of each 8-pixel cell of column 0
    np.testing.assert_allclose(seen["attention_0"][0], first, atol=1e-6)
    assert seen["attention_1"].shape == (1, 2, 8, 8)
    np.testing.assert_allclose(seen["attention_1"][0, 1, :, 1], 0.5, atol=1e-6)
    # The network's logits (here the first map, resized) come back as probabilities at
    # the image size.
    probs = np.asarray(out["mask_probs"])
    assert probs.shape == (1, 2, 32, 32)
    np.testing.assert_allclose(probs[0, 0, 0, 0], 1 / (1 + np.exp(-1.0)), atol=1e-6)
    np.testing.assert_allclose(probs[0, 0, 31, 31], 0.5, atol=1e-6)


def test_oracle_blur_keeps_uniform_maps_and_spreads_a_cell_symmetrically():
    oracle = OracleAttention(None, image_size=16, sides=[5], blur_sigma=1.0)
    ones = oracle.attention(tf.ones((1, 1, 20, 20)), 5)
    np.testing.assert_allclose(ones, 1.0, atol=1e-6)  # the border is not darkened
    centre = np.zeros((1, 1, 20, 20), np.float32)
    centre[..., 8:12, 8:12] = 1  # exactly cell (2, 2) of the 5 x 5 map
    blurred = np.asarray(oracle.attention(tf.constant(centre), 5))[0, 0]
    np.testing.assert_allclose(blurred, blurred.T, atol=1e-6)
    np.testing.assert_allclose(blurred, blurred[::-1, ::-1], atol=1e-6)
    assert blurred.argmax() == 12 and 0 < blurred[2, 3] < blurred[2, 2] < 1
    assert blurred[2, 3] > blurred[2, 4] > 0


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
def test_a_compiled_concept_mask_follows_theta_set_after_tracing():
    vectors = tiny.word_vectors()
    model = ConceptMask(tiny.refinement_model("vectors"), tiny.segmentation_model(2), 32,
                        (1.0, 2.0), supervised_vectors=vectors[:4], weak_theta=0.5)
    predict = compiled(model, tiny.DIM)
    weak = np.random.default_rng(3).normal(size=(1, 1, tiny.DIM)).astype(np.float32)
    inputs = {"image": tiny.images(1, 32), "word_vectors": weak}
    predict(inputs)  # traced with theta 0.5
    results = {}
    for theta in (1.0, 0.0):
        model.set_weak_theta(theta)
        results[theta] = np.asarray(predict(inputs)["attention"])
        eager = np.asarray(model(inputs, training=False)["attention"])
        np.testing.assert_allclose(results[theta], eager, atol=1e-5)
    assert np.abs(results[1.0] - results[0.0]).max() > 1e-4
    assert predict.experimental_get_tracing_count() == 1
