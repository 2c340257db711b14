"""U-Nets whose level block is interchangeable, as ChoiceNet's segmentation comparison
(Rayhan et al., section 3.3.2, Fig. 5, Table 4): U-Net's two convs, a residual block, a
dense block or a ChoiceNet module at every level."""

from __future__ import annotations

import keras

from kseg.layers.choice import choice_block
from kseg.layers.conv import conv_norm_act
from kseg.layers.dense import dense_block
from kseg.layers.hrnet import basic_block
from kseg.layers.norm import TORCH_BATCH_NORM
from kseg.models.base import SegmentationModel, image_input
from kseg.models.unet.skeleton import unet_graph

BLOCKS = ("double_conv", "residual", "dense", "choice")

# A ChoiceNet module outputs 7 maps of `growth` channels (E and three chains with and
# without skip); growth = level width // 7 keeps the module about as wide as the level.
CHOICE_MAPS = 7
DENSE_LAYERS = 4


def double_conv_level(x, filters: int, name: str):
    """U-Net's level: two 3x3 conv-BN-ReLU."""
    x = conv_norm_act(x, filters, 3, norm=TORCH_BATCH_NORM, name=f"{name}_1")
    return conv_norm_act(x, filters, 3, norm=TORCH_BATCH_NORM, name=f"{name}_2")


def residual_level(x, filters: int, name: str):
    """One ResNet basic block (He et al. 2016), a 1x1 projection when the width changes."""
    return basic_block(x, filters, name=name)


def dense_level(x, filters: int, name: str):
    """A DenseNet-BC dense block of 4 layers with growth filters // 4, then a 1x1
    conv-BN-ReLU transition to `filters` channels."""
    x = dense_block(x, max(1, filters // DENSE_LAYERS), DENSE_LAYERS, name=name)
    return conv_norm_act(x, filters, 1, norm=TORCH_BATCH_NORM, name=f"{name}_transition")


def choice_level(x, filters: int, name: str, modules: int = 1):
    """`modules` densely connected ChoiceNet modules of growth filters // 7, then a 1x1
    conv-BN-ReLU transition to `filters` channels."""
    x = choice_block(x, max(1, filters // CHOICE_MAPS), modules, name=name)
    return conv_norm_act(x, filters, 1, norm=TORCH_BATCH_NORM, name=f"{name}_transition")


@keras.saving.register_keras_serializable(package="kseg")
class UNet(SegmentationModel):
    """U-Net (Ronneberger et al. 2015) with the level block `block`.

    Four levels down by 2x2 max-pooling, a bottom level, four up by bilinear resizing and
    concatenation with the skip, a 1x1 conv to classes; level l has width * 2**l channels.
    Every conv is followed by batch norm and ReLU.

    Args:
        num_classes: number of classes (CamVid: 11 or 12 with void).
        width: channels of the first level (64, as U-Net).
        levels: down-sampling steps (4); image sides must be multiples of 2**levels.
        block: "double_conv" (U-Net's), "residual", "dense" or "choice" (ChoiceNet).
        modules: ChoiceNet modules per level when block="choice" (1).
        image_shape: (height, width, channels).

    Example:
        >>> model = UNet(num_classes=12, block="choice")  # 12.6M parameters
    """

    def __init__(
        self,
        num_classes: int = 12,
        width: int = 64,
        levels: int = 4,
        block: str = "double_conv",
        modules: int = 1,
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")

        # === Functional Model ===
        level = {
            "double_conv": double_conv_level,
            "residual": residual_level,
            "dense": dense_level,
            "choice": lambda x, filters, name: choice_level(x, filters, name, modules),
        }[block]
        name, inputs = image_input(kwargs, "unet", num_classes, image_shape, 2**levels)
        outputs = unet_graph(inputs, level, num_classes, width, levels)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.input_multiple = 2**levels
        self._store_config(locals())
