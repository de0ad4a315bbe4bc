"""Segmentation and presence scores of fake and tiny models on the tiny data root."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conceptmask_tf.evaluation.eval_set import load_eval_set
from conceptmask_tf.evaluation.predictors import compiled, predict_pairs, presence_model
from conceptmask_tf.evaluation.segmentation_evaluation import (
    evaluate_segmentation,
    null_segmentation,
)
from conceptmask_tf.models import ConceptMask
from tests.evaluation import eval_fixtures as fx
from tests.models import tiny


@pytest.fixture
def eval_set(tmp_path):
    return load_eval_set(fx.write_data_root(str(tmp_path)), fx.embeddings())


def test_ground_truth_masks_score_one_everywhere(eval_set):
    model = fx.FakeModel(eval_set, fx.oracle_rule)
    result = evaluate_segmentation(model, eval_set, presence=True, progress=False)
    # Present pairs: strong dog x2 (1 concept), weak_box sky x2 + cat (2), weak_image
    # red car (1; zebra has no vector), zero_shot cloud (1).
    expected_counts = {"strong": (1, 2), "weak_box": (2, 3), "weak_image": (1, 1),
                       "zero_shot": (1, 1)}
    for split, (concepts, images) in expected_counts.items():
        assert result.by_split[split] == {"precision": 1.0, "recall": 1.0, "iou": 1.0,
                                          "ap": 1.0, "concepts": concepts, "images": images}
    # 7 present pairs all found present, 5 verified-absent pairs all found absent.
    assert result.presence == {"cgf1": 1.0, "il_mcc": 1.0, "pm_f1": 1.0, "positives": 7,
                               "negatives": 5}


def test_a_predictor_given_the_truth_gets_each_concepts_own_mask(eval_set):
    # Echoing "truth_masks" scores 1 only if every concept of every image (padded batches
    # included) receives its own ground truth.
    calls = []

    def echo(inputs):
        calls.append(np.asarray(inputs["truth_masks"]).shape)
        return {"mask_probs": np.asarray(inputs["truth_masks"])}

    result = evaluate_segmentation(echo, eval_set, progress=False, with_truth=True,
                                   batch_size=2)
    assert all(result.by_split[s]["iou"] == 1.0 for s in result.by_split)
    assert any(shape[0] == 2 for shape in calls)  # images of different K in one batch


def test_all_zero_masks_score_zero(eval_set):
    model = fx.FakeModel(eval_set, lambda image, concept: None)
    result = evaluate_segmentation(model, eval_set, presence=True, progress=False)
    for split in ("strong", "weak_box", "weak_image", "zero_shot"):
        figures = result.by_split[split]
        assert (figures["precision"], figures["recall"], figures["iou"]) == (0.0, 0.0, 0.0)
    # Nothing predicted present: every positive pair's mask is a miss, MCC undefined -> 0.
    assert result.presence["pm_f1"] == 0.0 and result.presence["il_mcc"] == 0.0


def test_metrics_are_averaged_per_concept_then_over_concepts(eval_set):
    # weak_box: sky right in img0 (IoU 1), empty in img2 (IoU 0); cat right in img1 (1).
    # Per concept: sky 0.5, cat 1 -> 0.75 (a mean over the 3 pairs would be 2/3).
    # Precision: sky img2 predicts nothing -> 0; same averages as IoU.
    def rule(image, concept):
        return None if (image, concept) == ("img2.png", "sky") else fx.oracle_rule(image,
                                                                                   concept)

    result = evaluate_segmentation(fx.FakeModel(eval_set, rule), eval_set, progress=False)
    weak_box = result.by_split["weak_box"]
    assert weak_box["iou"] == pytest.approx(0.75)
    assert result.per_concept["weak_box"] == {
        "sky": {"precision": 0.5, "recall": 0.5, "iou": 0.5, "images": 2},
        "cat": {"precision": 1.0, "recall": 1.0, "iou": 1.0, "images": 1}}
    assert weak_box["recall"] == pytest.approx(0.75)
    assert weak_box["precision"] == pytest.approx(0.75)
    assert (weak_box["concepts"], weak_box["images"]) == (2, 3)
    assert result.presence is None


def test_half_mask_gives_hand_worked_precision_recall_iou(eval_set):
    # strong dog: img0 predicted rows 20-27 x cols 4-8 = 40 of 80 px (precision 1, recall
    # 0.5, IoU 0.5); img1 predicted the whole image (1024 px, 196 true): precision and IoU
    # 196/1024, recall 1. Dog means: precision (1 + 0.19140625) / 2, recall 0.75,
    # IoU (0.5 + 0.19140625) / 2.
    def rule(image, concept):
        if concept != "dog":
            return None
        if image == "img0.png":
            return fx.block(32, 32, (20, 27), (4, 8)).astype(np.float32)
        return np.ones((32, 32), np.float32)

    strong = evaluate_segmentation(fx.FakeModel(eval_set, rule), eval_set,
                                   progress=False).by_split["strong"]
    assert strong["precision"] == pytest.approx((1 + 196 / 1024) / 2)
    assert strong["recall"] == pytest.approx(0.75)
    assert strong["iou"] == pytest.approx((0.5 + 196 / 1024) / 2)


def test_batches_hold_one_image_size_and_pad_concepts(eval_set):
    model = fx.FakeModel(eval_set, fx.oracle_rule)
    evaluate_segmentation(model, eval_set, batch_size=4, progress=False)
    # Present concepts: img0 dog, sky (K 2); img1 dog, cat, red car (K 3); img2 (24x32)
    # sky, cloud (K 2). The two 32x32 images share a batch padded to K 3.
    assert sorted(model.calls) == [(1, 2), (2, 3)]


def test_missing_split_gets_null_metrics(tmp_path):
    root = fx.write_data_root(str(tmp_path), splits=("strong",))
    eval_set = load_eval_set(root, fx.embeddings())
    result = evaluate_segmentation(fx.FakeModel(eval_set, fx.oracle_rule), eval_set,
                                   progress=False)
    assert result.by_split["strong"]["iou"] == 1.0
    for split in ("weak_box", "weak_image", "zero_shot"):
        assert result.by_split[split] == null_segmentation()


def _tiny_concept_mask() -> ConceptMask:
    # The same weights whatever ran before in this process (training tests reseed the
    # global RNG), so the test does not depend on the order tests run in.
    keras.utils.set_random_seed(0)
    supervised = fx.embeddings().vectors_for(["dog", "sky"])
    model = ConceptMask(tiny.refinement_model(), tiny.segmentation_model(2), 32, (1.0, 2.0),
                        supervised_vectors=supervised, weak_theta=0.5)
    model.presence_score.set_calibration(0.0, 10.0)
    return model


@pytest.mark.slow
def test_padding_to_the_batch_changes_no_result(eval_set):
    # The same tiny model, one image per call vs three per call (concept lists padded by
    # repeating the first concept): identical per-pair outputs and metrics.
    model = _tiny_concept_mask()
    predict = compiled(model, tiny.DIM)
    presence = compiled(presence_model(model), tiny.DIM)

    def outputs(batch_size):
        return {(image.image, pair.split, pair.concept): out
                for image, pair, out in predict_pairs(
                    predict, eval_set, eval_set.splits, ("mask_probs", "presence"),
                    present=True, absent=True, batch_size=batch_size, progress=False)}

    one, three = outputs(1), outputs(3)
    assert one.keys() == three.keys() and len(one) == 12
    for key in one:
        for name in ("mask_probs", "presence"):
            np.testing.assert_allclose(one[key][name], three[key][name], atol=1e-5,
                                       err_msg=f"{key} {name}")
    single = evaluate_segmentation(predict, eval_set, presence=True,
                                   presence_predict=presence, batch_size=1, progress=False)
    batched = evaluate_segmentation(predict, eval_set, presence=True,
                                    presence_predict=presence, batch_size=3, progress=False)
    for split, figures in single.by_split.items():
        for name, value in figures.items():
            # Pixel AP bins scores at 1e-4 steps; the float rounding allowed above (batched
            # convolutions are not bit-identical) can move a pixel across a bin edge, which
            # moved AP by 2.7e-6 with these weights. The thresholded metrics stay at 1e-6.
            tolerance = 1e-5 if name == "ap" else 1e-6
            assert batched.by_split[split][name] == pytest.approx(value, abs=tolerance), (
                split, name)
    assert batched.presence == pytest.approx(single.presence, abs=1e-9)
    # The presence-only model gives the full model's presence.
    inputs = {"image": eval_set.pixels(eval_set.images[0])[None].astype(np.float32),
              "word_vectors": fx.embeddings().vectors_for(["dog", "red car", "cloud"])[None]}
    np.testing.assert_allclose(np.asarray(presence(inputs)["presence"]),
                               np.asarray(model(inputs)["presence"]), atol=1e-6)
