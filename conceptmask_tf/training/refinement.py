"""Stage 2 training (paper §4.2): attention refinement on boxes, with LwF matching.

`RefinementTrainer` wraps the `RefinementModel` (stage-1 network in fully-convolutional
form, fine-tuned, + refinement head) with a frozen copy of the stage-1 network (the
source of the matching targets) and the three losses, and overrides `compute_loss`:

    loss = box loss + c * matching loss + spatial discrimination loss (unless no_neg)

each term a `conceptmask_tf.losses` instance (Keras reduction, so scaled correctly under
tf.distribute) and each also a metric (box_loss, matching_loss, spatial_loss).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from conceptmask_tf.concepts.build import OVERLAP_FILE
from conceptmask_tf.concepts.concept_sets import (
    BOX_LEVELS,
    TrainingConcepts,
)
from conceptmask_tf.concepts.overlap import OverlapMatrix, gamma_from_overlap
from conceptmask_tf.data.boxes import load_box_images
from conceptmask_tf.data.datasets import (
    num_refinement_examples,
    refinement_dataset,
    refinement_dataset_from_shards,
    refinement_elements,
)
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.tags import read_oi_verified_labels
from conceptmask_tf.data.types import BoxedImage
from conceptmask_tf.errors import DataError
from conceptmask_tf.losses import (
    BoxLoss,
    ImageLabelLoss,
    MatchingLoss,
    SpatialDiscriminationLoss,
    matching_targets,
)
from conceptmask_tf.models import (
    EmbeddingModel,
    FullyConvolutionalEmbedding,
    RefinementModel,
    VocabularyAttention,
    freeze_backbone_before,
    split_backbone,
    stage_files,
    to_fully_convolutional,
)
from conceptmask_tf.training import fit
from conceptmask_tf.training.config import MATCHING_BINARIZE, RefinementConfig
from conceptmask_tf.training.stage import BuiltStage, ShardExamples, Stage
from conceptmask_tf.training.summary_images import (
    Pictures,
    SummaryExamples,
    picture_rows,
    validation_examples,
)

LABEL_NOT_USED = ("image-level label of a concept outside concepts.tsv or never a target "
                  "(zero-shot, held out): not used by the label loss")


@dataclasses.dataclass(frozen=True)
class _SharedLowerBackbone:
    """The frozen lower backbone both networks share, and each network's upper part.

    A plain dataclass, so Keras does not track these views of layers it already tracks.
    """

    lower: keras.Model
    tuned_upper: keras.Model
    original_upper: keras.Model


class RefinementTrainer(keras.Model):
    """Fits a `RefinementModel` with the stage-2 multi-task loss.

    Per batch, `call` scores three groups of concepts with the refinement network in one
    pass: the image's box concepts (K slots), the N matching concepts (the top-N
    vocabulary concepts of the frozen stage-1 maps, other than the box concepts and the
    excluded ones) and the J spatial-discrimination candidates.

    Args:
        refinement: The network trained (its `concept_input` must be "ids").
        original: Frozen stage-1 network in fully-convolutional form (made non-trainable).
        word_vectors: float32 [V, D], the vocabulary (rows = concept ids).
        matching_top_n: N (0 disables the matching loss).
        matching_weight: c.
        matching_threshold: Binarisation threshold of the original maps.
        matching_binarize: "min_max" (threshold each map after min-max normalisation)
            or "raw" (threshold the raw cosine map); see
            `conceptmask_tf.losses.matching_loss`.
        spatial_loss: The spatial discrimination loss, or None (no_neg).
        excluded_ids: Vocabulary rows never used as matching concepts (zero-shot, and
            concepts containing a zero-shot word).
        label_loss: The image-level label loss (`ImageLabelLoss`), or None (the paper:
            stage 2 reads no image-level labels). With it, the features carry
            "label_ids" and the targets "label_present" (`refinement_dataset`).
        finetune_from: Fine-tune the backbone from this layer up (`freeze_backbone_before`
            freezes the rest). The frozen lower backbone then computes the same features
            in both networks, so it runs once per step for both (`split_backbone`); this
            needs `refinement` and `original` to start from the same stage-1 weights. ""
            fine-tunes the whole backbone.
        **kwargs: keras.Model arguments.

    Inputs: the stage-2 pipeline's features {"image": [B, S, S, 3], "concept_ids": [B, K]}
            (and "label_ids": [B, L] with a label loss).
    Outputs: {"box_logits": [B, K, m, m], "matching_logits" / "matching_masks": [B, N, m, m],
              "matching_valid": [B, N], "matching_ids": [B, N] vocabulary rows,
              "spatial_logits": [B, J, m, m], "label_logits": [B, L, m, m]} (the matching,
              spatial and label entries only when those losses are on).
    """

    def __init__(self, refinement: RefinementModel, original: FullyConvolutionalEmbedding,
                 word_vectors: np.ndarray, *, matching_top_n: int, matching_weight: float,
                 matching_threshold: float, spatial_loss: SpatialDiscriminationLoss | None,
                 matching_binarize: str = "min_max", excluded_ids: Sequence[int] = (),
                 label_loss: ImageLabelLoss | None = None, finetune_from: str = "",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if refinement.concept_input != "ids":
            raise ValueError("the refinement network must take concept ids")
        self._shared = None
        if finetune_from:  # split first: a refused cut leaves nothing frozen
            lower, tuned_upper = split_backbone(refinement.embedding.backbone, finetune_from)
            self._shared = _SharedLowerBackbone(
                lower, tuned_upper, split_backbone(original.backbone, finetune_from)[1])
            freeze_backbone_before(refinement.embedding.backbone, finetune_from)
        if matching_binarize not in MATCHING_BINARIZE:
            raise ValueError(f"matching_binarize must be one of {MATCHING_BINARIZE}, "
                             f"got {matching_binarize!r}")
        self.refinement = refinement
        self.original = original
        self.original.trainable = False
        word_vectors = np.asarray(word_vectors, np.float32)
        excluded = np.zeros(len(word_vectors), bool)
        excluded[np.asarray(excluded_ids, np.int64)] = True
        # Matching candidates: vocabulary rows that are not excluded. The frozen maps are
        # computed for those rows only; `_row_position` maps a row to its column there.
        self._matching_rows = np.flatnonzero(~excluded).astype(np.int32)  # [V']
        self._row_position = np.full(len(word_vectors), -1, np.int32)
        self._row_position[self._matching_rows] = np.arange(len(self._matching_rows),
                                                            dtype=np.int32)
        self.matching_top_n = min(int(matching_top_n), len(self._matching_rows))
        self.matching_threshold = float(matching_threshold)
        self.matching_binarize = matching_binarize
        self.original_vocabulary = None
        if self.matching_top_n > 0:
            self.original_vocabulary = VocabularyAttention(
                len(self._matching_rows), word_vectors.shape[1], refinement.similarity,
                word_vectors[self._matching_rows], name="original_vocabulary")
        self.box_loss = BoxLoss()
        self.matching_loss = MatchingLoss(matching_weight)
        self.spatial_loss = spatial_loss
        self.label_loss = label_loss
        self._candidate_ids = (np.zeros(0, np.int32) if spatial_loss is None
                               else spatial_loss.candidate_ids.astype(np.int32))  # [J]
        # One metric per loss term in use (Keras resets and logs tracked metrics).
        self.box_loss_metric = keras.metrics.Mean(name="box_loss")
        self.matching_loss_metric = (keras.metrics.Mean(name="matching_loss")
                                     if self.uses_matching else None)
        self.spatial_loss_metric = (keras.metrics.Mean(name="spatial_loss")
                                    if self.uses_spatial else None)
        self.label_loss_metric = (keras.metrics.Mean(name="label_loss")
                                  if label_loss is not None else None)
        self.built = True  # every weight exists already (BackupAndRestore needs it built)

    @property
    def uses_matching(self) -> bool:
        return self.matching_top_n > 0

    @property
    def uses_spatial(self) -> bool:
        return len(self._candidate_ids) > 0

    def call(self, features, training=False):
        image = features["image"]  # [B, S, S, 3]
        # int32 again: Keras' symbolic build under MirroredStrategy averages the batch.
        box_ids = ops.cast(features["concept_ids"], "int32")  # [B, K]
        batch = tf.shape(box_ids)[0]
        num_boxes = box_ids.shape[1]
        # Padding slots (-1) are scored as concept 0: the losses ignore them (concept_valid
        # is 0), and a zero word vector would give NaN maps under float16.
        groups, outputs = [tf.maximum(box_ids, 0)], {}
        shared = self._shared
        lower = None if shared is None else shared.lower(image, training=False)
        if self.uses_matching:
            if shared is None:
                original = self.original(image, training=False)["embedding_map"]
            else:
                original = self.original.embedding_map_from_features(
                    shared.original_upper(lower, training=False), training=False)
            original_maps = ops.stop_gradient(self.original_vocabulary(original))  # [B,h,w,V']
            positions = tf.where(box_ids >= 0,
                                 tf.gather(self._row_position, tf.maximum(box_ids, 0)), -1)
            matching = matching_targets(original_maps, positions, self.matching_top_n,
                                        self.matching_threshold,
                                        min_max=self.matching_binarize == "min_max")
            ids = tf.gather(self._matching_rows, matching["concept_ids"])  # [B, N] rows
            groups.append(ids)
            outputs.update(matching_ids=ids, matching_masks=matching["matching_masks"],
                           matching_valid=matching["matching_valid"])
        if self.uses_spatial:
            candidates = self._candidate_ids[None]  # [1, J]
            groups.append(tf.broadcast_to(candidates, [batch, candidates.shape[1]]))
        if self.label_loss is not None:
            groups.append(tf.maximum(ops.cast(features["label_ids"], "int32"), 0))
        ids = tf.concat(groups, axis=1)
        if shared is None:
            logits = self.refinement({"image": image, "concept_ids": ids},
                                     training=training)["logits"]  # [B, K + N + J + L, m, m]
        else:  # what the refinement network computes, from the shared lower features
            embedding_map = self.refinement.embedding.embedding_map_from_features(
                shared.tuned_upper(lower, training=training), training=training)
            logits = self.refinement.concept_logits(embedding_map, ids)
        sizes = [num_boxes, self.matching_top_n, len(self._candidate_ids)]
        starts = np.cumsum([0, *sizes])
        outputs["box_logits"] = logits[:, :num_boxes]
        if self.uses_matching:
            outputs["matching_logits"] = logits[:, starts[1]:starts[2]]
        if self.uses_spatial:
            outputs["spatial_logits"] = logits[:, starts[2]:starts[3]]
        if self.label_loss is not None:
            outputs["label_logits"] = logits[:, starts[3]:]
        return outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # Each term is a keras Loss (mean over the replica's batch, divided by the number
        # of replicas), so the sum is already scaled for tf.distribute. The networks have
        # no weight regularizers (self.losses is empty).
        terms = [(self.box_loss_metric, self.box_loss(y, y_pred["box_logits"]))]
        if self.uses_matching:
            terms.append((self.matching_loss_metric, self.matching_loss(
                {"matching_masks": y_pred["matching_masks"],
                 "matching_valid": y_pred["matching_valid"]}, y_pred["matching_logits"])))
        if self.uses_spatial:
            terms.append((self.spatial_loss_metric, self.spatial_loss(
                {**y, "concept_ids": x["concept_ids"]}, y_pred["spatial_logits"])))
        if self.label_loss is not None:
            terms.append((self.label_loss_metric, self.label_loss(
                {"label_present": y["label_present"], "label_ids": x["label_ids"]},
                y_pred["label_logits"])))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for metric, value in terms:
            metric.update_state(value * replicas)  # undo the replica scaling for display
        return sum(value for _, value in terms)


@dataclasses.dataclass(frozen=True)
class BoxExamples:
    """Stage 2's training examples.

    Attributes:
        boxed: The box images (`box_targets`).
        index: Box concept trained on -> vocabulary row.
        labels: Verified image-level labels (`image_labels`), or None (label loss off).
    """

    boxed: list[BoxedImage]
    index: dict[str, int]
    labels: dict[str, tuple[np.ndarray, np.ndarray]] | None


class RefinementStage(Stage[RefinementConfig, BoxExamples]):
    """Stage 2 in the shared skeleton (`Stage`); see `train`."""

    model_file = stage_files.MODEL_FILES["refinement"]
    shard_stage = "refinement"

    def read_examples(self, config: RefinementConfig, concepts: TrainingConcepts,
                      skips: SkipCounter) -> tuple[BoxExamples, int]:
        boxed, index = box_targets(config, concepts, skips)
        labels = (image_labels(config.data_root, boxed, concepts, skips)
                  if config.label_weight > 0 else None)
        return BoxExamples(boxed, index, labels), num_refinement_examples(boxed, index)

    def build(self, config: RefinementConfig, concepts: TrainingConcepts,
              examples: BoxExamples) -> BuiltStage:
        trainer = build_trainer(config, concepts)
        return BuiltStage(trainer.refinement, trainer)

    def elements(self, config: RefinementConfig, examples: BoxExamples,
                 skips: SkipCounter) -> dict[str, Any]:
        return refinement_elements(config.data_root, examples.boxed, examples.index,
                                   config.max_concepts, skips, examples.labels)

    def example_facts(self, examples: BoxExamples | ShardExamples) -> dict[str, Any]:
        if isinstance(examples, ShardExamples):
            return examples.facts
        return {"labelled_images": 0 if examples.labels is None else len(examples.labels)}

    def dataset(self, config: RefinementConfig, examples: BoxExamples | ShardExamples,
                built: BuiltStage, input_options: dict[str, Any]) -> tf.data.Dataset:
        sizes = {"image_size": config.image_size, "mask_size": self.mask_size(config, built),
                 "max_concepts": config.max_concepts, "max_labels": config.max_labels}
        if isinstance(examples, ShardExamples):
            return refinement_dataset_from_shards(
                examples.shards, with_labels=config.label_weight > 0, **sizes,
                **input_options)
        return refinement_dataset(config.data_root, examples.boxed, examples.index,
                                  image_labels=examples.labels, **sizes, **input_options)

    @staticmethod
    def mask_size(config: RefinementConfig, built: BuiltStage) -> int:
        """Side of the box masks: that of the refinement network's attention maps."""
        return attention_map_size(built.stage_model.embedding, config.image_size)

    def pictures(self, config: RefinementConfig, concepts: TrainingConcepts,
                 examples: BoxExamples, built: BuiltStage) -> Pictures | None:
        summary = validation_examples(config.data_root, BOX_LEVELS, examples.index,
                                      config.image_size, config.summary_images)
        return None if summary is None else Pictures(
            lambda: render_refined_attention(built.stage_model, summary),
            summary.description("image | refined attention (min-max scaled)"))

    def facts(self, config: RefinementConfig, concepts: TrainingConcepts,
              examples: BoxExamples, built: BuiltStage) -> dict[str, Any]:
        trainer = built.trainer
        spatial = trainer.spatial_loss
        return {"mask_size": self.mask_size(config, built),
                "target_concepts": sorted(examples.index),
                "matching_concepts": trainer.matching_top_n,
                "spatial_candidates": 0 if spatial is None else len(spatial.candidate_ids),
                **self.example_facts(examples), **concepts.exclusion_facts()}


