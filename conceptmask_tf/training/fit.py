"""What the three stages share: runtime set-up, optimizer, model dir, callbacks and `fit`."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import tensorflow as tf

from conceptmask_tf.concepts.concept_sets import HELD_OUT_FACT
from conceptmask_tf.data import skips as skips_lib
from conceptmask_tf.data.skips import Severity, SkipCounter
from conceptmask_tf.training import callbacks as callbacks_lib
from conceptmask_tf.training.config import CONFIG_FILE, TrainingConfig, save_config
from conceptmask_tf.training.strategy import (
    create_strategy,
    precision_policy,
    precision_policy_name,
    resolve_jit_compile,
    worker_model_dir,
)
from conceptmask_tf.training.summary_images import Pictures

BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"

logger = logging.getLogger(__name__)

# Which skip reasons mean a broken record (not a deliberate filter such as a concept that
# is not a target) is declared by the readers that define them (`Severity` in data/skips.py);
# `SkipCounter.check_bad_fraction` limits their share.
_BAD_REASON_SETS = {"BAD_IMAGE_FILE_REASONS": Severity.BAD_IMAGE_FILE,
                    "BAD_ANNOTATION_REASONS": Severity.BAD_ANNOTATION}


def __getattr__(name: str) -> frozenset[str]:
    """BAD_IMAGE_FILE_REASONS / BAD_ANNOTATION_REASONS: the reasons registered so far."""
    if name in _BAD_REASON_SETS:
        return skips_lib.reasons_with(_BAD_REASON_SETS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How a run executes: strategy, XLA as usable, dtype policy."""

    strategy: tf.distribute.Strategy
    jit_compile: bool
    policy: str

    def facts(self) -> dict[str, Any]:
        """For config.json's "runtime" section."""
        return {"strategy": type(self.strategy).__name__,
                "num_replicas": int(self.strategy.num_replicas_in_sync),
                "jit_compile": self.jit_compile, "dtype_policy": self.policy,
                "tensorflow": tf.__version__, "keras": keras.__version__}


