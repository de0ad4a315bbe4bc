"""Image file checks, in-graph decode and resize, and the EXIF-aware host loader."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conceptmask_tf.data import images
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.errors import DataError


def _encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _write(root, rel: str, data: bytes) -> str:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return rel


def _rgb(height=12, width=16) -> np.ndarray:
    """A smooth picture (JPEG keeps it within a few levels), different in every channel."""
    y, x = np.mgrid[:height, :width]
    return np.stack([255 * x // max(width - 1, 1), 255 * y // max(height - 1, 1),
                     np.full_like(x, 90)], axis=-1).astype(np.uint8)


def test_check_images_keeps_decodable_files_and_counts_each_bad_one(tmp_path):
    # Noise makes the entropy-coded data (not the header) most of the file, so a cut at
    # half the length truncates the pixels, not the tables.
    noise = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    jpeg = _encode(np.kron(noise, np.ones((4, 4, 1), np.uint8)), "JPEG")
    good = [
        _write(tmp_path, "images/a.jpg", jpeg),
        _write(tmp_path, "images/b.png", _encode(_rgb(), "PNG")),
        _write(tmp_path, "images/grey.png", _encode(_rgb()[..., 0], "PNG")),
        # Bytes after the end-of-image marker: TensorFlow still decodes it.
        _write(tmp_path, "images/tail.jpg", jpeg + b"trailing bytes"),
    ]
    bad = {
        "images/missing.jpg": images.MISSING,
        _write(tmp_path, "images/empty.jpg", b""): images.EMPTY,
        _write(tmp_path, "images/cut.jpg", jpeg[:len(jpeg) // 2]): images.TRUNCATED,
        _write(tmp_path, "images/cut_end.jpg", jpeg[:-2]): images.TRUNCATED,
        _write(tmp_path, "images/noise.jpg", os.urandom(300)): images.UNREADABLE,
        _write(tmp_path, "images/cut.png", _encode(_rgb(), "PNG")[:-30]): images.UNREADABLE,
        _write(tmp_path, "images/a.tiff", _encode(_rgb(), "TIFF")): images.UNSUPPORTED,
    }
    skips = SkipCounter()
    ok = images.check_images(str(tmp_path), good + list(bad), skips, num_threads=3)
    assert ok == [True] * len(good) + [False] * len(bad)
    expected_counts = {}
    for reason in bad.values():
        expected_counts[reason] = expected_counts.get(reason, 0) + 1
    assert skips.as_dict() == expected_counts
    assert skips.examples[images.MISSING] == [os.path.join(str(tmp_path), "images/missing.jpg")]
    # What the check accepts the graph decodes; what it rejects as truncated, the graph can't.
    for rel in good:
        assert images.read_image(os.path.join(str(tmp_path), rel)).shape[2] == 3
    with pytest.raises(tf.errors.InvalidArgumentError):
        images.read_image(os.path.join(str(tmp_path), "images/cut_end.jpg"))


def test_check_images_strict_mode_raises_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="nothing.png"):
        images.check_images(str(tmp_path), ["nothing.png"], SkipCounter(strict=True))


def test_decode_image_gives_rgb_for_grey_rgba_and_png():
    rgb = _rgb()
    grey = rgb[..., 0]
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(images.decode_image(_encode(rgb, "PNG")).numpy(), rgb)
    np.testing.assert_array_equal(images.decode_image(_encode(grey, "PNG")).numpy(),
                                  np.repeat(grey[..., None], 3, axis=-1))
    np.testing.assert_array_equal(images.decode_image(_encode(rgba, "PNG")).numpy(), rgb)
    jpeg = images.decode_image(_encode(rgb, "JPEG", quality=95, subsampling=0))
    assert jpeg.dtype == tf.uint8 and jpeg.shape == (12, 16, 3)
    np.testing.assert_allclose(jpeg.numpy(), rgb, atol=12)  # lossy, but the same picture


def test_resize_image_is_bilinear_with_half_pixel_centres_and_no_antialias():
    row = np.array([[[0], [255]]], np.uint8)  # [1, 2, 1]
    # Output centres map to source x = (j + 0.5) * 2 / 4 - 0.5 = -0.25, 0.25, 0.75, 1.25,
    # clamped to [0, 1]: values 0, 63.75, 191.25, 255.
    up = images.resize_image(row, (1, 4))
    assert up.dtype == tf.float32
    np.testing.assert_allclose(up.numpy()[0, :, 0], [0, 63.75, 191.25, 255])
    # Downscaling 4 -> 2 samples at source x = 0.5 and 2.5 (no antialias averaging of all 4).
    down = images.resize_image(np.array([[[0], [100], [200], [40]]], np.uint8), (1, 2))
    np.testing.assert_allclose(down.numpy()[0, :, 0], [50, 120])


def test_resize_mask_takes_the_source_pixel_under_each_output_centre():
    mask = np.array([[[0], [1], [0], [1], [1], [0]]], np.uint8)  # [1, 6, 1]
    # 6 -> 3: centres at source x = (j + 0.5) * 2 = 1, 3, 5 -> values 1, 1, 0.
    np.testing.assert_array_equal(images.resize_mask(mask, (1, 3)).numpy()[0, :, 0], [1, 1, 0])
    # 6 -> 4: source x = (j + 0.5) * 1.5 = 0.75, 2.25, 3.75, 5.25 -> pixels 0, 2, 3, 5.
    np.testing.assert_array_equal(images.resize_mask(mask, (1, 4)).numpy()[0, :, 0],
                                  [0, 0, 1, 0])


def test_load_image_applies_exif_orientation_and_gives_rgb(tmp_path):
    rgb = _rgb(height=10, width=20)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
    path = tmp_path / "rotated.jpg"
    Image.fromarray(rgb).save(path, exif=exif.tobytes(), quality=95, subsampling=0)
    loaded = images.load_image(str(path))
    assert loaded.shape == (20, 10, 3) and loaded.dtype == np.uint8
    # Clockwise rotation: the displayed top row is the stored left column, bottom to top.
    np.testing.assert_allclose(loaded[0, :], rgb[::-1, 0], atol=12)
    grey = tmp_path / "grey.png"
    Image.fromarray(rgb[..., 1]).save(grey)
    np.testing.assert_array_equal(images.load_image(str(grey)),
                                  np.repeat(rgb[..., 1:2], 3, axis=-1))


def test_load_image_scales_sixteen_bit_images_instead_of_clipping(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 16).round().astype(np.uint16), (4, 1))  # [4, 16]
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    loaded = images.load_image(str(path))
    assert loaded.shape == (4, 16, 3)
    # 65535 -> 255, 0 -> 0, and a 16-bit value v -> round(v / 257) (PIL alone gives 255).
    np.testing.assert_array_equal(loaded[..., 0], np.round(ramp / 257.0).astype(np.uint8))


def test_load_image_raises_data_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="absent.jpg"):
        images.load_image(str(tmp_path / "absent.jpg"))
    (tmp_path / "noise.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="noise.png"):
        images.load_image(str(tmp_path / "noise.png"))
