"""Fixes to keras 3.15's TensorFlow trainer under tf.distribute strategies (TF 2.21).

1. Under any strategy, `TensorFlowTrainer._maybe_symbolic_build` builds the model from a
   batch taken from a first iterator of the training data, then `fit` drops that
   iterator (`epoch_iterator.reset()`) and trains on a new one. With a seeded,
   reshuffled, repeated tf.data pipeline the order then depends on a race: if the
   dropped iterator's prefetching reached the end of a pass before it was destroyed, it
   drew the next pass's shuffle seeds from the shared seed generator, and the training
   iterator gets other seeds. Same seed, different data: in three runs of
   tests/training/test_multi_worker.py, the mirrored and two-worker runs each followed
   one of several loss trajectories. The patch builds from the dataset's element spec
   (shapes and dtypes are all the build reads), so no iterator is made before training:
   runs are repeatable and see the data in the order a run without a strategy sees.
2. keras issue 20585 (https://github.com/keras-team/keras/issues/20585), with two or
   more workers: (a) the build reduces its batch with `strategy.reduce("MEAN", batch,
   axis=None)`, a collective reduction of `PerReplica` values that fails with
   "ValueError: Attempt to convert a value (PerReplica:{...}) with an unsupported type";
   for inputs that are not a tf.data.Dataset (no element spec) the patch builds from the
   first local replica's part of the batch instead. (b) `reduce_per_replica(logs,
   strategy, "auto")`, which reduces every train and test step's logs, calls
   `strategy.reduce("MEAN", v, axis=0)` on a multi-worker strategy: the scalar metric
   results have no axis 0 ("ValueError: Invalid reduction dimension 0 for input with 0
   dimensions"). The patch reduces over the replicas only (axis=None), as keras'
   one-worker path does.

The patched functions hand everything else (no strategy, predict's "concat") to keras'
own code. They are applied only for the versions checked here.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer as tf_trainer

ISSUE = "https://github.com/keras-team/keras/issues/20585"
# (keras, TensorFlow) major.minor versions whose private trainer code the patch matches
# and which were checked with two workers on loopback (tests/training/test_multi_worker.py).
VERIFIED_VERSIONS = (("3.15", "2.21"),)

logger = logging.getLogger(__name__)

_ORIGINAL_SYMBOLIC_BUILD = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
_ORIGINAL_REDUCE_PER_REPLICA = tf_trainer.reduce_per_replica


def is_verified(keras_version: str = keras.__version__,
                tf_version: str = tf.__version__) -> bool:
    """Whether the patch was checked for these keras and TensorFlow versions."""

    def major_minor(version: str) -> str:
        return ".".join(version.split(".")[:2])

    return (major_minor(keras_version), major_minor(tf_version)) in VERIFIED_VERSIONS


def is_patched() -> bool:
    """Whether `apply` has patched keras' trainer in this process."""
    return tf_trainer.reduce_per_replica is _reduce_per_replica


def apply(keras_version: str = keras.__version__, tf_version: str = tf.__version__) -> bool:
    """Patches keras' TensorFlow trainer for `fit` under strategies (idempotent).

    Process-wide, but it changes nothing for models without a strategy.

    Args:
        keras_version: The installed keras version (a parameter for tests).
        tf_version: The installed TensorFlow version.

    Returns:
        True when the patch is in place; False (with a warning) for versions not in
        `VERIFIED_VERSIONS`, which are left untouched: a later keras may have fixed the
        bug, or changed the private code this patch replaces.
    """
    if is_patched():
        return True
    if not is_verified(keras_version, tf_version):
        logger.warning(
            "keras %s / TensorFlow %s: not patching keras' trainer for tf.distribute "
            "(checked only for keras/TF %s); distributed runs may not repeat exactly, and "
            "if a multi-worker fit fails with a PerReplica conversion or 'Invalid "
            "reduction dimension' error, see %s",
            keras_version, tf_version,
            ", ".join("/".join(v) for v in VERIFIED_VERSIONS), ISSUE)
        return False
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = _reduce_per_replica  # looked up at each call
    return True


def _multi_worker(strategy: tf.distribute.Strategy | None) -> bool:
    # keras' own test for taking its broken multi-worker branches.
    return strategy is not None and tf_trainer._collective_all_reduce_multi_worker(strategy)


def _maybe_symbolic_build(self: tf_trainer.TensorFlowTrainer, iterator: Any = None,
                          data_batch: Any = None) -> None:
    """`TensorFlowTrainer._maybe_symbolic_build`, building from the dataset's element spec.

    Without one (inputs that are not a tf.data.Dataset), multi-worker strategies build
    from one local replica's part of the first batch, and other strategies as keras does.
    """
    strategy = self._distribute_strategy
    if strategy is None:  # keras builds when it traces the step
        return _ORIGINAL_SYMBOLIC_BUILD(self, iterator=iterator, data_batch=data_batch)
    spec = _dataset_element_spec(iterator)
    if spec is not None:
        return _ORIGINAL_SYMBOLIC_BUILD(self, data_batch=spec)
    if iterator is None or not _multi_worker(strategy):
        return _ORIGINAL_SYMBOLIC_BUILD(self, iterator=iterator, data_batch=data_batch)
    for _, _, distributed_iterator in iterator:
        batch = next(distributed_iterator)
        data_batch = tree.map_structure(
            lambda v: None if v is None else strategy.experimental_local_results(v)[0],
            batch)
        break
    return _ORIGINAL_SYMBOLIC_BUILD(self, data_batch=data_batch)


def _dataset_element_spec(iterator: Any) -> Any:
    """The TensorSpecs of the tf.data.Dataset an epoch iterator reads, else None."""
    adapter = getattr(iterator, "data_adapter", None)
    if adapter is None:
        return None
    try:
        dataset = adapter.get_tf_dataset()
    except (AttributeError, NotImplementedError):
        return None
    if not isinstance(dataset, tf.data.Dataset):
        return None
    return dataset.element_spec


def _reduce_per_replica(values: Any, strategy: tf.distribute.Strategy,
                        reduction: str) -> Any:
    """`reduce_per_replica` with the cross-worker mean taken over replicas only."""
    if reduction in ("auto", "mean") and _multi_worker(strategy):
        return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
    return _ORIGINAL_REDUCE_PER_REPLICA(values, strategy, reduction)
