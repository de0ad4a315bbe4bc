"""A training job killed with SIGKILL resumes from its last backup; no file is half-written."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest
from absl import flags

from conceptmask_tf.training import callbacks as callbacks_lib
from conceptmask_tf.training import cli, embedding
from conceptmask_tf.training.config import EmbeddingConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
EPOCHS, STEPS = 4, 10
ARGS = ["--image_size=32", "--batch_size=8", f"--epochs={EPOCHS}", f"--steps={STEPS}",
        "--save_freq=2", "--hidden_dims=16,16", "--summary_images=0", "--keep_checkpoints=1",
        "--learning_rate=0.003"]
KILL_SEED = 20240611


def _command(world, model_dir) -> list[str]:
    return [sys.executable, "-m", "conceptmask_tf.bin.train_embedding",
            f"--data_root={world.root}", f"--concepts_dir={world.concepts_dir}",
            f"--model_dir={model_dir}", *ARGS]


class _StartingStep(keras.callbacks.Callback):
    """Records optimizer.iterations when training starts (after any restore)."""

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations)


def _backed_up_step(weights_path) -> int:
    """optimizer.iterations stored in a backup (the optimizer's first variable)."""
    with h5py.File(weights_path, "r") as f:
        return int(f["optimizer/vars/0"][()])


def _partial_files(directory) -> list[str]:
    return [os.path.join(d, n) for d, _, names in os.walk(directory) for n in names
            if n.startswith(callbacks_lib.PARTIAL_PREFIX)]


@pytest.mark.slow
def test_a_job_killed_at_a_random_moment_resumes_to_the_uninterrupted_step_count(
        world, tmp_path):
    model_dir = tmp_path / "embedding"
    backup = model_dir / "backup" / "latest.weights.h5"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = open(tmp_path / "killed.log", "w")
    child = subprocess.Popen(_command(world, model_dir), cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
    # A seeded random moment: once the backup has reached a random step, plus a random
    # fraction of a step or two, while backups keep being written (every 2 steps), so the
    # kill may land in the middle of one. The backup can be read while the job runs
    # because it is only ever replaced whole.
    rng = random.Random(KILL_SEED)
    target_step, delay = rng.randrange(2, EPOCHS * STEPS - 12, 2), rng.uniform(0.0, 0.1)
    try:
        deadline = time.monotonic() + 240
        while not (backup.exists() and _backed_up_step(backup) >= target_step):
            assert child.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"no backup of step {target_step} in 240 s"
            time.sleep(0.005)
        time.sleep(delay)
        assert child.poll() is None, "the job finished before it could be killed"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        log.close()
    assert not (model_dir / "embedding.keras").exists()
    # The surviving backup is complete: a readable weights file at an even step.
    killed_at = _backed_up_step(backup)
    assert target_step <= killed_at < EPOCHS * STEPS and killed_at % 2 == 0

    # The rerun, in this process with the binary's flags (one TensorFlow start less).
    fv = flags.FlagValues()
    cli.define_flags(EmbeddingConfig, fv)
    fv(_command(world, model_dir)[2:])
    start = _StartingStep()
    resumed = embedding.train(cli.config_from_flags(EmbeddingConfig, fv), callbacks=[start])
    assert start.step == killed_at
    # The uninterrupted run's total (EPOCHS x STEPS), not killed_at more.
    assert resumed.steps == EPOCHS * STEPS
    assert len(resumed.history["loss"]) == EPOCHS - killed_at // STEPS
    assert (model_dir / "embedding.keras").exists()
    assert not (model_dir / "backup").exists()
    assert os.listdir(model_dir / "checkpoints") == [f"embedding-epoch{EPOCHS:03d}.keras"]
    assert _partial_files(model_dir) == []


def _model() -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    return model


def _train_steps(model: keras.Model, steps: int) -> None:
    model.fit(np.ones((steps, 3)), np.zeros((steps, 2)), batch_size=1, epochs=1, verbose=0)


def test_a_backup_that_fails_half_way_leaves_the_previous_backup_intact(tmp_path,
                                                                        monkeypatch):
    model = _model()
    _train_steps(model, 3)
    backup = callbacks_lib.StepBackupAndRestore(str(tmp_path), save_freq=1, steps_per_epoch=5)
    backup.set_model(model)
    backup._save_model()
    saved_kernel = model.layers[0].kernel.numpy()
    _train_steps(model, 2)  # the model moves on; the next backup fails while writing

    def write_half_then_fail(filepath, overwrite=True):
        with open(filepath, "wb") as f:
            f.write(b"\x89HDF\r\n\x1a\n half a file")
        raise OSError("disk full")

    monkeypatch.setattr(model, "save_weights", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        backup._save_model()
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["latest.weights.h5", "training_metadata.json"]
    assert _backed_up_step(tmp_path / "latest.weights.h5") == 3

    # A new run restores the intact backup: step 3 and its weights.
    restored = _model()
    restore = callbacks_lib.StepBackupAndRestore(str(tmp_path), save_freq=1,
                                                 steps_per_epoch=5)
    restore.set_model(restored)
    restore.on_train_begin()
    assert int(restored.optimizer.iterations) == 3
    np.testing.assert_array_equal(restored.layers[0].kernel.numpy(), saved_kernel)


def test_replacing_keeps_the_old_file_when_writing_fails_and_swaps_in_the_new_one(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old complete file")
    with pytest.raises(RuntimeError), callbacks_lib.replacing(str(path)) as temporary:
        assert temporary.endswith(".keras") and temporary != str(path)
        pathlib.Path(temporary).write_bytes(b"new but half")
        raise RuntimeError("killed while writing")
    assert path.read_bytes() == b"old complete file"
    assert os.listdir(tmp_path) == ["model.keras"]
    with callbacks_lib.replacing(str(path)) as temporary:
        pathlib.Path(temporary).write_bytes(b"new complete file")
        assert path.read_bytes() == b"old complete file"  # not visible until renamed
    assert path.read_bytes() == b"new complete file"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_a_rerun_removes_the_temporary_file_a_killed_backup_left(tmp_path):
    stale = tmp_path / (callbacks_lib.PARTIAL_PREFIX + "latest.weights.h5")
    stale.write_bytes(b"half a file")  # what a SIGKILL during a backup leaves
    model = _model()
    callback = callbacks_lib.StepBackupAndRestore(str(tmp_path), save_freq=1,
                                                  steps_per_epoch=5)
    callback.set_model(model)
    callback.on_train_begin()
    assert not stale.exists()
    assert int(model.optimizer.iterations) == 0  # nothing complete to restore
