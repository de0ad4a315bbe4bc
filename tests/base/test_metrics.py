"""Metrics against hand-worked values, pycocotools and brute-force references."""

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from conceptmask_tf.base.metrics import (
    ConceptAverager,
    PixelAveragePrecision,
    PresenceF1,
    binary_scores,
    pointing_game_hit,
    soft_iou,
)


def _coco_rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _exact_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Sort-based AP = sum (R_n - R_{n-1}) P_n, one threshold per distinct score."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order].astype(bool)
    tp = np.cumsum(labels)
    fp = np.cumsum(~labels)
    # The last index of each group of equal scores is where that threshold is evaluated.
    group_ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    recall = tp[group_ends] / labels.sum()
    precision = tp[group_ends] / (tp[group_ends] + fp[group_ends])
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# --- pointing game ---------------------------------------------------------------------------

def test_pointing_game_hit_and_miss_by_hand():
    attention = np.array([[0.1, 0.9], [0.3, 0.2]])
    # The maximum 0.9 is at (0, 1).
    assert pointing_game_hit(attention, np.array([[0, 1], [0, 0]])) is True
    assert pointing_game_hit(attention, np.array([[1, 0], [1, 1]])) is False


def test_pointing_game_ties_take_the_first_maximum():
    attention = np.array([[0.5, 0.5], [0.0, 0.0]])
    # Maxima at (0, 0) and (0, 1); the first in row-major order, (0, 0), decides.
    assert pointing_game_hit(attention, np.array([[1, 0], [0, 0]])) is True
    assert pointing_game_hit(attention, np.array([[0, 1], [0, 0]])) is False


def test_pointing_game_ignored_pixels_cannot_be_the_maximum():
    attention = np.array([[0.9, 0.2], [0.1, 0.0]])
    mask = np.array([[0, 1], [0, 0]], bool)
    # Without ignore the maximum (0, 0) misses; ignoring it leaves 0.2 at (0, 1): a hit.
    assert pointing_game_hit(attention, mask) is False
    assert pointing_game_hit(attention, mask, ignore=np.array([[1, 0], [0, 0]], bool)) is True


