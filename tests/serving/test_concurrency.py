"""Concurrent requests: one loaded SavedModel and the shared runners, called from 8 threads.

Each thread sends its own images (sizes differ per thread) with its own K, so that
outputs crossing between concurrent requests would show as a wrong shape or wrong values.
Every concurrent answer must equal the sequential answer to the same request.
"""

from __future__ import annotations

import concurrent.futures
import gc
import threading
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.serving.runtimes import load_runner
from tests.serving.conftest import MAX_SIDE, VOCABULARY, random_image

pytest_plugins = ["tests.serving.convert_fixtures"]

THREADS = 8
REQUESTS = 100  # per thread
WARM_UP_REQUESTS = 10  # per thread
RUNNER_REQUESTS = 25  # per thread and runner
# RSS growth allowed between the warm-up round and the end of the 8 x 100 requests:
# measured 0.4 MiB (RSS ~890 MiB). One request's outputs and image average 23 KiB, so
# keeping them (or any per-request buffer of >= 10 KiB) would add >= 8 MiB over 800.
RSS_BOUND_MIB = 8

Request = tuple[str, dict[str, np.ndarray]]


def _rss_mib() -> float:
    """Resident set size of this process (VmRSS), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _thread_requests(thread: int, vectors: np.ndarray) -> list[Request]:
    """Three requests of one thread: two `serving_default`, one `segment_concepts`."""
    requests: list[Request] = []
    for i in range(2):
        height, width = 20 + 5 * thread + i, MAX_SIDE - 4 * thread - 3 * i  # unique sizes
        k = 1 + (thread + i) % 4
        rows = [(thread + i + j) % len(vectors) for j in range(k)]
        requests.append(("serving_default", {
            "image": random_image(height, width, seed=10 * thread + i),
            "word_vectors": vectors[rows]}))
    concepts = [VOCABULARY[(thread + j) % len(VOCABULARY)] for j in range(1 + thread % 3)]
    requests.append(("segment_concepts", {
        "image": random_image(30 + thread, 40 - thread, seed=100 + thread),
        "concepts": np.asarray(concepts, dtype=object)}))
    return requests


def _equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> bool:
    """Same names, shapes, dtypes and values (bit for bit: same graph, same inputs)."""
    return got.keys() == want.keys() and all(
        got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]) for k in want)


def _hammer(call: Callable[[int, int], dict[str, np.ndarray]],
            expected: Callable[[int, int], dict[str, np.ndarray]],
            pool: concurrent.futures.ThreadPoolExecutor, requests: int) -> list[list[int]]:
    """Runs `requests` calls in each of THREADS threads at once.

    Args:
        call: (thread, i) -> outputs of request i of that thread.
        expected: (thread, i) -> the sequential outputs of the same request.
        pool: THREADS workers (the same threads round after round).
        requests: Calls per thread.

    Returns:
        Per thread, the indices of the calls whose outputs differed from `expected`.
        Exceptions of the calls propagate.
    """
    barrier = threading.Barrier(THREADS)  # all threads start together

    def work(thread: int) -> list[int]:
        barrier.wait(timeout=60)
        return [i for i in range(requests) if not _equal(call(thread, i), expected(thread, i))]

    futures = [pool.submit(work, thread) for thread in range(THREADS)]
    return [future.result() for future in futures]


@pytest.mark.slow
def test_concurrent_requests_to_one_saved_model_equal_sequential_ones(tiny_loaded, tiny_model):
    signatures = tiny_loaded.signatures
    requests = [_thread_requests(t, tiny_model[1].vectors) for t in range(THREADS)]

    def run(name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    sequential = [[run(*request) for request in thread] for thread in requests]
    for thread, outputs in zip(requests, sequential):  # the cases differ from each other
        for (_, inputs), output in zip(thread, outputs):
            k = len(inputs.get("word_vectors", inputs.get("concepts")))
            assert output["masks"].shape == (k, *inputs["image"].shape[:2])

    def call(thread: int, i: int) -> dict[str, np.ndarray]:
        return run(*requests[thread][i % len(requests[thread])])

    def expected(thread: int, i: int) -> dict[str, np.ndarray]:
        return sequential[thread][i % len(sequential[thread])]

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        assert _hammer(call, expected, pool, WARM_UP_REQUESTS) == [[]] * THREADS
        gc.collect()
        rss_before = _rss_mib()
        assert _hammer(call, expected, pool, REQUESTS) == [[]] * THREADS
        gc.collect()
        growth = _rss_mib() - rss_before
    assert growth < RSS_BOUND_MIB, f"RSS grew {growth:.1f} MiB over {THREADS * REQUESTS} requests"


@pytest.mark.slow
def test_shared_runners_answer_concurrent_calls_like_sequential_ones(
        sharp_export, sharp_tflite, sharp_onnx, sharp_model):
    # The TFLite runner serialises its calls (one interpreter, buffers resized per call);
    # TensorFlow and onnxruntime run them in parallel. Either way: no error, no cross-talk.
    vectors = sharp_model[1].vectors
    requests = [[inputs for name, inputs in _thread_requests(t, vectors)
                 if name == "serving_default"] for t in range(THREADS)]
    for path in (sharp_export["saved_model"], sharp_tflite, sharp_onnx):
        runner = load_runner(path)
        sequential = [[runner(**inputs) for inputs in thread] for thread in requests]

        def call(thread: int, i: int) -> dict[str, np.ndarray]:
            return runner(**requests[thread][i % len(requests[thread])])  # noqa: B023

        def expected(thread: int, i: int) -> dict[str, np.ndarray]:
            return sequential[thread][i % len(sequential[thread])]  # noqa: B023

        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            mismatches = _hammer(call, expected, pool, RUNNER_REQUESTS)
        assert mismatches == [[]] * THREADS, runner.kind
