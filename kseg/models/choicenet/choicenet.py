"""ChoiceNet for image classification (Rayhan et al., Fig. 4, Table 1).

A 3x3 conv-BN-ReLU stem, three ChoiceNet blocks (each three densely connected ChoiceNet
modules, `kseg.layers.choice`) with max- and average-pooling concatenated between them,
then global max and average pooling, batch norm, dropout and a dense classifier. The
batch norm is kseg's (the paper does not describe the head): the pooled features are
thousands of positive values (27,900 for ChoiceNet-40), so each SGD step moved the logits
by the learning rate times their squared norm, and SGD at 0.01 diverged on the demo data
(loss 9 -> 130 in one epoch); standardised features train (3 epochs: 59% accuracy).

The paper gives the topology but no widths and no rule behind its depth labels: with
three equal blocks of m modules, each adding four convs to the longest path, the depth is
12m plus a constant, and 30, 37 and 40 cannot all have that form. kseg keeps the figures'
network (three blocks of three modules) for all three presets, reads the depth as a size
label, and sets the module width ("growth", channels of every conv) so that the CIFAR-10
parameter counts match Table 1: growth 67, 81 and 90 give 13.11M, 19.08M and 23.51M
(Table 1: 13M, 19.2M, 23.4M). The stem has 2 x growth channels, as DenseNet's.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kseg.layers.choice import POOLINGS, choice_block, choice_pool
from kseg.layers.conv import conv_norm_act
from kseg.layers.norm import TORCH_BATCH_NORM
from kseg.models.base import ClassificationModel, image_input


@keras.saving.register_keras_serializable(package="kseg")
class ChoiceNet(ClassificationModel):
    """ChoiceNet (Rayhan et al., Fig. 4) for classification.

    Args:
        num_classes: number of classes (10 for CIFAR-10).
        width: the growth: output channels of every conv in the modules (67 / 81 / 90 for
            ChoiceNet-30 / -37 / -40).
        blocks: ChoiceNet blocks (3), separated by `pooling` at stride 2.
        modules: modules per block (3, Fig. 3).
        pooling: "both" (max and average concatenated, the paper), "max" or "avg"
            (Table 3), between blocks and before the classifier.
        kernel_sizes: kernel sizes of the chains of a module ((3, 5, 7)).
        chain_length: convs per chain (3).
        stem_width: channels of the 3x3 stem conv; default 2 x width.
        dropout: before the classifier (0.5, section 3.4.1).
        image_shape: (height, width, channels); sizes divisible by 2**(blocks - 1).

    Example:
        >>> model = ChoiceNet(width=90)  # ChoiceNet-40, 23.51M parameters for CIFAR-10
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 90,
        blocks: int = 3,
        modules: int = 3,
        pooling: str = "both",
        kernel_sizes: Sequence[int] = (3, 5, 7),
        chain_length: int = 3,
        stem_width: int | None = None,
        dropout: float = 0.5,
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        stem_width = stem_width or 2 * width

        # === Functional Model ===
        name, inputs = image_input(kwargs, "choicenet", num_classes, image_shape)
        x = conv_norm_act(inputs, stem_width, 3, norm=TORCH_BATCH_NORM, name="stem")
        for b in range(1, blocks + 1):
            x = choice_block(x, width, modules, kernel_sizes, chain_length, name=f"block{b}")
            if b < blocks:
                x = choice_pool(x, pooling, name=f"pool{b}")
        x = choice_pool(x, pooling, global_pool=True, name="head_pool")
        x = TORCH_BATCH_NORM.layer(x.shape[-1], "head_bn")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        # Logits in float32 under mixed precision, as every kseg model gives them.
        outputs = keras.layers.Dense(num_classes, dtype="float32", name="classifier")(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self.input_multiple = 2 ** (blocks - 1)
        self._store_config(locals())
