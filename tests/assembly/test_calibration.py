"""Calibration of presence threshold/scale and weak-concept theta (paper §4.4)."""

import math
import os
import shutil

import numpy as np
import pytest

from conceptmask_tf.assembly.calibration import (
    best_theta,
    calibrate_model,
    calibrate_presence,
    choose_weak_theta,
    presence_metrics,
)
from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.splits import read_splits
from conceptmask_tf.evaluation.eval_set import load_eval_set
from conceptmask_tf.models import ConceptMask
from conceptmask_tf.models.stage_files import load_stage_model
from tests.evaluation import eval_fixtures as fx

LN9 = math.log(9.0)


def test_separable_scores_put_threshold_mid_gap_and_scale_from_medians():
    # Negatives <= 0.2 < 0.6 <= positives: only thresholds in (0.2, 0.6) are perfect; the
    # candidate there is the midpoint 0.4. Medians 0.7 and 0.1 -> d = 0.3, scale ln9/0.3.
    threshold, scale = calibrate_presence([0.6, 0.7, 0.9], [0.0, 0.1, 0.2])
    assert threshold == pytest.approx(0.4)
    assert scale == pytest.approx(LN9 / 0.3)
    # Presence at the median positive (0.7, d above the threshold) is sigmoid(ln 9) = 0.9.
    assert 1 / (1 + math.exp(-scale * (0.7 - threshold))) == pytest.approx(0.9)


def test_overlapping_scores_pick_best_balanced_accuracy():
    # pos 0.5, 0.8, 0.9; neg 0.1, 0.3, 0.6. Thresholds by hand (present iff s > t):
    #   t=0.4: TPR 3/3, TNR 2/3 -> 0.833;  t=0.7: TPR 2/3, TNR 3/3 -> 0.833;
    #   t=0.55: TPR 2/3, TNR 2/3 -> 0.667. Plateau {0.4, 0.7}: the lower middle, 0.4.
    pos, neg = [0.5, 0.8, 0.9], [0.1, 0.3, 0.6]
    threshold, _ = calibrate_presence(pos, neg)
    assert threshold == pytest.approx(0.4)
    assert presence_metrics(pos, neg, threshold)["balanced_accuracy"] == pytest.approx(5 / 6)


def test_mcc_accounts_for_class_ratio():
    # 1 positive at 0.5 among negatives 0.1, 0.2, 0.6, 0.7, 0.8 (present iff s > t).
    # Candidates by hand: t=0.15 -> TP1 FP4 TN1 FN0: MCC 1/sqrt(5*1*5*1) = 0.2;
    # t=0.35 -> TP1 FP3 TN2 FN0: MCC 2/sqrt(4*1*5*2) = 0.316 (best);
    # t=0.55 -> TP0 FP3 TN2 FN1: MCC -3/sqrt(3*1*5*3) < 0.
    pos, neg = [0.5], [0.1, 0.2, 0.6, 0.7, 0.8]
    threshold, _ = calibrate_presence(pos, neg, criterion="mcc")
    assert threshold == pytest.approx(0.35)
    assert float(presence_metrics(pos, neg, threshold)["mcc"]) == pytest.approx(
        2 / math.sqrt(40))


def test_tied_scores_cannot_be_split():
    # A positive and a negative at the same value: no threshold separates them. The best
    # balanced accuracy (0.75) is above 0.5 (everything kept) or below 0.5 (t < 0.5).
    pos, neg = [0.5, 0.9], [0.5, 0.1]
    threshold, _ = calibrate_presence(pos, neg)
    metrics = presence_metrics(pos, neg, threshold)
    assert metrics["balanced_accuracy"] == pytest.approx(0.75)
    assert threshold in (pytest.approx(0.3), pytest.approx(0.7))


def test_equal_medians_fall_back_to_std_for_scale():
    pos, neg = [0.2, 0.4, 0.6], [0.1, 0.4, 0.9]  # both medians 0.4
    _, scale = calibrate_presence(pos, neg)
    assert scale == pytest.approx(LN9 / np.std(pos + neg))


def test_constant_scores_give_finite_bounded_scale():
    threshold, scale = calibrate_presence([0.3, 0.3], [0.3])
    assert math.isfinite(threshold) and scale == pytest.approx(LN9 / 1e-3)


