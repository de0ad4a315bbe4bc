"""The saliency baseline: a concept-blind foreground network (paper §5.3-§5.4, Tables 2-3).

The paper compares its masks with Saliency-DSS, a salient-object network that sees the
image and no concept: a skeptic's check that the test set needs the concept at all (its
saliency scored IoU 0.298 against 0.436 on unseen concepts). No such network can be
downloaded here, so the project trains one on the same data as stage 3: the stage-3
encoder-decoder (`SegmentationModel(num_attention_maps=0)`) without attention input, on
the stage-3 training images, to predict the union of the masks of all their mask concepts
(the zero-shot ones and those containing a zero-shot word excepted, as in stage 3). The
evaluation scores its one mask per image for every concept, exactly like the full model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from conceptmask_tf.concepts.concept_sets import MASK_LEVELS, load_training_concepts
from conceptmask_tf.data.coco import merge_instances
from conceptmask_tf.data.datasets import segmentation_dataset
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import ConceptMask, MaskedImage
from conceptmask_tf.losses import MaskLoss
from conceptmask_tf.models import SegmentationModel, stage_files
from conceptmask_tf.training import fit
from conceptmask_tf.training.config import SaliencyConfig
from conceptmask_tf.training.segmentation import mask_targets
from conceptmask_tf.training.stage import BuiltStage, Stage
from conceptmask_tf.training.summary_images import (
    Pictures,
    SummaryExamples,
    picture_rows,
    validation_examples,
)

FOREGROUND = "foreground"  # the one "concept" of a merged training mask


class SaliencyTrainer(keras.Model):
    """Fits a `SegmentationModel` without attention input on foreground masks.

    Args:
        saliency: The network trained (`num_attention_maps` 0).
        positive_weight: See `MaskLoss`.
        **kwargs: keras.Model arguments.

    Inputs: the stage-3 pipeline's features {"image": [B, S, S, 3], ...}.
    Outputs: mask logits float32 [B, S, S, 1] (the layout of the "mask" targets).
    """

    def __init__(self, saliency: SegmentationModel, positive_weight: float = 1.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if saliency.num_attention_maps != 0:
            raise ValueError("the saliency network takes no attention input")
        self.saliency = saliency
        self.mask_loss = MaskLoss(positive_weight)
        self.built = True  # every weight exists already (BackupAndRestore needs it built)

    def call(self, features, training=False):
        logits = self.saliency({"image": features["image"]}, training=training)["logits"]
        return ops.transpose(logits, (0, 2, 3, 1))  # [B, 1, S, S] -> [B, S, S, 1]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # A keras Loss: already scaled for tf.distribute. No weight regularizers to add.
        return self.mask_loss(y, y_pred)


def foreground_masks(config: SaliencyConfig, skips: SkipCounter
                     ) -> tuple[list[MaskedImage], list[str]]:
    """The stage-3 training images, each with the union of its target concepts' masks.

    Returns:
        (images with one `FOREGROUND` mask each, the concepts merged). The crowd regions
        of those concepts, minus the foreground, are the ignore mask.

    Raises:
        FileNotFoundError: No coco/instances_train.json.
        DataError: Malformed input, or no mask concept is a target.
    """
    masked, index = mask_targets(config, load_training_concepts(config.data_root,
                                                                config.concepts_dir), skips)
    merged = []
    for image in masked:
        targets = [m for m in image.masks if m.concept in index]
        if not targets:
            continue
        rle, ignore = merge_instances([m.rle for m in targets],
                                      [m.ignore_rle for m in targets if m.ignore_rle is not None],
                                      image.height, image.width)
        merged.append(dataclasses.replace(image, masks=(ConceptMask(FOREGROUND, rle, ignore),),
                                          neg_concepts=()))
    return merged, sorted(index)


@dataclasses.dataclass(frozen=True)
class ForegroundExamples:
    """The baseline's training examples (`foreground_masks`).

    Attributes:
        images: The stage-3 training images, each with one `FOREGROUND` mask.
        concepts: The concepts merged into the foreground, sorted.
    """

    images: list[MaskedImage]
    concepts: list[str]


class SaliencyStage(Stage[SaliencyConfig, ForegroundExamples]):
    """The saliency baseline in the shared skeleton (`Stage`); see `train`.

    It has no concepts of its own: `foreground_masks` reads stage 3's targets.
    """

    model_file = stage_files.MODEL_FILES["saliency"]

    def load_concepts(self, config: SaliencyConfig) -> None:
        return None

    def read_examples(self, config: SaliencyConfig, concepts: None, skips: SkipCounter
                      ) -> tuple[ForegroundExamples, int]:
        examples = ForegroundExamples(*foreground_masks(config, skips))
        return examples, len(examples.images)

    def build(self, config: SaliencyConfig, concepts: None,
              examples: ForegroundExamples) -> BuiltStage:
        network = SegmentationModel(0, config.encoder_widths, config.decoder_widths,
                                    name="saliency")
        return BuiltStage(network, SaliencyTrainer(network, config.positive_weight,
                                                   name="saliency_trainer"))

    def dataset(self, config: SaliencyConfig, examples: ForegroundExamples,
                built: BuiltStage, input_options: dict[str, Any]) -> tf.data.Dataset:
        return segmentation_dataset(config.data_root, examples.images, None,
                                    image_size=config.image_size, **input_options)

    def pictures(self, config: SaliencyConfig, concepts: None, examples: ForegroundExamples,
                 built: BuiltStage) -> Pictures | None:
        summary = validation_examples(config.data_root, MASK_LEVELS,
                                      {c: i for i, c in enumerate(examples.concepts)},
                                      config.image_size, config.summary_images)
        return None if summary is None else Pictures(
            lambda: render_saliency(built.stage_model, summary),
            summary.description("image | predicted foreground (heat map)"))

    def facts(self, config: SaliencyConfig, concepts: None, examples: ForegroundExamples,
              built: BuiltStage) -> dict[str, Any]:
        return {"merged_concepts": examples.concepts}


def train(config: SaliencyConfig,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          strategy: tf.distribute.Strategy | None = None) -> fit.TrainResult:
    """Trains the saliency baseline; writes `<model_dir>/saliency.keras`.

    Args:
        config: The baseline's configuration.
        callbacks: Extra Keras callbacks.
        strategy: Use this tf.distribute strategy instead of creating the configured one.

    Returns:
        The trained network (a `SegmentationModel` without attention input), history and
        paths.

    Raises:
        FileNotFoundError: A concepts file or the COCO file is missing.
        DataError: Malformed input, or no mask concept is a target.
        ValueError: Bad settings.
    """
    return SaliencyStage().train(config, callbacks, strategy)


def render_saliency(network: SegmentationModel, examples: SummaryExamples) -> np.ndarray:
    """uint8 [N, S, 2 S, 3] pictures: image | predicted foreground probability."""
    probs = network({"image": ops.convert_to_tensor(examples.images)},
                    training=False)["masks"]  # [N, 1, S, S]
    return picture_rows(examples.images, ops.convert_to_numpy(probs)[:, 0])
