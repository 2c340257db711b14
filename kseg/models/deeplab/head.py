"""DeepLabV3+'s ASPP and decoder (Chen et al. 2018, Fig. 2), for one network or for two
networks built side by side that exchange feature maps at named points.

Every step runs once per network ("stream"); `mix(tensors, point)` then decides what each
network passes on from that point. For one DeepLabV3+ it returns its input. The cross
cooperative network (`kseg.models.deeplab.cooperative`) concatenates the other network's
map to a network's own there. The points, in order:

| point          | after                                                    |
|----------------|----------------------------------------------------------|
| connection1    | the backbone output (ASPP input), Fig. 3's Connection 1   |
| aspp0 .. aspp3 | the 1x1 branch and the three dilated 3x3 branches         |
| aspp_pool      | the image-pooling branch                                  |
| connection2    | the ASPP output (after its 1x1 projection), Connection 2  |
| decoder1       | the 48-channel projection of the low-level features       |
| decoder2       | the first 3x3 decoder conv                                |
| decoder3       | the second 3x3 decoder conv (the classifier's input)      |

ASPP: a 1x1 conv, 3x3 convs dilated by `rates` (6, 12, 18 at output stride 16) and
image pooling (global average, 1x1 conv, resized back), each 256 channels with BN and
ReLU, concatenated and projected by a 1x1 conv to 256. Decoder: the ASPP output
resized to the low-level features (stride 4), concatenated with their 1x1 projection to
48 channels, two 3x3 convs of 256, a 1x1 classifier and bilinear resizing to the image.
Dropout: 0.5 after the ASPP projection, 0.5 and 0.1 after the decoder convs, as in the
widely used PyTorch DeepLabV3+ whose defaults (SGD 0.007, 513x513 crops) Ikedo & Hotta 2022's
settings match; the DeepLabV3+ paper states no dropout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from kseg.layers import ResizeLike
from kseg.layers.conv import conv_norm_act
from kseg.layers.norm import Norm

# Keras's momentum with PyTorch's epsilon, as the PyTorch DeepLabV3+ named below trains.
BATCH_NORM = Norm("batch", momentum=0.99, epsilon=1e-5)
MIX_POINTS = (
    "connection1",
    "aspp0",
    "aspp1",
    "aspp2",
    "aspp3",
    "aspp_pool",
    "connection2",
    "decoder1",
    "decoder2",
    "decoder3",
)


def identity_mix(tensors: list, point: str) -> list:
    return tensors


def _conv_bn_relu(x, filters: int, kernel: int, name: str, rate: int = 1):
    return conv_norm_act(x, filters, kernel, norm=BATCH_NORM, dilation_rate=rate, name=name)


def _dropout(x, rate: float, name: str):
    return keras.layers.Dropout(rate, name=name)(x) if rate > 0 else x


def deeplabv3plus_head(
    image,
    highs: Sequence,
    lows: Sequence,
    num_classes: int,
    prefixes: Sequence[str] = ("",),
    mix: Callable[[list, str], list] = identity_mix,
    channels: int = 256,
    rates: Sequence[int] = (6, 12, 18),
    low_channels: int = 48,
    aspp_dropout: float = 0.5,
    decoder_dropout: tuple[float, float] = (0.5, 0.1),
) -> list:
    """Logits at the image size, one per stream: ASPP on `highs[i]`, decoder with
    `lows[i]`, layers named with `prefixes[i]`."""
    if not (len(highs) == len(lows) == len(prefixes)):
        raise ValueError("give one high-level map, low-level map and prefix per network")
    streams = range(len(prefixes))
    highs = mix(list(highs), "connection1")
    branches = [[] for _ in streams]
    for j, rate in enumerate((1, *rates)):
        outs = [
            _conv_bn_relu(highs[i], channels, 1 if j == 0 else 3, f"{p}aspp{j}", rate)
            for i, p in zip(streams, prefixes, strict=True)
        ]
        for i, y in enumerate(mix(outs, f"aspp{j}")):
            branches[i].append(y)
    pooled = []
    for i, p in zip(streams, prefixes, strict=True):
        y = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{p}aspp_pool_gap")(highs[i])
        y = _conv_bn_relu(y, channels, 1, f"{p}aspp_pool")
        pooled.append(ResizeLike(name=f"{p}aspp_pool_resize")([y, highs[i]]))
    for i, y in enumerate(mix(pooled, "aspp_pool")):
        branches[i].append(y)
    aspp = []
    for i, p in zip(streams, prefixes, strict=True):
        y = keras.layers.Concatenate(name=f"{p}aspp_concat")(branches[i])
        y = _conv_bn_relu(y, channels, 1, f"{p}aspp_project")
        aspp.append(_dropout(y, aspp_dropout, f"{p}aspp_dropout"))
    aspp = mix(aspp, "connection2")
    low = mix(
        [
            _conv_bn_relu(lows[i], low_channels, 1, f"{p}decoder_low")
            for i, p in zip(streams, prefixes, strict=True)
        ],
        "decoder1",
    )
    x = []
    for i, p in zip(streams, prefixes, strict=True):
        up = ResizeLike(name=f"{p}decoder_up")([aspp[i], low[i]])
        y = keras.layers.Concatenate(name=f"{p}decoder_concat")([up, low[i]])
        y = _conv_bn_relu(y, channels, 3, f"{p}decoder_conv1")
        x.append(_dropout(y, decoder_dropout[0], f"{p}decoder_dropout1"))
    x = mix(x, "decoder2")
    y2 = []
    for i, p in zip(streams, prefixes, strict=True):
        y = _conv_bn_relu(x[i], channels, 3, f"{p}decoder_conv2")
        y2.append(_dropout(y, decoder_dropout[1], f"{p}decoder_dropout2"))
    y2 = mix(y2, "decoder3")
    logits = []
    for i, p in zip(streams, prefixes, strict=True):
        y = keras.layers.Conv2D(num_classes, 1, name=f"{p}classifier")(y2[i])
        logits.append(ResizeLike(dtype="float32", name=f"{p}logits")([y, image]))
    return logits
