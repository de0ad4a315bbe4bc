"""Child process of test_multi_worker.py: stage 1 on one worker of a cluster, or the references.

Usage: python -m tests.training.multi_worker_run MODE '<World as JSON>' OUT_DIR [SHARDS]
  MODE "worker": one worker of the cluster in TF_CONFIG (--distribution_strategy
      multi_worker), model dir <work>/multi_worker (the chief's; the others write into
      their `worker_model_dir`).
  MODE "shards_worker": the same from the stage-1 shards in SHARDS (model dir
      <work>/multi_worker_shards); also prints the shard files this worker's input
      pipeline read.
  MODE "reference": the same run on one device (model dir <work>/mw_single) and mirrored
      over two logical CPU devices (<work>/mw_mirrored), the multi-worker split in one
      process.
Prints one JSON line: per run its history, per-step running losses, sum of the initial
trainable weights, skipped records, optimizer steps, model dir, strategy, replicas and XLA
setting; writes each run's final weights to OUT_DIR/<run>.npz (t<i>: trainable,
n<i>: non-trainable).
"""

import os
import sys

import tensorflow as tf

if sys.argv[1] == "reference":  # before TensorFlow initialises
    _CPU = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import json

import keras
import numpy as np

from conceptmask_tf.training import embedding
from conceptmask_tf.training.config import EmbeddingConfig
from tests.trained_world import World, tiny_config

# Same data order and global batch (8) in every run; jit_compile is requested to check
# that it is turned off over several replicas.
SETTINGS = {"epochs": 2, "steps": 3, "summary_images": 0, "keep_checkpoints": 1,
            "jit_compile": True}


class _Record(keras.callbacks.Callback):
    """The sum of the initial weights and each step's running loss."""

    def __init__(self) -> None:
        super().__init__()
        self.initial = 0.0
        self.losses = []

    def on_train_begin(self, logs=None):
        self.initial = float(sum(np.sum(keras.ops.convert_to_numpy(w))
                                 for w in self.model.trainable_weights))

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def _run(world: World, name: str, strategy: str, out_dir: str, key: str) -> dict:
    config = tiny_config(EmbeddingConfig, world, name, distribution_strategy=strategy,
                         **SETTINGS)
    record = _Record()
    result = embedding.train(config, callbacks=[record])
    with open(os.path.join(result.config.model_dir, "config.json")) as f:
        runtime = json.load(f)["runtime"]
    weights = {f"{kind}{i}": keras.ops.convert_to_numpy(w)
               for kind, group in (("t", result.model.trainable_weights),
                                   ("n", result.model.non_trainable_weights))
               for i, w in enumerate(group)}
    np.savez(os.path.join(out_dir, f"{key}.npz"), **weights)
    return {"history": result.history, "steps": result.steps, "initial": record.initial,
            "losses": record.losses, "skips": result.skips.as_dict(),
            "model_dir": result.config.model_dir, "strategy": runtime["strategy"],
            "replicas": runtime["num_replicas"], "jit_compile": result.config.jit_compile}


def _run_from_shards(world: World, shards: str) -> dict:
    from conceptmask_tf.data.datasets import builder

    read = []
    original = builder.shard_examples

    def recording(shard_set, **kwargs):
        count, index = kwargs["input_pipelines"]
        read.append(shard_set.files[index::count])
        return original(shard_set, **kwargs)

    builder.shard_examples = recording
    config = tiny_config(EmbeddingConfig, world, "multi_worker_shards", shards=shards,
                         distribution_strategy="multi_worker", epochs=1, steps=3,
                         summary_images=0, keep_checkpoints=0)
    result = embedding.train(config)
    return {"files": read, "steps": result.steps, "loss": result.history["loss"]}


def main(mode: str, world: World, out_dir: str, shards: str = "") -> dict:
    if mode == "shards_worker":
        key = f"worker{json.loads(os.environ['TF_CONFIG'])['task']['index']}"
        return {key: _run_from_shards(world, shards)}
    if mode == "worker":
        key = f"worker{json.loads(os.environ['TF_CONFIG'])['task']['index']}"
        return {key: _run(world, "multi_worker", "multi_worker", out_dir, key)}
    return {"single": _run(world, "mw_single", "none", out_dir, "single"),
            "mirrored": _run(world, "mw_mirrored", "mirrored", out_dir, "mirrored")}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], World(**json.loads(sys.argv[2])), *sys.argv[3:])))
