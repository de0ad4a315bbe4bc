"""The training skeleton every stage shares; a stage fills in only where it differs.

`Stage.train` runs the steps common to all stages, in this order:

1. `fit.training_runtime` (seeds, strategy, dtype policy);
2. the training concepts (`load_concepts`) and the run's `SkipCounter`;
3. the stage's training examples (`read_examples`, or with `--shards` the shard index:
   `read_shards`);
4. `fit.resolved_config` (steps per epoch, XLA, a worker's model dir);
5. in the strategy scope: the networks (`build`), compiled with `fit.make_optimizer`
   and the runtime's XLA setting;
6. the training pipeline (`dataset`, given `fit.training_input_options`);
7. the TensorBoard pictures (`pictures`) and config.json facts (`facts`, after the
   "num_examples" fact the skeleton writes);
8. `fit.fit_stage` (bad-record check, config.json, resume, fit, save as `model_file`).

A stage variant is a subclass that overrides the hooks it changes, e.g.:

    class NoTagLossEmbedding(embedding.EmbeddingStage):
        def build(self, config, concepts, examples):
            built = super().build(config, concepts, examples)
            return dataclasses.replace(built, loss_weights={"embedding": 1.0, "tags": 0.0})

    result = NoTagLossEmbedding().train(config)
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import keras
import numpy as np
import tensorflow as tf

from conceptmask_tf.concepts.concept_sets import TrainingConcepts, load_training_concepts
from conceptmask_tf.data.shards import ShardSet
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.errors import DataError
from conceptmask_tf.training import fit
from conceptmask_tf.training.config import TrainingConfig
from conceptmask_tf.training.summary_images import Pictures

ConfigT = TypeVar("ConfigT", bound=TrainingConfig)
ExamplesT = TypeVar("ExamplesT")


@dataclasses.dataclass(frozen=True)
class BuiltStage:
    """What a stage's `build` makes in the strategy scope; the skeleton compiles it.

    Attributes:
        stage_model: The network saved at the end (and in checkpoints).
        trainer: The model `fit` runs (the stage network itself, or a wrapper around it).
        loss: `compile`'s loss (None: the trainer computes its loss itself).
        loss_weights: `compile`'s loss weights.
    """

    stage_model: keras.Model
    trainer: keras.Model
    loss: Any = None
    loss_weights: Any = None


@dataclasses.dataclass(frozen=True)
class ShardExamples:
    """A stage's training examples as shards (`--shards`, `Stage.read_shards`).

    Attributes:
        shards: The shard folder.
        index: Concept trained on -> vocabulary row (as the stage's own examples have it).
        facts: The examples' facts kept by the writer (`Stage.example_facts`).
    """

    shards: ShardSet
    index: dict[str, int]
    facts: dict[str, Any]


def concepts_fingerprint(concepts: TrainingConcepts) -> str:
    """A digest of what shards depend on: the vocabulary, its word vectors and the
    excluded (zero-shot and held-out) concepts."""
    digest = hashlib.sha256()
    digest.update("\n".join(concepts.embeddings.vocabulary.concepts).encode("utf-8"))
    digest.update(np.ascontiguousarray(concepts.embeddings.vectors, np.float32).tobytes())
    digest.update(np.ascontiguousarray(concepts.embeddings.vocabulary.idf, np.float64).tobytes())
    digest.update("\n".join(sorted(concepts.excluded)).encode("utf-8"))
    return digest.hexdigest()


class Stage(abc.ABC, Generic[ConfigT, ExamplesT]):
    """One training stage: the shared skeleton (`train`) and the stage's hooks.

    Hooks take the configuration resolved by `fit.resolved_config` (except
    `load_concepts` and `read_examples`, which run before it), the training concepts
    (None where `load_concepts` gives none) and what `read_examples` returned.

    Attributes:
        model_file: File name of the final network in the model dir.
        shard_stage: The stage name its shards carry (`conceptmask-shards`); stages
            that can train from shards set it and handle `ShardExamples` in `dataset`.
    """

    model_file: ClassVar[str]
    shard_stage: ClassVar[str] = ""  # the shards' stage name; "" cannot use shards

    def train(self, config: ConfigT, callbacks: Sequence[keras.callbacks.Callback] = (),
              strategy: tf.distribute.Strategy | None = None) -> fit.TrainResult:
        """Trains the stage and writes `<model_dir>/<model_file>` and config.json.

        Rerunning with the same model_dir resumes an interrupted run from its last backup.

        Args:
            config: The stage's configuration.
            callbacks: Extra Keras callbacks.
            strategy: Use this tf.distribute strategy instead of creating the configured
                one (share one between stages run in the same process).

        Returns:
            The trained stage network, history and paths.
        """
        with fit.training_runtime(config, strategy) as runtime:
            concepts = self.load_concepts(config)
            skips = SkipCounter(config.data_root)
            if config.shards:
                examples, num_examples = self.read_shards(config, concepts, skips)
            else:
                examples, num_examples = self.read_examples(config, concepts, skips)
            config = fit.resolved_config(config, num_examples, runtime)
            with runtime.strategy.scope():
                built = self.build(config, concepts, examples)
                built.trainer.compile(optimizer=fit.make_optimizer(config), loss=built.loss,
                                      loss_weights=built.loss_weights,
                                      jit_compile=runtime.jit_compile)
            dataset = self.dataset(config, examples, built,
                                   fit.training_input_options(config, skips,
                                                              runtime.strategy))
            return fit.fit_stage(
                built.trainer, dataset, config=config, runtime=runtime,
                stage_model=built.stage_model, model_file=self.model_file,
                num_examples=num_examples,
                pictures=self.pictures(config, concepts, examples, built),
                facts={"num_examples": num_examples,
                       **self.facts(config, concepts, examples, built)},
                skips=skips, callbacks=callbacks)

    def load_concepts(self, config: ConfigT) -> TrainingConcepts | None:
        """The training concepts the hooks get (`load_training_concepts` by default).

        Raises:
            FileNotFoundError: A concepts file is missing.
        """
        return load_training_concepts(config.data_root, config.concepts_dir)

    @abc.abstractmethod
    def read_examples(self, config: ConfigT, concepts: TrainingConcepts | None,
                      skips: SkipCounter) -> tuple[ExamplesT, int]:
        """Reads the training examples.

        Args:
            config: The configuration as given (not resolved yet).
            concepts: From `load_concepts`.
            skips: Counts the records dropped.

        Returns:
            (what the other hooks get as `examples`, the number of training examples
            before the image file checks).
        """

    def read_shards(self, config: ConfigT, concepts: TrainingConcepts | None,
                    skips: SkipCounter) -> tuple[ShardExamples, int]:
        """The training examples of `config.shards` (instead of `read_examples`): only the
        shard index is read; the skips counted when they were written (bad annotation
        records, bad image files) join `skips`.

        Raises:
            ValueError: The stage cannot train from shards.
            FileNotFoundError: No finished shards there.
            DataError: Shards of another stage, or written with other concepts.
        """
        if not self.shard_stage:
            raise ValueError(f"{type(self).__name__} cannot train from shards (--shards)")
        shards = ShardSet.load(config.shards, self.shard_stage)
        if concepts is not None and shards.metadata.get("concepts") != concepts_fingerprint(
                concepts):
            raise DataError("these shards were written with other concepts than "
                            f"{config.concepts_dir} (vocabulary, word vectors or zero-shot "
                            "split differ): write them again with conceptmask-shards",
                            shards.directory)
        skips.merge(shards.skip_counter())
        # The examples before the writer's image checks, as `read_examples` counts them.
        return (ShardExamples(shards, dict(shards.metadata.get("index", {})),
                              dict(shards.metadata.get("facts", {}))), shards.num_records)

    def elements(self, config: ConfigT, examples: ExamplesT, skips: SkipCounter
                 ) -> dict[str, Any]:
        """The per-example host rows of `examples` that `conceptmask-shards` writes
        (`datasets.*_elements`); what `dataset` then reads from the shards."""
        raise ValueError(f"{type(self).__name__} cannot write shards")

    def example_facts(self, examples: ExamplesT | ShardExamples) -> dict[str, Any]:
        """The facts of the examples themselves (kept in the shards), for `facts`."""
        return examples.facts if isinstance(examples, ShardExamples) else {}

    @abc.abstractmethod
    def build(self, config: ConfigT, concepts: TrainingConcepts | None,
              examples: ExamplesT) -> BuiltStage:
        """The stage network and the model `fit` runs, with its losses (called in the
        strategy scope; the skeleton compiles the trainer)."""

    @abc.abstractmethod
    def dataset(self, config: ConfigT, examples: ExamplesT, built: BuiltStage,
                input_options: dict[str, Any]) -> tf.data.Dataset:
        """The repeating training pipeline.

        Args:
            config: The resolved configuration.
            examples: From `read_examples`.
            built: From `build`, compiled.
            input_options: `fit.training_input_options` (the run's skips included).
        """

    def pictures(self, config: ConfigT, concepts: TrainingConcepts | None,
                 examples: ExamplesT, built: BuiltStage) -> Pictures | None:
        """TensorBoard pictures drawn each epoch (None by default: no pictures)."""
        return None

    def facts(self, config: ConfigT, concepts: TrainingConcepts | None, examples: ExamplesT,
              built: BuiltStage) -> dict[str, Any]:
        """The stage's facts for config.json's "runtime" section, after "num_examples"
        (none by default)."""
        return {}
