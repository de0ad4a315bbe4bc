"""Lever experiment: the weak concepts' own map alpha_q taken from stage 1, not stage 2.

In the section 4.4 blend alpha = theta alpha_q + (1 - theta) alpha_p, alpha_q is here the
stage-1 coarse map clip(cos, 0, 1) at each attention scale for concepts outside the
supervised set (supervised concepts keep their refined map); everything else is
`conceptmask-evaluate` (same flags; theta calibrated as usual). Only the full model is
changed. For choosing, so run it with --split=val:

    python benchmarks/weak_attention_from_stage1.py --model_dir=W/models \
        --data_root=W/data --out_dir=R --split=val --pictures_per_group=0

(BENCHMARKS.md, "Stage 1 localisation": +0.010 weak_image IoU on validation; not adopted.)
"""
import sys

import keras
from absl import app
from keras import ops

from conceptmask_tf.evaluation import variants as variants_lib
from conceptmask_tf.models import ConceptAttention, ConceptMask, to_fully_convolutional
from conceptmask_tf.models._tensors import channels_to_concepts
from conceptmask_tf.models.nearest_supervised_concept import NearestSupervisedConcept
from conceptmask_tf.models.presence_score import PresenceScore
from conceptmask_tf.models.resize_images import ResizeImages
from conceptmask_tf.models.resize_maps import ResizeMaps
from conceptmask_tf.models.weak_concept_blend import WeakConceptBlend


class ConceptMaskS1(ConceptMask):
    """`ConceptMask` with alpha_q from the stage-1 network (`presence_embedding`)."""

    def __init__(self, refinement, segmentation, image_size, attention_scales=(1.0, 2.0),
                 supervised_vectors=None, num_supervised=0, weak_theta=0.5,
                 presence_threshold=0.0, presence_scale=10.0, presence_embedding=None,
                 **kw):
        attention_scales = tuple(float(s) for s in attention_scales)
        if supervised_vectors is not None:
            num_supervised = len(supervised_vectors)
        dim = refinement.embedding.embedding_dim
        image = keras.Input(shape=(None, None, 3), name="image")
        vectors = keras.Input(shape=(None, dim), name="word_vectors")
        stage1 = to_fully_convolutional(presence_embedding, name="stage1_fcn")
        cosine = ConceptAttention("cosine", name="stage1_attention")
        nearest = NearestSupervisedConcept(num_supervised, dim, supervised_vectors,
                                           name="nearest_supervised")
        neighbours, is_supervised = nearest(vectors)
        blend = WeakConceptBlend(weak_theta, name="weak_blend")
        queried = ops.concatenate([vectors, neighbours], axis=1)
        resized = ResizeImages(image_size, name="resize_image")(image)
        maps = []
        sup = ops.expand_dims(ops.expand_dims(is_supervised, -1), -1)  # [B, K, 1, 1]
        for i, scale in enumerate(attention_scales):
            scaled = ResizeImages(round(scale * image_size), name=f"resize_scale_{i}")(image)
            embedded = refinement.embedding(scaled)
            logits, _ = refinement.refine(embedded["embedding_map"], queried)
            attention = channels_to_concepts(ops.sigmoid(logits))  # [B, 2K, h, w]
            own, neighbour = ops.split(attention, 2, axis=1)
            coarse = channels_to_concepts(ops.clip(
                cosine(stage1(scaled)["embedding_map"], vectors), 0.0, 1.0))
            own = sup * own + (1.0 - sup) * coarse
            maps.append(blend(ops.concatenate([own, neighbour], axis=1), is_supervised))
        embedding = presence_embedding(resized)
        similarity, presence = PresenceScore(presence_threshold, presence_scale,
                                             name="presence_score")(embedding, vectors)
        segmented = segmentation({"image": resized,
                                  **{f"attention_{i}": a for i, a in enumerate(maps)}})
        logits = ResizeMaps(name="resize_masks")(segmented["logits"], image)
        outputs = {"mask_probs": ops.sigmoid(logits), "presence": presence,
                   "similarity": similarity, "attention": maps[0]}
        keras.Model.__init__(self, inputs={"image": image, "word_vectors": vectors},
                             outputs=outputs, **kw)
        self.refinement, self.segmentation = refinement, segmentation
        self.image_size, self.attention_scales = int(image_size), attention_scales
        self.num_supervised, self.weak_theta = int(num_supervised), float(weak_theta)
        self.presence_embedding = presence_embedding


_ORIGINAL = variants_lib.ConceptMask


def _pick(*args, **kwargs):
    """The patched composition for the full model with the weak-concept rule only."""
    if (kwargs.get("name") == "concept_mask_refinement_segmentation"
            and kwargs.get("supervised_vectors") is not None):
        return ConceptMaskS1(*args, **kwargs)
    return _ORIGINAL(*args, **kwargs)


variants_lib.ConceptMask = _pick

from conceptmask_tf.bin import evaluate

if __name__ == "__main__":
    evaluate.define_flags()
    app.run(evaluate.main, argv=sys.argv)
