"""MultiWorkerMirroredStrategy: two workers on loopback train stage 1 like one process.

The workers are subprocesses of `tests.training.multi_worker_run` with TF_CONFIG naming
two free loopback ports; a third child trains the same configuration on one device and
mirrored over two logical CPUs. Children are killed if the whole exchange takes longer
than TIMEOUT_S, so a hung collective cannot block the test run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer

from conceptmask_tf.training import distribute_compat
from conceptmask_tf.training.config import EmbeddingConfig
from conceptmask_tf.training.strategy import create_strategy, worker_model_dir

ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 480  # ~1 min on 2 idle cores; the limit only guards against a hang


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_children(commands: dict[str, tuple[list[str], dict[str, str]]]
                  ) -> dict[str, subprocess.CompletedProcess]:
    """Runs the commands at the same time; kills them all at the deadline."""
    children = {name: subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
                for name, (args, env) in commands.items()}
    deadline = time.monotonic() + TIMEOUT_S
    done = {}
    try:
        for name, child in children.items():
            out, err = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
            done[name] = subprocess.CompletedProcess(child.args, child.returncode, out, err)
    except subprocess.TimeoutExpired:
        pytest.fail(f"multi-worker children did not finish within {TIMEOUT_S} s")
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.communicate()
    return done


@pytest.mark.slow
def test_two_workers_train_stage1_like_one_process(world, tmp_path):
    runner = [sys.executable, "-m", "tests.training.multi_worker_run"]
    world_json = json.dumps(dataclasses.asdict(world))
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    base_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    commands = {"reference": ([*runner, "reference", world_json, str(tmp_path)], base_env)}
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        commands[f"worker{index}"] = ([*runner, "worker", world_json, str(tmp_path)],
                                      {**base_env, "TF_CONFIG": json.dumps(tf_config)})
    results = {}
    for name, child in _run_children(commands).items():
        assert child.returncode == 0, f"{name}:\n{child.stderr[-4000:]}"
        results.update(json.loads(child.stdout.strip().splitlines()[-1]))

    chief, other = results["worker0"], results["worker1"]
    for run in (chief, other):
        assert (run["strategy"], run["replicas"]) == ("CollectiveAllReduceStrategy", 2)
        assert run["jit_compile"] is False  # requested, turned off over > 1 replica
        assert run["steps"] == results["single"]["steps"] == 2 * 3  # epochs x steps
    # Chief-only writes: the chief owns model_dir, the other worker its workertemp dir.
    model_dir = pathlib.Path(world.work) / "multi_worker"
    assert chief["model_dir"] == str(model_dir)
    assert other["model_dir"] == str(model_dir / "workertemp_1")
    for directory in (model_dir, model_dir / "workertemp_1"):
        assert {"config.json", "embedding.keras", "checkpoints", "logs"} <= set(
            os.listdir(directory))
    assert not (model_dir / "backup").exists()  # deleted after a successful fit

    weights = {name: np.load(tmp_path / f"{name}.npz") for name in results}
    for run in results.values():  # same data and initial weights everywhere
        assert run["skips"] == chief["skips"]
        assert run["initial"] == pytest.approx(chief["initial"], rel=1e-6)
    # Gradients and logged losses are reduced over all replicas: both workers log the
    # same losses and end with the same trainable weights; SyncReplicaStatistics averages
    # the BatchNorm statistics over both workers, so those agree too (each worker's own
    # half batches gave statistics 0.009 apart without it).
    np.testing.assert_allclose(other["losses"], chief["losses"], rtol=1e-6)
    for key in weights["worker0"].files:
        if key.startswith("t"):
            np.testing.assert_array_equal(weights["worker1"][key], weights["worker0"][key])
        else:
            np.testing.assert_allclose(weights["worker1"][key], weights["worker0"][key],
                                       rtol=1e-6, atol=1e-7, err_msg=key)
    # Against one process with the same global batch, mirrored over two logical CPUs: each
    # BatchNorm sees the same half batch, and (distribute_compat) neither run takes a
    # batch from the data to build the model, so both train on the same batches: the
    # same losses. (Before that fix, a race between the discarded build iterator and the
    # shuffle's seed generator gave the distributed runs varying data orders: losses up
    # to 11 % apart.) On one device BatchNorm normalises the whole batch: epoch losses
    # 4.6 % apart when measured. A loss not averaged over the replicas would be off by 2x.
    np.testing.assert_allclose(chief["losses"], results["mirrored"]["losses"], rtol=1e-5)
    np.testing.assert_allclose(chief["history"]["loss"], results["single"]["history"]["loss"],
                               rtol=0.1)


@pytest.mark.slow
def test_two_workers_train_from_shards_reading_disjoint_files(world, tmp_path):
    from conceptmask_tf.training.shard_writer import write_stage_shards
    from tests.trained_world import tiny_config

    shards = write_stage_shards(tiny_config(EmbeddingConfig, world, "unused"),
                                str(tmp_path / "shards"), num_shards=4,
                                show_progress=False).shards
    runner = [sys.executable, "-m", "tests.training.multi_worker_run", "shards_worker",
              json.dumps(dataclasses.asdict(world)), str(tmp_path), shards.directory]
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    base_env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    commands = {}
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        commands[f"worker{index}"] = (runner, {**base_env, "TF_CONFIG": json.dumps(tf_config)})
    results = {}
    for name, child in _run_children(commands).items():
        assert child.returncode == 0, f"{name}:\n{child.stderr[-4000:]}"
        results.update(json.loads(child.stdout.strip().splitlines()[-1]))
    read = [results[f"worker{i}"]["files"] for i in range(2)]
    assert read[0] == [list(shards.files[0::2])] and read[1] == [list(shards.files[1::2])]
    for run in results.values():
        assert run["steps"] == 3
    np.testing.assert_allclose(results["worker1"]["loss"], results["worker0"]["loss"],
                               rtol=1e-6)  # one model, trained on both workers' batches


def _seeded_fit_losses(strategy: tf.distribute.Strategy | None) -> list[float]:
    """Per-step losses of a BatchNorm-free model on a seeded, reshuffled, repeated dataset."""
    keras.utils.set_random_seed(0)
    data = np.random.default_rng(0).normal(size=(24, 3)).astype("float32")
    dataset = (tf.data.Dataset.from_tensor_slices((data, data[:, :2]))
               .shuffle(24, seed=1, reshuffle_each_iteration=True).repeat().batch(4))
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile("sgd", "mse")
    losses = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"])))
    model.fit(dataset, epochs=1, steps_per_epoch=5, shuffle=False, verbose=0,
              callbacks=[callback])
    return losses


def test_fit_under_a_strategy_takes_no_batch_to_build_the_model(unpatched_keras):
    reference = _seeded_fit_losses(None)  # no strategy: keras builds when tracing
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    # keras' own build takes a batch from a first iterator and trains on a second one:
    # the reshuffled data come in another order.
    assert _seeded_fit_losses(mirrored) != pytest.approx(reference, rel=1e-6)
    assert distribute_compat.apply()
    np.testing.assert_allclose(_seeded_fit_losses(mirrored), reference, rtol=1e-6)


@pytest.fixture
def unpatched_keras(monkeypatch):
    """keras' own trainer functions during the test; whatever was there is put back after."""
    monkeypatch.setattr(tf_trainer, "reduce_per_replica",
                        distribute_compat._ORIGINAL_REDUCE_PER_REPLICA)
    monkeypatch.setattr(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build",
                        distribute_compat._ORIGINAL_SYMBOLIC_BUILD)


