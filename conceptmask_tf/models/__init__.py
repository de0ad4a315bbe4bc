"""Concept Mask networks (Keras 3 functional models on TensorFlow).

Stage 1: `EmbeddingModel` (image -> embedding in word space; `ConceptTagScores` for
its optional tag loss), converted by
`to_fully_convolutional` into `FullyConvolutionalEmbedding` (dense embedding map ->
coarse attention maps, `ConceptAttention`).
Stage 2: `RefinementModel` (refined attention for any word vector).
Stage 3: `SegmentationModel` (label-agnostic masks from image + attention maps).
Inference: `ConceptMask` (image + word vectors -> masks, presence).
All models take float32 pixels in [0, 255]; preprocessing is in the graph.
"""

from conceptmask_tf.models.backbone import (
    BACKBONES,
    build_backbone,
    freeze_backbone_before,
    output_stride,
    split_backbone,
)
from conceptmask_tf.models.concept_attention import ConceptAttention
from conceptmask_tf.models.concept_decoder_block import ConceptDecoderBlock
from conceptmask_tf.models.concept_mask import ConceptMask
from conceptmask_tf.models.concept_refinement import ConceptRefinement
from conceptmask_tf.models.concept_tag_scores import ConceptTagScores
from conceptmask_tf.models.embedding_model import EmbeddingModel
from conceptmask_tf.models.fully_convolutional_embedding import (
                                                                 FullyConvolutionalEmbedding,
                                                                 to_fully_convolutional,
)
from conceptmask_tf.models.nearest_supervised_concept import NearestSupervisedConcept
from conceptmask_tf.models.normalize_attention import NormalizeAttention
from conceptmask_tf.models.pixel_preprocessing import PixelPreprocessing
from conceptmask_tf.models.presence_score import PresenceScore
from conceptmask_tf.models.refinement_model import RefinementModel
from conceptmask_tf.models.resize_images import ResizeImages
from conceptmask_tf.models.resize_maps import ResizeMaps
from conceptmask_tf.models.segmentation_model import SegmentationModel, build_segmentation_model
from conceptmask_tf.models.vocabulary_attention import VocabularyAttention
from conceptmask_tf.models.weak_concept_blend import WeakConceptBlend

__all__ = [
    "BACKBONES", "ConceptAttention", "ConceptDecoderBlock", "ConceptMask",
    "ConceptRefinement", "ConceptTagScores", "EmbeddingModel", "FullyConvolutionalEmbedding",
    "NearestSupervisedConcept", "NormalizeAttention", "PixelPreprocessing", "PresenceScore",
    "RefinementModel", "ResizeImages", "ResizeMaps", "SegmentationModel",
    "VocabularyAttention", "WeakConceptBlend", "build_backbone", "build_segmentation_model",
    "freeze_backbone_before", "output_stride", "split_backbone", "to_fully_convolutional",
]
