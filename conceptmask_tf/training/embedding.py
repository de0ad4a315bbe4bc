"""Stage 1 training (paper §4.1): the embedding network on image-level tags.

image -> `EmbeddingModel` -> e, cosine loss to the image's soft-topic vector t (idf-weighted
sum of its tags' word vectors, zero-shot tags and tags containing a zero-shot word left
out). Plain `compile` + `fit`.

With `tag_loss_weight > 0` (a departure from the paper) the model is trained through a
two-output trainer that adds `TagLoss` on `ConceptTagScores` of the per-location embedding
map: each of the image's tags must be matched by some location (multiple-instance
learning), so the coarse maps <e_ij, w> localise concepts. Only the `EmbeddingModel` is
saved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from conceptmask_tf.concepts.concept_sets import (
    TrainingConcepts,
    soft_topic_targets,
    tag_row_matrix,
)
from conceptmask_tf.data.datasets import (
    embedding_dataset,
    embedding_dataset_from_shards,
    embedding_elements,
)
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.tags import read_tag_corpus
from conceptmask_tf.errors import DataError
from conceptmask_tf.losses import CosineEmbeddingLoss, TagLoss
from conceptmask_tf.models import (
    ConceptAttention,
    ConceptTagScores,
    EmbeddingModel,
    stage_files,
    to_fully_convolutional,
)
from conceptmask_tf.training import fit
from conceptmask_tf.training.config import EmbeddingConfig
from conceptmask_tf.training.stage import BuiltStage, ShardExamples, Stage
from conceptmask_tf.training.summary_images import (
    Pictures,
    SummaryExamples,
    picture_rows,
    validation_examples,
)

SUMMARY_SPLITS = ("strong", "weak_box", "weak_image")


@dataclasses.dataclass(frozen=True)
class TagExamples:
    """Stage 1's training examples (`tag_targets`).

    Attributes:
        paths: Image paths relative to the data root, [N].
        targets: float32 [N, D] soft-topic targets.
        tag_rows: int32 [N, T] tag rows for the tag loss, or None (tag loss off).
    """

    paths: list[str]
    targets: np.ndarray
    tag_rows: np.ndarray | None


class EmbeddingStage(Stage[EmbeddingConfig, TagExamples]):
    """Stage 1 in the shared skeleton (`Stage`); see `train`."""

    model_file = stage_files.MODEL_FILES["embedding"]
    shard_stage = "embedding"

    def read_examples(self, config: EmbeddingConfig, concepts: TrainingConcepts,
                      skips: SkipCounter) -> tuple[TagExamples, int]:
        examples = TagExamples(*tag_targets(config, concepts, skips))
        return examples, len(examples.paths)

    def build(self, config: EmbeddingConfig, concepts: TrainingConcepts,
              examples: TagExamples | ShardExamples) -> BuiltStage:
        model = EmbeddingModel(config.backbone, concepts.embeddings.dim,
                               hidden_dims=config.hidden_dims, final_relu=config.final_relu,
                               pooling=config.pooling, backbone_weights=config.backbone_weights)
        if config.tag_loss_weight <= 0:
            return BuiltStage(model, model, CosineEmbeddingLoss())
        return BuiltStage(
            model, tag_loss_trainer(model, config, concepts),
            {"embedding": CosineEmbeddingLoss(),
             "tags": TagLoss(len(concepts.embeddings.vocabulary),
                             concepts.excluded_rows().tolist())},
            {"embedding": 1.0, "tags": config.tag_loss_weight})

    def elements(self, config: EmbeddingConfig, examples: TagExamples,
                 skips: SkipCounter) -> dict[str, Any]:
        return embedding_elements(config.data_root, examples.paths, examples.targets,
                                  examples.tag_rows)

    def dataset(self, config: EmbeddingConfig, examples: TagExamples | ShardExamples,
                built: BuiltStage, input_options: dict[str, Any]) -> tf.data.Dataset:
        if isinstance(examples, ShardExamples):
            return embedding_dataset_from_shards(
                examples.shards, image_size=config.image_size,
                with_tags=config.tag_loss_weight > 0, **input_options)
        return embedding_dataset(config.data_root, examples.paths, examples.targets,
                                 image_size=config.image_size, tag_rows=examples.tag_rows,
                                 **input_options)

    def pictures(self, config: EmbeddingConfig, concepts: TrainingConcepts,
                 examples: TagExamples, built: BuiltStage) -> Pictures | None:
        summary = validation_examples(config.data_root, SUMMARY_SPLITS,
                                      _non_zero_shot_index(concepts), config.image_size,
                                      config.summary_images)
        return None if summary is None else Pictures(
            lambda: render_coarse_attention(built.stage_model, summary,
                                            concepts.embeddings.vectors),
            summary.description("image | coarse attention <e_ij, w> (min-max scaled)"))

    def facts(self, config: EmbeddingConfig, concepts: TrainingConcepts,
              examples: TagExamples, built: BuiltStage) -> dict[str, Any]:
        return {"vocabulary_size": len(concepts.embeddings.vocabulary),
                "embedding_dim": concepts.embeddings.dim, **concepts.exclusion_facts()}


def train(config: EmbeddingConfig,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          strategy: tf.distribute.Strategy | None = None) -> fit.TrainResult:
    """Trains stage 1 and writes `<model_dir>/embedding.keras` and config.json.

    Rerunning with the same model_dir resumes an interrupted run from its last backup.

    Args:
        config: The stage-1 configuration.
        callbacks: Extra Keras callbacks.
        strategy: Use this tf.distribute strategy instead of creating the configured one
            (share one between stages run in the same process).

    Returns:
        The trained `EmbeddingModel`, history and paths.

    Raises:
        FileNotFoundError: tags.jsonl or a concepts file is missing.
        DataError: Malformed input, or no image with a soft-topic target.
        ValueError: Bad settings (e.g. fewer examples than one batch).
    """
    return EmbeddingStage().train(config, callbacks, strategy)


def tag_loss_trainer(model: EmbeddingModel, config: EmbeddingConfig,
                     concepts: TrainingConcepts) -> keras.Model:
    """The model with a second output: tag logits of its per-location embedding map.

    Shares `model`'s layers, so fitting the trainer trains `model`.

    Returns:
        Model image -> {"embedding": e [B, D], "tags": logits [B, V]}.
    """
    embedding_map = model.get_layer("pool").input  # [B, h, w, D], before the averaging
    vectors = concepts.embeddings.vectors
    scores = ConceptTagScores(*vectors.shape, word_vectors=vectors,
                              temperature=config.tag_loss_temperature, name="tag_scores")
    return keras.Model(model.input, {"embedding": model.output,
                                     "tags": scores(embedding_map)}, name="embedding_trainer")


def tag_targets(config: EmbeddingConfig, concepts: TrainingConcepts, skips: SkipCounter
                ) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Image paths, their soft-topic targets float32 [N, D] from tags.jsonl, and (with
    the tag loss on) their tag rows int32 [N, T] (`tag_row_matrix`), else None.

    Raises:
        FileNotFoundError: No tags.jsonl.
        DataError: Malformed input, or no image with a target.
    """
    root = DataRoot(config.data_root)
    tags_path = root.require(root.tags, "stage 1 (embedding) training")
    corpus = read_tag_corpus(tags_path, skips, with_images=True)
    paths, targets = soft_topic_targets(corpus, concepts, skips)
    if not paths:
        raise DataError("no image has a tag in concepts.tsv that is a training target "
                        "(not zero-shot and containing no zero-shot word)", tags_path)
    if config.tag_loss_weight <= 0:
        return paths, targets, None
    return paths, targets, tag_row_matrix(corpus, concepts, paths)


def render_coarse_attention(model: EmbeddingModel, examples: SummaryExamples,
                            word_vectors: np.ndarray) -> np.ndarray:
    """Pictures of the coarse attention <e_ij, w> (eq. 1) of each example's concept.

    Returns:
        uint8 [N, S, 2 S, 3]: image | attention heat map.
    """
    fcn = to_fully_convolutional(model)
    embedding_map = fcn(examples.images, training=False)["embedding_map"]  # [N, h, w, D]
    vectors = word_vectors[examples.concept_ids][:, None, :]  # [N, 1, D]
    attention = ConceptAttention("cosine")(embedding_map, vectors)  # [N, h, w, 1]
    return picture_rows(examples.images, keras.ops.convert_to_numpy(attention)[..., 0])


def _non_zero_shot_index(concepts: TrainingConcepts) -> dict[str, int]:
    excluded = concepts.excluded
    return {c: i for c, i in concepts.embeddings.vocabulary.index_of.items()
            if c not in excluded}

