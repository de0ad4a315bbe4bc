"""What the evaluation runs: model variants as batch functions of (image, word vectors).

A *predictor* is any callable taking {"image": float32 [B, H, W, 3] in [0, 255],
"word_vectors": float32 [B, K, D]} (the `ConceptMask` inputs; `OracleAttention` also
"truth_masks" float32 [B, K, H, W]) and returning a dict of per-concept outputs, concept
axis 1: "mask_probs" [B, K, H, W] for segmentation,
optionally "presence" [B, K] and "attention" [B, K, h, w]; attention predictors return
one [B, K, H, W] map per Table 1 variant. A Keras model called eagerly is one; `compiled`
wraps one in a `tf.function` so a batch runs as a graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tqdm

from conceptmask_tf.evaluation.eval_set import (
    EvalImage,
    EvalPair,
    EvalSet,
    make_batches,
    pad_concepts,
)
from conceptmask_tf.models import ConceptAttention, ConceptMask
from conceptmask_tf.models.graph_function import graph_function
from conceptmask_tf.models.multi_scale_attention import refine_image
from conceptmask_tf.models.tensor_ops import channels_to_concepts, resize, resize_concept_maps

Predictor = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def compiled(model: Callable[..., Mapping[str, Any]], dim: int,
             with_truth: bool = False) -> Predictor:
    """A predictor as one graph for any B, H, W, K (`models.graph_function.graph_function`)."""
    return graph_function(model, dim, with_truth)


def run_batch(predict: Predictor, images: Sequence[np.ndarray],
              vectors: Sequence[np.ndarray], keys: Sequence[str],
              truths: Sequence[np.ndarray] | None = None) -> list[dict[str, np.ndarray]]:
    """Runs one batch of equally sized images with their own concept lists.

    Concept lists are padded to the longest by repeating their first concept
    (`eval_set.pad_concepts`); the padded slots' outputs are dropped.

    Args:
        predict: The predictor.
        images: B arrays [H, W, 3] of one size.
        vectors: B arrays [K_b, D], K_b >= 1.
        keys: Outputs to return.
        truths: B arrays [K_b, H, W] of ground-truth masks, given to the predictor as
            "truth_masks" (padded like the vectors), or None.

    Returns:
        Per image, key -> its outputs with the concept axis first: [K_b, ...].
    """
    batch = {"image": np.stack(images).astype(np.float32),
             "word_vectors": pad_concepts(vectors)}  # [B, H, W, 3], [B, K_max, D]
    if truths is not None:
        batch["truth_masks"] = pad_concepts(truths)  # [B, K_max, H, W]
    outputs = predict(batch)
    arrays = {key: np.asarray(outputs[key]) for key in keys}
    return [{key: value[b, :len(v)] for key, value in arrays.items()}
            for b, v in enumerate(vectors)]


class SaliencyMasks:
    """The saliency baseline as a predictor: one concept-blind mask per image, for every concept.

    Args:
        saliency: A trained `SegmentationModel` without attention input
            (`training.saliency`), or any callable with its "image" input and a "logits"
            [B, 1, S, S] output.
        image_size: S, the side the network works at.
    """

    def __init__(self, saliency: Callable[..., Mapping[str, Any]], image_size: int) -> None:
        self.saliency = saliency
        self.image_size = int(image_size)

    def __call__(self, inputs: Mapping[str, Any], training: bool = False) -> dict[str, Any]:
        image = tf.convert_to_tensor(inputs["image"], tf.float32)  # [B, H, W, 3]
        vectors = tf.convert_to_tensor(inputs["word_vectors"], tf.float32)  # [B, K, D]
        resized = resize(image, (self.image_size, self.image_size))
        logits = self.saliency({"image": resized}, training=training)["logits"]  # [B, 1, S, S]
        probs = tf.sigmoid(resize_concept_maps(logits, tf.shape(image)[1:3]))  # [B, 1, H, W]
        shape = tf.concat([tf.shape(probs)[:1], tf.shape(vectors)[1:2],
                           tf.shape(probs)[2:]], axis=0)
        return {"mask_probs": tf.broadcast_to(probs, shape)}  # [B, K, H, W]


class OracleAttention:
    """The stage-3 network given attention made from the ground truth (`oracle_attention`).

    For each concept, its ground-truth mask is area-averaged down to each attention
    map's side and blurred with a Gaussian of `blur_sigma` map cells (a stand-in for the
    smooth maps stage 2 outputs); the segmentation network then sees these maps instead
    of the attention stages' maps. Its scores are the ceiling that better attention can
    reach with this segmentation network. It needs "truth_masks" in its inputs
    (`predict_pairs(..., with_truth=True)`).

    Args:
        segmentation: A trained `SegmentationModel`.
        image_size: S, the side the network works at.
        sides: Attention-map side of each of its attention inputs (`attention_sides`).
        blur_sigma: Standard deviation of the blur, in attention-map cells (0: none).
    """

    def __init__(self, segmentation: Callable[..., Mapping[str, Any]], image_size: int,
                 sides: Sequence[int], blur_sigma: float = 1.0) -> None:
        self.segmentation = segmentation
        self.image_size = int(image_size)
        self.sides = tuple(int(s) for s in sides)
        self.blur_sigma = float(blur_sigma)

    def attention(self, truth: tf.Tensor, side: int) -> tf.Tensor:
        """truth float32 [B, K, H, W] in {0, 1} -> attention [B, K, side, side] in [0, 1]."""
        shape = tf.shape(truth)
        images = tf.reshape(truth, tf.concat([[-1], shape[2:], [1]], axis=0))  # [BK, H, W, 1]
        maps = tf.image.resize(images, (side, side), method="area")  # [B * K, s, s, 1]
        if self.blur_sigma > 0:
            radius = max(1, round(3 * self.blur_sigma))
            taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / self.blur_sigma) ** 2)
            kernel = tf.constant(np.outer(taps, taps)[:, :, None, None], tf.float32)
            # Divided by the blurred ones: the zero padding at the border does not darken
            # a region that touches it.
            weights = tf.nn.conv2d(tf.ones([1, side, side, 1]), kernel, 1, "SAME")
            maps = tf.nn.conv2d(maps, kernel, 1, "SAME") / weights
        return tf.reshape(maps, tf.concat([shape[:2], [side, side]], axis=0))

    def __call__(self, inputs: Mapping[str, Any], training: bool = False) -> dict[str, Any]:
        image = tf.convert_to_tensor(inputs["image"], tf.float32)  # [B, H, W, 3]
        truth = tf.convert_to_tensor(inputs["truth_masks"], tf.float32)  # [B, K, H, W]
        resized = resize(image, (self.image_size, self.image_size))
        maps = {f"attention_{a}": self.attention(truth, side)
                for a, side in enumerate(self.sides)}
        logits = self.segmentation({"image": resized, **maps}, training=training)["logits"]
        return {"mask_probs": tf.sigmoid(resize_concept_maps(logits, tf.shape(image)[1:3]))}


class AttentionMaps:
    """The attention maps of paper Table 1, upsampled to the input image size.

    The image is resized to S (as `ConceptMask` does for its first scale), then:
      - "original": <e_ij, w> (cosine, or inner product with `similarity="dot"`) of the
        stage-1 network in fully-convolutional form;
      - "original_finetuned": the same map from the refinement model's fine-tuned
        embedding (its "coarse" output);
      - "refined": the refinement model's attention, sigmoid of its logits;
      - "refined_noneg": the same from the refinement model trained without negatives
        (only when that model is given).
    Each map [B, K, h, w] is resized bilinearly to [B, K, H, W]. Maps are raw: cosines in
    [-1, 1] or probabilities; the evaluation normalises them.

    Args:
        embedding: The stage-1 network in fully-convolutional form.
        refinement: The stage-2 network.
        refinement_no_neg: The no-negatives stage-2 network, or None.
        image_size: S.
    """

    def __init__(self, embedding: Any, refinement: Any, refinement_no_neg: Any | None,
                 image_size: int) -> None:
        self.embedding = embedding
        self.refinement = refinement
        self.refinement_no_neg = refinement_no_neg
        self.image_size = int(image_size)
        # Table 1's "original": eq. 1 with the similarity stage 2 was trained with.
        self.similarity = ConceptAttention(getattr(refinement, "similarity", "cosine"))

    @property
    def variants(self) -> tuple[str, ...]:
        """The map names this predictor returns."""
        names = ("original", "original_finetuned", "refined")
        return names + (("refined_noneg",) if self.refinement_no_neg is not None else ())

    def __call__(self, inputs: Mapping[str, Any], training: bool = False) -> dict[str, Any]:
        image = tf.convert_to_tensor(inputs["image"], tf.float32)  # [B, H, W, 3]
        vectors = tf.convert_to_tensor(inputs["word_vectors"], tf.float32)  # [B, K, D]
        resized = resize(image, (self.image_size, self.image_size))

        def upsample(maps):  # [B, K, h, w] -> [B, K, H, W]
            return resize_concept_maps(maps, tf.shape(image)[1:3])

        embedding_map = self.embedding(resized, training=False)["embedding_map"]
        maps = {"original": upsample(channels_to_concepts(
            self.similarity(embedding_map, vectors)))}  # transposed while small
        refined = refine_image(self.refinement, resized, vectors)
        maps["original_finetuned"] = upsample(refined["coarse"])
        maps["refined"] = upsample(refined["attention"])
        if self.refinement_no_neg is not None:
            maps["refined_noneg"] = upsample(refine_image(self.refinement_no_neg, resized,
                                                          vectors)["attention"])
        return maps


def presence_model(model: ConceptMask) -> keras.Model:
    """The part of a `ConceptMask` that computes "presence" (and "similarity") only.

    A functional model on the same layers and weights, pruned to the first scale's
    embedding pass and the presence layer: the same presence values without the
    attention and segmentation passes (for verified-absent pairs, which need no mask).
    """
    outputs = model.output
    return keras.Model(model.input, {"presence": outputs["presence"],
                                     "similarity": outputs["similarity"]},
                       name=f"{model.name}_presence")


def predict_pairs(predict: Predictor, eval_set: EvalSet, splits: Sequence[str],
                  keys: Sequence[str], present: bool = True, absent: bool = False,
                  batch_size: int = 16, progress: bool = True, desc: str = "evaluating",
                  with_truth: bool = False
                  ) -> Iterator[tuple[EvalImage, EvalPair, dict[str, np.ndarray]]]:
    """Runs a predictor over the pairs of `splits`, in batches, and yields each pair's outputs.

    Each image is asked about the distinct concepts of its selected pairs; images of equal
    size are batched (`eval_set.make_batches`) with concept lists padded to the batch's
    longest. The padded slots are dropped, so no result depends on the batch.

    Args:
        predict: The predictor.
        eval_set: The ground truth.
        splits: Splits whose pairs are evaluated.
        keys: Outputs to return.
        present: Include present pairs.
        absent: Include verified-absent pairs.
        batch_size: Most images per model call.
        progress: Show a tqdm bar on stderr (one step per image).
        desc: The bar's label.
        with_truth: Give the predictor each concept's ground-truth mask ("truth_masks";
            present pairs only).

    Yields:
        (image, pair, key -> the pair's output [...] without batch and concept axes).
    """
    selected = [image.select(splits, present, absent) for image in eval_set.images]
    concepts = [len({p.concept for p in pairs}) for pairs in selected]
    sizes = [(image.height, image.width) for image in eval_set.images]
    with tqdm.tqdm(total=sum(k > 0 for k in concepts), desc=desc, unit="image",
                   disable=not progress, leave=False) as bar:
        for batch in make_batches(sizes, concepts, batch_size):
            names, vectors = zip(*(eval_set.vectors_for(selected[i]) for i in batch))
            pixels = [eval_set.pixels(eval_set.images[i]) for i in batch]
            truths = None
            if with_truth:
                truths = [_truth_masks(selected[i], image_names)
                          for i, image_names in zip(batch, names)]
            outputs = run_batch(predict, pixels, vectors, keys, truths)
            for i, image_names, image_outputs in zip(batch, names, outputs):
                index = {name: k for k, name in enumerate(image_names)}
                for pair in selected[i]:
                    k = index[pair.concept]
                    yield eval_set.images[i], pair, {key: value[k]
                                                     for key, value in image_outputs.items()}
            bar.update(len(batch))


def _truth_masks(pairs: Sequence[EvalPair], concepts: Sequence[str]) -> np.ndarray:
    """float32 [K, H, W] ground-truth mask of each concept (from its first present pair)."""
    masks = {}
    for pair in pairs:
        if pair.concept not in masks:
            masks[pair.concept] = pair.truth()[0]
    return np.stack([masks[c] for c in concepts]).astype(np.float32)
