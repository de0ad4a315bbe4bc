"""Losses of the three training stages; each returns per-sample values [B].

Reduction is left to Keras (`keras.losses.Loss`, "sum_over_batch_size"), which also
scales for `tf.distribute`, so a `compute_loss` override can add the losses as they
come.
"""

from conceptmask_tf.losses.box_loss import BoxLoss
from conceptmask_tf.losses.cosine_embedding_loss import CosineEmbeddingLoss
from conceptmask_tf.losses.image_label_loss import ImageLabelLoss
from conceptmask_tf.losses.mask_loss import MaskLoss
from conceptmask_tf.losses.matching_loss import (
                                                 MatchingLoss,
                                                 binarize_attention,
                                                 matching_targets,
                                                 select_matching_concepts,
)
from conceptmask_tf.losses.spatial_discrimination_loss import SpatialDiscriminationLoss
from conceptmask_tf.losses.tag_loss import TagLoss

__all__ = ["BoxLoss", "CosineEmbeddingLoss", "ImageLabelLoss", "MaskLoss", "MatchingLoss",
           "SpatialDiscriminationLoss", "TagLoss", "binarize_attention", "matching_targets",
           "select_matching_concepts"]
