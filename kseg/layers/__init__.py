"""Small reusable blocks shared by every kseg model.

Blocks are builder functions that add Keras built-in layers (Conv2D, BatchNormalization,
DepthwiseConv2D, Add, ...) to a functional graph under a common name prefix, the way
`keras.applications` builds MobileNetV2. Every kseg model is therefore a flat graph of
built-in layers that the filter pruner, the FLOP counter and the TFLite converter all see
through. Custom `keras.layers.Layer` classes exist only where Keras has no built-in:
adaptive pooling, resizing to the size of another tensor, and upsampling of unknown
sizes (UpSampling2D fails on those).
"""

from kseg.layers.bottleneck import inverted_residual
from kseg.layers.choice import choice_block, choice_module, choice_pool
from kseg.layers.conv import (
    conv_bn_act,
    conv_norm_act,
    depthwise_bn_act,
    depthwise_norm_act,
    norm_act_conv,
    separable_conv_bn_act,
    separable_conv_norm_act,
)
from kseg.layers.dense import dense_block
from kseg.layers.head import segmentation_head
from kseg.layers.norm import KERAS_BATCH_NORM, TORCH_BATCH_NORM, TORCH_GROUP_NORM, Norm, group_norm
from kseg.layers.pooling import AdaptiveAveragePooling2D, pyramid_pooling
from kseg.layers.quantize import FakeQuant, QuantAdaptivePooling2D, QuantConv
from kseg.layers.residual import preact_residual_block
from kseg.layers.resize import ResizeLike, Upsample

__all__ = [
    "KERAS_BATCH_NORM",
    "TORCH_BATCH_NORM",
    "TORCH_GROUP_NORM",
    "AdaptiveAveragePooling2D",
    "FakeQuant",
    "Norm",
    "QuantAdaptivePooling2D",
    "QuantConv",
    "ResizeLike",
    "Upsample",
    "choice_block",
    "choice_module",
    "choice_pool",
    "conv_bn_act",
    "conv_norm_act",
    "dense_block",
    "depthwise_bn_act",
    "depthwise_norm_act",
    "group_norm",
    "inverted_residual",
    "preact_residual_block",
    "pyramid_pooling",
    "segmentation_head",
    "norm_act_conv",
    "separable_conv_bn_act",
    "separable_conv_norm_act",
]
