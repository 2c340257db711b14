"""Quantisation-aware training: a model rewritten with TFLite's int8 arithmetic simulated
in float ("fake quantisation"), fine-tuned, then converted to int8 with the ranges it
learned.

The simulation follows what the TFLite converter does to the float model:

- A convolution (Conv2D or DepthwiseConv2D) whose only consumer is a BatchNormalization
  is folded with it, as the converter folds them: kernel * gamma / sqrt(var + eps) and
  bias beta - mean * gamma / sqrt(var + eps). The batch norm's statistics stay frozen (its
  moving averages, as at inference), gamma and beta train.
- Weights: per output channel, symmetric, int8 in [-127, 127] (the converter's scheme);
  the range is the folded kernel's current max |w| of each channel.
- Activations: per tensor, asymmetric int8 [-128, 127], at every tensor TFLite stores: after
  each convolution (with its batch norm and a following ReLU or ReLU6 fused, as the
  converter fuses them), after additions, concatenations and standalone activations, and
  at the input, which is fixed to [0, 1] (the recipes' pixel / 255) so that a uint8 image
  is its own int8_io input. Ranges start from the post-training calibration on the
  calibration images (min and max seen) and then follow an exponential moving average of
  each training batch's min and max.
- Pooling, resizing, padding and dropout pass values through: TFLite runs them in the
  scale of their input.

Quantisation is simulated with TensorFlow's fake-quant ops (`tf.quantization.
fake_quant_with_min_max_vars` and its per-channel form), which are what the TFLite
converter reads as learned ranges: the fine-tuned model converts to int8 without a
representative dataset. tensorflow-model-optimization wraps the same ops but its Keras
API rejects Keras 3 models (docs/quantization.md has the evidence).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import keras
import numpy as np

from kseg.errors import UserError
from kseg.export.pruning import ELEMENTWISE_MERGES
from kseg.layers.pooling import AdaptiveAveragePooling2D
from kseg.layers.quantize import FakeQuant, QuantAdaptivePooling2D, QuantConv
from kseg.layers.resize import ResizeLike, Upsample

# Layers whose output TFLite keeps in their input's scale: no quantisation point of their own.
PASS_THROUGH = (
    keras.layers.Dropout,
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling2D,
    keras.layers.ZeroPadding2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    ResizeLike,
    Upsample,
)
# Layers that are one TFLite op with an int8 output of its own.
QUANTISED_OUTPUT = (
    *ELEMENTWISE_MERGES,
    keras.layers.Concatenate,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.BatchNormalization,
    keras.layers.Rescaling,
)
CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
# Operations that may be fused with an activation into one TFLite op.
FUSES_ACTIVATION = (*CONVOLUTIONS, keras.layers.BatchNormalization, keras.layers.Add)


def fused_activation(layer) -> str | None:
    """ "relu" or "relu6" when `layer` is an activation TFLite fuses into the op before it."""
    if isinstance(layer, keras.layers.ReLU):
        if float(layer.negative_slope) or float(layer.threshold):
            return None
        if layer.max_value is None:
            return "relu"
        return "relu6" if float(layer.max_value) == 6.0 else None
    if isinstance(layer, keras.layers.Activation):
        name = keras.activations.serialize(layer.activation)
        return name if name in ("relu", "relu6") else None
    return None


@dataclasses.dataclass
class _Graph:
    """Who consumes whose output in a functional model, and what folds into what."""

    folded_bn: dict  # conv layer -> its batch norm
    fused_act: dict  # conv / add / batch-norm layer -> its activation layer
    absorbed: set  # ids of the batch norms and activations folded or fused away
    unsupported: list


def _own_activation(conv) -> str | None:
    """A convolution's own `activation` argument: None for linear, else its name."""
    name = keras.activations.serialize(conv.activation)
    return None if name == "linear" else name


