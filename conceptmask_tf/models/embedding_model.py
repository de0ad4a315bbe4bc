"""Stage 1 embedding network (paper §4.1): image -> visual embedding e in word space."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import keras

from conceptmask_tf.models.backbone import build_backbone, output_stride

POOLINGS = ("after_head", "before_head")


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class EmbeddingModel(keras.Model):
    """Backbone -> 3 x (Dense, BatchNorm, ReLU) and global average pooling -> embedding e [B, D].

    Trained with `conceptmask_tf.losses.CosineEmbeddingLoss` against the image's soft-topic
    vector t, so only the direction of e matters.

    Departure from the paper: the paper puts a ReLU after every fc layer, which makes
    e >= 0, so e can never point along a word vector with negative entries and the cosine
    loss 1 - e.t / (|e||t|) cannot be fitted for signed (PMI eigen-) word vectors. Here
    the last layer is Dense + BatchNorm without ReLU (`final_relu=True` restores the
    paper's head). The Dense layers have no bias: the BatchNorm after each one adds it.

    Departure from the paper (`pooling="after_head"`, the default): the paper pools the
    backbone features and then applies the fc layers. Here the fc layers run at every
    location (1x1, on the feature map) and the embedding is the average of the
    per-location embeddings e_ij (as in class activation maps). The head and its
    BatchNorm statistics are then trained on exactly the per-location features that
    the fully-convolutional form scores, so <e_ij, w> localises a concept; with the
    paper's order, a network trained from scratch gave coarse maps no better than chance
    on the concept world (the head's BatchNorm statistics of pooled features do not fit
    single locations). `pooling="before_head"` is the paper's order (use it with
    ImageNet-pretrained backbones).

    Args:
        backbone: A feature-map model from pixels [B, H, W, 3] in [0, 255] (e.g.
            `build_backbone(...)`), or a name from `backbone.BACKBONES`.
        embedding_dim: D, the word-vector dimension.
        hidden_dims: Widths of the fc layers before the last one (the paper has 3 fc
            layers in all, i.e. two hidden widths; it does not give them).
        final_relu: Put a ReLU after the last BatchNorm too (the paper's literal head).
        pooling: "after_head" (default) or "before_head" (the paper's order).
        backbone_weights: Weights for a backbone given by name (None, file, "imagenet").
            Not part of the config: a saved model carries its weights.
        **kwargs: keras.Model arguments (name, trainable).

    Inputs: image float32 [B, H, W, 3] in [0, 255].
    Outputs: embedding float32 [B, D].
    """

    def __init__(self, backbone: keras.Model | str, embedding_dim: int,
                 hidden_dims: Sequence[int] = (1024, 1024), final_relu: bool = False,
                 pooling: str = "after_head", backbone_weights: str | None = None,
                 **kwargs: Any) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if isinstance(backbone, str):
            backbone = build_backbone(backbone, weights=backbone_weights)
        hidden_dims = tuple(int(d) for d in hidden_dims)
        image = keras.Input(shape=backbone.input_shape[1:], name="image")
        x = backbone(image)  # [B, h, w, C]
        if pooling == "before_head":
            x = keras.layers.GlobalAveragePooling2D(name="pool")(x)  # [B, C]
        widths = (*hidden_dims, embedding_dim)
        for i, units in enumerate(widths):  # Dense acts on the last axis: per location
            x = keras.layers.Dense(units, use_bias=False, name=f"head_dense_{i}")(x)
            x = keras.layers.BatchNormalization(name=f"head_bn_{i}")(x)
            if i < len(widths) - 1 or final_relu:
                x = keras.layers.ReLU(name=f"head_relu_{i}")(x)
        if pooling == "after_head":
            x = keras.layers.GlobalAveragePooling2D(name="pool")(x)  # [B, D]
        super().__init__(inputs=image, outputs=x, **kwargs)
        self.backbone = backbone
        self.embedding_dim = int(embedding_dim)
        self.hidden_dims = hidden_dims
        self.final_relu = bool(final_relu)
        self.pooling = pooling

    @property
    def output_stride(self) -> int:
        """Input side / backbone feature-map side."""
        return output_stride(self.backbone)

    def head_layers(self) -> list[tuple[keras.layers.Dense, keras.layers.BatchNormalization]]:
        """(Dense, BatchNorm) of each fc layer, input side first."""
        return [(self.get_layer(f"head_dense_{i}"), self.get_layer(f"head_bn_{i}"))
                for i in range(len(self.hidden_dims) + 1)]

    def get_config(self) -> dict[str, Any]:
        return {"backbone": keras.layers.serialize(self.backbone),
                "embedding_dim": self.embedding_dim, "hidden_dims": list(self.hidden_dims),
                "final_relu": self.final_relu, "pooling": self.pooling, "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EmbeddingModel:
        config = copy.deepcopy(config)  # deserialize() consumes nested configs
        if isinstance(config["backbone"], dict):
            config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)