@pytest.mark.parametrize("pos,neg,match", [([0.1, 0.9], [], "negative"),
                                           ([], [0.2], "positive"),
                                           ([float("nan")], [0.2], "NaN")])
def test_bad_presence_input_raises(pos, neg, match):
    with pytest.raises(ValueError, match=match):
        calibrate_presence(pos, neg)


def test_unknown_criterion_raises():
    with pytest.raises(ValueError, match="criterion"):
        calibrate_presence([1.0], [0.0], criterion="f1")


def test_choose_weak_theta_takes_the_best_score():
    # A hand-made validation IoU peaking at theta = 0.25: 0.5 - (theta - 0.25)^2.
    seen = []

    def score(theta):
        seen.append(theta)
        return 0.5 - (theta - 0.25) ** 2

    theta, scores = choose_weak_theta((0.0, 0.25, 0.5, 0.75, 1.0), score)
    assert theta == 0.25
    assert seen == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert scores[1.0] == pytest.approx(0.5 - 0.5625)


def test_best_theta_breaks_ties_towards_larger_theta():
    assert best_theta({0.0: 0.3, 0.5: 0.4, 0.75: 0.4, 1.0: 0.1}) == 0.75


@pytest.mark.parametrize("scores", [{}, {0.5: float("nan")}, {1.5: 0.2}])
def test_best_theta_bad_input_raises(scores):
    with pytest.raises(ValueError):
        best_theta(scores)


def _concept_mask(world, stage2, stage3) -> ConceptMask:
    embeddings = ConceptEmbeddings.load(world.concepts_dir)
    splits = read_splits(DataRoot(world.root).splits)
    supervised = [c for c in (*splits["strong"], *splits["weak_box"]) if c in embeddings]
    return ConceptMask(load_stage_model(stage2.config.model_dir, "refinement"),
                       load_stage_model(stage3.config.model_dir, "segmentation"),
                       stage3.config.image_size, stage3.config.scales,
                       supervised_vectors=embeddings.vectors_for(supervised),
                       weak_theta=1.0, presence_threshold=-5.0, presence_scale=1.0)


@pytest.mark.slow
def test_calibrate_model_on_tiny_world_sets_values_within_observed_range(world, stage2,
                                                                          stage3):
    model = _concept_mask(world, stage2, stage3)
    thetas = (0.0, 0.5, 1.0)
    result = calibrate_model(model, world.root, world.concepts_dir, thetas=thetas,
                             max_images=3)
    presence = result["presence"]
    assert presence["positives"] > 0 and presence["negatives"] > 0
    # Midpoints of observed values, or just outside them (one margin) at the extremes.
    span = presence["max_similarity"] - presence["min_similarity"]
    margin = max(1e-6, 1e-3 * span) + 1e-9
    assert (presence["min_similarity"] - margin <= result["threshold"]
            <= presence["max_similarity"] + margin)
    assert result["scale"] > 0
    assert set(result["theta_iou"]) == set(thetas)
    assert result["theta"] == best_theta(result["theta_iou"])
    assert result["split_iou"]["weak_image"]["iou"] == pytest.approx(
        result["theta_iou"][result["theta"]])
    for split in ("strong", "weak_box", "weak_image"):
        figures = result["split_iou"][split]
        assert 0 < figures["images"] <= 3 and 0.0 <= figures["iou"] <= 1.0
    # Read back: set on the model, and what get_config saves.
    layer = model.presence_score
    assert float(layer.threshold.numpy()) == pytest.approx(result["threshold"], rel=1e-6)
    assert float(layer.scale.numpy()) == pytest.approx(result["scale"], rel=1e-6)
    assert model.get_layer("weak_blend").theta == result["theta"]
    config = model.get_config()
    assert config["weak_theta"] == result["theta"]
    assert config["presence_threshold"] == pytest.approx(result["threshold"], rel=1e-6)


