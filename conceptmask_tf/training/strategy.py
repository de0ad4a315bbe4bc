"""Runtime set-up of a training run: tf.distribute strategy, XLA and mixed precision."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import keras
import tensorflow as tf

from conceptmask_tf.training import distribute_compat

logger = logging.getLogger(__name__)


def create_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """The tf.distribute strategy named by `--distribution_strategy`.

    For every strategy but "none" it patches keras' trainer (`distribute_compat`): the
    model is built without taking a batch from the data, so seeded runs repeat exactly,
    and `fit` works across workers (keras issue 20585). "multi_worker" reads the cluster
    and this process's task from TF_CONFIG. Start every worker with the same flags (the batch size is the global one);
    the strategy configures collective ops, so it must come before other TensorFlow work
    of the process (as in the training binaries). Non-chief workers write into
    `worker_model_dir`.

    Args:
        name: "none" (the default strategy: one device), "mirrored" (all local GPUs, or
            all logical CPU devices when there is no GPU), "multi_worker" (the cluster in
            the TF_CONFIG environment variable; each worker's GPUs, else its CPU) or
            "tpu".
        tpu: TPU name or address for `TPUClusterResolver` ("" = the local TPU VM).

    Returns:
        The strategy; build and compile the model under `strategy.scope()`. Running
        several stages in one process on GPUs, create one strategy and pass it to each
        stage's `train(..., strategy=...)`: each new MirroredStrategy reuses the
        collective keys of the previous one.

    Raises:
        ValueError: An unknown name, or "multi_worker" without TF_CONFIG.
    """
    if name == "none":
        return tf.distribute.get_strategy()
    if name in ("mirrored", "multi_worker", "tpu"):
        distribute_compat.apply()
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
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "--distribution_strategy=multi_worker needs the TF_CONFIG environment "
                "variable (the cluster's workers and this process's task); use 'mirrored' "
                "for the devices of one machine")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown distribution strategy {name!r}")


def worker_model_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
    """The folder this process writes its model dir's files to.

    Every worker of a `MultiWorkerMirroredStrategy` runs the same callbacks and saves
    (TensorFlow's multi-worker guide: skipping them on some workers risks mismatched
    collective ops), but only the chief's files belong in `model_dir`: the others write
    theirs (config.json, backup, logs, checkpoints, final model) into
    `<model_dir>/workertemp_<index>`, a fixed path so that a restarted worker resumes
    from its own backup.

    Returns:
        `model_dir` for the chief and for every other strategy.
    """
    if (not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            or strategy.extended.should_checkpoint):  # True on the chief
        return model_dir
    return os.path.join(model_dir, f"workertemp_{strategy.cluster_resolver.task_id}")


def resolve_jit_compile(requested: bool, strategy: tf.distribute.Strategy) -> bool:
    """XLA as it can be used: off, with a warning, with > 1 (multi-worker) mirrored replica.

    `jit_compile=True` works on one device; a MirroredStrategy train step over several
    replicas fails to compile in keras 3.15 / TF 2.21 (DESIGN.md §8), and
    MultiWorkerMirroredStrategy is kept to the same rule.
    """
    mirrored = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    if requested and isinstance(strategy, mirrored) and strategy.num_replicas_in_sync > 1:
        logger.warning("jit_compile=True does not work with a mirrored strategy over %d "
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
