"""MultiScaleAttention / refine_image: stage 2's own attention at each scale."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from conceptmask_tf.models.multi_scale_attention import MultiScaleAttention, refine_image
from tests.models import tiny


def test_each_scale_is_the_refinement_models_attention_on_the_resized_image():
    refinement = tiny.refinement_model("ids")
    multi_scale = MultiScaleAttention(refinement, 32, (1.0, 1.5))
    assert multi_scale.input_sides == [32, 48]
    image = tiny.images(2, 24, seed=3, width=40)  # any input size
    ids = np.array([[0, 3, 5], [2, 2, -1]], np.int32)
    maps = multi_scale(image, refinement.vocabulary.lookup(ids))
    for side, attention in zip((32, 48), maps):
        resized = tf.image.resize(image, (side, side), antialias=False)
        expected = refinement({"image": resized, "concept_ids": tf.constant(ids)},
                              training=False)
        np.testing.assert_allclose(attention, expected["attention"], atol=1e-6)
        assert attention.shape == (2, 3, side // 8, side // 8)  # small_convnet stride 8


def test_refine_image_takes_any_vectors_and_gives_every_map():
    refinement = tiny.refinement_model("vectors")
    image = tiny.images(1, 32, seed=1)
    vectors = tiny.word_vectors()[None, :4]
    refined = refine_image(refinement, image, vectors)
    expected = refinement({"image": image, "concept_vectors": vectors}, training=False)
    for key in ("logits", "attention", "coarse", "embedding"):
        np.testing.assert_allclose(refined[key], expected[key], atol=1e-6, err_msg=key)
    np.testing.assert_allclose(refined["attention"], tf.sigmoid(refined["logits"]), atol=1e-6)