def train(config: RefinementConfig,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          strategy: tf.distribute.Strategy | None = None) -> fit.TrainResult:
    """Trains stage 2 from a stage-1 model dir; writes `<model_dir>/refinement.keras`.

    Targets: box concepts of the strong and weak_box levels; matching concepts: any
    vocabulary concept; spatial discrimination: the overlap matrix's concepts
    (concepts_dir/overlap.npz). Never a zero-shot concept nor one containing a zero-shot
    word (`TrainingConcepts.excluded`), in any of the three.

    Args:
        config: The stage-2 configuration.
        callbacks: Extra Keras callbacks.
        strategy: Use this tf.distribute strategy instead of creating the configured one
            (share one between stages run in the same process).

    Returns:
        The trained `RefinementModel` (concept_input="ids"), history and paths.

    Raises:
        FileNotFoundError: The stage-1 model, a concepts file, the box files or (without
            no_neg) overlap.npz is missing.
        DataError: Malformed input, or no box concept is a target.
        ValueError: Bad settings, or a stage-1 model of another embedding dimension.
    """
    return RefinementStage().train(config, callbacks, strategy)


def box_targets(config: RefinementConfig, concepts: TrainingConcepts, skips: SkipCounter
                ) -> tuple[list[BoxedImage], dict[str, int]]:
    """The box images of the data root and the box concepts trained on (-> vocabulary row).

    Raises:
        FileNotFoundError: No box file.
        DataError: Malformed input, or no box concept is a target.
    """
    boxed = load_box_images(DataRoot(config.data_root), config.min_box_examples, skips)
    index = concepts.target_index({c for image in boxed for c in image.concepts}, BOX_LEVELS,
                                  skips)
    if not index:
        raise DataError("no box concept is a stage-2 target (in concepts.tsv, at level "
                        f"{' or '.join(BOX_LEVELS)} of splits.json, not zero-shot and "
                        "containing no zero-shot word)",
                        path=config.data_root)
    return boxed, index


