"""Fuzzed inputs to the exported signatures and the runners: served, or a clear error.

Seeded random ranks, shapes, dtypes, NaN/Inf, K = 0, wrong D, empty and too large
images, and random concept strings (invalid UTF-8 included). A valid request must be
served with the contract's shapes; any other must fail with the documented exception type
and a message naming one of its actual problems (TensorFlow may evaluate the in-graph
asserts in any order, so with several problems any one of them may be named).

The signatures declare image [None, None, 3] and word_vectors [None, D], but neither a
loaded signature nor TF Serving rejects a request off those shapes: a wrong rank, channel
count or D reaches the graph, whose checks name it (InvalidArgumentError). The requests
are fed both to the loaded signature and as TF Serving feeds them (`serving_feed`, where
only the dtype is checked before the graph runs).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.errors import UnknownConceptError
from conceptmask_tf.serving.runtimes import load_runner
from tests.serving.conftest import DIM, MAX_SIDE, VOCABULARY
from tests.serving.test_declared_shapes import serving_feed

SEEDS = range(120)
STRING_SEEDS = range(60)
DIMS = (0, 1, 2, 3, 5, 17, MAX_SIDE)  # of random-rank shapes
DTYPES = (np.float32, np.float64, np.int32, np.bool_, np.uint8, np.float16)
# Signature-level dtype rejection (before the graph runs), from Python and in TF Serving's
# session (which names the input's feed node).
WRONG_DTYPE = r"expected to be a (uint8|float) tensor"
SERVING_WRONG_DTYPE = (r"(?s)Type mismatch: actual \w+ vs\. expect (uint8|float).*"
                       r"serving_default_(image|word_vectors)")


def _mutate(rng: np.random.Generator, image: np.ndarray, vectors: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """One random defect: a dtype, rank, side, channel count, K, D or a non-finite value."""
    kind = int(rng.integers(9))
    rank = int(rng.integers(0, 5))
    shape = tuple(int(rng.choice(DIMS)) for _ in range(rank))
    if kind == 0:
        image = image.astype(rng.choice(DTYPES))  # may stay uint8
    elif kind == 1:
        image = np.zeros(shape, image.dtype)
    elif kind == 2:
        image = np.zeros(image.shape[:2] + (int(rng.choice([0, 1, 2, 4])),), image.dtype)
    elif kind == 3:  # an empty or too large side (5000 x 1: cheap)
        side = int(rng.choice([0, MAX_SIDE + 1, 5000]))
        image = np.zeros((side, 1, 3) if rng.random() < 0.5 else (1, side, 3), image.dtype)
    elif kind == 4:
        vectors = vectors.astype(rng.choice(DTYPES))
    elif kind == 5:
        vectors = rng.normal(size=shape).astype(vectors.dtype)
    elif kind == 6:
        k = vectors.shape[0] if vectors.ndim else 1
        vectors = np.ones((k, int(rng.choice([0, 1, DIM - 1, DIM + 1, 300]))), vectors.dtype)
    elif kind == 7:
        vectors = np.zeros((0, *vectors.shape[1:]), vectors.dtype)
    elif vectors.size:
        vectors = vectors.copy()
        vectors.flat[rng.integers(vectors.size)] = rng.choice([np.nan, np.inf, -np.inf])
    return image, vectors


def fuzzed_request(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, word_vectors) of one seed: a valid request with 0, 1 or 2 defects."""
    rng = np.random.default_rng(seed)
    height, width, k = (int(v) for v in rng.integers(1, [MAX_SIDE + 1, MAX_SIDE + 1, 5]))
    image = rng.integers(0, 256, (height, width, 3), np.uint8)
    vectors = rng.normal(size=(k, DIM)).astype(np.float32)
    for _ in range(int(rng.integers(3))):
        image, vectors = _mutate(rng, image, vectors)
    return image, vectors


