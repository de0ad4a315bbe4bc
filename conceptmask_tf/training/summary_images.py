"""Fixed validation examples for TensorBoard pictures, and how they are drawn.

Examples are (image, concept) pairs from the data root's val/<split>.json files, the first
ones in file order (one per image), so every epoch shows the same pictures.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from conceptmask_tf.base import files
from conceptmask_tf.data import images as images_lib
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.data.splits import read_split_ground_truth
from conceptmask_tf.errors import DataError
from conceptmask_tf.visualization import heatmap, overlay_masks

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SummaryExamples:
    """Validation images with one concept each.

    Attributes:
        images: float32 [N, S, S, 3] pixels in [0, 255].
        concept_ids: int32 [N] vocabulary rows.
        concepts: The N concept names.
    """

    images: np.ndarray
    concept_ids: np.ndarray
    concepts: tuple[str, ...]

    def description(self, panels: str) -> str:
        """TensorBoard caption: what the panels are and each picture's concept."""
        listed = ", ".join(f"{n + 1}: {c}" for n, c in enumerate(self.concepts))
        return f"{panels}. Concepts: {listed}."


@dataclasses.dataclass(frozen=True)
class Pictures:
    """What a stage shows in TensorBoard each epoch.

    Attributes:
        render: Returns uint8 [N, H, W, 3] pictures of the current model.
        description: Caption (panels and concepts).
    """

    render: Callable[[], np.ndarray]
    description: str


def validation_examples(data_root: str, splits: Sequence[str], concept_index: Mapping[str, int],
                        image_size: int, count: int) -> SummaryExamples | None:
    """Up to `count` (image, concept) pairs from val/<split>.json, concepts in `concept_index`.

    Returns None (and logs why) when count is 0, no validation file exists or no pair
    qualifies: pictures are a nicety, never a reason to stop training.
    """
    if count <= 0:
        return None
    root = DataRoot(data_root)
    pixels, ids, names = [], [], []
    for split in splits:
        if not files.exists(root.val_file(split)):
            continue
        try:
            truth = read_split_ground_truth(root, split, which="val")
        except DataError as e:
            logger.warning("no summary images from %s: %s", root.val_file(split), e)
            continue
        for image in truth:
            concept = next((m.concept for m in image.masks if m.concept in concept_index), None)
            if concept is None:
                continue
            try:
                picture = images_lib.load_image(root.path(image.image))
            except DataError as e:
                logger.warning("summary image skipped: %s", e)
                continue
            pixels.append(resize_picture(picture, image_size).astype(np.float32))
            ids.append(concept_index[concept])
            names.append(concept)
            if len(ids) == count:
                return SummaryExamples(np.stack(pixels), np.asarray(ids, np.int32),
                                       tuple(names))
    if not ids:
        logger.warning("no validation image in val/{%s}.json under %s: no TensorBoard "
                       "pictures", ",".join(splits), data_root)
        return None
    return SummaryExamples(np.stack(pixels), np.asarray(ids, np.int32), tuple(names))


def resize_picture(picture: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [size, size, 3], bilinear (squashed like the pipelines)."""
    return np.asarray(Image.fromarray(picture).resize((size, size), Image.BILINEAR))


def resize_map(values: np.ndarray, size: int) -> np.ndarray:
    """float [h, w] -> float32 [size, size], bilinear."""
    image = Image.fromarray(np.asarray(values, np.float32))  # mode "F"
    return np.asarray(image.resize((size, size), Image.BILINEAR), np.float32)


def picture_rows(images: np.ndarray, attention: np.ndarray,
                 mask_probs: np.ndarray | None = None) -> np.ndarray:
    """One picture per example: [image | attention heat map | predicted mask overlay].

    Args:
        images: float [N, S, S, 3] in [0, 255].
        attention: float [N, h, w] attention maps (min-max normalised for display).
        mask_probs: float [N, S, S] in [0, 1], or None for no third panel.

    Returns:
        uint8 [N, S, 2 S or 3 S, 3].
    """
    rows = []
    for n, image in enumerate(np.clip(images, 0, 255).astype(np.uint8)):
        size = image.shape[0]
        heat = heatmap(resize_map(attention[n], size))
        panels = [image, (0.5 * image + 0.5 * heat).astype(np.uint8)]
        if mask_probs is not None:
            panels.append(overlay_masks(image, [mask_probs[n]]))
        rows.append(np.concatenate(panels, axis=1))
    return np.stack(rows)