def test_patch_applies_only_to_verified_versions(unpatched_keras, caplog):
    assert distribute_compat.is_verified("3.15.1", "2.21.0")
    assert distribute_compat.is_verified(keras.__version__, tf.__version__)
    assert not distribute_compat.is_verified("3.16.0", "2.21.0")
    assert not distribute_compat.is_verified("3.15.1", "2.22.0")
    with caplog.at_level(logging.WARNING, logger=distribute_compat.__name__):
        assert not distribute_compat.apply("3.16.0", "2.22.0")
    assert "keras 3.16.0 / TensorFlow 2.22.0" in caplog.text
    assert distribute_compat.ISSUE in caplog.text
    assert not distribute_compat.is_patched()  # keras left as it is
    assert distribute_compat.apply() and distribute_compat.is_patched()
    assert distribute_compat.apply()  # idempotent


def test_patched_trainer_is_unchanged_without_workers(unpatched_keras):
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")

    def fit() -> list[float]:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile("sgd", "mse")
        return model.fit(x, x[:, :2], batch_size=8, epochs=2, verbose=0).history["loss"]

    before = fit()
    assert distribute_compat.apply()
    assert fit() == before
    strategy = tf.distribute.get_strategy()
    logs = {"loss": tf.constant(1.5)}
    assert tf_trainer.reduce_per_replica(logs, strategy, "auto")["loss"] is logs["loss"]


def test_multi_worker_needs_tf_config(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        create_strategy("multi_worker")
    # Only non-chief workers of a multi-worker strategy write elsewhere.
    assert worker_model_dir(str(tmp_path), tf.distribute.get_strategy()) == str(tmp_path)
