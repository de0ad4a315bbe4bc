"""Callbacks of a training run: step-level resume, per-epoch checkpoints, TensorBoard images."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

PARTIAL_PREFIX = ".partial-"


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """Yields a temporary path to write instead of `path`, then renames it to `path`.

    The temporary file (`.partial-<name>` in the same folder, so its suffix is the one
    Keras asks for) is flushed to disk and renamed over `path` in one step
    (`os.replace`): a reader, or a run restarted after a crash or a kill, finds the old
    complete file or the new one, never half a file. If the block raises, the temporary
    file is removed and `path` is untouched.

    Args:
        path: The file to (re)write.
    """
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, PARTIAL_PREFIX + name)
    try:
        yield temporary
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def remove_partial_files(directory: str) -> None:
    """Removes temporary files a killed `replacing` block left in `directory`."""
    for path in glob.glob(os.path.join(glob.escape(directory), PARTIAL_PREFIX + "*")):
        os.remove(path)


def optimizer_steps(model: keras.Model) -> int:
    """Optimizer steps taken so far; also for a distributed (mirrored) iterations variable,
    which plain `int()` refuses."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class StepBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that resumes at the step it backed up, not at its epoch's start.

    Keras' callback saves every `save_freq` steps, but on restore it restarts the epoch
    that was running, from mid-epoch weights: the run would take more optimizer steps than
    an uninterrupted one. Here the restored `optimizer.iterations` decides: with
    `steps_per_epoch` fixed, training resumes in epoch iterations // steps_per_epoch and
    that epoch ends after its remaining steps, so the total number of steps (and the epoch
    numbering of logs and checkpoints) is the uninterrupted run's.

    Keras writes the backup in place, so a job killed while writing leaves a broken
    backup; here each file is written to a temporary file and renamed (`replacing`).

    Args:
        backup_dir: Folder of the backup (used by nothing else; deleted after a
            successful fit).
        save_freq: Back up every this many steps.
        steps_per_epoch: Steps of every epoch of the fit (must not change between runs).
    """

    def __init__(self, backup_dir: str, save_freq: int, steps_per_epoch: int) -> None:
        super().__init__(backup_dir, save_freq=save_freq)
        self.steps_per_epoch = int(steps_per_epoch)
        self._end_resumed_epoch_early = False

    def on_train_begin(self, logs=None):
        if os.path.isdir(self.backup_dir):
            remove_partial_files(self.backup_dir)
        super().on_train_begin(logs)
        if not os.path.exists(self._weights_path):
            return
        done = optimizer_steps(self.model)
        self.model._initial_epoch = done // self.steps_per_epoch  # read by Keras' fit loop
        self._end_resumed_epoch_early = done % self.steps_per_epoch != 0

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if (self._end_resumed_epoch_early
                and optimizer_steps(self.model) % self.steps_per_epoch == 0):
            self.model.stop_training = True  # ends this epoch's step loop ...

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        # Weights first: the restore reads its step from them, not from the metadata.
        with replacing(self._weights_path) as temporary:
            self.model.save_weights(temporary, overwrite=True)
        with replacing(self._training_metadata_path) as temporary:
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self._end_resumed_epoch_early:
            self._end_resumed_epoch_early = False
            self.model.stop_training = False  # ... but not the training


class SyncReplicaStatistics(keras.callbacks.Callback):
    """Averages per-replica copies of non-trainable variables at each epoch's end.

    Under MirroredStrategy, Keras 3 creates BatchNormalization moving statistics with
    aggregation "none": every replica updates its own copy from its part of the batch, so
    the copies drift apart (evaluation then mixes them; a save keeps the first one). Here
    each floating-point non-trainable variable is set to the mean of its copies, before
    checkpoints and the final save (put this callback first); under
    MultiWorkerMirroredStrategy the mean is over the replicas of every worker, so all
    workers keep the same statistics. A no-op on one replica.
    """

    def on_epoch_end(self, epoch, logs=None):
        self.synchronize()

    def on_train_end(self, logs=None):
        self.synchronize()

    def synchronize(self) -> None:
        strategy = self.model.distribute_strategy
        if strategy.num_replicas_in_sync < 2:
            return
        across_workers = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        for variable in self.model.non_trainable_variables:
            if not keras.backend.is_float_dtype(variable.dtype):
                continue
            if across_workers:
                # The local copies are one worker's share: average over every replica of
                # the cluster (a collective op, run by all workers in the same order).
                mean = strategy.run(_replica_mean, args=(variable.value,))
                variable.assign(strategy.experimental_local_results(mean)[0])
                continue
            copies = strategy.experimental_local_results(variable.value)
            if len(copies) > 1:
                variable.assign(tf.add_n([tf.identity(c) for c in copies]) / len(copies))


def _replica_mean(value: tf.Tensor) -> tf.Tensor:
    """Inside `strategy.run`: the mean of `value` over all replicas of the strategy."""
    return tf.distribute.get_replica_context().all_reduce("MEAN", tf.identity(value))


class StageCheckpoint(keras.callbacks.Callback):
    """Saves the stage network (not the training wrapper) as .keras after each epoch.

    Files: `<directory>/<prefix>-epoch<NNN>.keras` (epoch counted from 1), each written
    to a temporary file and renamed (`replacing`); only the newest `keep` are kept.

    Args:
        stage_model: The network to save (e.g. the RefinementModel inside its trainer).
        directory: Checkpoint folder (created).
        prefix: File name prefix, e.g. "refinement".
        keep: Number of checkpoints kept (>= 1).
    """

    def __init__(self, stage_model: keras.Model, directory: str, prefix: str,
                 keep: int) -> None:
        super().__init__()
        self.stage_model = stage_model
        self.directory = directory
        self.prefix = prefix
        self.keep = int(keep)

    def on_train_begin(self, logs=None):
        if os.path.isdir(self.directory):
            remove_partial_files(self.directory)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"{self.prefix}-epoch{epoch + 1:03d}.keras")
        with replacing(path) as temporary:
            self.stage_model.save(temporary)
        saved = sorted(glob.glob(os.path.join(self.directory, f"{self.prefix}-epoch*.keras")))
        for old in saved[:-self.keep]:
            os.remove(old)


class SummaryImages(keras.callbacks.Callback):
    """Writes `tf.summary.image` pictures from `render()` at the end of each epoch.

    Args:
        log_dir: TensorBoard folder of the pictures (e.g. model_dir/logs/images).
        name: Summary tag.
        render: Returns uint8 [N, H, W, 3] pictures of the current model.
        description: Markdown shown with the pictures (e.g. which concept each shows).
    """

    def __init__(self, log_dir: str, name: str, render: Callable[[], np.ndarray],
                 description: str = "") -> None:
        super().__init__()
        self.log_dir = log_dir
        self.name = name
        self.render = render
        self.description = description
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        pictures = self.render()  # [N, H, W, 3] uint8
        with self._writer.as_default():
            tf.summary.image(self.name, pictures, step=epoch, max_outputs=len(pictures),
                             description=self.description or None)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


class ReportSkips(keras.callbacks.Callback):
    """Logs, at the end of each epoch, the records the input pipeline skipped in it.

    Bad image files are found where the pipeline reads them (`data.images.ImageReader`),
    so a run learns of them as it goes; each epoch that found new ones logs the counts
    per reason so far, with examples.

    Args:
        skips: The run's counter (shared with the pipeline).
        logger: Where to log.
    """

    def __init__(self, skips, logger) -> None:
        super().__init__()
        self.skips = skips
        self.logger = logger
        self._seen = skips.total

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self.skips.total > self._seen:
            self.logger.warning("epoch %d: %d more record(s) skipped while reading.\n%s",
                                epoch + 1, self.skips.total - self._seen, self.skips.report())
            self._seen = self.skips.total


def progress_verbosity() -> int:
    """Keras `verbose`: 1 (progress bar) on a terminal, else 2 (one line per epoch)."""
    return 1 if sys.stdout.isatty() else 2
