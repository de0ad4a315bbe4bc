"""The composed Concept Mask inference model: image + word vectors -> masks, presence."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from conceptmask_tf.models.concept_attention import ConceptAttention
from conceptmask_tf.models.fully_convolutional_embedding import to_fully_convolutional
from conceptmask_tf.models.multi_scale_attention import MultiScaleAttention
from conceptmask_tf.models.nearest_supervised_concept import NearestSupervisedConcept
from conceptmask_tf.models.presence_score import PresenceScore
from conceptmask_tf.models.refinement_model import RefinementModel
from conceptmask_tf.models.resize_images import ResizeImages
from conceptmask_tf.models.resize_maps import ResizeMaps
from conceptmask_tf.models.segmentation_model import SegmentationModel
from conceptmask_tf.models.tensor_ops import channels_to_concepts
from conceptmask_tf.models.weak_concept_blend import WeakConceptBlend

WEAK_ATTENTION_SOURCES = ("refined", "original")


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class ConceptMask(keras.Model):
    """Segments any concept given its word vector (paper Fig. 1).

    image -> resized to round(s * image_size) for each attention scale s -> stage-2
    network (`RefinementModel.refine` on its fine-tuned embedding) -> refined attention
    of the K concepts -> for concepts without box/mask supervision, blended with their
    nearest supervised concept (`WeakConceptBlend`, paper §4.4) -> stage-3
    `SegmentationModel` on the image resized to image_size -> mask logits resized to the
    input size -> sigmoid. Presence: `PresenceScore` on a pooled image embedding: that
    of `presence_embedding` (the stage-1 network) on the image resized to image_size
    when given, else that of the first scale's stage-2 pass (no extra backbone pass, but
    stage 2 fine-tunes the embedding for its maps: on the concept world its pooled
    cosine no longer tells present from absent concepts, AUC ~0.5 against ~0.8 for
    stage 1).

    `weak_attention="original"` (a departure, departure 21 in docs/method.md) takes the own map
    alpha_q of the concepts outside the supervised set from stage 1 (clip(cos, 0, 1) of
    its fully-convolutional network at each scale) instead of the refined one: the
    matching loss asks stage 2 to keep those concepts' stage-1 maps, and after long
    fine-tuning it no longer does (on the concept world at 60 stage-2 epochs the weak
    concepts' pointing game falls from 0.60 in stage 1 to 0.33 refined). This is the
    limit of a perfect matching term, at the price of one stage-1 pass per scale.

    Nothing branches on tensor values (tf ops only), outputs are a dict: the model is
    ready for `keras.export.ExportArchive`.

    Args:
        refinement: Trained stage-2 network (either `concept_input`).
        segmentation: Trained stage-3 network; its num_attention_maps must equal
            len(attention_scales).
        image_size: S, the side the segmentation network works at.
        attention_scales: Input scales (relative to S) of the attention passes, e.g.
            (1.0, 2.0) ~ the paper's 300 and 700 px; one scale for single_att.
        supervised_vectors: float [P, D] word vectors of the box/mask-supervised concepts
            for the weak-concept rule; None disables it (and P = 0).
        num_supervised: P when `supervised_vectors` is None but saved weights will set
            them (from_config); otherwise taken from `supervised_vectors`.
        weak_theta: theta of the weak-concept rule.
        presence_threshold, presence_scale: Initial `PresenceScore` calibration.
        presence_embedding: Trained stage-1 `EmbeddingModel` (image -> pooled embedding
            [B, D]) that scores presence; None uses the stage-2 network's embedding.
        weak_attention: alpha_q of the concepts outside the supervised set: "refined"
            (the paper, §4.4) or "original" (stage 1's map; needs `presence_embedding`
            and `supervised_vectors` or `num_supervised`).
        **kwargs: keras.Model arguments (name, trainable).

    Inputs: {"image": float32 [B, H, W, 3] in [0, 255], any H, W,
             "word_vectors": float32 [B, K, D] (one set of K concepts per image; serving
             with one image adds the batch axis)}.
    Outputs: {"mask_probs": float32 [B, K, H, W] in [0, 1],
              "presence": float32 [B, K] in (0, 1), "similarity": float32 [B, K] cosine,
              "attention": float32 [B, K, h, w] the refined (blended) attention at the
              first scale}.
    """

    def __init__(self, refinement: RefinementModel, segmentation: SegmentationModel,
                 image_size: int, attention_scales: Sequence[float] = (1.0, 2.0),
                 supervised_vectors: np.ndarray | None = None, num_supervised: int = 0,
                 weak_theta: float = 0.5, presence_threshold: float = 0.0,
                 presence_scale: float = 10.0,
                 presence_embedding: keras.Model | None = None,
                 weak_attention: str = "refined", **kwargs: Any) -> None:
        attention_scales = tuple(float(s) for s in attention_scales)
        if len(attention_scales) != segmentation.num_attention_maps:
            raise ValueError(f"{len(attention_scales)} attention scales for a segmentation "
                             f"network with {segmentation.num_attention_maps} inputs")
        if supervised_vectors is not None:
            num_supervised = len(supervised_vectors)
        if weak_attention not in WEAK_ATTENTION_SOURCES:
            raise ValueError(f"weak_attention must be one of {WEAK_ATTENTION_SOURCES}, got "
                             f"{weak_attention!r}")
        use_original = weak_attention == "original" and num_supervised > 0
        if use_original and presence_embedding is None:
            raise ValueError("weak_attention='original' needs the stage-1 network "
                             "(presence_embedding)")
        dim = refinement.embedding.embedding_dim
        image = keras.Input(shape=(None, None, 3), name="image")
        vectors = keras.Input(shape=(None, dim), name="word_vectors")  # [B, K, D]
        if num_supervised > 0:
            nearest = NearestSupervisedConcept(num_supervised, dim, supervised_vectors,
                                               name="nearest_supervised")
            neighbours, is_supervised = nearest(vectors)
            blend = WeakConceptBlend(weak_theta, name="weak_blend")
            queried = ops.concatenate([vectors, neighbours], axis=1)  # [B, 2K, D]
        else:
            queried = vectors
        if use_original:
            stage1 = to_fully_convolutional(presence_embedding, name="stage1_fcn")
            coarse_attention = ConceptAttention(refinement.similarity,
                                                name="stage1_attention")
            # [B, K, 1, 1]: 1 keeps the refined map (supervised concepts).
            keep_refined = ops.expand_dims(ops.expand_dims(is_supervised, -1), -1)
        resized = ResizeImages(image_size, name="resize_image")(image)
        multi_scale = MultiScaleAttention(refinement, image_size, attention_scales)
        attention_maps, embedding, stage1_embedding = [], None, None
        for i in range(len(attention_scales)):
            refined = multi_scale.at_scale(i, image, queried)
            attention = refined["attention"]  # [B, K or 2K, h, w]
            if use_original:
                own, neighbour = ops.split(attention, 2, axis=1)
                stage1_outputs = stage1(refined["image"])
                original = channels_to_concepts(ops.clip(coarse_attention(
                    stage1_outputs["embedding_map"], vectors), 0.0, 1.0))
                if multi_scale.input_sides[i] == image_size and stage1_embedding is None:
                    # The pooled output of the same pass: presence needs no pass of its own.
                    stage1_embedding = stage1_outputs["embedding"]
                own = keep_refined * own + (1.0 - keep_refined) * original
                attention = ops.concatenate([own, neighbour], axis=1)
            if num_supervised > 0:
                attention = blend(attention, is_supervised)  # [B, K, h, w]
            attention_maps.append(attention)
            if embedding is None:
                embedding = refined["embedding"]
        if stage1_embedding is not None:
            embedding = stage1_embedding
        elif presence_embedding is not None:
            embedding = presence_embedding(resized)  # [B, D]
        similarity, presence = PresenceScore(presence_threshold, presence_scale,
                                             name="presence_score")(embedding, vectors)
        segmented = segmentation({"image": resized, **{
            f"attention_{i}": a for i, a in enumerate(attention_maps)}})
        logits = ResizeMaps(name="resize_masks")(segmented["logits"], image)  # [B, K, H, W]
        outputs = {"mask_probs": ops.sigmoid(logits), "presence": presence,
                   "similarity": similarity, "attention": attention_maps[0]}
        super().__init__(inputs={"image": image, "word_vectors": vectors}, outputs=outputs,
                         **kwargs)
        self.refinement = refinement
        self.segmentation = segmentation
        self.image_size = int(image_size)
        self.attention_scales = attention_scales
        self.num_supervised = int(num_supervised)
        # Without supervised vectors there is no blend layer: theta has no effect there.
        self._unused_weak_theta = float(weak_theta)
        self.presence_embedding = presence_embedding
        self.weak_attention = weak_attention

    @property
    def presence_score(self) -> PresenceScore:
        """The presence layer (set its calibration with `set_calibration`)."""
        return self.get_layer("presence_score")

    @property
    def weak_theta(self) -> float:
        """theta of the weak-concept rule (a weight of the blend layer when there is one)."""
        if self.num_supervised > 0:
            return self.get_layer("weak_blend").theta_value()
        return self._unused_weak_theta

    def set_weak_theta(self, theta: float) -> None:
        """Sets theta of the weak-concept rule; traced functions see it without retracing.

        Raises:
            ValueError: theta outside [0, 1].
        """
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta must be in [0, 1], got {theta}")
        if self.num_supervised > 0:
            self.get_layer("weak_blend").set_theta(theta)
        else:
            self._unused_weak_theta = float(theta)

    def calibration(self) -> dict[str, float]:
        """The values chosen on validation data: {"threshold", "scale", "theta"}."""
        presence = self.presence_score.get_config()
        return {"threshold": presence["threshold"], "scale": presence["scale"],
                "theta": self.weak_theta}

    def set_calibration(self, threshold: float, scale: float, theta: float) -> None:
        """Sets presence threshold and scale and the weak-concept theta (all weights)."""
        self.presence_score.set_calibration(threshold, scale)
        self.set_weak_theta(theta)

    def get_config(self) -> dict[str, Any]:
        presence = self.presence_score.get_config()
        return {"refinement": keras.layers.serialize(self.refinement),
                "segmentation": keras.layers.serialize(self.segmentation),
                "image_size": self.image_size, "attention_scales": list(self.attention_scales),
                "num_supervised": self.num_supervised, "weak_theta": self.weak_theta,
                "presence_threshold": presence["threshold"],
                "presence_scale": presence["scale"],
                "presence_embedding": (None if self.presence_embedding is None else
                                       keras.layers.serialize(self.presence_embedding)),
                "weak_attention": self.weak_attention,
                "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ConceptMask:
        config = copy.deepcopy(config)  # deserialize() consumes nested configs
        for key in ("refinement", "segmentation", "presence_embedding"):
            if isinstance(config.get(key), dict):
                config[key] = keras.layers.deserialize(config[key])
        return cls(**config)