def image_labels(data_root: str, boxed: Sequence[BoxedImage], concepts: TrainingConcepts,
                 skips: SkipCounter) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Verified image-level labels of the box images, as vocabulary rows.

    Read from labels/oi_image_labels_train.csv (`read_oi_verified_labels`) and matched to
    the box images by file stem (the Open Images ImageID). Labels of concepts outside
    concepts.tsv, and of zero-shot and held-out concepts (never a target), are dropped and
    counted.

    Returns:
        Box image path -> (rows int32 [n], present float32 [n]), for images with a label.

    Raises:
        FileNotFoundError: No labels file or class descriptions.
    """
    root = DataRoot(data_root)
    needed_for = "the image-level label loss (--label_weight > 0)"
    verified = read_oi_verified_labels(root.require(root.oi_image_labels, needed_for),
                                       root.require(root.oi_class_descriptions, needed_for),
                                       skips)
    index = concepts.embeddings.vocabulary.index_of
    excluded = concepts.excluded
    result = {}
    for image in boxed:
        stem = os.path.splitext(os.path.basename(image.image))[0]
        if stem not in verified:
            continue
        rows, present = [], []
        for names, value in ((verified[stem].present, 1.0), (verified[stem].absent, 0.0)):
            for name in names:
                if name in excluded or name not in index:
                    skips.skip(LABEL_NOT_USED, path=image.image, record=name)
                    continue
                rows.append(index[name])
                present.append(value)
        if rows:
            result[image.image] = (np.asarray(rows, np.int32), np.asarray(present, np.float32))
    return result


def build_trainer(config: RefinementConfig, concepts: TrainingConcepts) -> RefinementTrainer:
    """The stage-2 network and its trainer, from the stage-1 model dir (call in a strategy
    scope).

    Raises:
        FileNotFoundError: No stage-1 model, or no overlap.npz without no_neg.
        ValueError: The stage-1 model embeds in another dimension than the word vectors,
            or `finetune_from` is not a layer of its backbone.
    """
    stage1 = stage_files.load_stage_model(config.embedding_model_dir, "embedding")
    if stage1.embedding_dim != concepts.embeddings.dim:
        raise ValueError(f"the stage-1 model embeds in {stage1.embedding_dim} dims, "
                         f"the word vectors have {concepts.embeddings.dim}")
    vectors = concepts.embeddings.vectors
    spatial = None
    if not config.no_neg:
        gamma, rows = spatial_gamma(config.concepts_dir, concepts, config.gamma_rule)
        spatial = SpatialDiscriminationLoss(gamma, rows, len(vectors),
                                            weight=config.spatial_weight)
    refinement = RefinementModel(to_fully_convolutional(stage1), len(vectors), vectors,
                                 config.hidden_dim, similarity=config.similarity,
                                 location_term=config.location_term)
    return RefinementTrainer(
        refinement, to_fully_convolutional(stage1, name="original"), vectors,
        matching_top_n=config.matching_top_n, matching_weight=config.matching_weight,
        matching_threshold=config.matching_threshold, spatial_loss=spatial,
        matching_binarize=config.matching_binarize,
        excluded_ids=concepts.excluded_rows(),
        label_loss=ImageLabelLoss(config.label_weight) if config.label_weight > 0 else None,
        finetune_from=config.finetune_from, name="refinement_trainer")


def spatial_gamma(concepts_dir: str, concepts: TrainingConcepts,
                  gamma_rule: str = "symmetric") -> tuple[np.ndarray, np.ndarray]:
    """gamma [C, C] from the O of concepts_dir/overlap.npz, and each row's vocabulary row
    (-1 = unused).

    gamma is recomputed from the stored O with `gamma_rule`, not read from the file (whose
    gamma uses the default rule, or eq. 4 in files written before the rules existed).

    Rows are matched to the vocabulary by name; excluded concepts (zero-shot, or
    containing a zero-shot word) get -1, so they are never a spatial-discrimination
    concept.

    Args:
        concepts_dir: Folder with overlap.npz.
        concepts: The training concepts (vocabulary and excluded concepts).
        gamma_rule: "symmetric" or "paper" (see `conceptmask_tf.concepts.overlap`).

    Raises:
        FileNotFoundError: overlap.npz is missing.
        ValueError: An unknown gamma_rule.
    """
    path = os.path.join(concepts_dir, OVERLAP_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: rerun conceptmask-concepts with "
                                "--data_root (it writes the overlap matrix), or train "
                                "with --no_neg")
    overlap = OverlapMatrix.load(path)
    index_of = concepts.embeddings.vocabulary.index_of
    excluded = concepts.excluded
    rows = np.array([-1 if c in excluded else index_of.get(c, -1)
                     for c in overlap.concepts], np.int64)
    return gamma_from_overlap(overlap.overlap, gamma_rule=gamma_rule), rows


def render_refined_attention(refinement: RefinementModel,
                             examples: SummaryExamples) -> np.ndarray:
    """uint8 [N, S, 2 S, 3] pictures: image | refined attention of its concept."""
    attention = refinement({"image": examples.images,
                            "concept_ids": examples.concept_ids[:, None]},
                           training=False)["attention"]  # [N, 1, h, w]
    return picture_rows(examples.images, keras.ops.convert_to_numpy(attention)[:, 0])


def attention_map_size(embedding: EmbeddingModel | FullyConvolutionalEmbedding,
                       image_size: int) -> int:
    """Side m of the attention maps (and box masks) for image_size inputs.

    ceil(image_size / stride) with "same" padding, e.g. 10 for ResNet-50 at 300 px.
    """
    spec = embedding.backbone.compute_output_spec(
        keras.KerasTensor((1, image_size, image_size, 3)))
    return int(spec.shape[1])
