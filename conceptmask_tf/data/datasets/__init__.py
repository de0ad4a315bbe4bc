"""tf.data input pipelines, one per training stage (paper §4).

Every pipeline reads images from files under a data root where it needs them, skipping
and counting bad files there (`images.ImageReader`, `builder.make_dataset`), or the same
examples from sharded TFRecord files (`*_dataset_from_shards`, for large data: see
`conceptmask_tf.data.shards`), and yields
float32 pixels in [0, 255] at a square `image_size`.
Training mode shuffles (seeded), flips and optionally crops image and targets jointly,
and drops the last partial batch; eval mode keeps record order and every example.

    ds = embedding_dataset(root, paths, targets, image_size=128, batch_size=32,
                           training=True, seed=0, repeat=True)
    model.fit(ds, epochs=10, steps_per_epoch=steps_per_epoch(len(paths), 32))
"""

from conceptmask_tf.data.datasets.augment import Augmentation
from conceptmask_tf.data.datasets.builder import steps_per_epoch
from conceptmask_tf.data.datasets.embedding import (
    embedding_dataset,
    embedding_dataset_from_shards,
    embedding_elements,
)
from conceptmask_tf.data.datasets.refinement import (
    num_refinement_examples,
    rasterize_boxes,
    refinement_dataset,
    refinement_dataset_from_shards,
    refinement_elements,
)
from conceptmask_tf.data.datasets.segmentation import (
    num_segmentation_examples,
    segmentation_dataset,
    segmentation_dataset_from_shards,
    segmentation_elements,
)

__all__ = [
    "Augmentation",
    "embedding_dataset",
    "embedding_dataset_from_shards",
    "embedding_elements",
    "num_refinement_examples",
    "num_segmentation_examples",
    "rasterize_boxes",
    "refinement_dataset",
    "refinement_dataset_from_shards",
    "refinement_elements",
    "segmentation_dataset",
    "segmentation_dataset_from_shards",
    "segmentation_elements",
    "steps_per_epoch",
]
