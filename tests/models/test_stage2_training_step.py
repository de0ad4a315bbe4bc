"""The stage-2 pieces compose on a pipeline-shaped batch (what a compute_loss will do).

Batch as `refinement_dataset` yields it; original maps from a frozen copy of the
stage-1 network; matching and spatial-discrimination concepts scored by the same
refinement network in one call. A few SGD steps on one batch must lower the total.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.losses import BoxLoss, MatchingLoss, SpatialDiscriminationLoss, matching_targets
from conceptmask_tf.models import RefinementModel, VocabularyAttention, to_fully_convolutional
from tests.models.tiny import VOCAB, embedding_model, images, word_vectors


def test_losses_compose_and_training_lowers_them():
    keras.utils.set_random_seed(0)
    stage1 = embedding_model()
    frozen = to_fully_convolutional(stage1, name="original")
    frozen.trainable = False
    model = RefinementModel(to_fully_convolutional(stage1), VOCAB, word_vectors(),
                            hidden_dim=16)
    original_vocabulary = VocabularyAttention(VOCAB, frozen.embedding_dim,
                                              word_vectors=word_vectors())
    # Tensors, as tf.data yields them (Keras refuses a dict mixing numpy and tensors).
    features = {"image": tf.constant(images(2)),
                "concept_ids": tf.constant([[1, 4, -1], [2, -1, -1]], tf.int32)}
    box_masks = np.zeros((2, 3, 4, 4), np.float32)
    box_masks[0, 0, :2, :2] = box_masks[0, 1, 2:, 2:] = box_masks[1, 0, 1:3, :] = 1.0
    targets = {"box_masks": box_masks, "concept_valid": np.array([[1, 1, 0], [1, 0, 0]],
                                                                 np.float32)}
    gamma = np.zeros((VOCAB, VOCAB), np.float32)
    gamma[1, 4] = gamma[4, 1] = 0.9  # concepts 1 and 4 never overlap
    gamma[2, 6] = 0.7
    box_loss, matching_loss = BoxLoss(), MatchingLoss(weight=0.1)
    spatial_loss = SpatialDiscriminationLoss(gamma)
    candidates = np.broadcast_to(spatial_loss.candidate_ids, (2, 3))  # rows 1, 4, 6
    optimizer = keras.optimizers.SGD(0.05)

    def step() -> float:
        original = original_vocabulary(frozen(features["image"])["embedding_map"])
        matching = matching_targets(original, features["concept_ids"], top_n=4)
        ids = tf.concat([features["concept_ids"], matching["concept_ids"], candidates], 1)
        with tf.GradientTape() as tape:
            logits = model({"image": features["image"], "concept_ids": ids},
                           training=True)["logits"]  # [2, 3 + 4 + 3, 4, 4]
            total = (box_loss(targets, logits[:, :3])
                     + matching_loss(matching, logits[:, 3:7])
                     + spatial_loss({**targets, "concept_ids": features["concept_ids"]},
                                    logits[:, 7:]))
        gradients = tape.gradient(total, model.trainable_weights)
        optimizer.apply_gradients(zip(gradients, model.trainable_weights))
        return float(total)

    frozen_before = [np.asarray(w) for w in frozen.weights]
    losses = [step() for _ in range(6)]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    for before, weight in zip(frozen_before, frozen.weights):  # the LwF source is untouched
        np.testing.assert_array_equal(weight, before)


def test_trainer_scores_the_image_labels_with_the_refinement_network():
    from conceptmask_tf.losses import ImageLabelLoss
    from conceptmask_tf.training.refinement import RefinementTrainer

    keras.utils.set_random_seed(0)
    stage1 = embedding_model()
    model = RefinementModel(to_fully_convolutional(stage1), VOCAB, word_vectors(),
                            hidden_dim=16)
    gamma = np.zeros((VOCAB, VOCAB), np.float32)
    gamma[1, 4] = gamma[4, 1] = 0.9
    label_loss = ImageLabelLoss(weight=0.5)
    trainer = RefinementTrainer(
        model, to_fully_convolutional(stage1, name="original"), word_vectors(),
        matching_top_n=3, matching_weight=0.1, matching_threshold=0.5,
        spatial_loss=SpatialDiscriminationLoss(gamma), label_loss=label_loss)
    features = {"image": tf.constant(images(2)),
                "concept_ids": tf.constant([[1, 4], [2, -1]], tf.int32),
                "label_ids": tf.constant([[6, 0, 3], [5, -1, -1]], tf.int32)}
    targets = {"box_masks": np.ones((2, 2, 4, 4), np.float32),
               "concept_valid": np.array([[1, 1], [1, 0]], np.float32),
               "label_present": np.array([[1, 0, 0], [0, 0, 0]], np.float32)}
    outputs = trainer(features)
    # The label slots come after the box, matching and spatial groups, each the map of its
    # own concept (padding scored as concept 0 and ignored by the loss).
    expected = model({"image": features["image"],
                      "concept_ids": tf.constant([[6, 0, 3], [5, 0, 0]])})["logits"]
    np.testing.assert_allclose(outputs["label_logits"], expected, atol=1e-5)
    np.testing.assert_allclose(outputs["box_logits"], model(
        {"image": features["image"], "concept_ids": tf.constant([[1, 4], [2, 0]])})["logits"],
        atol=1e-5)
    total = float(trainer.compute_loss(features, targets, outputs))
    label_term = float(label_loss({"label_present": targets["label_present"],
                                   "label_ids": features["label_ids"]},
                                  outputs["label_logits"]))
    trainer.label_loss = None
    without = float(trainer.compute_loss(features, targets, outputs))
    assert label_term > 0
    assert total == pytest.approx(without + label_term, rel=1e-6)
