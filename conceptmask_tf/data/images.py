"""Image files: checked reads inside training pipelines, in-graph decode and resize, host
checks and an EXIF-aware loader.

Training pipelines read their images through an `ImageReader`: each file is read and
decoded where the pipeline needs it (no pass over the images before training), and a
missing, empty, truncated, undecodable or too large file is skipped, counted once under its
reason and never read again, instead of stopping an epoch half-way. `check_images` checks
a list of files on the host (the evaluation's ground truth). In the graph, `read_image` /
`decode_image` give uint8 RGB and `resize_image` gives float32 pixels in [0, 255] (models
normalise in-graph, so serving feeds raw pixels).
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import threading
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tqdm
from PIL import Image, ImageOps, UnidentifiedImageError

from conceptmask_tf.base import files
from conceptmask_tf.data.skips import Severity, SkipCounter, register_skip_reason
from conceptmask_tf.errors import DataError

# Formats `tf.io.decode_image` reads (PIL names).
TF_DECODABLE_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP"})

MISSING = register_skip_reason("missing image file", Severity.BAD_IMAGE_FILE)
EMPTY = register_skip_reason("empty image file (0 bytes)", Severity.BAD_IMAGE_FILE)
UNREADABLE = register_skip_reason("unreadable image file", Severity.BAD_IMAGE_FILE)
UNSUPPORTED = register_skip_reason(
    "image format TensorFlow cannot decode (JPEG, PNG, GIF, BMP, WebP only)",
    Severity.BAD_IMAGE_FILE)
TRUNCATED = register_skip_reason("truncated or corrupt image file", Severity.BAD_IMAGE_FILE)
TOO_LARGE = register_skip_reason(
    "image too large to decode safely (PIL's decompression-bomb limit)", Severity.BAD_IMAGE_FILE)

_PROGRESS_MIN_FILES = 1000  # smaller lists are checked without a progress bar
_JPEG_EOI = b"\xff\xd9"


def check_images(data_root: str, paths: Sequence[str], skips: SkipCounter,
                 num_threads: int = 16) -> list[bool]:
    """Checks that image files exist and can be decoded by the training graph.

    A file passes if it exists, is not empty, PIL can identify and `verify()` it (its
    declared size within PIL's decompression-bomb limit), its format is one
    `tf.io.decode_image` reads, and TensorFlow decodes it. Every file is decoded once,
    since PIL's `verify()` accepts truncated GIF, BMP and WebP files, PNGs cut inside
    their last chunk, PNGs whose chunks are intact but whose pixel stream is not, and
    JPEGs whose headers are intact but whose compressed data is corrupt, all of which
    TensorFlow may reject. A JPEG that ends with its end-of-image marker is decoded at
    1/8 scale (libjpeg still reads all its compressed data; some corruption only warns).
    Each failing file is counted in `skips` under a reason naming the file.

    Args:
        data_root: The directory the paths are relative to.
        paths: Image paths relative to `data_root` (absolute paths are used as they are).
        skips: Where failures are counted (raises `DataError` instead in strict mode).
        num_threads: Threads for the (I/O-bound) checks.

    Returns:
        One bool per path, True where the file is usable.
    """
    full_paths = [os.path.join(data_root, p) for p in paths]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(num_threads, 1)) as pool:
        reasons = list(tqdm.tqdm(pool.map(_image_file_problem, full_paths),
                                 total=len(full_paths), desc="checking images", unit="file",
                                 disable=len(full_paths) < _PROGRESS_MIN_FILES))
    for path, reason in zip(full_paths, reasons):
        if reason is not None:
            skips.skip(reason, path=path)
    return [reason is None for reason in reasons]


def _image_file_problem(path: str) -> str | None:
    """The reason a file cannot be used, or None if it can."""
    try:
        with files.open_file(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return MISSING
    except OSError:
        return UNREADABLE
    image_format, reason = _header_problem(data)
    if reason is not None:
        return reason
    # A JPEG without its end marker is truncated or has trailing bytes; verify() does
    # not catch the other formats' broken files (see check_images). Let TF decide.
    try:
        if image_format == "JPEG" and data[-64:].rstrip(b"\x00\r\n ").endswith(_JPEG_EOI):
            # Corrupt entropy data can still fail; 1/8 scale reads all of it, faster.
            tf.io.decode_jpeg(data, channels=3, ratio=8)
        else:
            decode_image(tf.constant(data))
    except tf.errors.InvalidArgumentError:
        return TRUNCATED
    return None


def _header_problem(data: bytes) -> tuple[str | None, str | None]:
    """(PIL's format name, None), or (None, the skip reason) from the file's headers:
    not empty, PIL identifies and verifies it within its decompression-bomb limit, a
    format `tf.io.decode_image` reads."""
    if not data:
        return None, EMPTY
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            image.verify()  # PNG: checks chunk CRCs to the end of the file
    except Image.DecompressionBombError:  # not an OSError: declared size over PIL's limit
        return None, TOO_LARGE
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None, UNREADABLE
    if image_format not in TF_DECODABLE_FORMATS:
        return None, UNSUPPORTED
    return image_format, None


def image_bytes_problem(data: bytes) -> tuple[np.ndarray | None, str | None]:
    """Decodes an encoded image as the training graph does, or says why it cannot.

    The checks of `check_images` on the bytes of a file: not empty, PIL identifies and
    verifies it (its declared size within PIL's decompression-bomb limit, so a huge image
    is refused before it is decoded), a format `tf.io.decode_image` reads, and TensorFlow
    decodes it.

    Returns:
        (uint8 [H, W, 3], None), or (None, the skip reason).
    """
    _, reason = _header_problem(data)
    if reason is not None:
        return None, reason
    try:
        return decode_image(tf.constant(data)).numpy(), None
    except tf.errors.InvalidArgumentError:
        return None, TRUNCATED


class ImageReader:
    """Reads the images of a training pipeline where it needs them; skips bad files.

    `reader(path)` in a `tf.data` map gives (image uint8 [H, W, 3], ok bool []): the file
    is read (any TensorFlow filesystem) and decoded in a `tf.py_function` (TensorFlow
    releases the GIL while decoding, so a parallel map decodes in parallel). A bad file
    gives a black 1 x 1 image and ok False: it is counted once in `skips` under its reason
    (`image_bytes_problem`, or MISSING / UNREADABLE when it cannot be read), remembered,
    and not read again in later epochs; `on_bad` is then called (e.g. to enforce
    --max_bad_fraction on the running counts: an exception it raises stops the pipeline).

    Args:
        skips: Where bad files are counted (shared with the rest of the run).
        on_bad: Called after each newly found bad file.
    """

    def __init__(self, skips: SkipCounter, on_bad: Callable[[], None] | None = None) -> None:
        self.skips = skips
        self.on_bad = on_bad
        self._bad: set[str] = set()
        self._lock = threading.Lock()

    @property
    def bad_files(self) -> frozenset[str]:
        """The bad files found so far."""
        return frozenset(self._bad)

    def __call__(self, path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image, ok = tf.py_function(self._read, [path], [tf.uint8, tf.bool])
        image.set_shape([None, None, 3])
        ok.set_shape([])
        return image, ok

    def _read(self, path: tf.Tensor) -> tuple[np.ndarray, bool]:
        name = path.numpy().decode("utf-8")
        if name in self._bad:
            return _BLACK, False
        try:
            with files.open_file(name, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return self._bad_file(name, MISSING)
        except OSError:
            return self._bad_file(name, UNREADABLE)
        image, reason = image_bytes_problem(data)
        if reason is None:
            return image, True
        return self._bad_file(name, reason)

    def _bad_file(self, name: str, reason: str) -> tuple[np.ndarray, bool]:
        with self._lock:
            new = name not in self._bad
            if new:
                self._bad.add(name)
                self.skips.skip(reason, path=name)
        if new and self.on_bad is not None:
            self.on_bad()
        return _BLACK, False


_BLACK = np.zeros((1, 1, 3), np.uint8)  # what a bad file gives in place of its image


def decode_image(data: tf.Tensor) -> tf.Tensor:
    """Decodes encoded image bytes in the graph to RGB.

    Grey images are repeated to 3 channels and RGBA drops alpha; an animated GIF gives
    its first frame.

    Args:
        data: A scalar string tensor holding a JPEG, PNG, GIF, BMP or WebP file.

    Returns:
        uint8 [H, W, 3].
    """
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def read_image(path: tf.Tensor) -> tf.Tensor:
    """Reads and decodes an image file in the graph; uint8 [H, W, 3]."""
    return decode_image(tf.io.read_file(path))


def resize_image(image: tf.Tensor, size: int | tuple[int, int]) -> tf.Tensor:
    """Bilinear resize without antialiasing (convertible to XLA, TFLite, ONNX).

    Args:
        image: [..., H, W, C], any real dtype.
        size: Output side, or (height, width).

    Returns:
        float32 [..., h, w, C]; uint8 input gives values in [0, 255].
    """
    hw = (size, size) if isinstance(size, int) else size
    return tf.image.resize(tf.cast(image, tf.float32), hw, method="bilinear", antialias=False)


def resize_mask(mask: tf.Tensor, size: int | tuple[int, int]) -> tf.Tensor:
    """Nearest-neighbour resize (an output pixel takes the source pixel under its centre).

    Args:
        mask: [..., H, W, C], any dtype.
        size: Output side, or (height, width).

    Returns:
        [..., h, w, C], the input dtype.
    """
    hw = (size, size) if isinstance(size, int) else size
    return tf.image.resize(mask, hw, method="nearest")


_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_rgb(image: Image.Image) -> np.ndarray:
    """uint8 [H, W, 3] of a PIL image of any mode (16-bit and float ones scaled, not
    clipped: PIL's convert("RGB") would clip them at 255)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = np.asarray(image, np.float64) / 257.0
        grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)  # [H, W]
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode == "F":
        grey = np.clip(np.round(np.asarray(image, np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode == "P":  # via RGBA: keeps PIL quiet about transparent palettes
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_image(path: str) -> np.ndarray:
    """Loads an image file on the host, upright (EXIF orientation applied), as RGB.

    For command-line use on user photos. The training graph (`read_image`) reads raw pixels
    without EXIF rotation, which is the frame COCO-style annotations are drawn in.

    Args:
        path: The image file.

    Returns:
        uint8 [H, W, 3].

    Raises:
        DataError: The file is missing, not a readable image, or declares a size over
            PIL's decompression-bomb limit.
    """
    try:
        with files.open_file(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise DataError(MISSING, path=path) from e
    except OSError as e:
        raise DataError(f"{UNREADABLE}: {e}", path=path) from e
    try:
        with Image.open(io.BytesIO(data)) as image:
            return to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as e:  # not an OSError
        raise DataError(f"{TOO_LARGE}: {e}", path=path) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{UNREADABLE}: {e}", path=path) from e
