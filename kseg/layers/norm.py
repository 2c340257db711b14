"""Normalisation layers and the constants each family trains them with."""

from __future__ import annotations

import contextlib
import dataclasses

import keras
import tensorflow as tf
from tensorflow.python.eager import record  # the gradient tape's recording (TF is pinned)

# torch.nn.GroupNorm's epsilon, which the official neural-ODE code trains with.
GROUP_NORM_EPSILON = 1e-5


def group_norm_groups(channels: int, max_groups: int = 32) -> int:
    """min(32, channels) groups as in Chen et al.'s and Carrara et al.'s code, lowered to a
    divisor of `channels` when 32 does not divide it (their widths always divide)."""
    groups = min(max_groups, channels)
    while channels % groups:
        groups -= 1
    return groups


def group_norm(channels: int, name: str, epsilon: float = GROUP_NORM_EPSILON):
    """A `keras.layers.GroupNormalization` with `group_norm_groups(channels)` groups."""
    return keras.layers.GroupNormalization(group_norm_groups(channels), epsilon=epsilon, name=name)


@keras.saving.register_keras_serializable(package="kseg")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training step on 4-D channels-last inputs
    runs TensorFlow's fused kernel (`FusedBatchNormV3`, one op and one gradient op)
    instead of Keras' moments and arithmetic (some 20 ops and 40 in the gradient).

    Same weights, arguments, outputs and moving statistics as Keras' layer, which it is a
    subclass of: the batch is normalised by its biased variance, and the moving variance
    follows the biased variance too (the fused kernel returns the unbiased one; the
    correction is undone here). It keeps Keras' class name because Keras names a model's
    weights in its files by their layers' class names: weights saved from models built
    with Keras' layer load into models built with this one, and back. Inference, other
    ranks, masks, renormalisation and synchronised statistics take Keras' own path, so
    exported graphs are unchanged. What it buys: a smaller training graph, which
    TensorFlow traces and sets up faster before the first step, and a faster step on CPU
    (bench/RESULTS.md, startup).
    """

    def call(self, inputs, training=None, mask=None):
        if not (self.fuses(inputs, training) and mask is None):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, "float32")  # as Keras' layer computes in float32
        return tf.cast(self.train_batch(x), self.compute_dtype)

    def train_batch(self, x):
        """The float32 batch `x` normalised by its own statistics, the moving statistics
        updated: a training call on the fused kernel.

        The gradient tape records this as one op from (x, gamma, beta) to the output,
        whose gradient is `batch_gradient`: the kernel TensorFlow's own gradient of
        `FusedBatchNormV3` runs, on the same tensors. Recorded op by op, the tape's
        gradient would make zeros for the kernel's five other outputs, which nothing
        reads: ops that TensorFlow traces before the first training step and never runs."""
        gamma, beta = self.scale_offset(x.shape[-1])
        with record.stop_recording():
            y, mean, unbiased, *reserve = self.normalize_batch(x, gamma, beta)
            self.update_moving_statistics(mean, unbiased, x)

        def backward(d_y):
            return self.batch_gradient(d_y, x, gamma, reserve)

        record.record_operation("KsegFusedBatchNorm", [y], [x, gamma, beta], backward)
        return y

    @property
    def fusable(self) -> bool:
        """Whether the layer's training calls can run the fused kernel: channels last,
        without Keras' renormalisation or synchronised statistics."""
        return not self.renorm and not self.synchronized and self.axis in (-1, 3, [-1], [3])

    def fuses(self, inputs, training) -> bool:
        """Whether a call on `inputs` runs the fused kernel: a training step of a trainable,
        `fusable` layer on 4-D inputs."""
        return bool(training and self.trainable and self.fusable and len(inputs.shape) == 4)

    def scale_offset(self, channels: int) -> tuple:
        """gamma and beta as float32 tensors (ones and zeros where the layer has none)."""
        gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels])
        return gamma, beta

    def normalize_batch(self, x, gamma, beta) -> tuple:
        """`FusedBatchNormV3` on the float32 batch `x` in training mode, with `scale_offset`'s
        gamma and beta: (y, batch mean, unbiased batch variance, and the kernel's three
        reserve spaces for its gradient)."""
        empty = tf.zeros([0])  # no moving statistics in: the kernel returns the batch's
        # The raw op: `tf.nn.fused_batch_norm` would raise epsilon to at least 1.001e-5.
        return tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=gamma,
            offset=beta,
            mean=empty,
            variance=empty,
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )

    def batch_gradient(self, d_y, x, gamma, reserve) -> tuple:
        """The gradients (x, gamma, beta) of `normalize_batch`'s output for its gradient
        `d_y`, from its `reserve` spaces (its last three outputs): `FusedBatchNormGradV3`,
        as TensorFlow's registered gradient of the fused op runs it."""
        d_x, d_gamma, d_beta, _, _ = tf.raw_ops.FusedBatchNormGradV3(
            y_backprop=d_y,
            x=x,
            scale=gamma,
            reserve_space_1=reserve[0],
            reserve_space_2=reserve[1],
            reserve_space_3=reserve[2],
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        return d_x, d_gamma, d_beta

    def update_moving_statistics(self, mean, unbiased, x) -> None:
        """Keras' update, old * momentum + batch * (1 - momentum), from the fused kernel's
        batch mean and unbiased variance of `x`. In TensorFlow's ops on the variables'
        values (less Python to trace than Keras' variable operators), with the variance's
        factor (n - 1) / n folded into the batch's weight. Inside `averaging_calls`, the
        k-th call's statistics weigh 1/k instead: the cumulative average of the calls."""
        calls = self.__dict__.get("_averaged_calls")  # set by `averaging_calls`
        if calls is None:
            momentum = tf.constant(self.momentum, "float32")
            decay = 1.0 - self.momentum
        else:
            decay = 1.0 / calls.assign_add(1.0)
            momentum = 1.0 - decay
        for moving, batch, weight in (
            (self.moving_mean, mean, tf.cast(decay, "float32")),
            (self.moving_variance, unbiased, decay * _biased_factor(x)),
        ):
            moving.assign(tf.convert_to_tensor(moving) * momentum + batch * weight)


def trace_state(layers: list) -> tuple:
    """What a traced training call reads of these batch norms' Python state (momentum,
    whether `averaging_calls` is on): a function traced once and called again, like an ODE
    block's derivative, is kept per value of it."""
    return tuple(
        (layer.momentum, layer.__dict__.get("_averaged_calls") is not None)
        for layer in layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


@contextlib.contextmanager
def averaging_calls(layers: list, strategy: tf.distribute.Strategy | None = None):
    """Within it, every fused training call of a kseg `BatchNormalization` among `layers`
    sets its moving statistics to the average of its calls' statistics since the context
    began: the k-th call weighs 1/k. A layer called several times in one forward pass (in
    an ODE block's derivative, at every evaluation) averages over all of them. Yields the
    layers' call counters (float32 variables, created under `strategy`'s scope once per
    layer and kept): a counter at 0 afterwards means the layer took Keras' own path
    (inputs of another rank), which reads its momentum instead."""
    counters = {}
    for layer in layers:
        if isinstance(layer, BatchNormalization):
            counter = layer.__dict__.get("_call_counter")  # past Keras' weight tracking
            if counter is None:
                with (strategy or tf.distribute.get_strategy()).scope():
                    counter = tf.Variable(  # each replica counts its own calls
                        0.0,
                        trainable=False,
                        synchronization=tf.VariableSynchronization.ON_READ,
                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                        name="precise_bn_calls",
                    )
                layer.__dict__["_call_counter"] = counter
            counter.assign(0.0)
            layer.__dict__["_averaged_calls"] = counters[layer] = counter
    try:
        yield counters
    finally:
        for layer in counters:
            del layer.__dict__["_averaged_calls"]


def _biased_factor(x):
    """(n - 1) / n, where n is the count of values per channel of `x`: what turns the
    fused kernel's batch variance (n - 1 in the denominator) into Keras' (n in it). A
    Python number for a static shape, a scalar tensor for an unknown one."""
    count = x.shape[:-1].num_elements()
    if count is None:  # an unknown batch or size: counted in the graph
        count = tf.cast(tf.size(x, out_type=tf.int64) // x.shape[-1], "float32")
        return tf.maximum(count - 1.0, 0.0) / count
    return max(count - 1, 0) / max(count, 1)


@dataclasses.dataclass(frozen=True)
class Norm:
    """A normalisation with its constants, as the conv builders of `kseg.layers.conv` take
    it. `kind` is "batch" or "group" (`group_norm`'s groups); `momentum` is Keras's (the
    weight of the old moving statistics: PyTorch's momentum 0.1 is Keras's 0.9)."""

    kind: str = "batch"
    momentum: float = 0.99
    epsilon: float = 1e-3

    def __post_init__(self):
        if self.kind not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {self.kind!r}")

    def layer(self, channels: int, name: str) -> keras.layers.Layer:
        if self.kind == "group":
            return group_norm(channels, name, epsilon=self.epsilon)
        return BatchNormalization(momentum=self.momentum, epsilon=self.epsilon, name=name)


# Keras's defaults, also TF-slim's (the MobileNets ContextNet builds on) and DeepLab's.
KERAS_BATCH_NORM = Norm("batch", momentum=0.99, epsilon=1e-3)
# PyTorch's BatchNorm2d(momentum=0.1, eps=1e-5) and GroupNorm(eps=1e-5): what HRNet,
# SegNode, OCR, DenseNet, U-Net and ChoiceNet's reference code train with.
TORCH_BATCH_NORM = Norm("batch", momentum=0.9, epsilon=1e-5)
TORCH_GROUP_NORM = Norm("group", epsilon=GROUP_NORM_EPSILON)
