"""Attention-map scores (Table 1) with fake maps, and the maps of the tiny networks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.base import metrics
from conceptmask_tf.evaluation.attention_evaluation import (
    as_probability,
    concept_specificity,
    evaluate_attention,
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


def test_coarse_maps_are_clipped_and_refined_maps_kept_as_they_are():
    cosine = np.array([[-0.5, 0.25], [0.75, 1.0]])
    np.testing.assert_allclose(as_probability("original", cosine), [[0, 0.25], [0.75, 1]])
    np.testing.assert_allclose(as_probability("original_finetuned", 3 * cosine),
                               [[0, 0.75], [1, 1]])
    probs = np.array([[0.2, 0.6]])
    np.testing.assert_array_equal(as_probability("refined", probs), probs)
    with pytest.raises(ValueError, match="must lie in"):  # refined maps must be probabilities
        metrics.soft_iou(as_probability("refined", np.array([[1.5, 0.0]])),
                         np.array([[True, False]]))


class FakeMaps:
    """Per variant, a map made from the ground-truth mask G and box region R of each pair.

    original: 2G - 1, a cosine-like map in [-1, 1] (clipped to [0, 1] it is G);
    original_finetuned: 1 - G (maximum outside the mask and the box: a miss);
    refined: G scaled into [0.2, 0.6] (probabilities; min-max normalised it is G);
    refined_noneg: 0.9 in the box outside the mask, 0.5 on the mask, 0.1 elsewhere (a hit
        for the box protocol but not for the mask one where the box is looser).
    """

    variants = ("original", "original_finetuned", "refined", "refined_noneg")

    def __init__(self, eval_set):
        self.truth = fx.FakeModel(eval_set, fx.oracle_rule)
        self.boxes = fx.FakeModel(eval_set, lambda image, concept: (
            None if fx.oracle_rule(image, concept) is None else fx.box_truth(image, concept)))

    def __call__(self, inputs):
        truth = self.truth(inputs)["mask_probs"]  # [B, K, H, W]
        box = self.boxes(inputs)["mask_probs"]
        return {"original": 2 * truth - 1, "original_finetuned": 1 - truth,
                "refined": 0.2 + 0.4 * truth,
                "refined_noneg": 0.1 + 0.8 * box * (1 - truth) + 0.4 * truth}


def test_table_1_follows_the_paper_protocol_against_boxes(eval_set):
    # weak_box pairs: sky in img0 (rows 0-11 of 32 x 32, 384 px) and img2 (rows 0-9 of
    # 24 x 32, 320 px), boxes equal to the masks; cat in img1 (64 px) with a 144 px box.
    results = evaluate_attention(FakeMaps(eval_set), eval_set, FakeMaps.variants,
                                 progress=False)
    weak_box = results["weak_box"]
    original = weak_box["original"]
    # Clipped 2G - 1 is G: soft IoU 1 against the masks; against the cat's box 64 / 144.
    assert original["pointing_game"] == 1.0 and original["pointing_game_mask"] == 1.0
    assert original["soft_iou_mask"] == pytest.approx(1.0)
    assert original["soft_iou"] == pytest.approx((1 + 64 / 144) / 2)
    assert (original["concepts"], original["images"]) == (2, 3)
    refined = weak_box["refined"]
    # Probabilities are scored as they are, not min-max normalised:
    #   sky img0: 0.6 * 384 / (384 + 0.2 * 640) = 0.45; img2: 0.6 * 320 / (320 + 0.2 * 448)
    #   = 0.46875; cat (mask): 0.6 * 64 / (64 + 0.2 * 960) = 0.15;
    #   cat (box): (0.6 * 64 + 0.2 * 80) / (144 + 0.2 * 880) = 0.17.
    sky = (0.45 + 0.46875) / 2
    assert refined["soft_iou_mask"] == pytest.approx((sky + 0.15) / 2)
    assert refined["soft_iou"] == pytest.approx((sky + 0.17) / 2)
    assert refined["soft_iou_mask_minmax"] == pytest.approx(1.0)
    finetuned = weak_box["original_finetuned"]
    assert finetuned["pointing_game"] == 0.0 and finetuned["soft_iou_mask"] == 0.0
    # Clipped 1 - G on the cat's box: the 80 box pixels outside the mask, over 1024.
    assert finetuned["soft_iou"] == pytest.approx((0 + 80 / 1024) / 2)
    # The cat's map peaks in its box but outside its mask: a hit for the paper's box
    # protocol only.
    noneg = weak_box["refined_noneg"]
    assert noneg["pointing_game"] == 1.0
    assert noneg["pointing_game_mask"] == pytest.approx(0.5)
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
    assert weak_box["refined"]["per_concept"]["sky"]["pointing_game"] == 0.5
    assert weak_box["refined"]["per_concept"]["cat"]["pointing_game"] == 1.0


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


def test_specificity_counts_ordered_pairs_with_disjoint_ground_truth(eval_set):
    # img0: sky | dog; img1: dog | cat | red car (car is crowd-only: not scored); img2: sky
    # and cloud overlap, so they are no pair. 2 + 6 ordered pairs.
    class Maps(FakeMaps):
        def __call__(self, inputs):
            maps = super().__call__(inputs)
            maps["refined"] = np.full_like(maps["refined"], 0.5)  # flat: every pair a tie
            return maps

    result = concept_specificity(Maps(eval_set), eval_set, FakeMaps.variants, progress=False)
    assert result["pairs"] == 8
    assert result["original"]["own_region"] == 1.0  # 2G - 1 peaks on its own region
    assert result["original_finetuned"]["own_region"] == 0.0  # 1 - G: on the other's
    assert result["refined"]["own_region"] == 0.5
    # The fixture's word vectors are orthogonal rows (red car: red + car): no alike pair.
    assert result["mean_cosine"] == pytest.approx(0.0)
    assert result["similar_pairs"] == 0 and result["refined"]["own_region_similar"] is None
