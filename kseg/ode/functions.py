"""Derivatives for `ODEBlock`s of images: the time-conditioned conv function of Chen et al.
2018, used by the neural-ODE U-Nets and the ODE Nets of Carrara et al."""

from __future__ import annotations

import keras

from kseg.layers.norm import group_norm
from kseg.ode.block import ConcatConv2D


@keras.saving.register_keras_serializable(package="kseg")
class ConvODEFunc(keras.layers.Layer):
    """GroupNorm-ReLU-ConcatConv-GroupNorm-ReLU-ConcatConv-GroupNorm, channels kept.

    The `ODEfunc` of Chen et al.'s official code (torchdiffeq's odenet_mnist example,
    also `fabiocarrara/neural-ode-features` model.py): 3x3 convs that see t as an extra
    input channel, GroupNorm with min(32, channels) groups and torch's epsilon 1e-5.

    Args:
        channels: channels of the state (input and output).
        kernel_size: of both convs.
        use_bias: conv biases; the official code has them (Carrara et al.'s ODE Nets use
            them, their parameter counts include them); kseg's U-Net peers go without.

    Example:
        >>> block = ODEBlock(ConvODEFunc(16))
        >>> block(np.zeros((1, 8, 8, 16), "float32")).shape
        TensorShape([1, 8, 8, 16])
    """

    def __init__(self, channels: int, kernel_size: int = 3, use_bias: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.kernel_size = int(kernel_size)
        self.use_bias = bool(use_bias)
        self.norms = [group_norm(self.channels, f"norm{i}") for i in (1, 2, 3)]
        self.convs = [
            ConcatConv2D(self.channels, self.kernel_size, use_bias=self.use_bias, name=f"conv{i}")
            for i in (1, 2)
        ]

    def build(self, input_shape):
        for layer in (*self.norms, *self.convs):
            layer.build(input_shape)

    def call(self, inputs, t=0.0):
        x = keras.ops.relu(self.norms[0](inputs))
        x = keras.ops.relu(self.norms[1](self.convs[0](x, t=t)))
        return self.norms[2](self.convs[1](x, t=t))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "kernel_size": self.kernel_size,
            "use_bias": self.use_bias,
        }
