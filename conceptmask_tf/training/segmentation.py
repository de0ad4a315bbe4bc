"""Stage 3 training (paper §4.3): the label-agnostic segmentation network on masks.

`SegmentationTrainer` computes the attention maps of each example's concept on the fly
with the FROZEN stage-2 network (which holds the fine-tuned stage-1 network): one pass per
attention scale, the image resized to round(scale * image_size) (the paper: 300 and 700
px). The maps (sigmoid of the refined logits) go with the image into the
`SegmentationModel`, the only network trained; its min-max normalisation of each map is
part of the model. Loss: `MaskLoss` (per-pixel sigmoid cross-entropy, crowd pixels
ignored).

Departure (optional, `guided_attention_rate`): the world's mask concepts are all objects,
so a network trained only on the stage-2 maps of those concepts can score well by
segmenting objectness and ignoring the attention (given a uniform, uninformative map it
came within 0.06 IoU of the full model).
With a rate r > 0, a fraction r of the training examples get attention maps blended with
their ground-truth mask averaged down to the map's size, so following the attention pays.

Training speed (optional, `cache_attention`): the frozen stage-2 passes cost about half of
each step. With the cache on, they run once per example before training, on the whole
image (`attention_cache`), and each epoch's view of an example (crop window, flip) is
applied to its cached maps instead (`segmentation_dataset(attention=...)`). With no crop
jitter this gives the same maps as the passes on the fly; with jitter, the map of a crop
is approximated by the crop of the map (exact up to the network's borders and
resampling). The cache holds every example's maps in memory: for small data.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from conceptmask_tf.concepts.concept_sets import (
    MASK_LEVELS,
    TrainingConcepts,
)
from conceptmask_tf.data.coco import read_coco_instances
from conceptmask_tf.data.datasets import (
    num_segmentation_examples,
    segmentation_dataset,
    segmentation_dataset_from_shards,
    segmentation_elements,
)
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import MaskedImage
from conceptmask_tf.errors import DataError
from conceptmask_tf.losses import MaskLoss
from conceptmask_tf.models import RefinementModel, SegmentationModel, stage_files
from conceptmask_tf.models.multi_scale_attention import MultiScaleAttention
from conceptmask_tf.models.tensor_ops import area_resize
from conceptmask_tf.training import fit
from conceptmask_tf.training.config import SegmentationConfig, TrainingConfig
from conceptmask_tf.training.stage import BuiltStage, ShardExamples, Stage
from conceptmask_tf.training.summary_images import (
    Pictures,
    SummaryExamples,
    picture_rows,
    validation_examples,
)

logger = logging.getLogger(__name__)


class SegmentationTrainer(keras.Model):
    """Fits a `SegmentationModel` on attention maps from a frozen stage-2 network.

    Args:
        segmentation: The network trained; its num_attention_maps must equal
            len(attention_scales).
        refinement: Trained stage-2 network with concept_input "ids" (made non-trainable).
        image_size: S, the side of the training images.
        attention_scales: Input scales (relative to S) of the attention passes.
        positive_weight: See `MaskLoss`.
        guided_attention_rate: Fraction of training examples whose maps are blended
            with their coarse ground truth (`guide_attention`); needs "guide_mask" in
            the features.
        seed: Seed of the guidance draws.
        **kwargs: keras.Model arguments.

    Inputs: the stage-3 pipeline's features {"image": [B, S, S, 3], "concept_id": [B]},
        plus "guide_mask" [B, S, S, 1] (the target mask) when guidance is on, and
        "attention_a" [B, 1, h_a, w_a] for every scale a when the maps are precomputed
        (`attention_cache`; otherwise the trainer computes them).
    Outputs: mask logits float32 [B, S, S, 1] (the layout of the "mask" targets).
    """

    def __init__(self, segmentation: SegmentationModel, refinement: RefinementModel,
                 image_size: int, attention_scales: Sequence[float],
                 positive_weight: float = 1.0, guided_attention_rate: float = 0.0,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(attention_scales) != segmentation.num_attention_maps:
            raise ValueError(f"{len(attention_scales)} attention scales for a segmentation "
                             f"network with {segmentation.num_attention_maps} inputs")
        if refinement.concept_input != "ids":
            raise ValueError("the refinement network must take concept ids")
        self.segmentation = segmentation
        self.refinement = refinement
        self.refinement.trainable = False
        self.multi_scale = MultiScaleAttention(refinement, image_size, attention_scales)
        self.mask_loss = MaskLoss(positive_weight)
        self.guided_attention_rate = float(guided_attention_rate)
        self.guide_seeds = keras.random.SeedGenerator(seed, name="guide_seeds")
        self.built = True  # every weight exists already (BackupAndRestore needs it built)

    def attention_maps(self, image, concept_ids) -> list:
        """Refined attention [B, K, h_a, w_a] of concept ids [B, K] at each scale (no gradient)."""
        vectors = self.refinement.vocabulary.lookup(concept_ids)  # [B, K, D]
        return [ops.stop_gradient(attention)
                for attention in self.multi_scale(image, vectors, training=False)]

    def call(self, features, training=False):
        image = features["image"]  # [B, S, S, 3]
        if "attention_0" in features:
            maps = [features[f"attention_{a}"] for a in range(len(self.multi_scale.scales))]
        else:
            # int32 again: Keras' symbolic build under MirroredStrategy averages the batch.
            concept_ids = ops.expand_dims(ops.cast(features["concept_id"], "int32"), 1)
            maps = self.attention_maps(image, concept_ids)  # A x [B, 1, h_a, w_a]
        if training and self.guided_attention_rate > 0 and "guide_mask" in features:
            maps = self.guide_attention(maps, features["guide_mask"])
        logits = self.segmentation({"image": image, **{
            f"attention_{i}": m for i, m in enumerate(maps)}}, training=training)["logits"]
        return ops.transpose(logits, (0, 2, 3, 1))  # [B, 1, S, S] -> [B, S, S, 1]

    def guide_attention(self, maps: list, mask) -> list:
        """Blends a random fraction of the maps [B, 1, h, w] with the mask [B, S, S, 1].

        Each example is guided with probability `guided_attention_rate`, with one blend
        weight a ~ U(0, 1) for all its scales: a * coarse_mask + (1 - a) * attention,
        where coarse_mask is the mask area-averaged to the map's size.
        """
        batch = ops.shape(mask)[0]
        draws = keras.random.uniform((batch, 2), seed=self.guide_seeds)
        guided = ops.cast(draws[:, 0] < self.guided_attention_rate, "float32")
        weight = ops.reshape(guided * draws[:, 1], (-1, 1, 1, 1))  # [B, 1, 1, 1]
        blended = []
        for attention in maps:  # under mixed precision, in the maps' dtype
            coarse = area_resize(ops.cast(mask, attention.dtype), attention.shape[2:])
            coarse = ops.transpose(coarse, (0, 3, 1, 2))  # [B, 1, h, w]
            mixed = ops.cast(weight, attention.dtype)
            blended.append(mixed * coarse + (1.0 - mixed) * attention)
        return blended

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # A keras Loss: already scaled for tf.distribute. No weight regularizers to add.
        return self.mask_loss(y, y_pred)


@dataclasses.dataclass(frozen=True)
class MaskExamples:
    """Stage 3's training examples (`mask_targets`).

    Attributes:
        masked: The images with masks.
        index: Mask concept trained on -> vocabulary row.
    """

    masked: list[MaskedImage]
    index: dict[str, int]


class SegmentationStage(Stage[SegmentationConfig, MaskExamples]):
    """Stage 3 in the shared skeleton (`Stage`); see `train`."""

    model_file = stage_files.MODEL_FILES["segmentation"]
    shard_stage = "segmentation"

    def read_examples(self, config: SegmentationConfig, concepts: TrainingConcepts,
                      skips: SkipCounter) -> tuple[MaskExamples, int]:
        masked, index = mask_targets(config, concepts, skips)
        return MaskExamples(masked, index), num_segmentation_examples(masked, index)

    def build(self, config: SegmentationConfig, concepts: TrainingConcepts,
              examples: MaskExamples) -> BuiltStage:
        trainer = build_trainer(config, concepts)
        return BuiltStage(trainer.segmentation, trainer)

    def dataset(self, config: SegmentationConfig, examples: MaskExamples | ShardExamples,
                built: BuiltStage, input_options: dict[str, Any]) -> tf.data.Dataset:
        """The stage-3 pipeline, with the attention cache (`cache_attention`) and the
        guide masks (`guided_attention_rate` > 0) when on."""
        if isinstance(examples, ShardExamples):  # cache_attention is refused with shards
            dataset = segmentation_dataset_from_shards(
                examples.shards, image_size=config.image_size, **input_options)
            return self.with_guide_masks(config, dataset)
        cached = None
        if config.cache_attention:
            cached = attention_cache(built.trainer, segmentation_dataset(
                config.data_root, examples.masked, examples.index,
                image_size=config.image_size, batch_size=config.batch_size, training=False,
                keep_bad_images=True, skips=SkipCounter(config.data_root)))
        dataset = segmentation_dataset(
            config.data_root, examples.masked, examples.index, image_size=config.image_size,
            attention=cached, **input_options)
        return self.with_guide_masks(config, dataset)

    @staticmethod
    def with_guide_masks(config: SegmentationConfig, dataset: tf.data.Dataset
                         ) -> tf.data.Dataset:
        """The ground-truth mask as a feature too, for guided attention (rate > 0)."""
        if config.guided_attention_rate > 0:
            return dataset.map(lambda x, y: ({**x, "guide_mask": y["mask"]}, y))
        return dataset

    def elements(self, config: SegmentationConfig, examples: MaskExamples,
                 skips: SkipCounter) -> dict[str, Any]:
        return segmentation_elements(config.data_root, examples.masked, examples.index,
                                     skips)

    def pictures(self, config: SegmentationConfig, concepts: TrainingConcepts,
                 examples: MaskExamples, built: BuiltStage) -> Pictures | None:
        summary = validation_examples(config.data_root, MASK_LEVELS, examples.index,
                                      config.image_size, config.summary_images)
        return None if summary is None else Pictures(
            lambda: render_masks(built.trainer, summary),
            summary.description("image | attention at the first scale | predicted mask"))

    def facts(self, config: SegmentationConfig, concepts: TrainingConcepts,
              examples: MaskExamples, built: BuiltStage) -> dict[str, Any]:
        return {"target_concepts": sorted(examples.index),
                "attention_sizes": [round(s * config.image_size) for s in config.scales],
                **concepts.exclusion_facts()}


def train(config: SegmentationConfig,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          strategy: tf.distribute.Strategy | None = None) -> fit.TrainResult:
    """Trains stage 3 from a stage-2 model dir; writes `<model_dir>/segmentation.keras`.

    Targets: masks (coco/instances_train.json) of strong concepts only (never a zero-shot
    concept nor one containing a zero-shot word).

    Args:
        config: The stage-3 configuration.
        callbacks: Extra Keras callbacks.
        strategy: Use this tf.distribute strategy instead of creating the configured one
            (share one between stages run in the same process).

    Returns:
        The trained `SegmentationModel`, history and paths.

    Raises:
        FileNotFoundError: The stage-2 model, a concepts file or the COCO file is missing.
        DataError: Malformed input, or no mask concept is a target.
        ValueError: Bad settings, or a stage-2 model of another vocabulary.
    """
    return SegmentationStage().train(config, callbacks, strategy)


def attention_cache(trainer: SegmentationTrainer, dataset: tf.data.Dataset
                    ) -> list[np.ndarray]:
    """Every example's attention maps at each of the trainer's scales, in dataset order.

    Args:
        trainer: Computes the maps (`SegmentationTrainer.attention_maps`).
        dataset: A stage-3 pipeline in eval mode (record order, identity views).

    Returns:
        One float32 array [N, h_a, w_a] per scale, for `segmentation_dataset(attention=...)`.
    """
    start = time.perf_counter()
    compute = tf.function(trainer.attention_maps, reduce_retracing=True)
    parts: list[list[np.ndarray]] = [[] for _ in trainer.multi_scale.scales]
    for features, _ in dataset:
        ids = tf.expand_dims(tf.cast(features["concept_id"], tf.int32), 1)  # [B, 1]
        for part, maps in zip(parts, compute(features["image"], ids)):
            part.append(maps[:, 0].numpy())
    cached = [np.concatenate(part) for part in parts]
    logger.info("attention of %d examples computed once in %.1f s (cache_attention)",
                 len(cached[0]), time.perf_counter() - start)
    return cached


def mask_targets(config: TrainingConfig, concepts: TrainingConcepts, skips: SkipCounter
                 ) -> tuple[list[MaskedImage], dict[str, int]]:
    """The images with masks and the mask concepts trained on (-> vocabulary row).

    Stage 3's targets; the saliency baseline trains on the same (`training.saliency`).

    Raises:
        FileNotFoundError: No coco/instances_train.json.
        DataError: Malformed input, or no mask concept is a target.
    """
    root = DataRoot(config.data_root)
    coco_path = root.require(root.coco_instances, "stage 3 (segmentation) training")
    masked = [image for image in read_coco_instances(coco_path, skips=skips) if image.masks]
    index = concepts.target_index({m.concept for image in masked for m in image.masks},
                                  MASK_LEVELS, skips)
    if not index:
        raise DataError("no mask concept is a stage-3 target (in concepts.tsv, at level "
                        f"{' or '.join(MASK_LEVELS)} of splits.json, not zero-shot and "
                        "containing no zero-shot word)",
                        path=coco_path)
    return masked, index


def build_trainer(config: SegmentationConfig, concepts: TrainingConcepts
                  ) -> SegmentationTrainer:
    """A new segmentation network and its trainer around the frozen stage-2 network (call
    in a strategy scope).

    Raises:
        FileNotFoundError: No stage-2 model.
        ValueError: The stage-2 model has another vocabulary size than concepts.tsv.
    """
    refinement = stage_files.load_stage_model(config.refinement_model_dir, "refinement")
    if refinement.vocabulary_size != len(concepts.embeddings.vocabulary):
        raise ValueError(f"the stage-2 model has {refinement.vocabulary_size} concepts, "
                         f"concepts.tsv has {len(concepts.embeddings.vocabulary)}")
    segmentation = SegmentationModel(len(config.scales), config.encoder_widths,
                                     config.decoder_widths)
    return SegmentationTrainer(segmentation, refinement, config.image_size, config.scales,
                               positive_weight=config.positive_weight,
                               guided_attention_rate=config.guided_attention_rate,
                               seed=config.seed,
                               name="segmentation_trainer")


def render_masks(trainer: SegmentationTrainer, examples: SummaryExamples) -> np.ndarray:
    """uint8 [N, S, 3 S, 3] pictures: image | first-scale attention | predicted mask."""
    images = ops.convert_to_tensor(examples.images)  # Keras refuses dicts mixing numpy
    ids = ops.convert_to_tensor(examples.concept_ids)  # and tensors
    attention = trainer.attention_maps(images, ops.expand_dims(ids, 1))[0]
    features = {"image": images, "concept_id": ids}
    masks = ops.sigmoid(trainer(features, training=False))[..., 0]  # [N, S, S]
    return picture_rows(examples.images, ops.convert_to_numpy(attention)[:, 0],
                        ops.convert_to_numpy(masks))
