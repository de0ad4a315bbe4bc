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

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from conceptmask_tf.data.coco import merge_instances
from conceptmask_tf.data.pipelines import segmentation_dataset
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import ConceptMask, MaskedImage
from conceptmask_tf.losses import MaskLoss
from conceptmask_tf.models import SegmentationModel
from conceptmask_tf.training import artifacts, runner
from conceptmask_tf.training.concept_sets import MASK_LEVELS, load_training_concepts
from conceptmask_tf.training.config import SaliencyConfig
from conceptmask_tf.training.segmentation import mask_targets
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


def train(config: SaliencyConfig,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          strategy: tf.distribute.Strategy | None = None) -> runner.TrainResult:
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
    with runner.training_runtime(config, strategy) as runtime:
        skips = SkipCounter(config.data_root)
        images, concepts = foreground_masks(config, skips)
        num_examples = len(images)
        config = runner.resolved_config(config, num_examples, runtime)
        with runtime.strategy.scope():
            network = SegmentationModel(0, config.encoder_widths, config.decoder_widths,
                                        name="saliency")
            trainer = SaliencyTrainer(network, config.positive_weight,
                                      name="saliency_trainer")
            trainer.compile(optimizer=runner.make_optimizer(config),
                            jit_compile=runtime.jit_compile)
        dataset = segmentation_dataset(config.data_root, images, None,
                                       image_size=config.image_size,
                                       **runner.training_input_options(config, skips))
        examples = validation_examples(config.data_root, MASK_LEVELS,
                                       {c: i for i, c in enumerate(concepts)},
                                       config.image_size, config.summary_images)
        pictures = None if examples is None else Pictures(
            lambda: render_saliency(network, examples),
            examples.description("image | predicted foreground (heat map)"))
        return runner.fit_stage(
            trainer, dataset, config=config, runtime=runtime, stage_model=network,
            model_file=artifacts.MODEL_FILES["saliency"], num_examples=num_examples,
            pictures=pictures,
            facts={"num_examples": num_examples, "merged_concepts": concepts},
            skips=skips, callbacks=callbacks)


def render_saliency(network: SegmentationModel, examples: SummaryExamples) -> np.ndarray:
    """uint8 [N, S, 2 S, 3] pictures: image | predicted foreground probability."""
    probs = network({"image": ops.convert_to_tensor(examples.images)},
                    training=False)["masks"]  # [N, 1, S, S]
    return picture_rows(examples.images, ops.convert_to_numpy(probs)[:, 0])
