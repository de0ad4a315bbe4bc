"""An interrupted fit resumes from its last backed-up step, to the same total steps."""

from __future__ import annotations

import dataclasses
import os

import keras
import pytest

from conceptmask_tf.training import embedding, fit
from conceptmask_tf.training.config import EmbeddingConfig, save_config
from tests.trained_world import COMMON, tiny_config


class _Interrupt(Exception):
    pass


class _StopAfter(keras.callbacks.Callback):
    """Raises once the optimizer has taken `steps` steps (a killed job)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) >= self.steps:
            raise _Interrupt


class _StartingStep(keras.callbacks.Callback):
    """Records optimizer.iterations when training starts (after any restore)."""

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations)


@pytest.mark.slow
def test_interrupted_fit_resumes_at_its_last_backup_and_ends_with_the_same_steps(world, stage1):
    # save_freq=3, 5 steps per epoch: backups at steps 3 and 6; killed at step 7, i.e. in
    # the middle of the second epoch, one step after the last backup.
    config = tiny_config(EmbeddingConfig, world, "resume", summary_images=0)
    with pytest.raises(_Interrupt):
        embedding.train(config, callbacks=[_StopAfter(7)])
    assert os.path.exists(os.path.join(config.model_dir, "backup", "latest.weights.h5"))
    start = _StartingStep()
    resumed = embedding.train(config, callbacks=[start])
    assert start.step == 6
    # The rest of epoch 2 (4 steps), then epochs 3 and 4: the uninterrupted run's total.
    assert resumed.steps == stage1.steps == COMMON["epochs"] * COMMON["steps"]
    assert len(resumed.history["loss"]) == COMMON["epochs"] - 1
    assert not os.path.exists(os.path.join(config.model_dir, "backup"))
    assert sorted(os.listdir(os.path.join(config.model_dir, "checkpoints"))) == [
        f"embedding-epoch{COMMON['epochs']:03d}.keras"]


class _StartingRate(keras.callbacks.Callback):
    """Records the learning rate when training starts (after any restore)."""

    def on_train_begin(self, logs=None):
        self.rate = float(self.model.optimizer.learning_rate)


@pytest.mark.slow
def test_a_resumed_cosine_schedule_continues_where_the_backup_left_it(world, stage1):
    config = tiny_config(EmbeddingConfig, world, "resume_cosine", summary_images=0,
                         lr_schedule="cosine")
    with pytest.raises(_Interrupt):
        embedding.train(config, callbacks=[_StopAfter(7)])
    start = _StartingRate()
    embedding.train(config, callbacks=[start])
    total = COMMON["epochs"] * COMMON["steps"]
    expected = keras.optimizers.schedules.CosineDecay(config.learning_rate, total)(6)
    assert start.rate == pytest.approx(float(expected), rel=1e-5)
    assert start.rate < config.learning_rate  # not restarted from the top


def test_resuming_with_other_step_accounting_is_refused(tmp_path):
    config = EmbeddingConfig(data_root="/d", concepts_dir="/c", model_dir=str(tmp_path),
                             steps=5)
    save_config(config, str(tmp_path))
    os.makedirs(tmp_path / "backup")
    fit.check_resume(dataclasses.replace(config, epochs=20))  # more epochs: fine
    with pytest.raises(ValueError, match="steps=5; this run has steps=6"):
        fit.check_resume(dataclasses.replace(config, steps=6))
    os.rmdir(tmp_path / "backup")  # no backup: a new run, anything goes
    fit.check_resume(dataclasses.replace(config, steps=6))