@pytest.mark.slow
def test_set_weak_theta_changes_weak_masks_only(world, stage2, stage3):
    # A weak_image concept's attention moves with theta; a supervised concept's does not.
    model = _concept_mask(world, stage2, stage3)
    embeddings = ConceptEmbeddings.load(world.concepts_dir)
    splits = read_splits(DataRoot(world.root).splits)
    weak = next(c for c in splits["weak_image"] if c in embeddings)
    strong = next(c for c in splits["strong"] if c in embeddings)
    inputs = {"image": np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype(
        np.float32), "word_vectors": embeddings.vectors_for([weak, strong])[None]}
    model.set_weak_theta(1.0)
    own = np.asarray(model(inputs, training=False)["attention"])
    model.set_weak_theta(0.0)
    neighbour = np.asarray(model(inputs, training=False)["attention"])
    np.testing.assert_allclose(own[:, 1], neighbour[:, 1], atol=1e-6)
    assert np.abs(own[:, 0] - neighbour[:, 0]).max() > 1e-4
    with pytest.raises(ValueError, match="theta"):
        model.set_weak_theta(1.5)


class _PresenceLayer:
    def set_calibration(self, threshold, scale):
        self.calibration = (threshold, scale)


class KnownBestModel:
    """A ConceptMask stand-in on the evaluation fixture whose best values are known.

    similarity: 0.8 for a concept annotated in the image (crowd-only "car" too), 0.2 for
    any other, so the best threshold is the midpoint 0.5. mask_probs: the ground truth for supervised concepts;
    for weak_image concepts ("red car") the ground truth only at theta = 0.25 (empty
    otherwise), so the weak_image validation IoU peaks there and nowhere else.
    """

    num_supervised = 4

    def __init__(self, eval_set):
        self.truth = fx.FakeModel(eval_set, fx.oracle_rule)
        self.weak_theta = 1.0
        self.presence_score = _PresenceLayer()
        self.thetas_seen = []

    def set_weak_theta(self, theta):
        self.weak_theta = theta

    def __call__(self, inputs, training=False):
        probs = self.truth(inputs)["mask_probs"]  # [1, K, H, W]
        image = self.truth.images[np.asarray(inputs["image"], np.float32)[0].tobytes()]
        concepts = [self.truth.concepts[v.tobytes()] for v in
                    np.asarray(inputs["word_vectors"], np.float32)[0]]
        self.thetas_seen.append(self.weak_theta)
        for k, concept in enumerate(concepts):
            if concept == "red car" and self.weak_theta != 0.25:
                probs[0, k] = 0.0
        annotated = {c for present, _ in (f.get(image, ([], [])) for f in
                                          fx.SPLIT_FILES.values()) for c in present}
        return {"mask_probs": probs,
                "similarity": np.array([[0.8 if c in annotated else 0.2 for c in concepts]])}


def test_calibration_on_validation_files_finds_the_known_best_theta_and_threshold(tmp_path):
    root = fx.write_data_root(str(tmp_path / "root"), splits=("strong", "weak_box", "weak_image"),
                              val=True)
    shutil.rmtree(os.path.join(root, "eval"))  # calibration reads val/ and nothing else
    concepts = fx.write_concepts(str(tmp_path / "concepts"))
    eval_set = load_eval_set(root, fx.embeddings(), which="val")
    model = KnownBestModel(eval_set)
    result = calibrate_model(model, root, concepts, predict=model)
    assert result["theta"] == 0.25 and model.weak_theta == 0.25
    assert result["theta_iou"][0.25] == 1.0
    assert all(iou == 0.0 for theta, iou in result["theta_iou"].items() if theta != 0.25)
    assert set(model.thetas_seen) == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert result["threshold"] == pytest.approx(0.5)
    assert result["scale"] == pytest.approx(LN9 / 0.3)  # half the 0.8 - 0.2 gap
    assert model.presence_score.calibration == (result["threshold"], result["scale"])
    # Present: dog x2, car (crowd only), sky x2, cat, red car; verified absent: car, sky,
    # cat, red car.
    assert (result["presence"]["positives"], result["presence"]["negatives"]) == (7, 4)
    assert result["presence"]["balanced_accuracy"] == 1.0


def test_calibration_without_validation_files_reads_no_test_file(tmp_path):
    root = fx.write_data_root(str(tmp_path / "root"))  # eval/ only
    concepts = fx.write_concepts(str(tmp_path / "concepts"))
    with pytest.raises(FileNotFoundError, match="val/strong.json"):
        model = KnownBestModel(load_eval_set(root, fx.embeddings()))
        calibrate_model(model, root, concepts, predict=model)
