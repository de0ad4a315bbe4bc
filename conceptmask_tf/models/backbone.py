"""Feature-map backbones: image [B, H, W, 3] float32 in [0, 255] -> features [B, h, w, C].

Preprocessing is part of every backbone's graph, so callers always feed raw pixels.

Backbones are found by name in the registry `BACKBONES`; `@register_backbone("name")` on a
builder adds one, and every list of names (the `--backbone` flag, config validation) comes
from `backbone_names()`. Built in:
    "resnet50": keras.applications.ResNet50 without its top, output stride 32 (the paper's
        feature extractor).
    "mobilenet_v3_small": keras.applications.MobileNetV3Small without its top (its own
        in-graph rescaling), output stride 32.
    "small_convnet": a 7-layer conv net (widths 32-64-128-128, the last 3x3 conv dilated),
        output stride 8, receptive field 75 px: trains on 128 x 128 images on 2 CPU cores in
        minutes and gives a 16 x 16 attention map at 128 px, so object parts stay visible.
    "local_convnet": small_convnet's first five 3x3 convs, then two 1x1 convs (widths
        32-64-128-128): output stride 8, receptive field 27 px. Each location of its
        feature map sees only its neighbourhood, so a stage-1 network trained from scratch
        cannot repeat the whole image's topic at every location and its coarse maps
        localise (the world preset's stage 1; BENCHMARKS.md, "Stage 1 localisation").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from conceptmask_tf.models.pixel_preprocessing import PixelPreprocessing

# A builder: (input_shape (H, W, 3), weights) -> a functional model named "backbone" from
# pixels [B, H, W, 3] in [0, 255] (preprocessing in its graph) to a feature map.
BackboneBuilder = Callable[[tuple[int | None, ...], str | None], keras.Model]

BACKBONES: dict[str, BackboneBuilder] = {}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator adding a builder to `BACKBONES` under `name` (returns it unchanged).

    Example:
        @register_backbone("tiny")
        def _tiny(input_shape, weights):
            inputs = keras.Input(shape=input_shape, name="image")
            x = PixelPreprocessing("tf", name="preprocessing")(inputs)
            x = keras.layers.Conv2D(8, 3, strides=8, padding="same")(x)
            return keras.Model(inputs, x, name="backbone")

    Raises:
        ValueError: `name` is already registered.
    """
    def register(builder: BackboneBuilder) -> BackboneBuilder:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        BACKBONES[name] = builder
        return builder
    return register


def backbone_names() -> tuple[str, ...]:
    """The registered backbone names, in registration order."""
    return tuple(BACKBONES)


def build_backbone(name: str | keras.Model,
                   input_shape: Sequence[int | None] = (None, None, 3),
                   weights: str | None = None) -> keras.Model:
    """Builds a feature-map backbone with in-graph preprocessing.

    Args:
        name: One of `backbone_names()`, or a ready feature-map model (pixels in [0, 255]),
            returned as is (`input_shape` does not apply to it).
        input_shape: (H, W, 3); None sides accept any size (needed for multi-scale use).
        weights: None (random init), a local weights file (.h5 / .weights.h5 / .keras) or
            "imagenet" (keras.applications models only; downloads, so it needs network).
            Only for a backbone given by name.

    Returns:
        A functional model named "backbone" from pixels [B, H, W, 3] in [0, 255] to a
        feature map [B, H / stride, W / stride, C] (see `output_stride`).

    Raises:
        ValueError: Unknown name (the message lists the known ones), "imagenet" for the
            convnets, or weights with a ready model.
    """
    if isinstance(name, keras.Model):
        if weights is not None:
            raise ValueError("weights apply to a backbone given by name; load them into "
                             "the model you pass instead")
        return name
    builder = BACKBONES.get(name)
    if builder is None:
        raise ValueError(f"unknown backbone {name!r}; expected one of {backbone_names()}")
    return builder(tuple(input_shape), weights)


@register_backbone("resnet50")
def _resnet50(input_shape: tuple[int | None, ...], weights: str | None) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="image")
    x = PixelPreprocessing("caffe", name="preprocessing")(inputs)
    net = keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=x)
    return keras.Model(inputs, net.output, name="backbone")


@register_backbone("mobilenet_v3_small")
def _mobilenet_v3_small(input_shape: tuple[int | None, ...],
                        weights: str | None) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="image")
    net = keras.applications.MobileNetV3Small(
        input_tensor=inputs, include_top=False, weights=weights, include_preprocessing=True)
    return keras.Model(inputs, net.output, name="backbone")


@register_backbone("small_convnet")
def _small_convnet(input_shape: tuple[int | None, ...], weights: str | None) -> keras.Model:
    return _convnet_backbone("small_convnet", input_shape, weights)


@register_backbone("local_convnet")
def _local_convnet(input_shape: tuple[int | None, ...], weights: str | None) -> keras.Model:
    return _convnet_backbone("local_convnet", input_shape, weights)


