"""Object-contextual representations (Yuan, Chen & Wang, ECCV 2020), the "+OCR" head of
HRNetV2 and SegNode in SegNode's Table 1.

Soft object regions (a coarse, auxiliary segmentation) pool the pixel features into one
representation per class; every pixel then attends over those class representations and
the result, concatenated with its own feature, gives the final logits. Layer sizes are
those of HRNet-OCR's reference configuration (`HRNet/HRNet-Semantic-Segmentation`,
ocr branch: 512 mid channels, 256 key channels, dropout 0.05).
"""

from __future__ import annotations

import keras
from keras import ops

from kseg.layers.conv import conv_norm_act
from kseg.layers.norm import TORCH_BATCH_NORM


@keras.saving.register_keras_serializable(package="kseg")
class SpatialGather(keras.layers.Layer):
    """Class representations: pixel features averaged with the softmax over all pixels of
    each class's coarse logits. Inputs (features (N, H, W, C), logits (N, H, W, K)), output
    (N, K, 1, C), a K x 1 "image" so 1x1 convs apply to it."""

    def call(self, inputs):
        feats, logits = inputs
        c, k = ops.shape(feats)[-1], ops.shape(logits)[-1]
        n = ops.shape(feats)[0]
        feats = ops.reshape(feats, (n, -1, c))
        probs = ops.softmax(ops.reshape(logits, (n, -1, k)), axis=1)  # over the pixels
        context = ops.matmul(ops.transpose(probs, (0, 2, 1)), feats)  # (N, K, C)
        return ops.expand_dims(context, 2)

    def compute_output_shape(self, input_shape):
        feats, logits = input_shape
        return (feats[0], logits[-1], 1, feats[-1])


@keras.saving.register_keras_serializable(package="kseg")
class ObjectAttention(keras.layers.Layer):
    """Pixel-to-class attention: inputs (queries (N, H, W, D), keys (N, K, 1, D), values
    (N, K, 1, D)); each pixel's output is the softmax(q.k / sqrt(D))-weighted sum of the
    values, (N, H, W, D)."""

    def call(self, inputs):
        query, key, value = inputs
        n, h, w, d = (ops.shape(query)[i] for i in range(4))
        q = ops.reshape(query, (n, -1, d))
        k = ops.squeeze(key, 2)
        v = ops.squeeze(value, 2)
        scale = ops.cast(d, q.dtype) ** -0.5
        attention = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 2, 1))) * scale, axis=-1)
        return ops.reshape(ops.matmul(attention, v), (n, h, w, -1))

    def compute_output_shape(self, input_shape):
        query, _, value = input_shape
        return (*query[:3], value[-1])


def _conv_bn_relu(x, filters: int, kernel_size: int, name: str):
    # HRNet-OCR gives two of these convs a bias; before batch norm it has no effect (its
    # gradient is zero), so kseg leaves it out (1,232 parameters fewer at W48).
    return conv_norm_act(x, filters, kernel_size, norm=TORCH_BATCH_NORM, name=name)


def ocr_head(
    x,
    num_classes: int,
    mid_channels: int = 512,
    key_channels: int = 256,
    dropout: float = 0.05,
    name: str = "ocr",
):
    """Returns (logits, soft-object-region logits) at the resolution of `x`.

    The second output is the auxiliary segmentation that OCR is trained with (HRNet-OCR:
    loss weight 0.4).
    """
    c = x.shape[-1]
    aux = _conv_bn_relu(x, c, 1, f"{name}_aux")
    aux = keras.layers.Conv2D(num_classes, 1, name=f"{name}_aux_classifier")(aux)
    feats = _conv_bn_relu(x, mid_channels, 3, f"{name}_pixel")
    context = SpatialGather(name=f"{name}_gather")([feats, aux])
    query = _conv_bn_relu(feats, key_channels, 1, f"{name}_query1")
    query = _conv_bn_relu(query, key_channels, 1, f"{name}_query2")
    key = _conv_bn_relu(context, key_channels, 1, f"{name}_key1")
    key = _conv_bn_relu(key, key_channels, 1, f"{name}_key2")
    value = _conv_bn_relu(context, key_channels, 1, f"{name}_value")
    attended = ObjectAttention(name=f"{name}_attention")([query, key, value])
    attended = _conv_bn_relu(attended, mid_channels, 1, f"{name}_up")
    y = keras.layers.Concatenate(name=f"{name}_concat")([attended, feats])
    y = _conv_bn_relu(y, mid_channels, 1, f"{name}_fuse")
    if dropout:
        y = keras.layers.Dropout(dropout, name=f"{name}_dropout")(y)
    logits = keras.layers.Conv2D(num_classes, 1, name=f"{name}_classifier")(y)
    return logits, aux