def test_pointing_game_rejects_bad_input():
    attention = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"attention shape \(2, 3\).*mask shape \(2, 2\)"):
        pointing_game_hit(attention, np.ones((2, 2)))
    with pytest.raises(ValueError, match="no positive pixel"):
        pointing_game_hit(attention, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no positive pixel"):
        # The only mask pixel is ignored (a crowd region).
        pointing_game_hit(attention, np.eye(2, 3), ignore=np.eye(2, 3, dtype=bool))
    with pytest.raises(ValueError, match="non-finite"):
        pointing_game_hit(np.array([[np.nan, 0.0]]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match=r"ignore shape \(1, 3\).*mask shape \(1, 2\)"):
        pointing_game_hit(np.zeros((1, 2)), np.ones((1, 2)), ignore=np.zeros((1, 3), bool))


# --- soft IoU --------------------------------------------------------------------------------

def test_soft_iou_by_hand():
    attention = np.array([[1.0, 0.5], [0.25, 0.0]])
    mask = np.array([[1, 1], [0, 0]])
    # sum(a * G) = 1 + 0.5 = 1.5; sum(max(a, G)) = 1 + 1 + 0.25 + 0 = 2.25 -> 2/3.
    assert soft_iou(attention, mask) == pytest.approx(1.5 / 2.25)
    # Ignoring (1, 0) drops 0.25 from the union: 1.5 / 2.0 = 0.75.
    ignore = np.array([[0, 0], [1, 0]], bool)
    assert soft_iou(attention, mask, ignore=ignore) == pytest.approx(0.75)


def test_soft_iou_of_a_binary_map_is_the_coco_iou():
    rng = np.random.default_rng(0)
    for _ in range(5):
        attention = rng.random((17, 23)) < 0.4
        mask = rng.random((17, 23)) < 0.3
        expected = mask_utils.iou([_coco_rle(attention)], [_coco_rle(mask)], [0])[0, 0]
        assert soft_iou(attention.astype(np.float32), mask) == pytest.approx(expected)


def test_soft_iou_range_checks():
    mask = np.array([[1, 0]])
    with pytest.raises(ValueError, match=r"attention must lie in \[0, 1\]"):
        soft_iou(np.array([[1.01, 0.0]]), mask)
    with pytest.raises(ValueError, match=r"attention must lie in \[0, 1\]"):
        soft_iou(np.array([[1.0, -0.1]]), mask)
    # Float noise within 1e-6 is clipped: a = [1, 0] exactly -> IoU 1.
    assert soft_iou(np.array([[1.0 + 5e-7, -5e-7]]), mask) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no positive pixel"):
        soft_iou(np.array([[0.5, 0.5]]), np.array([[0, 0]]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        soft_iou(np.array([[0.5, 0.5]]), np.array([[255, 0]]))


# --- binary scores ---------------------------------------------------------------------------

PROBS = np.array([[0.9, 0.6, 0.4], [0.5, 0.1, 0.7]])
MASK = np.array([[1, 1, 1], [0, 0, 0]])


def test_binary_scores_by_hand():
    # Predicted (>= 0.5, inclusive): [[1, 1, 0], [1, 0, 1]] vs mask [[1, 1, 1], [0, 0, 0]]
    # -> TP 2, FP 2 ((1, 0) at exactly 0.5 and (1, 2)), FN 1 ((0, 2)).
    # precision 2/4, recall 2/3, IoU 2/5.
    assert binary_scores(PROBS, MASK) == pytest.approx((0.5, 2 / 3, 0.4))
    # Threshold 0.65: predicted [[1, 0, 0], [0, 0, 1]] -> TP 1, FP 1, FN 2: (1/2, 1/3, 1/4).
    assert binary_scores(PROBS, MASK, threshold=0.65) == pytest.approx((0.5, 1 / 3, 0.25))


def test_binary_scores_ignore_removes_pixels_from_every_count():
    # Ignoring both false positives: TP 2, FP 0, FN 1 -> (1, 2/3, 2/3).
    ignore = np.array([[0, 0, 0], [1, 0, 1]], bool)
    assert binary_scores(PROBS, MASK, ignore=ignore) == pytest.approx((1.0, 2 / 3, 2 / 3))


def test_binary_scores_ignored_pixels_have_no_influence():
    rng = np.random.default_rng(1)
    probs = rng.random((12, 9))
    mask = rng.random((12, 9)) < 0.5
    ignore = rng.random((12, 9)) < 0.3
    expected = binary_scores(probs[~ignore][None], mask[~ignore][None])
    # Arbitrary values under the ignored region must not change the scores.
    probs2 = np.where(ignore, rng.random((12, 9)), probs)
    mask2 = np.where(ignore, rng.random((12, 9)) < 0.5, mask)
    assert binary_scores(probs2, mask2, ignore=ignore) == pytest.approx(expected)


def test_binary_scores_with_no_predicted_pixel_is_all_zero():
    # TP 0, FP 0 -> precision 0 by convention; recall 0/3, IoU 0/3.
    assert binary_scores(np.full((2, 3), 0.1), MASK) == (0.0, 0.0, 0.0)


def test_binary_scores_match_pycocotools():
    rng = np.random.default_rng(2)
    for _ in range(5):
        probs = rng.random((31, 19))
        mask = rng.random((31, 19)) < 0.35
        predicted = probs >= 0.5
        dt, gt = _coco_rle(predicted), _coco_rle(mask)
        inter = mask_utils.area(mask_utils.merge([dt, gt], intersect=True))
        precision, recall, iou = binary_scores(probs, mask)
        assert iou == pytest.approx(mask_utils.iou([dt], [gt], [0])[0, 0])
        assert precision == pytest.approx(inter / mask_utils.area(dt))
        assert recall == pytest.approx(inter / mask_utils.area(gt))


def test_binary_scores_rejects_bad_input():
    with pytest.raises(ValueError, match=r"probs shape \(3, 2\).*mask shape \(2, 3\)"):
        binary_scores(PROBS.T, MASK)
    with pytest.raises(ValueError, match="no positive pixel"):
        binary_scores(PROBS, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        binary_scores(PROBS * 255, MASK)
    with pytest.raises(ValueError, match="non-finite"):
        binary_scores(np.where(MASK == 1, np.nan, 0.0), MASK)


# --- ConceptAverager -------------------------------------------------------------------------

def test_concept_averager_weighs_concepts_equally():
    averager = ConceptAverager()
    # dog: 3 images, IoU (0.2 + 0.4 + 0.6) / 3 = 0.4; cat: 1 image, IoU 1.0.
    # Per concept then over concepts: (0.4 + 1.0) / 2 = 0.7 (pooled over pairs it would be
    # 2.2 / 4 = 0.55).
    for image_id, iou in ((1, 0.2), (2, 0.4), (3, 0.6)):
        averager.add("dog", image_id, iou=iou, recall=1.0)
    averager.add("cat", 3, iou=1.0, recall=0.0)
    result = averager.result()
    assert result["iou"] == pytest.approx(0.7)
    assert result["recall"] == pytest.approx(0.5)
    # Image 3 holds both concepts: 3 distinct images.
    assert (result["concepts"], result["images"]) == (2, 3)
    per_concept = averager.per_concept()
    assert per_concept["dog"] == pytest.approx({"iou": 0.4, "recall": 1.0})
    assert per_concept["cat"] == pytest.approx({"iou": 1.0, "recall": 0.0})


def test_concept_averager_metric_missing_for_some_concepts():
    averager = ConceptAverager()
    # pointing_game only for "sky": its mean is over that one concept, True counts as 1.
    averager.add("sky", "a", pointing_game=True, soft_iou=0.5)
    averager.add("sky", "b", pointing_game=False, soft_iou=0.3)
    averager.add("sea", "a", soft_iou=0.1)
    result = averager.result()
    assert result["pointing_game"] == pytest.approx(0.5)
    # (0.4 + 0.1) / 2 = 0.25.
    assert result["soft_iou"] == pytest.approx(0.25)


def test_concept_averager_empty_gives_none_not_nan():
    assert ConceptAverager(["iou", "precision"]).result() == {
        "iou": None, "precision": None, "concepts": 0, "images": 0}
    assert ConceptAverager().result() == {"concepts": 0, "images": 0}
    assert ConceptAverager().per_concept() == {}


def test_concept_averager_rejects_bad_input():
    averager = ConceptAverager()
    averager.add("dog", 1, iou=0.5)
    with pytest.raises(ValueError, match="already added"):
        averager.add("dog", 1, iou=0.5)
    with pytest.raises(ValueError, match="not finite"):
        averager.add("dog", 2, iou=float("nan"))
    with pytest.raises(ValueError, match="reserved"):
        averager.add("dog", 3, images=1.0)
    with pytest.raises(ValueError, match="no metric value"):
        averager.add("dog", 4)
    # A rejected call changes nothing.
    assert averager.result() == {"iou": 0.5, "concepts": 1, "images": 1}


# --- PixelAveragePrecision -------------------------------------------------------------------

def test_pixel_ap_by_hand():
    ap = PixelAveragePrecision()
    # Ranked 0.9+, 0.8-, 0.7+, 0.6-: recall 0.5 at precision 1, recall 1 at precision 2/3
    # -> AP = 0.5 * 1 + 0.5 * 2/3 = 0.8333.
    ap.add(np.array([[0.9, 0.8, 0.7, 0.6]]), np.array([[1, 0, 1, 0]]))
    assert ap.result() == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_pixel_ap_tied_scores_are_one_threshold():
    ap = PixelAveragePrecision()
    # Threshold 0.5 takes all three tied pixels: TP 1, FP 2 -> P 1/3 at R 0.5; threshold 0.2:
    # TP 2, FP 2 -> P 1/2 at R 1. AP = 0.5/3 + 0.5/2 = 0.41667 (breaking the tie in the
    # positive's favour would give 0.75).
    ap.add(np.array([[0.5, 0.5, 0.5, 0.2]]), np.array([[1, 0, 0, 1]]))
    assert ap.result() == pytest.approx(0.5 / 3 + 0.25)


def test_pixel_ap_matches_exact_computation_on_grid_scores():
    rng = np.random.default_rng(3)
    for levels in (10001, 11):  # Fine grid with a few ties, coarse grid with many.
        ap = PixelAveragePrecision()
        all_scores, all_labels = [], []
        for _ in range(4):  # Several images, accumulated.
            labels = rng.random((20, 25)) < 0.3
            # Scores on the 1e-4 grid, positives drawn a little higher.
            steps = rng.integers(0, levels, size=(20, 25)) + labels * (levels // 5)
            scores = np.minimum(steps, levels - 1) / (levels - 1)
            ap.add(scores.astype(np.float32), labels)
            all_scores.append(scores.ravel())
            all_labels.append(labels.ravel())
        expected = _exact_ap(np.concatenate(all_scores), np.concatenate(all_labels))
        assert ap.result() == pytest.approx(expected, abs=1e-12)


def test_pixel_ap_quantises_scores_to_1e4():
    ap = PixelAveragePrecision()
    # 0.50004 and 0.49996 both round to level 5000: one tie, so the positive's precision is
    # 1/2 -> AP 0.5 (unquantised, the positive ranks first and AP would be 1).
    ap.add(np.array([[0.50004, 0.49996]]), np.array([[1, 0]]))
    assert ap.result() == pytest.approx(0.5)


def test_pixel_ap_ignore_and_empty_cases():
    ap = PixelAveragePrecision()
    assert ap.result() is None
    # An image with no positive adds negatives only: still no AP.
    ap.add(np.array([[0.9, 0.1]]), np.array([[0, 0]]))
    assert ap.result() is None
    # Positive at 0.5; the negative at 0.9 above ranks first -> P 1/2 at R 1 -> 0.5. The ignored
    # negative at 0.95 in this image does not count.
    ap.add(np.array([[0.5, 0.95]]), np.array([[1, 0]]), ignore=np.array([[0, 1]], bool))
    assert ap.result() == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        ap.add(np.array([[1.5]]), np.array([[1]]))
    with pytest.raises(ValueError, match=r"probs shape \(1, 2\).*mask shape \(1, 1\)"):
        ap.add(np.array([[0.5, 0.5]]), np.array([[1]]))
    with pytest.raises(ValueError, match="bins"):
        PixelAveragePrecision(bins=1)


# --- PresenceF1 ------------------------------------------------------------------------------

def _mcc(present: list[bool], predicted: list[bool]) -> float:
    """MCC as the Pearson correlation of the two 0/1 vectors (the phi coefficient)."""
    return float(np.corrcoef(np.array(present, float), np.array(predicted, float))[0, 1])


def test_presence_f1_by_hand():
    metric = PresenceF1()
    # Positive, predicted present: predicted pixels [[1, 0], [1, 0]] vs mask [[1, 1], [0, 0]]
    # -> TP 1, FP 1, FN 1.
    metric.add(True, True, probs=np.array([[0.9, 0.2], [0.7, 0.1]]),
               mask=np.array([[1, 1], [0, 0]]))
    # Positive, predicted absent: its (perfect) probs are suppressed -> FN 3.
    metric.add(True, False, probs=np.array([[0.9, 0.9], [0.9, 0.0]]),
               mask=np.array([[1, 1], [1, 0]]))
    # Two verified-absent pairs predicted absent (TN); their probs do not count.
    metric.add(False, False, probs=np.ones((2, 2)))
    metric.add(np.bool_(False), np.bool_(False), mask=np.zeros((2, 2)))
    # Presence: TP 1, FN 1, FP 0, TN 2 -> MCC = (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3) = 0.57735.
    # Pixels: TP 1, FP 1, FN 1 + 3 = 4 -> pmF1 = 2 / (2 + 1 + 4) = 2/7 = 0.285714.
    result = metric.result()
    assert result["il_mcc"] == pytest.approx(2 / math.sqrt(12))
    assert result["il_mcc"] == pytest.approx(_mcc([1, 1, 0, 0], [1, 0, 0, 0]))
    assert result["pm_f1"] == pytest.approx(2 / 7)
    assert result["cgf1"] == pytest.approx(2 / 7 * 2 / math.sqrt(12))  # 0.164957
    assert (result["positives"], result["negatives"]) == (2, 2)


def test_presence_f1_mcc_matches_direct_formula():
    rng = np.random.default_rng(4)
    present = list(rng.random(40) < 0.5)
    predicted = list(rng.random(40) < 0.5)
    metric = PresenceF1()
    for is_present, is_predicted in zip(present, predicted):
        mask = np.array([[1, 0]]) if is_present else None
        metric.add(is_present, is_predicted, probs=np.array([[0.8, 0.3]]), mask=mask)
    result = metric.result()
    assert result["il_mcc"] == pytest.approx(_mcc(present, predicted))
    # Every pair predicted present is a perfect 1-pixel hit; predicted absent is 1 FN.
    hits = sum(p and q for p, q in zip(present, predicted))
    misses = sum(p and not q for p, q in zip(present, predicted))
    assert result["pm_f1"] == pytest.approx(2 * hits / (2 * hits + misses))


def test_presence_f1_undefined_mcc_is_zero():
    metric = PresenceF1()
    assert metric.result() == {"cgf1": 0.0, "il_mcc": 0.0, "pm_f1": 0.0,
                               "positives": 0, "negatives": 0}
    # Only positives, all predicted present and perfect: pmF1 = 1, but the MCC denominator
    # (TN + FP) = 0 -> il_mcc 0 and cgF1 0.
    metric.add(True, True, probs=np.array([[1.0, 0.0]]), mask=np.array([[1, 0]]))
    assert metric.result() == {"cgf1": 0.0, "il_mcc": 0.0, "pm_f1": 1.0,
                               "positives": 1, "negatives": 0}


def test_presence_f1_ignore_applies_to_pixel_counts():
    metric = PresenceF1()
    ignore = np.array([[0, 0, 1]], bool)
    # Predicted present: [1, 0, 1] vs mask [1, 1, 0], the FP at (0, 2) is ignored
    # -> TP 1, FN 1. Predicted absent: mask [1, 1, 1] with one pixel ignored -> FN 2.
    metric.add(True, True, probs=np.array([[0.9, 0.1, 0.9]]), mask=np.array([[1, 1, 0]]),
               ignore=ignore)
    metric.add(True, False, mask=np.array([[1, 1, 1]]), ignore=ignore)
    # pmF1 = 2 / (2 + 0 + 3) = 0.4.
    assert metric.result()["pm_f1"] == pytest.approx(0.4)


def test_presence_f1_rejects_bad_input():
    metric = PresenceF1()
    with pytest.raises(TypeError, match="predicted_present must be a bool"):
        metric.add(True, 0.7, probs=np.ones((1, 1)), mask=np.ones((1, 1)))
    with pytest.raises(ValueError, match="needs its ground-truth mask"):
        metric.add(True, True, probs=np.ones((1, 1)))
    with pytest.raises(ValueError, match="needs its probs"):
        metric.add(True, True, mask=np.ones((1, 1)))
    with pytest.raises(ValueError, match="verified-absent pair must have no mask pixel"):
        metric.add(False, False, mask=np.ones((1, 1)))
    with pytest.raises(ValueError, match="no positive pixel"):
        metric.add(True, False, mask=np.zeros((1, 1)))
    # Rejected calls count nothing.
    assert metric.result()["positives"] + metric.result()["negatives"] == 0
