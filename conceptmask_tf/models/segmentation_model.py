"""Stage 3 label-agnostic segmentation network (paper §4.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from conceptmask_tf.models.concept_decoder_block import ConceptDecoderBlock
from conceptmask_tf.models.normalize_attention import NormalizeAttention
from conceptmask_tf.models.pixel_preprocessing import PixelPreprocessing
from conceptmask_tf.models.resize_maps import ResizeMaps


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class SegmentationModel(keras.Model):
    """Image + attention maps of K concepts at one or more input scales -> K mask logits.

    The network never sees which concept it segments (label agnostic): only the
    attention maps, each min-max normalised to [0, 1] per map (`NormalizeAttention`)
    and resized to every decoder level.

    Encoder (once per image): conv stages at strides 2, 4, 8, 16 (two 3x3 conv + BN +
    ReLU each, the first strided), widths `encoder_widths`.
    Decoder (per concept): `ConceptDecoderBlock`s at strides 16 (high-level features),
    4 and 2 (low-level features, for boundaries), widths `decoder_widths`, each fusing
    the shared encoder features, the attention maps and the coarser decoder output; a
    1x1 conv gives a logit map at stride 2, bilinearly upsampled to the input size. The
    attention joins after the encoder, so K concepts cost one encoder pass and K light
    decoder passes, not K full passes. The paper defers its architecture to its
    supplementary material; this one is ours.

    With `num_attention_maps=0` the network has no attention input: it predicts one
    concept-blind foreground mask per image (K = 1), the `saliency` baseline of the
    evaluation (the paper's zero-shot comparison), with the same encoder and decoder.

    Args:
        num_attention_maps: Attention scales A per concept (2 in the paper: maps from
            inputs at 300 and 700 px); 1 is the `single_att` ablation; 0 the saliency
            baseline.
        encoder_widths: Channels of the four encoder stages.
        decoder_widths: Channels of the decoder blocks at strides 16, 4, 2.
        **kwargs: keras.Model arguments (name, trainable).

    Inputs: {"image": float32 [B, S, S, 3] in [0, 255] (any S; a multiple of 16 aligns levels),
             "attention_0" ... "attention_{A-1}": float32 [B, K, h_a, w_a] attention
             maps (any sizes, e.g. S / stride and 2 S / stride)}.
    Outputs: {"logits": float32 [B, K, S, S], "masks": float32 [B, K, S, S] sigmoid}
             (K = 1 without attention inputs).
    """

    def __init__(self, num_attention_maps: int = 2,
                 encoder_widths: Sequence[int] = (32, 64, 96, 128),
                 decoder_widths: Sequence[int] = (64, 32, 16), **kwargs: Any) -> None:
        encoder_widths = tuple(int(w) for w in encoder_widths)
        decoder_widths = tuple(int(w) for w in decoder_widths)
        if num_attention_maps < 0 or len(encoder_widths) != 4 or len(decoder_widths) != 3:
            raise ValueError("need num_attention_maps >= 0, 4 encoder and 3 decoder widths")
        image = keras.Input(shape=(None, None, 3), name="image")
        maps = {f"attention_{a}": keras.Input(shape=(None, None, None), name=f"attention_{a}")
                for a in range(num_attention_maps)}
        x = PixelPreprocessing("tf", name="preprocessing")(image)
        features = []  # strides 2, 4, 8, 16
        for stage, width in enumerate(encoder_widths):
            for j, stride in enumerate((2, 1)):
                x = keras.layers.Conv2D(width, 3, strides=stride, padding="same",
                                        use_bias=False, name=f"encoder{stage}_conv{j}")(x)
                x = keras.layers.BatchNormalization(name=f"encoder{stage}_bn{j}")(x)
                x = keras.layers.ReLU(name=f"encoder{stage}_relu{j}")(x)
            features.append(x)

        normalize = NormalizeAttention(name="normalize_attention")
        normalized = [normalize(m) for m in maps.values()]  # A x [B, K, h_a, w_a]
        resize = ResizeMaps(name="resize_attention")
        y = None
        for level, width in zip((3, 1, 0), decoder_widths):
            attention = None  # the saliency network: K = 1, no attention
            if normalized:
                level_maps = [resize(m, features[level]) for m in normalized]
                attention = ops.stack(level_maps, axis=-1)  # [B, K, H_l, W_l, A]
            block = ConceptDecoderBlock(width, name=f"decoder{level}")
            y = block(features[level], attention, y)
        logits = keras.layers.Dense(1, name="logit")(y)  # [B, K, S/2, S/2, 1]
        logits = ops.squeeze(logits, axis=-1)
        logits = ResizeMaps(name="resize_logits")(logits, image)  # [B, K, S, S]
        outputs = {"logits": logits, "masks": ops.sigmoid(logits)}
        super().__init__(inputs={"image": image, **maps}, outputs=outputs, **kwargs)
        self.num_attention_maps = int(num_attention_maps)
        self.encoder_widths = encoder_widths
        self.decoder_widths = decoder_widths

    def get_config(self) -> dict[str, Any]:
        return {"num_attention_maps": self.num_attention_maps,
                "encoder_widths": list(self.encoder_widths),
                "decoder_widths": list(self.decoder_widths), "name": self.name,
                "trainable": self.trainable}


def build_segmentation_model(single_att: bool = False, **kwargs: Any) -> SegmentationModel:
    """The stage-3 network with two attention scales, or one for the `single_att` ablation.

    Args:
        single_att: One attention map per concept (the paper's Ours-singleAtt).
        **kwargs: Other `SegmentationModel` arguments.
    """
    return SegmentationModel(num_attention_maps=1 if single_att else 2, **kwargs)
