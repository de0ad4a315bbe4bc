"""Runtime set-up of a training run: tf.distribute strategy, XLA and mixed precision."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import keras
import tensorflow as tf

MULTI_WORKER_ISSUE = "https://github.com/keras-team/keras/issues/20585"

logger = logging.getLogger(__name__)


def create_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """The tf.distribute strategy named by `--distribution_strategy`.

    Args:
        name: "none" (the default strategy: one device), "mirrored" (all local GPUs, or
            all logical CPU devices when there is no GPU), "multi_worker" or "tpu".
        tpu: TPU name or address for `TPUClusterResolver` ("" = the local TPU VM).

    Returns:
        The strategy; build and compile the model under `strategy.scope()`. Running
        several stages in one process on GPUs, create one strategy and pass it to each
        stage's `train(..., strategy=...)`: each new MirroredStrategy reuses the
        collective keys of the previous one.

    Raises:
        NotImplementedError: "multi_worker": `MultiWorkerMirroredStrategy` with
            `model.fit` is broken in keras 3.15.1 / TF 2.21 (keras issue 20585), so it is
            refused before any collective op starts (and waits for its peers).
        ValueError: An unknown name.
    """
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        # CPUs: reduce on one device instead of collective ops. Every MirroredStrategy
        # starts its collective keys at the same value, so a second one in the same
        # process (e.g. the next stage) would collide with the first one's collectives.
        return tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")],
            cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker":
        raise NotImplementedError(
            "--distribution_strategy=multi_worker is not supported yet: "
            "MultiWorkerMirroredStrategy with model.fit is broken in keras 3.15.1 / "
            f"TF 2.21 (keras issue 20585, {MULTI_WORKER_ISSUE}). Use 'mirrored' for all "
            "GPUs of one machine, or 'tpu'.")
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown distribution strategy {name!r}")


def resolve_jit_compile(requested: bool, strategy: tf.distribute.Strategy) -> bool:
    """XLA as it can be used: off, with a warning, under MirroredStrategy with > 1 replica.

    `jit_compile=True` works on one device; a MirroredStrategy train step over several
    replicas fails to compile in keras 3.15 / TF 2.21 (DESIGN.md §8).
    """
    if (requested and isinstance(strategy, tf.distribute.MirroredStrategy)
            and strategy.num_replicas_in_sync > 1):
        logger.warning("jit_compile=True does not work with MirroredStrategy over %d "
                       "replicas; training without XLA", strategy.num_replicas_in_sync)
        return False
    return requested


def precision_policy_name(mixed_precision: bool, strategy: tf.distribute.Strategy) -> str:
    """"float32", or "mixed_float16" on GPU / "mixed_bfloat16" on TPU and CPU."""
    if not mixed_precision:
        return "float32"
    if isinstance(strategy, tf.distribute.TPUStrategy) or not tf.config.list_logical_devices(
            "GPU"):
        return "mixed_bfloat16"
    return "mixed_float16"


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Sets Keras' global dtype policy inside the block and restores the previous one.

    Models must be built inside the block; with "mixed_float16" `compile` wraps the
    optimizer in a LossScaleOptimizer.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
