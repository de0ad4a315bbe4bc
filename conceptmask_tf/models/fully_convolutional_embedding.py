"""Stage 1 network in fully-convolutional form (paper §4.1, "Attention Map")."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import keras

from conceptmask_tf.models.backbone import output_stride
from conceptmask_tf.models.embedding_model import POOLINGS, EmbeddingModel


@keras.saving.register_keras_serializable(package="conceptmask_tf")
class FullyConvolutionalEmbedding(keras.Model):
    """The embedding network with its fc layers as 1x1 convolutions: a dense embedding map.

    Each Dense kernel [C_in, C_out] becomes a 1x1 Conv2D kernel [1, 1, C_in, C_out] and
    each BatchNorm normalises every location with the same moving statistics (spatial
    BN), so the head maps every backbone feature vector f_ij exactly as the trained head
    maps a pooled vector: e_ij = head(f_ij). The pooled path is kept too: `embedding` is
    the head applied to the global average of f (a 1x1 map), which is the original
    network's output, used for image-level presence scores.

    With `pooling="after_head"` (see `EmbeddingModel`) the head already ran per
    location in training, and `embedding` is the average of the embedding map.

    With `pooling="before_head"` (the paper's order) the head's BatchNorm layers should
    stay frozen (`train_head_batch_norm=False`): fine-tuning in stage 2 would otherwise
    re-estimate statistics of per-location features with the ones of pooled features
    that the head was trained on.

    Build one from a trained `EmbeddingModel` with `to_fully_convolutional`.

    Args:
        backbone: The feature-map model (pixels in [0, 255]).
        embedding_dim: D.
        hidden_dims: Widths of the fc layers before the last one.
        final_relu: ReLU after the last BatchNorm (see `EmbeddingModel`).
        pooling: Where the trained network pooled ("after_head" or "before_head").
        train_head_batch_norm: Let the head's BatchNorm layers train (update statistics).
        **kwargs: keras.Model arguments (name, trainable).

    Inputs: image float32 [B, H, W, 3] in [0, 255].
    Outputs: {"embedding_map": float32 [B, h, w, D] (h = H / stride),
              "embedding": float32 [B, D] (the original network's output)}.
    """

    def __init__(self, backbone: keras.Model, embedding_dim: int,
                 hidden_dims: Sequence[int] = (1024, 1024), final_relu: bool = False,
                 train_head_batch_norm: bool = True, pooling: str = "after_head",
                 **kwargs: Any) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        hidden_dims = tuple(int(d) for d in hidden_dims)
        widths = (*hidden_dims, embedding_dim)
        convs = [keras.layers.Conv2D(units, 1, use_bias=False, name=f"head_conv_{i}")
                 for i, units in enumerate(widths)]
        norms = [keras.layers.BatchNormalization(name=f"head_bn_{i}")
                 for i in range(len(widths))]
        relu = keras.layers.ReLU(name="head_relu")
        layers = list(zip(convs, norms))

        image = keras.Input(shape=backbone.input_shape[1:], name="image")
        features = backbone(image)  # [B, h, w, C]
        embedding_map = _apply_head(features, layers, relu, final_relu)  # [B, h, w, D]
        if pooling == "after_head":
            embedding = keras.layers.GlobalAveragePooling2D(name="pool")(embedding_map)
        else:
            pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(features)
            embedding = keras.layers.Reshape((embedding_dim,), name="embedding")(
                _apply_head(pooled, layers, relu, final_relu))
        outputs = {"embedding_map": embedding_map, "embedding": embedding}
        super().__init__(inputs=image, outputs=outputs, **kwargs)
        for norm in norms:
            norm.trainable = train_head_batch_norm
        self.backbone = backbone
        self.embedding_dim = int(embedding_dim)
        self.hidden_dims = hidden_dims
        self.final_relu = bool(final_relu)
        self.train_head_batch_norm = bool(train_head_batch_norm)
        self.pooling = pooling

    @property
    def output_stride(self) -> int:
        """Input side / embedding-map side."""
        return output_stride(self.backbone)

    def head_layers(self) -> list[tuple[keras.layers.Conv2D, keras.layers.BatchNormalization]]:
        """(1x1 Conv2D, BatchNorm) of each head layer, input side first."""
        return [(self.get_layer(f"head_conv_{i}"), self.get_layer(f"head_bn_{i}"))
                for i in range(len(self.hidden_dims) + 1)]

    def embedding_map_from_features(self, features, training=None):
        """The head on backbone features: [B, h, w, C] -> embedding map [B, h, w, D].

        What the model computes after its backbone, for callers that run the backbone
        themselves (stage 2 shares a frozen lower backbone between two networks).
        """
        return _apply_head(features, self.head_layers(), self.get_layer("head_relu"),
                           self.final_relu, training)

    def get_config(self) -> dict[str, Any]:
        return {"backbone": keras.layers.serialize(self.backbone),
                "embedding_dim": self.embedding_dim, "hidden_dims": list(self.hidden_dims),
                "final_relu": self.final_relu,
                "train_head_batch_norm": self.train_head_batch_norm,
                "pooling": self.pooling, "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FullyConvolutionalEmbedding:
        config = copy.deepcopy(config)  # deserialize() consumes nested configs
        if isinstance(config["backbone"], dict):
            config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)


def _apply_head(x, layers: Sequence[tuple[keras.layers.Layer, keras.layers.Layer]],
                relu: keras.layers.Layer, final_relu: bool, training=None):
    """(1x1 conv, BatchNorm) pairs with ReLU between them: [B, h, w, C] -> [B, h, w, D]."""
    for i, (conv, norm) in enumerate(layers):
        x = norm(conv(x), training=training)
        if i < len(layers) - 1 or final_relu:
            x = relu(x)
    return x


def to_fully_convolutional(model: EmbeddingModel, train_head_batch_norm: bool | None = None,
                           name: str = "fully_convolutional_embedding"
                           ) -> FullyConvolutionalEmbedding:
    """Converts a trained stage-1 model into its fully-convolutional form.

    The result owns a copy of every weight (backbone included), so fine-tuning it (stage
    2) leaves `model` unchanged, e.g. as the frozen source of the matching loss targets.

    Args:
        model: The trained embedding network.
        train_head_batch_norm: See `FullyConvolutionalEmbedding`; None = True exactly when
            the model pooled after its head (its statistics are per-location ones).
        name: Name of the new model.

    Returns:
        The fully-convolutional network with the same weights.
    """
    backbone = keras.layers.deserialize(keras.layers.serialize(model.backbone))
    backbone.set_weights(model.backbone.get_weights())
    if train_head_batch_norm is None:
        train_head_batch_norm = model.pooling == "after_head"
    fcn = FullyConvolutionalEmbedding(backbone, model.embedding_dim, model.hidden_dims,
                                      model.final_relu, train_head_batch_norm,
                                      pooling=model.pooling, name=name)
    for (dense, dense_bn), (conv, conv_bn) in zip(model.head_layers(), fcn.head_layers()):
        kernel = keras.ops.convert_to_numpy(dense.kernel)  # [C_in, C_out]
        conv.kernel.assign(kernel.reshape(1, 1, *kernel.shape))
        conv_bn.set_weights(dense_bn.get_weights())
    return fcn
