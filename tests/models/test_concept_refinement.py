"""Refinement head: the documented formula, and a map for any concept from its vector."""

import keras
import numpy as np

from conceptmask_tf.models import ConceptRefinement
from tests.models.tiny import DIM, VOCAB

HIDDEN = 6


def _inputs(k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    vocabulary_maps = rng.uniform(-1, 1, (2, 3, 4, VOCAB)).astype(np.float32)
    vectors = rng.normal(size=(2, k, DIM)).astype(np.float32)
    coarse = rng.uniform(-1, 1, (2, 3, 4, k)).astype(np.float32)
    return vocabulary_maps, vectors, coarse


def _head(location_term: bool = False) -> ConceptRefinement:
    head = ConceptRefinement(DIM, HIDDEN, location_term=location_term)
    head(*_inputs())
    rng = np.random.default_rng(5)
    for weight in head.weights:  # non-trivial bias, skip scale, biases of the convs
        weight.assign(rng.normal(size=weight.shape).astype(np.float32))
    return head


def test_logits_follow_the_documented_formula():
    head = _head()
    vocabulary_maps, vectors, coarse = _inputs()
    logits = np.asarray(head(vocabulary_maps, vectors, coarse))
    w1, b1 = (np.asarray(v) for v in head.combine.weights)
    w2, b2 = (np.asarray(v) for v in head.project.weights)
    g = np.maximum(vocabulary_maps @ w1[0, 0] + b1, 0)  # [B, h, w, H]
    r = g @ w2[0, 0] + b2  # [B, h, w, D]
    unit = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    expected = (np.einsum("bhwd,bkd->bhwk", r, unit) + float(head.coarse_weight) * coarse
                + float(head.bias))
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_each_concept_map_depends_only_on_its_own_vector():
    # A concept's map is the same alone, among others, in any order, and at any vector
    # scale: every concept (trained or never seen) gets a map from its vector alone.
    head = _head()
    vocabulary_maps, vectors, coarse = _inputs(k=3)
    all_three = np.asarray(head(vocabulary_maps, vectors, coarse))
    alone = np.asarray(head(vocabulary_maps, 3.0 * vectors[:, 1:2], coarse[..., 1:2]))
    np.testing.assert_allclose(alone[..., 0], all_three[..., 1], atol=1e-5)
    order = [2, 0, 1]
    shuffled = np.asarray(head(vocabulary_maps, vectors[:, order], coarse[..., order]))
    np.testing.assert_allclose(shuffled, all_three[..., order], atol=1e-5)


def test_without_skip_the_coarse_input_is_not_needed():
    head = ConceptRefinement(DIM, HIDDEN, coarse_skip=False)
    vocabulary_maps, vectors, _ = _inputs()
    assert head(vocabulary_maps, vectors).shape == (2, 3, 4, 3)
    assert len(head.weights) == 5  # two kernels, two biases, the scalar bias


def test_location_term_adds_one_logit_per_location_to_every_concept():
    head = _head(location_term=True)
    vocabulary_maps, vectors, coarse = _inputs()
    logits = np.asarray(head(vocabulary_maps, vectors, coarse))
    w1, b1 = (np.asarray(v) for v in head.combine.weights)
    w2, b2 = (np.asarray(v) for v in head.project.weights)
    w3, b3 = (np.asarray(v) for v in head.locate.weights)
    g = np.maximum(vocabulary_maps @ w1[0, 0] + b1, 0)  # [B, h, w, H]
    r = g @ w2[0, 0] + b2
    u = g @ w3[0, 0] + b3  # [B, h, w, 1], the same for every concept
    unit = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    expected = (np.einsum("bhwd,bkd->bhwk", r, unit) + float(head.coarse_weight) * coarse
                + float(head.bias) + u)
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert np.ptp(u) > 0.1  # the term varies over locations, so the check above has teeth


def test_config_round_trip():
    for location_term in (False, True):
        head = ConceptRefinement(DIM, HIDDEN, coarse_skip=False, location_term=location_term)
        clone = keras.layers.deserialize(keras.layers.serialize(head))
        assert clone.get_config() == head.get_config()
