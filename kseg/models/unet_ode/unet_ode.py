"""The two neural-ODE U-Nets that SegNode's Table 1 compares with: U-Node (Pinckaers &
Litjens 2019) and NODEs-UNet (Li et al. 2021)."""

from __future__ import annotations

import keras

from kseg.layers.conv import conv_norm_act
from kseg.layers.norm import TORCH_BATCH_NORM
from kseg.models.base import ODEModel, SegmentationModel, image_input
from kseg.models.unet.skeleton import unet_graph
from kseg.models.unet.unet import double_conv_level
from kseg.ode import ConvODEFunc, ODEBlock, SolverConfig


def _ode(x, name: str, solver: SolverConfig):
    func = ConvODEFunc(x.shape[-1], name=f"{name}_func")
    return ODEBlock(func, solver=solver, name=name)(x)


class _ODEUNet(ODEModel, SegmentationModel):
    """A four-down U-Net (`kseg.models.unet.skeleton`) whose level block is
    `_level(x, filters, name)`."""

    def __init__(
        self,
        num_classes: int = 19,
        width: int = 64,
        levels: int = 4,
        solver: SolverConfig | dict | None = None,
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        # === Functional Model ===
        self._block_solver = SolverConfig.of(solver)  # what `_level` gives each block
        name, inputs = image_input(kwargs, self.default_name, num_classes, image_shape, 2**levels)
        outputs = unet_graph(inputs, self._level, num_classes, width, levels)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # === Config === (the solver is the ODE blocks': `ODEModel.solver`)
        self.input_multiple = 2**levels
        self._store_config(locals())


@keras.saving.register_keras_serializable(package="kseg")
class UNode(_ODEUNet):
    """U-Node (Pinckaers & Litjens 2019): a U-Net whose repeated residual blocks at each
    level are one ODE block around a single conv block.

    Each level: a 1x1 conv-BN-ReLU to the level's width, then an `ODEBlock` whose derivative
    is `kseg.ode.ConvODEFunc` (GroupNorm-ReLU-conv twice, time as an input channel; the
    conv block of Chen et al. that U-Node wraps). Down by max-pooling, up by bilinear
    resizing and concatenation with the skip. Widths double per level from `width`.

    Args:
        num_classes: number of classes.
        width: channels of the first level (64, as U-Net).
        levels: down-sampling steps (4, as U-Net); input sizes are multiples of 2**levels.
        solver: the solver of every ODE block, a `kseg.ode.SolverConfig` or a dict of
            its fields (default dopri5 at rtol = atol = 1e-3).
        image_shape: (height, width, channels).
    """

    default_name = "unode"

    def _level(self, x, filters: int, name: str):
        x = conv_norm_act(x, filters, 1, norm=TORCH_BATCH_NORM, name=f"{name}_in")
        return _ode(x, name=f"{name}_ode", solver=self._block_solver)


@keras.saving.register_keras_serializable(package="kseg")
class NODEsUNet(_ODEUNet):
    """NODEs-UNet (Li et al. 2021): U-Net's two 3x3 conv-BN-ReLU at each level, with an ODE
    block added at the end of each level ("a neural ODE block is added at the end of each
    branch", SegNode section 2). Same arguments as `UNode`."""

    default_name = "nodes_unet"

    def _level(self, x, filters: int, name: str):
        x = double_conv_level(x, filters, name=name)
        return _ode(x, name=f"{name}_ode", solver=self._block_solver)
