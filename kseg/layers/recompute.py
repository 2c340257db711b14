"""Batch norm -> ReLU -> conv chains that recompute their batch norm and ReLU in the
backward pass instead of keeping their output (ReLU or ReLU6, as each model has it).

Back-propagating a chain x -> BN -> ReLU -> Conv2D keeps two tensors of x's size: x for
the batch norm's gradient and the ReLU's output a for the ReLU's and the conv's. A
training call of a functional model through `call_functional` runs each such chain as one
op whose gradient keeps x alone: when the gradient arrives it runs the fused batch-norm
kernel on x again (the batch's statistics and all: the same input, the same a), takes the
conv's gradients from that a, and drops it. The gradients are those of the chain's own
ops, by the same kernels (tests/layers/test_recompute.py). This is the memory-efficient
batch norm of Pleiss et al. 2017 ("Memory-Efficient Implementation of DenseNets",
arXiv:1707.06990), which recomputes the same cheap part.

It is a choice of the training run, not of the model: inside `recomputing_norm_act()`
(what `kseg.train.engine.fit(recompute_norm_act=True)` and the recipes'
`--recompute-norm-act` open around training), every kseg model and every functional
derivative of an ODE block traced for training calls through `call_functional`. Each
chain costs one more batch-norm pass a training step and keeps one tensor fewer.

A chain qualifies when its three layers are kseg's `BatchNormalization` (training on its
fused kernel), `Activation("relu")` or `Activation("relu6")` and a plain float32 `Conv2D`
(one group, no activation), each called once in the model, and the norm's and ReLU's
outputs feed nothing else. Other layers, and every call that is not a training step, run
as Keras runs them.
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref

import keras
import tensorflow as tf
from keras.src.models.functional import Functional, unpack_singleton
from keras.src.models.functional import operation_fn as keras_operation_fn

from kseg.layers.norm import BatchNormalization

# model -> {id(conv): (norm, relu)} of its qualifying chains, found once per model.
_CHAINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ACTIVE = contextvars.ContextVar("kseg_recompute_norm_act", default=False)


@contextlib.contextmanager
def recomputing_norm_act(enabled: bool = True):
    """Within it, training calls traced by kseg's models and ODE blocks recompute their
    chains (module docstring); the setting before it is restored after."""
    token = _ACTIVE.set(bool(enabled))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def recomputes(training) -> bool:
    """Whether a call with this `training` flag recomputes its chains here (a symbolic
    flag does not: which path to trace must be known)."""
    return _ACTIVE.get() and training is True


def call_functional(model: keras.Model, inputs, training=None):
    """`model.call(inputs, training=training)` for a Keras functional model, its
    qualifying chains (module docstring) recomputed in the backward pass when `training`."""
    chains = _chains(model) if training else {}
    chains = {k: (norm, relu) for k, (norm, relu) in chains.items() if norm.trainable}
    if not chains:
        return Functional.call(model, inputs, training=training)
    pending = {id(layer) for norm, relu in chains.values() for layer in (norm, relu)}

    def operation_fn(op):
        if id(op) in pending:  # the norm and the ReLU wait for their conv
            return lambda x, *args, **kwargs: x if isinstance(x, _Pending) else _Pending(x)
        if id(op) in chains:
            norm, relu = chains[id(op)]
            return lambda x, *args, **kwargs: norm_relu_conv(x.inputs, norm, op, _six(relu))
        return keras_operation_fn(op, training=training)

    inputs = model._standardize_inputs(inputs)
    return unpack_singleton(model._run_through_graph(inputs, operation_fn=operation_fn))


class _Pending:
    """A chain's input, handed on by its norm and ReLU to its conv."""

    def __init__(self, inputs):
        self.inputs = inputs


