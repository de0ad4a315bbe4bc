"""The one rule for boxes that stick out of the image, shared by the box readers."""

from __future__ import annotations

import numpy as np

from conceptmask_tf.data.skips import Severity, register_skip_reason

DEGENERATE = register_skip_reason("degenerate box (zero area or inverted)", Severity.BAD_ANNOTATION)
OUTSIDE = register_skip_reason("box entirely outside the image", Severity.BAD_ANNOTATION)


def clip_boxes(xmin: np.ndarray, ymin: np.ndarray, xmax: np.ndarray,
               ymax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clips normalised boxes to [0, 1] and flags those that cannot be kept.

    A box with xmax <= xmin or ymax <= ymin is degenerate; a box with no area inside
    [0, 1]^2 is outside; any other box is clipped to [0, 1] (so it keeps a positive area).

    Args:
        xmin, ymin, xmax, ymax: float arrays [n], finite.

    Returns:
        (boxes, reasons): boxes float64 [n, 4] clipped (xmin, ymin, xmax, ymax); reasons
        object [n], None for a kept box, else `DEGENERATE` or `OUTSIDE`.
    """
    boxes = np.stack([xmin, ymin, xmax, ymax], axis=1).astype(np.float64)  # [n, 4]
    reasons = np.full(len(boxes), None, dtype=object)
    outside = (xmax <= 0) | (xmin >= 1) | (ymax <= 0) | (ymin >= 1)
    degenerate = (xmax <= xmin) | (ymax <= ymin)
    reasons[outside] = OUTSIDE
    reasons[degenerate] = DEGENERATE  # wins over OUTSIDE: the box is wrong, not misplaced
    np.clip(boxes, 0.0, 1.0, out=boxes)
    return boxes, reasons
