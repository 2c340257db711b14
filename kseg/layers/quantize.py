"""Layers that simulate TFLite's int8 arithmetic in float ("fake quantisation") for
quantisation-aware training; `kseg.export.qat` rewrites a model with them.

Quantisation runs through TensorFlow's fake-quant ops (`tf.quantization.
fake_quant_with_min_max_vars` and its per-channel form): rounding in the forward pass, the
straight-through gradient inside the range in the backward pass, and the ops the TFLite
converter reads as learned ranges.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kseg.layers.pooling import AdaptiveAveragePooling2D, _pooling_matrix, spatial_size

EMA_DECAY = 0.99  # of the activation ranges during training


@keras.saving.register_keras_serializable(package="kseg")
class FakeQuant(keras.layers.Layer):
    """Per-tensor asymmetric int8 fake quantisation (TFLite's activation scheme).

    `observing = True` (set by `calibrate`) passes values through unquantised and widens
    the range to every value seen; in training the range follows an exponential moving
    average of the batch's min and max; at inference it is fixed. `fixed=(lo, hi)` never
    changes (the model input).
    """

    def __init__(
        self, decay: float = EMA_DECAY, fixed: tuple[float, float] | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        self.decay, self.fixed = decay, None if fixed is None else tuple(fixed)
        self.observing = False

    def build(self, input_shape):
        lo, hi = self.fixed or (0.0, 0.0)
        self.range_min = self.add_weight(
            name="range_min", shape=(), initializer=keras.initializers.Constant(lo),
            trainable=False,
        )  # fmt: skip
        self.range_max = self.add_weight(
            name="range_max", shape=(), initializer=keras.initializers.Constant(hi),
            trainable=False,
        )  # fmt: skip

    def call(self, x, training=None):
        if self.observing and not self.fixed:
            self.range_min.assign(tf.minimum(self.range_min, tf.reduce_min(x)))
            self.range_max.assign(tf.maximum(self.range_max, tf.reduce_max(x)))
            return x
        if training and not self.fixed:
            d = self.decay
            self.range_min.assign(d * self.range_min + (1 - d) * tf.minimum(tf.reduce_min(x), 0.0))
            self.range_max.assign(d * self.range_max + (1 - d) * tf.maximum(tf.reduce_max(x), 0.0))
        lo = tf.stop_gradient(tf.minimum(tf.convert_to_tensor(self.range_min), 0.0))
        hi = tf.stop_gradient(tf.maximum(tf.convert_to_tensor(self.range_max), lo + 1e-6))
        return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "decay": self.decay, "fixed": self.fixed}


@keras.saving.register_keras_serializable(package="kseg")
class QuantConv(keras.layers.Layer):
    """A Conv2D or DepthwiseConv2D with its batch norm folded in, per-channel int8 weights,
    an optional fused ReLU / ReLU6 and an int8 output: one TFLite CONV_2D or
    DEPTHWISE_CONV_2D.

    Its weights are the convolution's (`kernel`, `bias` when it has one) and the batch
    norm's (`gamma`, `beta`, `moving_mean`, `moving_variance`; the statistics frozen).
    """

    def __init__(
        self,
        depthwise: bool,
        filters: int | None,
        kernel_size,
        strides=(1, 1),
        dilation_rate=(1, 1),
        padding: str = "same",
        use_bias: bool = False,
        depth_multiplier: int = 1,
        batch_norm: dict | None = None,  # {"epsilon", "center", "scale"} of a folded BN
        activation: str | None = None,  # "relu" or "relu6", fused
        decay: float = EMA_DECAY,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.depthwise, self.filters = depthwise, filters
        self.kernel_size = tuple(kernel_size)
        self.strides, self.dilation_rate = tuple(strides), tuple(dilation_rate)
        self.padding, self.use_bias = padding, use_bias
        self.depth_multiplier, self.batch_norm = depth_multiplier, batch_norm
        self.activation, self.decay = activation, decay
        self.output_quant = FakeQuant(decay, name="output_quant")

    def build(self, input_shape):
        cin = input_shape[-1]
        if self.depthwise:
            shape = (*self.kernel_size, cin, self.depth_multiplier)
            channels = cin * self.depth_multiplier
        else:
            shape, channels = (*self.kernel_size, cin, self.filters), self.filters
        self.channels = channels
        self.kernel = self.add_weight(name="kernel", shape=shape)
        self.bias = (
            self.add_weight(name="bias", shape=(channels,), initializer="zeros")
            if (self.use_bias)
            else None
        )
        if self.batch_norm is not None:
            bn = self.batch_norm

            def weight(name, init, trainable):
                return self.add_weight(
                    name=name, shape=(channels,), initializer=init, trainable=trainable
                )

            self.gamma = weight("gamma", "ones", bn.get("scale", True))
            self.beta = weight("beta", "zeros", bn.get("center", True))
            self.moving_mean = weight("moving_mean", "zeros", False)
            self.moving_variance = weight("moving_variance", "ones", False)
        self.output_quant.build((*input_shape[:-1], channels))

    def folded(self):
        """(kernel, bias) as the converter folds them: per-channel scale into the kernel."""
        bias = self.bias if self.bias is not None else tf.zeros((self.channels,))
        if self.batch_norm is None:
            return tf.convert_to_tensor(self.kernel), tf.convert_to_tensor(bias)
        scale = self.gamma * tf.math.rsqrt(self.moving_variance + self.batch_norm["epsilon"])
        bias = self.beta + (bias - self.moving_mean) * scale
        if self.depthwise:
            scale = tf.reshape(scale, (1, 1, -1, self.depth_multiplier))
        return self.kernel * scale, bias

    def call(self, x, training=None):
        kernel, bias = self.folded()
        shape = kernel.shape
        if self.depthwise:  # TFLite's depthwise kernel: channels = in x multiplier, last
            kernel = tf.reshape(kernel, (*shape[:2], -1))
        limit = tf.reduce_max(tf.abs(kernel), axis=(0, 1, 2)[: kernel.shape.rank - 1])
        limit = tf.stop_gradient(tf.maximum(limit, 1e-8))
        kernel = tf.quantization.fake_quant_with_min_max_vars_per_channel(
            kernel, -limit, limit, num_bits=8, narrow_range=True
        )
        padding = self.padding.upper()
        if self.depthwise:
            kernel = tf.reshape(kernel, shape)
            y = tf.nn.depthwise_conv2d(
                x, kernel, (1, *self.strides, 1), padding, dilations=self.dilation_rate
            )
        else:
            y = tf.nn.conv2d(x, kernel, self.strides, padding, dilations=self.dilation_rate)
        y = tf.nn.bias_add(y, bias)
        if self.activation == "relu":
            y = tf.nn.relu(y)
        elif self.activation == "relu6":
            y = tf.nn.relu6(y)
        return self.output_quant(y, training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "depthwise": self.depthwise,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "dilation_rate": self.dilation_rate,
            "padding": self.padding,
            "use_bias": self.use_bias,
            "depth_multiplier": self.depth_multiplier,
            "batch_norm": self.batch_norm,
            "activation": self.activation,
            "decay": self.decay,
        }


def _fake_quant_weight(w):
    """Per-tensor symmetric int8 of a constant operand (the pooling matrices)."""
    limit = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(w)), 1e-8))
    return tf.quantization.fake_quant_with_min_max_vars(
        w, -limit, limit, num_bits=8, narrow_range=True
    )


@keras.saving.register_keras_serializable(package="kseg")
class QuantAdaptivePooling2D(AdaptiveAveragePooling2D):
    """`AdaptiveAveragePooling2D` as TFLite runs it in int8: two FULLY_CONNECTED ops with
    int8 pooling matrices, each output int8."""

    def __init__(self, output_size, decay: float = EMA_DECAY, **kwargs):
        super().__init__(output_size, **kwargs)
        self.decay = decay
        self.rows_quant = FakeQuant(decay, name="rows_quant")
        self.output_quant = FakeQuant(decay, name="output_quant")

    def build(self, input_shape):
        self.rows_quant.build(input_shape)
        self.output_quant.build(input_shape)

    def call(self, inputs, training=None):
        height, width = spatial_size(inputs)
        rows = _fake_quant_weight(_pooling_matrix(height, self.output_size[0], inputs.dtype))
        cols = _fake_quant_weight(_pooling_matrix(width, self.output_size[1], inputs.dtype))
        x = self.rows_quant(tf.einsum("ih,nhwc->niwc", rows, inputs), training=training)
        return self.output_quant(tf.einsum("jw,niwc->nijc", cols, x), training=training)

    def get_config(self):
        return {**super().get_config(), "decay": self.decay}