def problems(image: np.ndarray, vectors: np.ndarray, host: bool = False) -> list[str]:
    """Regexes of the messages this request may fail with (empty: a valid request).

    Args:
        image: The request's image.
        vectors: Its word vectors.
        host: The runners' host checks (ordered: the first problem is named; any float
            vectors are cast) instead of the signature's asserts (any problem).
    """
    if not host and (image.dtype != np.uint8 or vectors.dtype != np.float32):
        return [WRONG_DTYPE]  # the signature rejects it before the graph runs
    found = []
    if image.dtype != np.uint8:
        found.append(r"image must be uint8 RGB pixels, got dtype")
    if image.ndim != 3:
        found.append(r"image must be \[height, width, 3\]" if host
                     else r"image must have rank 3")
    else:
        if image.shape[2] != 3:
            found.append(r"image must be \[height, width, 3\]" if host
                         else r"image must have 3 channels")
        if min(image.shape[:2]) < 1:
            found.append(r"image is empty")
        if max(image.shape[:2]) > MAX_SIDE:
            found.append(rf"image is too large: height and width must be <= {MAX_SIDE}")
    if not np.issubdtype(vectors.dtype, np.floating):  # host only: float32 is checked above
        found.append(r"word_vectors must be float32 \[K, 8\], got dtype")
    if vectors.ndim != 2:
        found.append(r"word_vectors must be float32 \[K, 8\], got shape" if host
                     else r"word_vectors must have rank 2")
    else:
        if vectors.shape[1] != DIM:
            found.append(rf"word_vectors must have D = {DIM} columns")
        if vectors.shape[0] == 0:
            found.append(r"word_vectors is empty: K must be >= 1")
    if not np.all(np.isfinite(vectors.astype(np.float64))):
        found.append(r"word_vectors contain NaN or Inf")
    return found


def _assert_served(outputs: dict, k: int, height: int, width: int) -> None:
    masks, probs, presence = (np.asarray(outputs[n]) for n in ("masks", "mask_probs",
                                                                 "presence"))
    assert masks.shape == probs.shape == (k, height, width) and presence.shape == (k,)
    assert masks.dtype == np.uint8 and probs.dtype == presence.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1)) and np.all(np.isfinite(presence))
    np.testing.assert_array_equal(masks, probs >= 0.5)


def test_fuzzed_cover_valid_and_every_kind_of_bad_request():
    # The generator reaches each check (else the tests below would prove little).
    requests = [fuzzed_request(seed) for seed in SEEDS]
    seen = {p for request in requests for p in problems(*request)}
    valid = sum(not problems(*request) for request in requests)
    assert len(seen) == 9 and valid >= 20, (seen, valid)  # every signature message


def test_serving_default_serves_or_names_the_problem(tiny_loaded):
    serve = tiny_loaded.signatures["serving_default"]
    for seed in SEEDS:
        image, vectors = fuzzed_request(seed)
        expected = problems(image, vectors)
        case = f"seed {seed}: image {image.dtype} {image.shape}, vectors {vectors.dtype} " \
               f"{vectors.shape}"
        try:
            outputs = serve(image=tf.constant(image), word_vectors=tf.constant(vectors))
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as e:
            assert expected, f"{case}: valid request failed: {e}"
            assert any(re.search(p, str(e)) for p in expected), f"{case}: {e}"
            continue
        assert not expected, f"{case}: served despite {expected}"
        _assert_served(outputs, vectors.shape[0], *image.shape[:2])


