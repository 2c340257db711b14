"""The image classifiers of Carrara et al. 2019, "Evaluation of continuous image features
learned by ODE Nets" (section 4): a ResNet, the Res-ODE Net and the ODE-only Net.

They follow the paper's official code (`fabiocarrara/neural-ode-features`, model.py),
which fixes what the paper leaves open: a 3x3 stem conv without padding, pre-activation
residual blocks with GroupNorm (min(32, C) groups, convs without bias), the ODE function of
Chen et al. with t as an input channel and conv biases, and a GroupNorm-ReLU-pool-Dropout-
Dense classifier. With 256 filters and 10 classes the counts are 7,921,290, 2,023,562 and
1,201,930 parameters (Table 1: 7.92M, 2.02M, 1.20M).
"""

from __future__ import annotations

import keras

from kseg.layers.norm import group_norm
from kseg.layers.residual import preact_residual_block
from kseg.models.base import ClassificationModel, ODEModel, image_input
from kseg.ode import ConvODEFunc, ODEBlock, SolverConfig

ODE_LAYER = "ode"
HEAD_NORM = "head_norm"


def _residual_downsample(x, width: int, stem_width: int):
    """Conv3x3 (no padding) to `stem_width`, then two stride-2 residual blocks, the second
    to `width` channels (the official `ResDownsample`)."""
    x = keras.layers.Conv2D(stem_width, 3, padding="valid", name="stem_conv")(x)
    x = preact_residual_block(x, stem_width, strides=2, name="down1")
    return preact_residual_block(x, width, strides=2, name="down2")


def _classifier(x, num_classes: int, dropout: float):
    """GroupNorm-ReLU-global average pool-Dropout-Dense: logits (N, classes), float32
    under mixed precision."""
    x = keras.layers.ReLU(name="head_relu")(group_norm(x.shape[-1], HEAD_NORM)(x))
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return keras.layers.Dense(num_classes, dtype="float32", name="classifier")(x)


def _ode_classifier(x, width: int, solver, num_classes: int, dropout: float):
    """What both ODE Nets put after their stems: the ODE block dz/dt = f(z, t) on [0, 1],
    f the official ODEfunc (t as an input channel), then `_classifier`."""
    func = ConvODEFunc(width, use_bias=True, name="ode_function")
    x = ODEBlock(func, t1=1.0, solver=solver, name=ODE_LAYER)(x)
    return _classifier(x, num_classes, dropout)


@keras.saving.register_keras_serializable(package="kseg")
class ResNetGN(ClassificationModel):
    """The ResNet of Carrara et al. section 4 (Chen et al.'s baseline): two stride-2
    residual blocks, six residual blocks of `width` filters, GroupNorm instead of batch norm.

    Args:
        num_classes: number of classes (10 for CIFAR-10).
        width: filters of the six blocks (256).
        stem_width: filters of the stem and the first downsampling block (64).
        blocks: residual blocks after the downsampling (6).
        dropout: before the classifier (0.5, section 5).
        image_shape: (height, width, channels); any size (the classifier pools globally).

    Example:
        >>> model = ResNetGN()  # 7,921,290 parameters for CIFAR-10
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 256,
        stem_width: int = 64,
        blocks: int = 6,
        dropout: float = 0.5,
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        # === Functional Model ===
        name, inputs = image_input(kwargs, "resnet_gn", num_classes, image_shape)
        x = _residual_downsample(inputs, width, stem_width)
        for i in range(1, blocks + 1):
            x = preact_residual_block(x, width, name=f"block{i}")
        outputs = _classifier(x, num_classes, dropout)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config ===
        self._store_config(locals())

    @property
    def feature_layers(self) -> list[str]:
        """The layers whose outputs `kseg.features.extract` reads: the last 7 residual
        blocks (section 5), i.e. the second downsampling block and the six after it."""
        names = ["down2_add", *(f"block{i}_add" for i in range(1, self.blocks + 1))]
        return names[-7:]


@keras.saving.register_keras_serializable(package="kseg")
class ResODENet(ODEModel, ClassificationModel):
    """The Res-ODE Net (Chen et al. 2018; Carrara et al. section 4): the ResNet with its six
    residual blocks replaced by one ODE block on [0, 1] whose derivative is the same block
    with t as an input channel. Solved by dopri5 at rtol = atol = 1e-3 (the official code),
    trained with the adjoint method (`kseg.ode.adjoint`).

    Args:
        num_classes, width, stem_width, dropout, image_shape: as `ResNetGN`.
        solver: the ODE solve, a `kseg.ode.SolverConfig` or a dict of its fields
            (default dopri5 at rtol = atol = 1e-3, the official code's).

    Example:
        >>> model = ResODENet()  # 2,023,562 parameters for CIFAR-10
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 256,
        stem_width: int = 64,
        dropout: float = 0.5,
        solver: SolverConfig | dict | None = None,
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        # === Functional Model ===
        name, inputs = image_input(kwargs, "res_ode_net", num_classes, image_shape)
        x = _residual_downsample(inputs, width, stem_width)
        outputs = _ode_classifier(x, width, solver, num_classes, dropout)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config === (the solver is the ODE block's: `ODEModel.solver`)
        self._store_config(locals())


@keras.saving.register_keras_serializable(package="kseg")
class ODEOnlyNet(ODEModel, ClassificationModel):
    """The ODE-only Net of Carrara et al. section 4: one 4x4 stride-2 conv of `width`
    filters without activation, whose output is z(0) of the ODE block of `ResODENet`.

    Args:
        num_classes, width, dropout, image_shape: as `ResNetGN`.
        solver: as `ResODENet`.

    Example:
        >>> model = ODEOnlyNet()  # 1,201,930 parameters for CIFAR-10
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: int = 256,
        dropout: float = 0.5,
        solver: SolverConfig | dict | None = None,
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        # === Functional Model ===
        name, inputs = image_input(kwargs, "ode_only_net", num_classes, image_shape)
        x = keras.layers.Conv2D(width, 4, strides=2, padding="same", name="stem_conv")(inputs)
        outputs = _ode_classifier(x, width, solver, num_classes, dropout)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config === (the solver is the ODE block's: `ODEModel.solver`)
        self._store_config(locals())