def norm_relu_conv(x, norm: BatchNormalization, conv: keras.layers.Conv2D, six: bool = False):
    """conv(relu(norm(x))) in training mode (relu6 if `six`), norm's moving statistics
    updated; the gradient keeps x, not relu(norm(x)) (module docstring)."""
    relu, relu_grad = (
        (tf.nn.relu6, tf.raw_ops.Relu6Grad) if six else (tf.nn.relu, tf.raw_ops.ReluGrad)
    )
    x = tf.cast(x, "float32")
    gamma, beta = norm.scale_offset(x.shape[-1])
    options = {
        "strides": [1, *conv.strides, 1],
        "padding": conv.padding.upper(),
        "dilations": [1, *conv.dilation_rate, 1],
        "data_format": "NHWC",
    }

    @tf.custom_gradient
    def chain(x, gamma, beta, kernel):
        y, mean, unbiased, *_ = norm.normalize_batch(x, gamma, beta)
        out = tf.nn.conv2d(relu(y), kernel, **options)

        def grad(d_out, *_):  # the statistics' gradients: they only feed the moving ones
            # After d_out, not before: the executor would otherwise normalise every
            # chain's x again as soon as the backward pass began.
            with tf.control_dependencies([d_out]):
                x_again = tf.identity(x)
            y, _, _, *reserve = norm.normalize_batch(x_again, gamma, beta)
            a = relu(y)
            d_a = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(a), filter=kernel, out_backprop=d_out, **options
            )
            d_kernel = tf.raw_ops.Conv2DBackpropFilter(
                input=a, filter_sizes=tf.shape(kernel), out_backprop=d_out, **options
            )
            d_y = relu_grad(gradients=d_a, features=a)  # from the output, as TensorFlow's
            d_x, d_gamma, d_beta = norm.batch_gradient(d_y, x_again, gamma, reserve)
            return d_x, d_gamma, d_beta, d_kernel

        return (out, mean, unbiased), grad

    out, mean, unbiased = chain(x, gamma, beta, tf.convert_to_tensor(conv.kernel))
    norm.update_moving_statistics(tf.stop_gradient(mean), tf.stop_gradient(unbiased), x)
    if conv.use_bias:
        out = tf.nn.bias_add(out, conv.bias)
    return out


def _chains(model: keras.Model) -> dict:
    """{id(conv): (norm, relu)} for the qualifying chains of `model` (module docstring)."""
    if model in _CHAINS:
        return _CHAINS[model]
    producer, consumers = {}, {}
    nodes = [node for level in model._nodes_by_depth.values() for node in level]
    for node in nodes:
        for t in node.input_tensors:
            consumers[id(t)] = consumers.get(id(t), 0) + 1
        for t in node.outputs:
            producer[id(t)] = node
    for t in model.outputs:
        consumers[id(t)] = consumers.get(id(t), 0) + 1

    def single_input_from(node, accepts):
        """The node that makes `node`'s one input, if it `accepts` its layer and that
        input feeds nothing else."""
        if len(node.input_tensors) != 1:
            return None
        t = node.input_tensors[0]
        before = producer.get(id(t))
        if before is None or consumers.get(id(t)) != 1 or not accepts(before.operation):
            return None
        return before

    chains = {}
    for node in nodes:
        if not _plain_conv(node.operation):
            continue
        relu = single_input_from(node, _relu)
        norm = relu and single_input_from(relu, _fused_norm)
        if norm:
            layers = (norm.operation, relu.operation, node.operation)
            if all(len(layer._inbound_nodes) == 1 for layer in layers):
                chains[id(node.operation)] = (norm.operation, relu.operation)
    _CHAINS[model] = chains
    return chains


def _plain_conv(layer) -> bool:
    return (
        type(layer) is keras.layers.Conv2D
        and layer.groups == 1
        and layer.data_format == "channels_last"
        and layer.activation is keras.activations.linear
        and layer.compute_dtype == "float32"
    )


def _relu(layer) -> bool:
    return type(layer) is keras.layers.Activation and layer.activation in (
        keras.activations.relu,
        keras.activations.relu6,
    )


def _six(relu) -> bool:
    return relu.activation is keras.activations.relu6


def _fused_norm(layer) -> bool:
    return type(layer) is BatchNormalization and layer.fusable and layer.compute_dtype == "float32"