def test_tf_serving_feed_serves_or_names_the_problem(tiny_saved_model):
    serve = serving_feed(tiny_saved_model, "serving_default")
    for seed in SEEDS:
        image, vectors = fuzzed_request(seed)
        expected = problems(image, vectors)
        expected = [SERVING_WRONG_DTYPE] if expected == [WRONG_DTYPE] else expected
        case = f"seed {seed}: image {image.dtype} {image.shape}, vectors {vectors.dtype} " \
               f"{vectors.shape}"
        try:
            outputs = serve(image=image, word_vectors=vectors)
        except tf.errors.InvalidArgumentError as e:
            assert expected, f"{case}: valid request failed: {e}"
            assert any(re.search(p, str(e)) for p in expected), f"{case}: {e}"
            continue
        assert not expected, f"{case}: served despite {expected}"
        _assert_served(outputs, vectors.shape[0], *image.shape[:2])


@pytest.fixture(scope="module")
def runner(tiny_saved_model):
    return load_runner(tiny_saved_model)


def test_runner_serves_or_raises_value_error_naming_the_problem(runner):
    # The host checks: one exception type (ValueError) whatever the runtime.
    for seed in SEEDS:
        image, vectors = fuzzed_request(seed)
        expected = problems(image, vectors, host=True)
        try:
            outputs = runner(image, vectors)
        except ValueError as e:
            # Checked in order: the message names the first problem.
            assert expected and re.search(expected[0], str(e)), (seed, expected, str(e))
            continue
        assert not expected, f"seed {seed}: served despite {expected}"
        _assert_served(outputs, vectors.shape[0], *image.shape[:2])


def random_concept(rng: np.random.Generator) -> bytes:
    """A vocabulary concept, a phrase of its words, noise text or random bytes."""
    kind = rng.integers(4)
    if kind == 0:
        return VOCABULARY[rng.integers(len(VOCABULARY))].encode()
    if kind == 1:
        words = [w for c in VOCABULARY for w in c.split()]
        return " ".join(rng.choice(words, int(rng.integers(1, 4)))).encode()
    if kind == 2:
        return "".join(chr(c) for c in rng.integers(32, 0x3000, int(rng.integers(0, 12)))
                       ).encode()
    return rng.integers(0, 256, int(rng.integers(0, 12)), np.uint8).tobytes()


STRING_ERRORS = r"unknown concept word|concept name is empty after normalisation|concepts is empty"


def test_concept_strings_serve_or_name_the_problem(tiny_loaded, runner):
    segment = tiny_loaded.signatures["segment_concepts"]
    image = tf.constant(np.full((9, 11, 3), 128, np.uint8))
    outcomes = set()
    for seed in STRING_SEEDS:
        rng = np.random.default_rng(seed)
        concepts = [random_concept(rng) for _ in range(int(rng.integers(0, 4)))]
        try:
            outputs = segment(image=image, concepts=tf.constant(concepts, tf.string))
        except tf.errors.InvalidArgumentError as e:
            assert re.search(STRING_ERRORS, str(e)), (seed, concepts, str(e))
            outcomes.add("error")
        else:
            _assert_served(outputs, len(concepts), 9, 11)
            outcomes.add("served")
        # The runner's concept_vectors names the concept (one exception type).
        try:
            vectors = runner.concept_vectors([c.decode("utf-8", "replace") for c in concepts])
        except UnknownConceptError as e:
            assert re.search(STRING_ERRORS, str(e)), (seed, concepts, str(e))
        else:
            assert vectors.shape == (len(concepts), DIM) and np.all(np.isfinite(vectors))
    assert outcomes == {"error", "served"}


@pytest.mark.parametrize("signature", ["segment_concepts", "concept_vectors"])
def test_invalid_utf8_concept_is_an_invalid_argument_error(tiny_loaded, signature):
    # Regression: the empty-name message echoed the raw bytes, and TensorFlow's Python
    # layer raised UnicodeDecodeError on it instead of the InvalidArgumentError.
    inputs = {"image": tf.constant(np.zeros((4, 4, 3), np.uint8))}
    inputs = inputs if signature == "segment_concepts" else {}
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="concept name is empty after normalisation .*\\[\ufffd\\]"):
        tiny_loaded.signatures[signature](concepts=tf.constant([b"dog", b"\xcc"]), **inputs)