def output_stride(backbone: keras.Model) -> int:
    """Input side / feature-map side of a backbone, found from a symbolic pass.

    Raises:
        ValueError: The ratio is not a whole number at the probe size.
    """
    _, height, width, channels = backbone.input_shape
    height = height or 256
    width = width or height
    spec = backbone.compute_output_spec(keras.KerasTensor((1, height, width, channels)))
    if height % spec.shape[1]:
        raise ValueError(f"backbone maps {height} px to {spec.shape[1]}: no whole stride")
    return height // spec.shape[1]


def freeze_backbone_before(backbone: keras.Model, layer_name: str) -> list[str]:
    """Keeps the layers of `backbone` before `layer_name` at their current weights.

    Layers are taken in the backbone's (topological) order; each one before the named layer
    is made non-trainable, so its weights get no gradient and its BatchNormalization runs
    in inference mode (its moving statistics stay). Used by stage 2 to fine-tune only the
    upper part of the stage-1 backbone: the high-resolution lower layers cost most of a
    training step's backward pass.

    Args:
        backbone: A model from `build_backbone`.
        layer_name: The first layer that stays trainable, e.g. "conv2" for the convnets or
            "conv3_block1_1_conv" for resnet50. "" freezes nothing.

    Returns:
        The names of the layers frozen (those with weights).

    Raises:
        ValueError: `layer_name` is not a layer of `backbone` (the message lists the
            layers with weights).
    """
    if not layer_name:
        return []
    frozen = []
    for layer in backbone.layers[:_layer_index(backbone, layer_name)]:
        if layer.weights:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def split_backbone(backbone: keras.Model, layer_name: str) -> tuple[keras.Model, keras.Model]:
    """The backbone as two models sharing its layers: below `layer_name`, and from it up.

    `upper(lower(x))` equals `backbone(x)`. The cut is the input tensor of `layer_name`,
    so it must be the only tensor the upper part reads from below (true at the start of a
    block, e.g. "conv2" for the convnets or "conv3_block1_1_conv" for resnet50).

    Args:
        backbone: A model from `build_backbone`.
        layer_name: The first layer of the upper part.

    Returns:
        (lower: pixels -> features at the cut, upper: features at the cut -> feature map).

    Raises:
        ValueError: `layer_name` is not a layer of `backbone` (the message lists the
            layers with weights), or the upper part reads other tensors from below its
            input (e.g. a residual branch crossing the cut).
    """
    cut = backbone.layers[_layer_index(backbone, layer_name)].input
    try:
        upper = keras.Model(cut, backbone.output, name="backbone_upper")
    except ValueError as e:
        raise ValueError(f"the backbone cannot be cut at {layer_name!r}: layers above it "
                         f"read tensors from below it other than its input ({e})") from e
    return keras.Model(backbone.input, cut, name="backbone_lower"), upper


def _layer_index(backbone: keras.Model, layer_name: str) -> int:
    """Position of `layer_name` in `backbone.layers`; ValueError naming the layers if absent."""
    names = [layer.name for layer in backbone.layers]
    if layer_name not in names:
        weighted = [layer.name for layer in backbone.layers if layer.weights]
        raise ValueError(f"{layer_name!r} is not a layer of the backbone; layers with "
                         f"weights: {', '.join(weighted)}")
    return names.index(layer_name)


# (filters, kernel, stride, dilation) per conv + BN + ReLU; both have output stride 8.
_CONVNET_PLANS = {
    "small_convnet": ((32, 3, 2, 1), (32, 3, 1, 1), (64, 3, 2, 1), (64, 3, 1, 1),
                      (128, 3, 2, 1), (128, 3, 1, 1), (128, 3, 1, 2)),
    "local_convnet": ((32, 3, 2, 1), (32, 3, 1, 1), (64, 3, 2, 1), (64, 3, 1, 1),
                      (128, 3, 2, 1), (128, 1, 1, 1), (128, 1, 1, 1)),
}


def _convnet_backbone(name: str, input_shape: tuple[int | None, ...],
                      weights: str | None) -> keras.Model:
    """One of `_CONVNET_PLANS` as a backbone; weights from a file only."""
    if weights == "imagenet":
        raise ValueError(f"{name} has no imagenet weights; use None or a file")
    inputs = keras.Input(shape=input_shape, name="image")
    model = keras.Model(inputs, _convnet(inputs, _CONVNET_PLANS[name]), name="backbone")
    if weights is not None:
        model.load_weights(weights)
    return model


def _convnet(inputs: keras.KerasTensor,
             plan: Sequence[tuple[int, int, int, int]]) -> keras.KerasTensor:
    """Plain conv net: [B, H, W, 3] -> [B, H / stride, W / stride, last filters]."""
    x = PixelPreprocessing("tf", name="preprocessing")(inputs)
    for i, (filters, kernel, stride, dilation) in enumerate(plan):
        x = keras.layers.Conv2D(filters, kernel, strides=stride, dilation_rate=dilation,
                                padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    return x
