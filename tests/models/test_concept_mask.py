"""The composed inference model against the stages run by hand."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.models import ConceptMask, PresenceScore, to_fully_convolutional
from tests.models.tiny import (
    assert_same_outputs,
    embedding_model,
    images,
    refinement_model,
    segmentation_model,
    word_vectors,
)

SIZE = 32
SCALES = (1.0, 1.5)
THETA = 0.3
SUPERVISED = [0, 1, 2, 3, 4]  # vocabulary rows with box/mask supervision


@pytest.fixture(scope="module")
def concept_mask() -> ConceptMask:
    return ConceptMask(refinement_model("vectors"), segmentation_model(), SIZE, SCALES,
                       supervised_vectors=word_vectors()[SUPERVISED], weak_theta=THETA,
                       presence_threshold=0.1, presence_scale=4.0)


def _inputs() -> dict[str, np.ndarray]:
    vectors = word_vectors()
    # Per image: a supervised concept (2), a weak one (7), and one not in the vocabulary.
    unseen = np.random.default_rng(9).normal(size=vectors.shape[1]).astype(np.float32)
    return {"image": images(2, 40, width=50, seed=3),
            "word_vectors": np.stack([vectors[[2, 7]], np.stack([unseen, vectors[2]])])}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _by_hand(model: ConceptMask, inputs: dict[str, np.ndarray],
             stage1: keras.Model | None = None) -> dict[str, np.ndarray]:
    """Stages run one by one, the weak rule in numpy. With `stage1` (an EmbeddingModel) the
    weak concepts' own map is its clip(cos, 0, 1) map and presence its pooled embedding."""
    refinement, image, vectors = model.refinement, inputs["image"], inputs["word_vectors"]
    supervised = word_vectors()[SUPERVISED]
    cosine = _unit(vectors) @ _unit(supervised).T  # [B, K, P]
    neighbours = supervised[cosine.argmax(-1)]  # [B, K, D]
    weak = cosine.max(-1) < 1 - 1e-4  # [B, K]
    maps, embedding = [], None
    for scale in SCALES:
        side = round(scale * SIZE)
        scaled = tf.image.resize(image, (side, side), antialias=False)
        embedded = refinement.embedding(scaled, training=False)
        own = tf.sigmoid(refinement.refine(embedded["embedding_map"], vectors)[0])
        other = tf.sigmoid(refinement.refine(embedded["embedding_map"], neighbours)[0])
        own, other = np.transpose(own, (0, 3, 1, 2)), np.transpose(other, (0, 3, 1, 2))
        if stage1 is not None:
            coarse = np.einsum("bhwd,bkd->bkhw", _unit(np.asarray(to_fully_convolutional(
                stage1)(scaled)["embedding_map"])), _unit(vectors)).clip(0.0, 1.0)
            own = np.where(weak[..., None, None], coarse, own)
        maps.append(np.where(weak[..., None, None], THETA * own + (1 - THETA) * other, own))
        embedding = embedded["embedding"] if embedding is None else embedding
    resized = tf.image.resize(image, (SIZE, SIZE), antialias=False)
    if stage1 is not None:
        embedding = stage1(resized, training=False)
    segmented = model.segmentation(
        {"image": np.asarray(resized),
         "attention_0": maps[0], "attention_1": maps[1]}, training=False)["logits"]
    logits = tf.image.resize(tf.transpose(segmented, (0, 2, 3, 1)), image.shape[1:3])
    similarity = np.einsum("bd,bkd->bk", _unit(np.asarray(embedding)), _unit(vectors))
    return {"mask_probs": np.transpose(tf.sigmoid(logits), (0, 3, 1, 2)),
            "attention": maps[0], "similarity": similarity,
            "presence": 1 / (1 + np.exp(-4.0 * (similarity - 0.1)))}


def test_outputs_match_the_stages_run_by_hand(concept_mask):
    inputs = _inputs()
    out = concept_mask(inputs, training=False)
    assert out["mask_probs"].shape == (2, 2, 40, 50)  # input resolution
    assert out["attention"].shape == (2, 2, 4, 4)
    assert_same_outputs({k: out[k] for k in ("mask_probs", "attention", "similarity",
                                             "presence")},
                        _by_hand(concept_mask, inputs), atol=1e-5)


def test_weak_rule_changes_only_unsupervised_concepts(concept_mask):
    inputs = _inputs()
    blended = np.asarray(concept_mask(inputs, training=False)["attention"])
    without = ConceptMask(concept_mask.refinement, concept_mask.segmentation, SIZE, SCALES)
    plain = np.asarray(without(inputs, training=False)["attention"])
    np.testing.assert_allclose(blended[0, 0], plain[0, 0], atol=1e-6)  # supervised (row 2)
    assert np.abs(blended[0, 1] - plain[0, 1]).max() > 1e-4  # weak (row 7)
    assert np.abs(blended[1, 0] - plain[1, 0]).max() > 1e-4  # unseen vector


def test_presence_calibration_is_kept_by_save_and_load(concept_mask, tmp_path):
    inputs = _inputs()
    layer = concept_mask.presence_score
    assert isinstance(layer, PresenceScore)
    layer.set_calibration(threshold=-0.2, scale=2.5)
    try:
        expected = concept_mask(inputs, training=False)
        np.testing.assert_allclose(
            expected["presence"], 1 / (1 + np.exp(-2.5 * (np.asarray(expected["similarity"])
                                                          + 0.2))), atol=1e-6)
        path = str(tmp_path / "concept_mask.keras")
        concept_mask.save(path)
        loaded = keras.saving.load_model(path)
        assert isinstance(loaded, ConceptMask)
        assert loaded.get_config()["presence_threshold"] == pytest.approx(-0.2)
        assert_same_outputs(loaded(inputs, training=False), expected)
    finally:
        layer.set_calibration(threshold=0.1, scale=4.0)


