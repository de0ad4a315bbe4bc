"""Backbones: strides, in-graph preprocessing, weights from a local file."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conceptmask_tf.models import (
    PixelPreprocessing,
    build_backbone,
    freeze_backbone_before,
    output_stride,
    split_backbone,
)
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


def test_freezing_before_a_layer_keeps_the_lower_weights_and_batch_norm_statistics():
    backbone = build_backbone("small_convnet")
    randomize_batch_norm(backbone)
    before = {layer.name: [w.numpy() for w in layer.weights] for layer in backbone.layers}
    assert freeze_backbone_before(backbone, "conv2") == ["conv0", "bn0", "conv1", "bn1"]
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:  # training=True: unfrozen BN layers update statistics
        loss = keras.ops.mean(backbone(images(2, 32), training=True) ** 2)
    optimizer.apply(tape.gradient(loss, backbone.trainable_weights), backbone.trainable_weights)
    for layer in backbone.layers:
        changed = [not np.array_equal(w.numpy(), b) for w, b in zip(layer.weights,
                                                                    before[layer.name])]
        if layer.name in ("conv0", "bn0", "conv1", "bn1"):
            assert not any(changed), layer.name  # weights and moving statistics
        elif layer.name in ("conv2", "bn2"):
            assert all(changed), layer.name  # bn2: gamma, beta (gradient) and statistics
    assert freeze_backbone_before(build_backbone("small_convnet"), "") == []


def test_freezing_before_an_unknown_layer_names_the_layers_there_are():
    with pytest.raises(ValueError, match="'conv9' is not a layer.*conv0, bn0, conv1"):
        freeze_backbone_before(build_backbone("small_convnet"), "conv9")
    with pytest.raises(ValueError, match="'conv9' is not a layer.*conv0, bn0, conv1"):
        split_backbone(build_backbone("small_convnet"), "conv9")


def test_split_backbone_composes_to_the_backbone_and_shares_its_layers():
    backbone = build_backbone("small_convnet")
    randomize_batch_norm(backbone)
    lower, upper = split_backbone(backbone, "conv2")
    x = images(2, 32)
    np.testing.assert_allclose(upper(lower(x)), backbone(x), atol=1e-5)
    assert lower(x).shape == (2, 16, 16, 32)  # relu1's output, conv2's input
    assert upper.get_layer("conv2") is backbone.get_layer("conv2")


def test_split_backbone_refuses_a_cut_that_a_residual_branch_crosses():
    backbone = build_backbone("resnet50")
    lower, upper = split_backbone(backbone, "conv3_block1_1_conv")  # a block's start
    assert lower.output.shape[-1] == 256
    assert upper.get_layer("conv3_block1_0_conv") is backbone.get_layer("conv3_block1_0_conv")
    with pytest.raises(ValueError, match="cannot be cut at 'conv3_block1_2_conv'"):
        split_backbone(backbone, "conv3_block1_2_conv")  # inside the block


def test_caffe_preprocessing_flips_to_bgr_and_subtracts_imagenet_means():
    pixel = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)  # R, G, B
    out = np.asarray(PixelPreprocessing("caffe")(pixel))[0, 0, 0]
    # B - 103.939, G - 116.779, R - 123.68
    np.testing.assert_allclose(out, [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)


def test_tf_preprocessing_maps_0_255_to_minus1_1():
    pixel = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    np.testing.assert_allclose(np.asarray(PixelPreprocessing("tf")(pixel))[0, 0, 0],
                               [-1.0, 0.0, 1.0], atol=1e-6)