@dataclasses.dataclass
class TrainResult:
    """What a stage's `train` returns.

    Attributes:
        config: The resolved configuration (as written to config.json).
        model: The trained stage network (also saved at `model_path`).
        trainer: The model `fit` ran (in stage 1 the stage network itself, or with the
            tag loss a two-output model sharing its layers; in stages 2 and 3 a wrapper
            holding it and the frozen networks and losses).
        history: Per-epoch logs of this run (a resumed run has only its own epochs).
        model_path: The final .keras file.
        skips: Records dropped while reading the data.
        facts: The stage's facts written to config.json's "runtime" section.
    """

    config: TrainingConfig
    model: keras.Model
    trainer: keras.Model
    history: dict[str, list[float]]
    model_path: str
    skips: SkipCounter
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Optimizer steps taken in all (this and resumed) runs."""
        # int() of a variable created under a strategy fails (a MirroredVariable).
        return callbacks_lib.optimizer_steps(self.trainer)

    def summary(self) -> str:
        """A short report of what was trained and written."""
        last = {k: v[-1] for k, v in self.history.items() if v}
        logs = os.path.join(self.config.model_dir, LOG_DIR)
        config_path = os.path.join(self.config.model_dir, CONFIG_FILE)
        lines = [f"wrote {self.model_path} and {config_path}",
                 (f"  {self.config.epochs} epochs x {self.config.steps} steps "
                  f"(batch {self.config.batch_size}); {self.steps} optimizer steps in all"),
                 "  last epoch: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items()),
                 f"  TensorBoard: tensorboard --logdir {logs}"]
        held_out = self.facts.get(HELD_OUT_FACT)
        if held_out:
            more = f", ... ({HELD_OUT_FACT} in config.json)" if len(held_out) > 10 else ""
            lines.append(f"  not trained: {len(held_out)} concepts containing a zero-shot "
                         f"word: {', '.join(held_out[:10])}{more}")
        report = self.skips.report()
        if report:
            lines.append(report)
        return "\n".join(lines)


@contextlib.contextmanager
def training_runtime(config: TrainingConfig,
                     strategy: tf.distribute.Strategy | None = None) -> Iterator[Runtime]:
    """Seeds everything, creates the strategy and sets the dtype policy for the block.

    Args:
        config: The run's configuration.
        strategy: A strategy to use instead of creating the configured one.

    Raises:
        ValueError: The batch does not split evenly over the replicas, or multi_worker
            without TF_CONFIG (see `create_strategy`).
    """
    keras.utils.set_random_seed(config.seed)
    if strategy is None:
        strategy = create_strategy(config.distribution_strategy, config.tpu)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"batch_size {config.batch_size} does not split over {replicas} "
                         "replicas")
    policy = precision_policy_name(config.mixed_precision, strategy)
    with precision_policy(policy):
        yield Runtime(strategy, resolve_jit_compile(config.jit_compile, strategy), policy)


def make_optimizer(config: TrainingConfig) -> keras.optimizers.Optimizer:
    """Adam, or SGD with momentum 0.9, at the configured learning rate and schedule.

    Args:
        config: A resolved configuration (`resolved_config`: steps per epoch set), which
            the cosine schedule needs for its length.
    """
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        if config.steps is None:
            raise ValueError("the cosine schedule needs the steps per epoch: pass a "
                             "resolved config (fit.resolved_config)")
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * config.steps)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    return keras.optimizers.Adam(learning_rate)


def training_input_options(config: TrainingConfig, skips: SkipCounter,
                           strategy: tf.distribute.Strategy | None = None) -> dict[str, Any]:
    """Keyword arguments every stage's training pipeline takes from the config.

    One place, so the three stages shuffle, augment, skip bad images and repeat alike.
    With `config.shards`, also "input_pipelines" (`input_pipelines` of the strategy).
    """
    options = {"batch_size": config.batch_size, "training": True, "seed": config.seed,
               "flip": config.flip, "scale_jitter": config.scale_jitter,
               "max_bad_fraction": config.max_bad_fraction, "skips": skips,
               "shuffle_buffer": config.shuffle_buffer, "repeat": True}
    if config.shards:
        options["input_pipelines"] = input_pipelines(strategy or tf.distribute.get_strategy())
    return options


def input_pipelines(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(count, index) of this process's input pipeline: one per worker.

    Under `MultiWorkerMirroredStrategy` every worker (the chief counting as worker 0)
    reads its own share of the shard files; any other strategy runs one pipeline.

    Raises:
        ValueError: A TPU strategy over several hosts (each host would need its share
            through `distribute_datasets_from_function`, which keras' `fit` does not call).
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        resolver = strategy.cluster_resolver
        spec = resolver.cluster_spec()
        chiefs = spec.num_tasks("chief") if "chief" in spec.jobs else 0
        workers = spec.num_tasks("worker") if "worker" in spec.jobs else 0
        index = resolver.task_id + (chiefs if resolver.task_type == "worker" else 0)
        return max(chiefs + workers, 1), index
    if isinstance(strategy, tf.distribute.TPUStrategy) and strategy.extended.num_hosts > 1:
        raise ValueError("training from shards on a multi-host TPU is not supported: each "
                         "host would read every file")
    return 1, 0


def resolve_steps(config: TrainingConfig, num_examples: int) -> int:
    """Steps per epoch: `config.steps`, else one pass over the examples (full batches).

    Raises:
        ValueError: Fewer examples than one batch.
    """
    if config.steps:
        return config.steps
    steps = num_examples // config.batch_size
    if steps < 1:
        raise ValueError(f"{num_examples} training examples make no full batch of "
                         f"{config.batch_size}; lower --batch_size or set --steps")
    return steps


def resolved_config(config: TrainingConfig, num_examples: int, runtime: Runtime
                    ) -> TrainingConfig:
    """`config` with steps per epoch (`resolve_steps`) and XLA as the runtime uses them.

    On a non-chief multi-worker process the model dir is its own (`worker_model_dir`).
    """
    return dataclasses.replace(config, steps=resolve_steps(config, num_examples),
                               jit_compile=runtime.jit_compile,
                               model_dir=worker_model_dir(config.model_dir, runtime.strategy))


def check_resume(config: TrainingConfig) -> None:
    """Refuses to resume a backup whose step accounting differs from this run's.

    Raises:
        ValueError: model_dir holds a backup of a run with other steps or batch size.
    """
    backup = os.path.join(config.model_dir, BACKUP_DIR)
    path = os.path.join(config.model_dir, CONFIG_FILE)
    if not (os.path.isdir(backup) and os.path.exists(path)):
        return
    with open(path, encoding="utf-8") as f:
        previous = json.load(f).get("config", {})
    changed = [k for k in ("steps", "batch_size") if previous.get(k) != getattr(config, k)]
    if changed:
        before = ", ".join(f"{k}={previous.get(k)}" for k in changed)
        now = ", ".join(f"{k}={getattr(config, k)}" for k in changed)
        raise ValueError(f"{config.model_dir} holds a backup of an interrupted run with "
                         f"{before}; this run has {now}. Resume with the same values, or "
                         f"delete {backup} to start over.")
    logger.info("resuming from the backup in %s", backup)


def fit_stage(trainer: keras.Model, dataset: tf.data.Dataset, *, config: TrainingConfig,
              runtime: Runtime, stage_model: keras.Model, model_file: str,
              num_examples: int, pictures: Pictures | None = None,
              facts: dict[str, Any] | None = None, skips: SkipCounter | None = None,
              callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Checks the bad records, writes config.json, fits and saves the stage network.

    Callbacks: `SyncReplicaStatistics` (BatchNorm statistics of all replicas averaged
    each epoch), `StepBackupAndRestore` (model_dir/backup, every `save_freq` steps),
    TensorBoard scalars (model_dir/logs), per-epoch `StageCheckpoint`s
    (model_dir/checkpoints), `SummaryImages` of `pictures` (model_dir/logs/images), then
    `callbacks`.

    Args:
        trainer: The compiled model to fit.
        dataset: Repeating training dataset.
        config: The resolved configuration (steps set).
        runtime: From `training_runtime`.
        stage_model: The network saved at the end (and in checkpoints).
        model_file: File name of the final model in model_dir (written to a temporary
            file and renamed).
        num_examples: Training examples (for `SkipCounter.check_bad_fraction`).
        pictures: TensorBoard pictures drawn each epoch (None: no pictures).
        facts: Extra "runtime" facts for config.json (also kept in the result; a
            non-empty `HELD_OUT_FACT` is named in its summary).
        skips: Records dropped while reading the data.
        callbacks: Extra callbacks (run last).

    Bad image files are found where the pipeline reads them: each epoch's new ones are
    logged (`callbacks.ReportSkips`), config.json's "skipped_records" is written again
    at the end, and the pipeline stops the run when they pass `config.max_bad_fraction`.

    Raises:
        DataError: More than `config.max_bad_fraction` of the records are bad (before or
            during training).
        ValueError: model_dir holds a backup of a run with other step accounting.
    """
    skips = skips if skips is not None else SkipCounter()
    facts = dict(facts or {})
    skips.check_bad_fraction(num_examples, config.max_bad_fraction)
    skips.log(logger)
    check_resume(config)
    save_config(config, config.model_dir, {**runtime.facts(), **facts,
                                           "skipped_records": skips.as_dict()})
    model_dir = config.model_dir
    standard = [callbacks_lib.SyncReplicaStatistics(),
                callbacks_lib.StepBackupAndRestore(os.path.join(model_dir, BACKUP_DIR),
                                                   config.save_freq, config.steps)]
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    if tensorboard:
        standard.append(keras.callbacks.TensorBoard(
            os.path.join(model_dir, LOG_DIR), write_graph=False, update_freq="epoch",
            profile_batch=0))
    else:  # tf.summary.scalar / image are implemented by the tensorboard package
        logger.warning("the tensorboard package is not installed: no TensorBoard logs "
                       "(pip install tensorboard)")
    if config.keep_checkpoints:
        standard.append(callbacks_lib.StageCheckpoint(
            stage_model, os.path.join(model_dir, CHECKPOINT_DIR), config.stage,
            config.keep_checkpoints))
    if pictures is not None and tensorboard:
        standard.append(callbacks_lib.SummaryImages(
            os.path.join(model_dir, LOG_DIR, "images"), f"{config.stage}/validation",
            pictures.render, pictures.description))
    standard.append(callbacks_lib.ReportSkips(skips, logger))
    try:
        history = trainer.fit(dataset, epochs=config.epochs, steps_per_epoch=config.steps,
                              callbacks=[*standard, *callbacks], shuffle=False,
                              verbose=callbacks_lib.progress_verbosity())
    except tf.errors.OpError:
        if skips.over_limit is not None:  # raised in the input pipeline
            raise skips.over_limit from None
        raise
    save_config(config, config.model_dir, {**runtime.facts(), **facts,
                                           "skipped_records": skips.as_dict()})
    model_path = os.path.join(model_dir, model_file)
    with callbacks_lib.replacing(model_path) as temporary:
        stage_model.save(temporary)
    return TrainResult(config, stage_model, trainer, dict(history.history), model_path,
                       skips, facts)
