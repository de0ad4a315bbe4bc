"""Attention-map scores (Table 1) with fake maps, and the maps of the tiny networks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.evaluation.attention_evaluation import (
    evaluate_attention,
    null_attention,
    unit_range,
)
from conceptmask_tf.evaluation.eval_set import load_eval_set
from conceptmask_tf.evaluation.predictors import AttentionMaps, compiled, run_batch
from conceptmask_tf.models import to_fully_convolutional
from tests.evaluation import eval_fixtures as fx
from tests.models import tiny


@pytest.fixture
def eval_set(tmp_path):
    return load_eval_set(fx.write_data_root(str(tmp_path)), fx.embeddings())


def test_unit_range_is_min_max_and_constant_maps_give_zeros():
    np.testing.assert_allclose(unit_range(np.array([[-1.0, 0.0], [0.5, 1.0]])),
                               [[0.0, 0.5], [0.75, 1.0]])
    np.testing.assert_array_equal(unit_range(np.full((2, 3), 0.7)), np.zeros((2, 3)))


class FakeMaps:
    """Per variant, a map made from the ground-truth mask G of each pair.

    original: 2G - 1, a cosine-like map in [-1, 1] (normalised back to G: a perfect map);
    original_finetuned: 1 - G (maximum outside the mask: a miss, soft IoU 0);
    refined: G scaled into [0.2, 0.6] (normalised to G: perfect).
    """

    variants = ("original", "original_finetuned", "refined")

    def __init__(self, eval_set):
        self.truth = fx.FakeModel(eval_set, fx.oracle_rule)

    def __call__(self, inputs):
        truth = self.truth(inputs)["mask_probs"]  # [B, K, H, W]
        return {"original": 2 * truth - 1, "original_finetuned": 1 - truth,
                "refined": 0.2 + 0.4 * truth}


def test_attention_scores_use_normalised_maps(eval_set):
    results = evaluate_attention(FakeMaps(eval_set), eval_set, FakeMaps.variants,
                                 progress=False)
    weak_box = results["weak_box"]
    for variant in ("original", "refined"):
        assert weak_box[variant] == {"pointing_game": 1.0, "soft_iou": 1.0, "concepts": 2,
                                     "images": 3}
    assert weak_box["original_finetuned"]["pointing_game"] == 0.0
    assert weak_box["original_finetuned"]["soft_iou"] == 0.0
    # Not computed: null with counts 0.
    assert weak_box["refined_noneg"] == null_attention()
    assert results["zero_shot"]["refined"]["concepts"] == 1


def test_pointing_game_is_averaged_per_concept(eval_set):
    # "refined" points inside the mask except for sky in img2: sky 0.5, cat 1 -> 0.75.
    class Maps(FakeMaps):
        def __call__(self, inputs):
            maps = super().__call__(inputs)
            truth = self.truth(inputs)["mask_probs"]
            if truth.shape[2] == 24:  # img2, the only 24-pixel-high image
                maps["refined"] = 1 - truth
            return maps

    weak_box = evaluate_attention(Maps(eval_set), eval_set, FakeMaps.variants,
                                  progress=False)["weak_box"]
    assert weak_box["refined"]["pointing_game"] == pytest.approx(0.75)


def test_attention_maps_are_the_networks_maps_upsampled(eval_set):
    embedding = tiny.embedding_model()
    refinement = tiny.refinement_model("vectors")
    no_neg = tiny.refinement_model("vectors", coarse_skip=False)
    maps = AttentionMaps(to_fully_convolutional(embedding), refinement, no_neg, 32)
    assert maps.variants == ("original", "original_finetuned", "refined", "refined_noneg")
    image = eval_set.pixels(eval_set.images[2])  # 24 x 32, resized to 32 x 32 inside
    vectors = fx.embeddings().vectors_for(["sky", "dog"])
    got = run_batch(compiled(maps, tiny.DIM), [image], [vectors],
                    maps.variants)[0]  # [K, 24, 32] each

    resized = tf.image.resize(image[None].astype(np.float32), (32, 32), antialias=False)

    def upsample(maps_bkhw):  # [1, K, h, w] -> [K, 24, 32]
        channels = np.transpose(np.asarray(maps_bkhw), (0, 2, 3, 1))
        return np.transpose(np.asarray(tf.image.resize(channels, (24, 32),
                                                       antialias=False))[0], (2, 0, 1))

    # Stage 1 by hand: cosine of the fully-convolutional embedding map with each vector.
    fcn = to_fully_convolutional(embedding)
    e = np.asarray(fcn(resized, training=False)["embedding_map"])[0]  # [h, w, D]
    e = e / np.linalg.norm(e, axis=-1, keepdims=True)
    w = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    cosine = np.einsum("hwd,kd->khw", e, w)[None]
    np.testing.assert_allclose(got["original"], upsample(cosine), atol=1e-5)
    inputs = {"image": resized, "concept_vectors": tf.constant(vectors[None])}
    for model, coarse_key, key in ((refinement, "original_finetuned", "refined"),
                                   (no_neg, None, "refined_noneg")):
        outputs = model(inputs, training=False)
        np.testing.assert_allclose(got[key], upsample(outputs["attention"]), atol=1e-5)
        if coarse_key:
            np.testing.assert_allclose(got[coarse_key], upsample(outputs["coarse"]),
                                       atol=1e-5)
