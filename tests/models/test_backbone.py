"""Backbones: strides, in-graph preprocessing, weights from a local file."""

import numpy as np
import pytest

from conceptmask_tf.models import PixelPreprocessing, build_backbone, output_stride
from tests.models.tiny import images, randomize_batch_norm


def test_small_convnet_has_stride_8_so_128px_gives_16x16_maps():
    backbone = build_backbone("small_convnet")
    assert output_stride(backbone) == 8
    assert backbone(images(1, 128)).shape == (1, 16, 16, 128)
    assert backbone(images(1, 32, width=48)).shape == (1, 4, 6, 128)


def test_local_convnet_has_stride_8_and_a_27px_receptive_field():
    backbone = build_backbone("local_convnet")
    randomize_batch_norm(backbone)
    assert output_stride(backbone) == 8
    x = images(1, 128)
    features = np.asarray(backbone(x))
    assert features.shape == (1, 16, 16, 128)
    # Change pixels 20 px right of cell (8, 4)'s window (cell centre x = 36, window
    # 36 +- 13 px): its features must not move; small_convnet's (75 px) do.
    changed = x.copy()
    changed[0, 60:68, 56:64] = 255.0 - changed[0, 60:68, 56:64]
    moved = np.asarray(backbone(changed))
    np.testing.assert_allclose(moved[0, 8, 4], features[0, 8, 4], atol=1e-5)
    assert np.abs(moved[0, 8, 7] - features[0, 8, 7]).max() > 1e-3  # the cell over them
    wide = build_backbone("small_convnet")
    randomize_batch_norm(wide)
    assert np.abs(np.asarray(wide(changed))[0, 8, 4] - np.asarray(wide(x))[0, 8, 4]).max() > 1e-3


def test_mobilenet_v3_small_has_stride_32():
    backbone = build_backbone("mobilenet_v3_small")
    assert output_stride(backbone) == 32
    assert backbone(images(1, 64)).shape[1:3] == (2, 2)


@pytest.mark.slow
def test_resnet50_has_stride_32_and_loads_a_local_weights_file(tmp_path):
    backbone = build_backbone("resnet50")
    randomize_batch_norm(backbone)
    assert output_stride(backbone) == 32
    x = images(1, 64)
    path = str(tmp_path / "resnet.weights.h5")
    backbone.save_weights(path)
    reloaded = build_backbone("resnet50", weights=path)
    features = backbone(x)
    assert features.shape == (1, 2, 2, 2048)
    np.testing.assert_array_equal(reloaded(x), features)


def test_small_convnet_loads_a_local_weights_file(tmp_path):
    backbone = build_backbone("small_convnet")
    randomize_batch_norm(backbone)
    path = str(tmp_path / "small.weights.h5")
    backbone.save_weights(path)
    reloaded = build_backbone("small_convnet", weights=path)
    x = images(2, 32)
    np.testing.assert_array_equal(reloaded(x), backbone(x))


def test_unknown_names_and_imagenet_for_the_custom_net_are_refused():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg")
    with pytest.raises(ValueError, match="imagenet"):
        build_backbone("small_convnet", weights="imagenet")


def test_caffe_preprocessing_flips_to_bgr_and_subtracts_imagenet_means():
    pixel = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)  # R, G, B
    out = np.asarray(PixelPreprocessing("caffe")(pixel))[0, 0, 0]
    # B - 103.939, G - 116.779, R - 123.68
    np.testing.assert_allclose(out, [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)


def test_tf_preprocessing_maps_0_255_to_minus1_1():
    pixel = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    np.testing.assert_allclose(np.asarray(PixelPreprocessing("tf")(pixel))[0, 0, 0],
                               [-1.0, 0.0, 1.0], atol=1e-6)
