"""Callbacks of a training run: step-level resume, per-epoch checkpoints, TensorBoard images."""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf


class StepBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that resumes at the step it backed up, not at its epoch's start.

    Keras' callback saves every `save_freq` steps, but on restore it restarts the epoch
    that was running, from mid-epoch weights: the run would take more optimizer steps than
    an uninterrupted one. Here the restored `optimizer.iterations` decides: with
    `steps_per_epoch` fixed, training resumes in epoch iterations // steps_per_epoch and
    that epoch ends after its remaining steps, so the total number of steps (and the epoch
    numbering of logs and checkpoints) is the uninterrupted run's.

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
        super().on_train_begin(logs)
        if not os.path.exists(self._weights_path):
            return
        done = int(self.model.optimizer.iterations)
        self.model._initial_epoch = done // self.steps_per_epoch  # read by Keras' fit loop
        self._end_resumed_epoch_early = done % self.steps_per_epoch != 0

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if (self._end_resumed_epoch_early
                and int(self.model.optimizer.iterations) % self.steps_per_epoch == 0):
            self.model.stop_training = True  # ends this epoch's step loop ...

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
    checkpoints and the final save (put this callback first). A no-op on one replica.
    """

    def on_epoch_end(self, epoch, logs=None):
        self.synchronize()

    def on_train_end(self, logs=None):
        self.synchronize()

    def synchronize(self) -> None:
        strategy = self.model.distribute_strategy
        if strategy.num_replicas_in_sync < 2:
            return
        for variable in self.model.non_trainable_variables:
            if not keras.backend.is_float_dtype(variable.dtype):
                continue
            copies = strategy.experimental_local_results(variable.value)
            if len(copies) > 1:
                variable.assign(tf.add_n([tf.identity(c) for c in copies]) / len(copies))


class StageCheckpoint(keras.callbacks.Callback):
    """Saves the stage network (not the training wrapper) as .keras after each epoch.

    Files: `<directory>/<prefix>-epoch<NNN>.keras` (epoch counted from 1); only the newest
    `keep` are kept.

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

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        self.stage_model.save(os.path.join(self.directory,
                                           f"{self.prefix}-epoch{epoch + 1:03d}.keras"))
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


def progress_verbosity() -> int:
    """Keras `verbose`: 1 (progress bar) on a terminal, else 2 (one line per epoch)."""
    return 1 if sys.stdout.isatty() else 2