def _analyse(model: keras.Model) -> _Graph:
    """Runs the graph once to find each layer's consumers, then what folds and fuses."""
    producer, edges = {}, []

    def record(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        sources = [producer.get(id(t)) for t in keras.tree.flatten((args, kwargs))]
        edges.append((layer, [s for s in sources if s is not None]))
        for t in keras.tree.flatten(outputs):
            producer[id(t)] = layer
        return outputs

    traced = keras.models.clone_model(
        model, clone_function=lambda layer: layer, call_function=record
    )
    outputs = {id(producer.get(id(t))) for t in keras.tree.flatten(traced.outputs)}
    consumers: dict[int, list] = {}
    for layer, sources in edges:
        for s in sources:
            consumers.setdefault(id(s), []).append(layer)

    def only_consumer(layer):
        users = consumers.get(id(layer), [])
        return users[0] if len(users) == 1 and id(layer) not in outputs else None

    folded_bn, fused_act, absorbed, unsupported = {}, {}, set(), []
    for layer, _ in edges:
        if isinstance(layer, CONVOLUTIONS):
            if (
                getattr(layer, "groups", 1) != 1
                or layer.data_format != "channels_last"
                or _own_activation(layer) not in (None, "relu", "relu6")
            ):
                unsupported.append(layer)
            if _own_activation(layer):  # its activation comes first: nothing folds after it
                continue
            bn = only_consumer(layer)
            if isinstance(bn, keras.layers.BatchNormalization) and bn.axis in (-1, [-1], 3, [3]):
                folded_bn[id(layer)] = bn
                absorbed.add(id(bn))
        elif not isinstance(layer, (*PASS_THROUGH, *QUANTISED_OUTPUT, AdaptiveAveragePooling2D)):
            unsupported.append(layer)
    for layer, _ in edges:
        if not isinstance(layer, FUSES_ACTIVATION) or (
            isinstance(layer, CONVOLUTIONS) and _own_activation(layer)
        ):
            continue
        head = folded_bn.get(id(layer), layer)
        act = only_consumer(head)
        if fused_activation(act) and not (
            isinstance(layer, keras.layers.BatchNormalization) and id(layer) in absorbed
        ):
            fused_act[id(layer)] = act
            absorbed.add(id(act))
    return _Graph(folded_bn, fused_act, absorbed, unsupported)


def _quant_conv(conv, bn, act) -> QuantConv:
    depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
    return QuantConv(
        depthwise=depthwise,
        filters=None if depthwise else conv.filters,
        kernel_size=conv.kernel_size,
        strides=conv.strides,
        dilation_rate=conv.dilation_rate,
        padding=conv.padding,
        use_bias=conv.use_bias,
        depth_multiplier=conv.depth_multiplier if depthwise else 1,
        batch_norm=None
        if bn is None
        else {"epsilon": float(bn.epsilon), "center": bn.center, "scale": bn.scale},
        activation=fused_activation(act) if act is not None else _own_activation(conv),
        name=conv.name,
    )


def _load_conv(q: QuantConv, conv, bn) -> None:
    q.kernel.assign(conv.kernel)
    if q.bias is not None:
        q.bias.assign(conv.bias)
    if bn is not None:
        if bn.gamma is not None:
            q.gamma.assign(bn.gamma)
        if bn.beta is not None:
            q.beta.assign(bn.beta)
        q.moving_mean.assign(bn.moving_mean)
        q.moving_variance.assign(bn.moving_variance)


def quantize_aware(model: keras.Model, images: Iterable[np.ndarray] | None = None) -> keras.Model:
    """`model` rewritten for quantisation-aware training (see the module's docstring): a
    new functional model with its own copies of the weights and the same outputs, named
    `<name>_qat`. With `images` ((H, W, 3) or (N, H, W, 3) floats in [0, 1], e.g. training
    crops), its activation ranges are calibrated on them (`calibrate`); without, the ranges
    start at zero width and the first training batches set them.

    Supports functional models built from Conv2D, DepthwiseConv2D, BatchNormalization,
    ReLU / Activation, the merge layers, pooling, resizing, padding and dropout (every
    kseg segmentation model except the ODE and OCR ones). Raises `UserError` naming the
    layers it cannot simulate.
    """
    from kseg.models.base import GraphImageModel

    if is_quantize_aware(model):
        raise UserError(f"{model.name} is already rewritten for quantisation-aware training")
    if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph"):
        raise UserError(
            f"quantize_aware needs a functional Keras model, got {type(model).__name__}"
        )
    graph = _analyse(model)
    if graph.unsupported:
        kinds = sorted({type(layer).__name__ for layer in graph.unsupported})
        names = ", ".join(layer.name for layer in graph.unsupported[:5])
        raise UserError(
            f"{model.name}: quantisation-aware training cannot simulate {', '.join(kinds)} "
            f"layers in int8 ({names}{', ...' if len(graph.unsupported) > 5 else ''}); it "
            "supports convolution, batch norm, ReLU, merge, pooling and resize layers. Use "
            "post-training int8 (python -m kseg.export --quantize int8) for this model"
        )
    inputs = keras.tree.map_structure(
        lambda x: keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name), model.input
    )
    quantised_inputs = {}
    for i, x in enumerate(keras.tree.flatten(inputs)):
        name = "image_quant" if i == 0 else f"input{i}_quant"
        quantised_inputs[id(x)] = FakeQuant(fixed=(0.0, 1.0), name=name)(x)
    loads, originals = [], {}  # originals: id(copy) -> the user's layer

    def clone(layer):
        if (
            isinstance(layer, (*CONVOLUTIONS, AdaptiveAveragePooling2D))
            or id(layer) in graph.absorbed
        ):
            return layer  # replaced (or dropped) in `call`, never called
        copy = layer.__class__.from_config(layer.get_config())
        originals[id(copy)] = layer
        if layer.weights:
            loads.append((copy, layer))
        return copy

    def call(layer, *args, **kwargs):
        args, kwargs = keras.tree.map_structure(
            lambda t: quantised_inputs.get(id(t), t), (args, kwargs)
        )
        if id(layer) in graph.absorbed:
            return args[0]
        act = graph.fused_act.get(id(originals.get(id(layer), layer)))
        if isinstance(layer, CONVOLUTIONS):
            bn = graph.folded_bn.get(id(layer))
            q = _quant_conv(layer, bn, act)
            y = q(args[0])
            _load_conv(q, layer, bn)
            return y
        if isinstance(layer, AdaptiveAveragePooling2D):
            return QuantAdaptivePooling2D(layer.output_size, name=layer.name)(*args, **kwargs)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # frozen statistics (the copy, not the user's layer)
        if isinstance(layer, keras.layers.Add) and len(args[0]) > 2:
            # TFLite's ADD takes two operands: every partial sum is an int8 tensor
            partial = args[0][0]
            for i, term in enumerate(args[0][1:-1], start=1):
                partial = keras.layers.Add(name=f"{layer.name}_{i}")([partial, term])
                partial = FakeQuant(name=f"{layer.name}_{i}_quant")(partial)
            args = ([partial, args[0][-1]], *args[1:])
        y = layer(*args, **kwargs)
        if isinstance(layer, PASS_THROUGH):
            return y
        if act is not None:
            y = keras.layers.Activation(fused_activation(act), name=act.name)(y)
        return FakeQuant(name=f"{(act or layer).name}_quant")(y)

    clone_ = keras.models.clone_model(
        model, input_tensors=inputs, clone_function=clone, call_function=call
    )
    for copy, layer in loads:
        copy.set_weights(layer.get_weights())
    qat = GraphImageModel(
        inputs=clone_.input,
        outputs=clone_.output,
        name=f"{model.name}_qat",
        input_multiple=getattr(model, "input_multiple", 1),
        task=getattr(model, "task", "segmentation"),
    )
    if images is not None:
        calibrate(qat, images)
    return qat


