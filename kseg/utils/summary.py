"""Parameter and multiply-add counts of a Keras model.

Multiply-adds (MACs) are counted from the graph: the model is traced at a fixed input
shape, its variables are frozen to constants, and every Conv2D, DepthwiseConv2dNative,
Conv2DBackpropInput (transposed conv), MatMul and BatchMatMul op contributes
`output elements x reduction length`. Batch norm, activations, resizes and additions are
not counted (they are a few per cent at most, and batch norm folds into the convs at
export). FLOPs are reported as 2 x MACs. Ops inside `tf.while_loop` bodies (an adaptive
ODE solve) are counted once per loop body, so for such models the MACs are per solver step.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)


def count_params(model: keras.Model, trainable_only: bool = True) -> int:
    """Number of weights; batch-norm moving statistics are excluded when `trainable_only`."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(np.prod(w.shape) for w in weights))


_COUNTED = {
    "Conv2D",
    "DepthwiseConv2dNative",
    "Conv2DBackpropInput",
    "MatMul",
    "BatchMatMul",
    "BatchMatMulV2",
    "BatchMatMulV3",
}


def _op_macs(op) -> int:
    if op.type not in _COUNTED:
        return 0
    out = op.outputs[0].shape
    if not out.is_fully_defined():
        raise ValueError(f"op {op.name} has an unknown output shape {out}; give a full shape")
    t = op.type
    if t == "Conv2D":
        kh, kw, cin, _ = op.inputs[1].shape
        return out.num_elements() * kh * kw * cin
    if t == "DepthwiseConv2dNative":
        kh, kw, _, _ = op.inputs[1].shape
        return out.num_elements() * kh * kw
    if t == "Conv2DBackpropInput":
        # Each input element scatters a kh x kw x out_channels patch.
        kh, kw, _, _ = op.inputs[1].shape
        return op.inputs[2].shape.num_elements() * kh * kw * out[-1]
    a = op.inputs[0].shape  # the matrix products
    transposed = op.get_attr("transpose_a") if t == "MatMul" else op.get_attr("adj_x")
    return out.num_elements() * (a[-2] if transposed else a[-1])


def _graph_ops(graph):
    yield from graph.get_operations()
    for fn in graph._functions.values():  # while-loop and cond bodies
        yield from fn.graph.get_operations()


def count_macs(model: keras.Model, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward pass on a batch of one image of `input_shape` (H, W, C)."""
    spec = tf.TensorSpec((1, *input_shape), tf.float32)
    fn = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(spec))
    return int(sum(_op_macs(op) for op in _graph_ops(frozen.graph)))


def summarize(
    model: keras.Model, input_shape: Sequence[int], print_fn=print
) -> dict[str, int | float | str]:
    """Returns and prints parameters and multiply-adds (counted from the graph).

    Args:
        model: any Keras model taking images.
        input_shape: (height, width, channels) of one image; the batch is 1.
        print_fn: where the table goes (None prints nothing).
    """
    macs = count_macs(model, input_shape)
    info = {
        "model": model.name,
        "input": "x".join(str(d) for d in input_shape),
        "params": count_params(model),
        "params_total": count_params(model, trainable_only=False),
        "macs": macs,
        "flops": 2 * macs,
    }
    if print_fn is not None:
        print_fn(
            f"{info['model']} @ {info['input']}: {info['params']:,} trainable parameters "
            f"({info['params_total']:,} with batch-norm statistics), "
            f"{macs / 1e9:.2f} GMACs ({2 * macs / 1e9:.2f} GFLOPs, counted from the graph)"
        )
    return info
