"""Training augmentation shared by the stage pipelines: a crop window and a horizontal flip.

An example's `View` is drawn once from its per-example seed and applied jointly to the
image and everything aligned with it (boxes, masks, attention maps), so they never drift
apart. Eval
uses the identity view, which leaves every input unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import tensorflow as tf


class View(NamedTuple):
    """What an example shows of its source image.

    Attributes:
        window: float32 [4] (ymin, xmin, ymax, xmax), the crop in normalised source
            coordinates.
        flip: bool [], mirror left-right after cropping.
    """

    window: tf.Tensor
    flip: tf.Tensor


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random view settings.

    Attributes:
        flip: Mirror left-right with probability 1/2.
        scale_jitter: Crop the same fraction f of the image's height and width (so the
            aspect ratio is kept), f uniform in [1 - scale_jitter, 1], at a uniform
            position: the output zooms in by up to 1 / (1 - scale_jitter). 0 disables it.
    """

    flip: bool = True
    scale_jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.scale_jitter < 1.0:
            raise ValueError(f"scale_jitter must be in [0, 1), got {self.scale_jitter}")

    def view(self, seed: tf.Tensor | None) -> View:
        """A random view for a per-example seed (int64 [2]); the identity view for None."""
        if seed is None:
            return View(tf.constant([0.0, 0.0, 1.0, 1.0]), tf.constant(False))
        u = tf.random.stateless_uniform([4], seed)  # [4] in [0, 1)
        side = 1.0 - self.scale_jitter * u[0]
        ymin, xmin = (1.0 - side) * u[1], (1.0 - side) * u[2]
        window = tf.stack([ymin, xmin, ymin + side, xmin + side])
        flip = u[3] < 0.5 if self.flip else tf.constant(False)
        return View(window, flip)


def crop(image: tf.Tensor, window: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Crops a normalised window out of an image, snapped to whole pixels.

    Args:
        image: [H, W, C].
        window: float32 [4] (ymin, xmin, ymax, xmax) in [0, 1].

    Returns:
        (cropped [h, w, C] with h, w >= 1, the snapped window float32 [4]). The full
        window returns the image itself.
    """
    hw = tf.shape(image)[:2]  # [2]
    top_left, bottom_right = _pixel_window(hw, window)
    cropped = image[top_left[0]:bottom_right[0], top_left[1]:bottom_right[1]]
    snapped = (tf.cast(tf.concat([top_left, bottom_right], 0), tf.float32)
               / tf.tile(tf.cast(hw, tf.float32), [2]))
    return cropped, snapped


def _pixel_window(hw: tf.Tensor, window: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(top_left, bottom_right) int32 [..., 2] each: windows [..., 4] snapped to pixels."""
    hw_float = tf.cast(hw, tf.float32)
    top_left = tf.minimum(tf.cast(tf.round(window[..., :2] * hw_float), tf.int32), hw - 1)
    bottom_right = tf.clip_by_value(tf.cast(tf.round(window[..., 2:] * hw_float), tf.int32),
                                    top_left + 1, hw)
    return top_left, bottom_right


def nearest_window_pixels(hw: tf.Tensor, window: tf.Tensor,
                          size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Source pixels that a crop and a nearest resize to size x size read, batched.

    For each example b, equals `crop(x, window[b])` then `images.resize_mask(x, size)`
    (TensorFlow's nearest neighbour with half-pixel centres: source floor((i + 0.5) *
    in / out) in float32) applied to an [H, W, C] array x of size hw[b], as index
    lists, so that a mask can be read at only these pixels (`rle.sample_masks`).

    Args:
        hw: int32 [B, 2], the sources' (H, W).
        window: float32 [B, 4], the views' windows (`View.window`).
        size: Output side S.

    Returns:
        (rows int32 [B, S], cols int32 [B, S]), each ascending: output pixel (i, j) of
        example b reads source pixel (rows[b, i], cols[b, j]).
    """
    top_left, bottom_right = _pixel_window(hw, window)  # [B, 2] each
    crop_hw = bottom_right - top_left
    scale = tf.cast(crop_hw, tf.float32) / float(size)  # [B, 2]
    centres = tf.range(size, dtype=tf.float32) + 0.5  # [S]
    source = tf.cast(tf.floor(centres * scale[:, :, tf.newaxis]), tf.int32)  # [B, 2, S]
    source = tf.minimum(source, crop_hw[:, :, tf.newaxis] - 1) + top_left[:, :, tf.newaxis]
    return source[:, 0], source[:, 1]


def resample_window(values: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """A normalised window of a coarse map, bilinearly resampled to the map's own size.

    The view of a map that `crop` then `images.resize_image` give of the image it was
    computed on: output cell (i, j) reads the map at the window's cell centre (half-pixel
    centres, as `tf.image.resize`). Unlike cropping the map first, a sample near the
    window's edge interpolates with the cell beyond it rather than clamping at the crop,
    since a coarse map's cells straddle the window's edges; only the map's own border
    clamps.

    Args:
        values: float32 [H, W, C].
        window: float32 [4] (ymin, xmin, ymax, xmax) in [0, 1] (`crop`'s snapped window).

    Returns:
        float32 [H, W, C]. The full window returns the values unchanged.
    """
    hw = tf.shape(values)[:2]

    def taps(size: tf.Tensor, low: tf.Tensor, high: tf.Tensor):
        n = tf.cast(size, tf.float32)
        position = low * n + (tf.range(n) + 0.5) * (high - low) - 0.5  # source cell, [n]
        position = tf.clip_by_value(position, 0.0, n - 1.0)
        first = tf.cast(tf.floor(position), tf.int32)
        return first, tf.minimum(first + 1, size - 1), position - tf.cast(first, tf.float32)

    top, bottom, dy = taps(hw[0], window[0], window[2])
    left, right, dx = taps(hw[1], window[1], window[3])
    dy, dx = dy[:, tf.newaxis, tf.newaxis], dx[tf.newaxis, :, tf.newaxis]
    upper, lower = tf.gather(values, top), tf.gather(values, bottom)  # [H, W, C]
    rows = upper + (lower - upper) * dy
    return (tf.gather(rows, left, axis=1)
            + (tf.gather(rows, right, axis=1) - tf.gather(rows, left, axis=1)) * dx)


def flip_left_right(image: tf.Tensor, flip: tf.Tensor, width_axis: int = -2) -> tf.Tensor:
    """Mirrors along the width axis (-2 for [..., H, W, C]) when `flip` (bool []) is true."""
    return tf.cond(flip, lambda: tf.reverse(image, axis=[width_axis]), lambda: image)


def crop_boxes(boxes: tf.Tensor, window: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Maps normalised boxes into a crop window.

    Args:
        boxes: float32 [N, 4] (xmin, ymin, xmax, ymax), normalised to the source image.
        window: float32 [4] (ymin, xmin, ymax, xmax), the snapped crop window.

    Returns:
        (boxes float32 [N, 4] normalised to the window and clipped to [0, 1],
         visible bool [N]: the box keeps a positive area inside the window).
    """
    ymin, xmin, ymax, xmax = tf.unstack(window)
    x = tf.clip_by_value((boxes[:, 0::2] - xmin) / (xmax - xmin), 0.0, 1.0)  # [N, 2]
    y = tf.clip_by_value((boxes[:, 1::2] - ymin) / (ymax - ymin), 0.0, 1.0)  # [N, 2]
    visible = (x[:, 1] > x[:, 0]) & (y[:, 1] > y[:, 0])
    cropped = tf.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    return cropped, visible