def fake_quants(model: keras.Model) -> list[FakeQuant]:
    """The activation quantisers of a `quantize_aware` model, those inside its layers too."""
    return [layer for layer in model._flatten_layers() if isinstance(layer, FakeQuant)]


def is_quantize_aware(model: keras.Model) -> bool:
    """Whether `model` came from `quantize_aware` (it converts with its learned ranges)."""
    return any(isinstance(layer, FakeQuant) for layer in model.layers)


def float_ops(tflite_path: str) -> list[str]:
    """The ops of a TFLite file that compute in float, other than quantising its input and
    dequantising its output: none in a file fully converted to int8."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=tflite_path,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    found = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        tensors = [interpreter._get_tensor_details(i, 0) for i in op["outputs"] if i >= 0]
        if any(t["dtype"] == np.float32 for t in tensors):
            found.append(f"{op['op_name']} ({tensors[0]['name']})")
    return found


def calibrate(model: keras.Model, images: Iterable[np.ndarray]) -> None:
    """Sets every activation range of a `quantize_aware` model to the min and max (with 0)
    its float activations take on `images`, as TFLite's post-training calibration does."""
    quants = [q for q in fake_quants(model) if not q.fixed]
    for q in quants:
        q.range_min.assign(0.0)
        q.range_max.assign(0.0)
        q.observing = True
    try:
        for image in images:
            image = np.asarray(image, np.float32)
            model(image[None] if image.ndim == 3 else image, training=False)
    finally:
        for q in quants:
            q.observing = False
