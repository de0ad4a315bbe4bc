"""Matching loss (eq. 2), its concept selection and binarisation, by hand."""

import numpy as np
import pytest

from conceptmask_tf.losses import (
    MatchingLoss,
    binarize_attention,
    matching_targets,
    select_matching_concepts,
)

L3 = np.log(3.0)


def _original_maps() -> np.ndarray:
    """[1, 2, 2, V=5] coarse maps with known peaks and means."""
    maps = np.stack([
        np.full((2, 2), 0.9),  # c0: max 0.9, mean 0.9 (the image's own concept)
        np.full((2, 2), 0.4),  # c1: max 0.4, mean 0.4
        [[0.5, -0.5], [-0.5, -0.5]],  # c2: max 0.5, mean -0.25
        [[0.7, 0.0], [0.0, 0.0]],  # c3: max 0.7, mean 0.175
        np.full((2, 2), -0.2),  # c4: max -0.2, mean -0.2
    ], axis=-1)
    return maps[None].astype(np.float32)


def test_selection_by_peak_or_mean_excludes_the_image_concepts():
    exclude = np.array([[0, -1]], np.int32)  # -1 is padding, excludes nothing
    ids, valid = select_matching_concepts(_original_maps(), exclude, top_n=2, score="max")
    np.testing.assert_array_equal(ids, [[3, 2]])  # peaks 0.7, 0.5 (0.9 is excluded)
    np.testing.assert_array_equal(valid, [[1, 1]])
    ids, _ = select_matching_concepts(_original_maps(), exclude, top_n=2, score="mean")
    np.testing.assert_array_equal(ids, [[1, 3]])  # means 0.4, 0.175


def test_selection_flags_slots_beyond_the_remaining_concepts():
    ids, valid = select_matching_concepts(_original_maps(), np.array([[0]]), top_n=9)
    assert ids.shape == (1, 5)  # N is cut to V
    np.testing.assert_array_equal(valid, [[1, 1, 1, 1, 0]])  # only 4 concepts left
    np.testing.assert_array_equal(np.sort(np.asarray(ids)[0, :4]), [1, 2, 3, 4])


def test_binarize_by_hand():
    maps = np.array([[[0.7, 0.0], [0.2, 0.4]], [[0.3, 0.3], [0.3, 0.3]]], np.float32)
    # min-max: map 0 -> [[1, 0], [0.286, 0.571]] -> >= 0.5: [[1, 0], [0, 1]];
    # the constant map 1 has no shape -> all 0.
    np.testing.assert_array_equal(binarize_attention(maps, 0.5),
                                  [[[1, 0], [0, 1]], [[0, 0], [0, 0]]])
    # Raw (cosine) threshold 0.3: [[1, 0], [0, 1]] and all 1.
    np.testing.assert_array_equal(binarize_attention(maps, 0.3, min_max=False),
                                  [[[1, 0], [0, 1]], [[1, 1], [1, 1]]])


def test_matching_targets_gather_the_selected_maps():
    targets = matching_targets(_original_maps(), np.array([[0]]), top_n=2)
    np.testing.assert_array_equal(targets["concept_ids"], [[3, 2]])
    # c3 [[0.7, 0], [0, 0]] and c2 [[0.5, -0.5], [-0.5, -0.5]] both binarise to the corner.
    np.testing.assert_array_equal(targets["matching_masks"], [[[[1, 0], [0, 0]]] * 2])
    np.testing.assert_array_equal(targets["matching_valid"], [[1, 1]])


def test_raw_binarisation_leaves_a_map_below_the_threshold_empty():
    # One concept (V = 1) whose cosine map [[0.3, 0.1], [0.0, -0.2]] never reaches 0.5.
    # min-max: (x + 0.2) / 0.5 -> [[1, 0.6], [0.4, 0]] -> >= 0.5: [[1, 1], [0, 0]];
    # raw: nothing >= 0.5 -> all 0 (the concept is taught as absent).
    maps = np.array([[0.3, 0.1], [0.0, -0.2]], np.float32)[None, :, :, None]
    exclude = np.array([[-1]], np.int32)
    min_max = matching_targets(maps, exclude, top_n=1, threshold=0.5)
    raw = matching_targets(maps, exclude, top_n=1, threshold=0.5, min_max=False)
    np.testing.assert_array_equal(min_max["matching_masks"], [[[[1, 1], [0, 0]]]])
    np.testing.assert_array_equal(raw["matching_masks"], np.zeros((1, 1, 2, 2)))
    np.testing.assert_array_equal(raw["matching_valid"], [[1]])  # still a matching concept


def test_matching_loss_by_hand():
    masks = np.zeros((2, 2, 2, 2), np.float32)
    logits = np.zeros((2, 2, 2, 2), np.float32)
    valid = np.array([[1, 1], [1, 0]], np.float32)
    # Sample 0: concept 0 at logit 0 -> ln 2; concept 1 target [[1, 0], [0, 0]], logits
    # [[ln3, -ln3], [-ln3, -ln3]] -> ln(4/3) at every pixel.
    # c = 0.5: 0.5 * (0.693147 + 0.287682) = 0.490415.
    masks[0, 0] = [[1, 1], [0, 0]]
    masks[0, 1] = [[1, 0], [0, 0]]
    logits[0, 1] = [[L3, -L3], [-L3, -L3]]
    # Sample 1: concept 0 target 0 at logit ln3 -> ln 4; concept 1 invalid.
    # 0.5 * 1.386294 = 0.693147.
    logits[1, 0] = L3
    logits[1, 1] = 30.0
    masks[1, 1] = 0.0
    y_true = {"matching_masks": masks, "matching_valid": valid}
    per_sample = MatchingLoss(weight=0.5, reduction=None)(y_true, logits)
    np.testing.assert_allclose(per_sample, [0.490415, 0.693147], atol=1e-6)
    assert float(MatchingLoss()(y_true, logits)) == pytest.approx(
        1e-6 * (0.980829 + 1.386294) / 2, rel=1e-5)  # the paper's c by default


def test_unknown_score_is_refused():
    with pytest.raises(ValueError, match="score"):
        select_matching_concepts(_original_maps(), np.array([[0]]), 2, score="median")
