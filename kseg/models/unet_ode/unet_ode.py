"""The two neural-ODE U-Nets that SegNode's Table 1 compares with: U-Node (Pinckaers &
Litjens 2019) and NODEs-UNet (Li et al. 2021)."""

from __future__ import annotations

import keras

from kseg.layers.hrnet import conv_norm
from kseg.models.base import SegmentationModel, check_image_shape
from kseg.models.unet.skeleton import unet_graph
from kseg.models.unet.unet import double_conv_level
from kseg.ode import ConvODEFunc, ODEBlock
from kseg.ode.callbacks import ode_blocks
from kseg.ode.odeint import DEFAULT_MAX_NUM_STEPS


def _ode(x, name: str, **solver):
    func = ConvODEFunc(x.shape[-1], name=f"{name}_func")
    return ODEBlock(func, name=name, **solver)(x)


SOLVER_ARGS = ("method", "rtol", "atol", "steps", "max_num_steps")


class _ODEUNet(SegmentationModel):
    """A four-down U-Net (`kseg.models.unet.skeleton`) whose level block is
    `_level(x, filters, name)`."""

    def __init__(
        self,
        num_classes: int = 19,
        width: int = 64,
        levels: int = 4,
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        steps: int | None = None,
        max_num_steps: int | None = DEFAULT_MAX_NUM_STEPS,
        image_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs,
    ):
        name = kwargs.pop("name", self.default_name)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        multiple = 2**levels
        check_image_shape((None, *image_shape), multiple, None, name)
        self._solver = {
            "method": method, "rtol": rtol, "atol": atol, "steps": steps,
            "max_num_steps": max_num_steps,
        }  # fmt: skip
        inputs = keras.Input(shape=image_shape, name="image")
        outputs = unet_graph(inputs, self._level, num_classes, width, levels)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.num_classes = num_classes
        self.input_multiple = multiple
        self._config = {
            "num_classes": num_classes,
            "width": width,
            "levels": levels,
            **self._solver,
            "image_shape": tuple(image_shape),
        }

    def get_config(self):
        # The solver as the blocks hold it now: `ODEBlock.set_solver` (and the exporter's
        # fixed grid) may have changed it since construction.
        solvers = {tuple(getattr(b, k) for k in SOLVER_ARGS) for b in ode_blocks(self)}
        if len(solvers) > 1:
            raise ValueError(
                f"{self.name}'s ODE blocks have different solvers {sorted(solvers, key=str)}; "
                "its config holds one: call set_solver with the same settings on every block"
            )
        solver = dict(zip(SOLVER_ARGS, solvers.pop(), strict=True))
        return {"name": self.name, "trainable": self.trainable, **self._config, **solver}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


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
        method, rtol, atol, steps, max_num_steps: the solver of every ODE block
            (`kseg.ode.ODEBlock`).
        image_shape: (height, width, channels).
    """

    default_name = "unode"

    def _level(self, x, filters: int, name: str):
        x = conv_norm(x, filters, 1, name=f"{name}_in")
        return _ode(x, name=f"{name}_ode", **self._solver)


@keras.saving.register_keras_serializable(package="kseg")
class NODEsUNet(_ODEUNet):
    """NODEs-UNet (Li et al. 2021): U-Net's two 3x3 conv-BN-ReLU at each level, with an ODE
    block added at the end of each level ("a neural ODE block is added at the end of each
    branch", SegNode section 2). Same arguments as `UNode`."""

    default_name = "nodes_unet"

    def _level(self, x, filters: int, name: str):
        x = double_conv_level(x, filters, name=name)
        return _ode(x, name=f"{name}_ode", **self._solver)