def test_presence_embedding_scores_presence_from_the_stage1_network(concept_mask, tmp_path):
    stage1 = embedding_model()
    model = ConceptMask(concept_mask.refinement, concept_mask.segmentation, SIZE, SCALES,
                        presence_threshold=0.1, presence_scale=4.0, presence_embedding=stage1)
    inputs = _inputs()
    out = model(inputs, training=False)
    resized = tf.image.resize(inputs["image"], (SIZE, SIZE), antialias=False)
    pooled = np.asarray(stage1(resized, training=False))  # [B, D]
    similarity = np.einsum("bd,bkd->bk", _unit(pooled), _unit(inputs["word_vectors"]))
    np.testing.assert_allclose(out["similarity"], similarity, atol=1e-5)
    np.testing.assert_allclose(out["presence"], 1 / (1 + np.exp(-4.0 * (similarity - 0.1))),
                               atol=1e-5)
    plain = ConceptMask(concept_mask.refinement, concept_mask.segmentation, SIZE, SCALES)
    assert np.abs(np.asarray(plain(inputs, training=False)["similarity"])
                  - similarity).max() > 1e-3  # the stage-2 embedding differs
    # Masks do not depend on where presence comes from.
    np.testing.assert_allclose(out["mask_probs"], plain(inputs, training=False)["mask_probs"],
                               atol=1e-6)
    path = str(tmp_path / "with_presence_embedding.keras")
    model.save(path)
    assert_same_outputs(keras.saving.load_model(path)(inputs, training=False), out)


def test_config_round_trip(concept_mask):
    config = concept_mask.get_config()
    clone = ConceptMask.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(concept_mask.get_weights())
    inputs = _inputs()
    assert_same_outputs(clone(inputs, training=False), concept_mask(inputs, training=False))


def test_scales_must_match_the_segmentation_inputs(concept_mask):
    with pytest.raises(ValueError, match="attention scales"):
        ConceptMask(concept_mask.refinement, concept_mask.segmentation, SIZE, (1.0,))


def test_traces_once_for_any_image_size_and_concept_count(concept_mask):
    # Export-readiness: one concrete function with unknown batch, size and K serves
    # every input (no Python branch on tensor values).
    dim = concept_mask.refinement.embedding.embedding_dim
    serve = tf.function(
        lambda image, vectors: concept_mask({"image": image, "word_vectors": vectors},
                                            training=False),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                         tf.TensorSpec([None, None, dim], tf.float32)]).get_concrete_function()
    for size, k in (((40, 50), 2), ((24, 36), 1)):
        inputs = {"image": images(1, size[0], width=size[1], seed=k),
                  "word_vectors": word_vectors()[None, :k]}
        traced = serve(tf.constant(inputs["image"]), tf.constant(inputs["word_vectors"]))
        assert traced["mask_probs"].shape == (1, k, *size)
        assert_same_outputs(traced, concept_mask(inputs, training=False), atol=1e-5)


def test_original_weak_attention_takes_stage1_maps_for_unsupervised_concepts(concept_mask,
                                                                             tmp_path):
    stage1 = embedding_model()
    model = ConceptMask(concept_mask.refinement, concept_mask.segmentation, SIZE, SCALES,
                        supervised_vectors=word_vectors()[SUPERVISED], weak_theta=THETA,
                        presence_threshold=0.1, presence_scale=4.0,
                        presence_embedding=stage1, weak_attention="original")
    inputs = _inputs()
    outputs = model(inputs, training=False)
    # Every output at both scales: weak and unseen rows (0, 1) and (1, 0) blend stage 1's
    # map with the neighbour's refined one; the supervised rows keep the refined map.
    assert_same_outputs({k: outputs[k] for k in ("mask_probs", "attention", "similarity",
                                                 "presence")},
                        _by_hand(model, inputs, stage1), atol=1e-5)
    out = np.asarray(outputs["attention"])  # first scale
    refined = _by_hand(concept_mask, inputs)["attention"]  # the paper's rule
    np.testing.assert_allclose(out[0, 0], refined[0, 0], atol=1e-5)  # supervised: refined
    assert np.abs(out[0, 1] - refined[0, 1]).max() > 1e-4
    assert np.abs(out[1, 0] - refined[1, 0]).max() > 1e-4
    # Presence reuses the stage-1 pass at scale 1: the same values as its own pass.
    separate = ConceptMask(concept_mask.refinement, concept_mask.segmentation, SIZE, SCALES,
                           supervised_vectors=word_vectors()[SUPERVISED], weak_theta=THETA,
                           presence_embedding=stage1)
    np.testing.assert_allclose(model(inputs, training=False)["similarity"],
                               separate(inputs, training=False)["similarity"], atol=1e-5)
    assert model.get_config()["weak_attention"] == "original"
    path = str(tmp_path / "original_weak_attention.keras")
    model.save(path)
    assert_same_outputs(keras.saving.load_model(path)(inputs, training=False),
                        model(inputs, training=False))


def test_original_weak_attention_needs_the_stage1_network(concept_mask):
    with pytest.raises(ValueError, match="presence_embedding"):
        ConceptMask(concept_mask.refinement, concept_mask.segmentation, SIZE, SCALES,
                    supervised_vectors=word_vectors()[SUPERVISED], weak_attention="original")
    with pytest.raises(ValueError, match="weak_attention must be one of"):
        ConceptMask(concept_mask.refinement, concept_mask.segmentation, SIZE, SCALES,
                    weak_attention="stage1")
