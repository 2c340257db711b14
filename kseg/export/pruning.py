"""Structured filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017).

The filters with the lowest L1 norm (sum of absolute kernel weights) are removed from
convolutions, with the matching input channels of every layer downstream, and a smaller
model is rebuilt with the surviving weights copied in: fewer parameters and FLOPs, not
masks. ContextNet trained a 2x-wide network and pruned it to 1.5x, 1.25x and 1x this way
(Poudel et al. 2018, section 3.2.2). `tensorflow-model-optimization` cannot, with Keras 3.

Channels that must shrink together form one *group*: the outputs of a convolution, carried
through batch norm, activations, depthwise convolutions, pooling and resizing, and joined
by residual additions (the filters of every convolution feeding an `Add` are removed at the
same indices). A concatenation keeps one group per part. A group's importance per channel
is the sum of the L1 norms of its convolutions' filters at that channel.

Groups keep every channel when they touch the model's input or outputs (the image and the
class logits) or a layer the pruner does not know (a custom layer such as an ODE block sees
its own channels unchanged); `plan_pruning(...).groups` says which and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np

from kseg.layers import AdaptiveAveragePooling2D, ResizeLike, Upsample
from kseg.models.base import GraphImageModel, ImageModel

Spec = tuple[tuple[int, int], ...]  # a tensor's channels: (group id, size) segments

# Layers whose output filters can be removed: (kernel axis of the inputs, of the outputs).
_PRODUCERS = {
    keras.layers.Conv1D: (-2, -1),
    keras.layers.Conv2D: (-2, -1),
    keras.layers.Conv3D: (-2, -1),
    keras.layers.Dense: (0, 1),
    keras.layers.Conv2DTranspose: (-1, -2),
}
# Layers mapping channel c to channel c, with or without per-channel weights.
_CHANNELWISE = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.UpSampling2D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping2D,
    keras.layers.Resizing,
    keras.layers.Identity,
    Upsample,
    AdaptiveAveragePooling2D,
)
# Keras layers that combine same-shape inputs element-wise.
ELEMENTWISE_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)


@dataclasses.dataclass
class ChannelGroup:
    """Channels that are removed together.

    Attributes:
        size: channels before pruning.
        producers: layers whose output filters are these channels.
        frozen: why every channel stays (empty when the group is prunable).
        keep: indices of the channels kept, ascending (all of them when frozen).
        importance: per-channel L1 norm summed over the producers.
    """

    size: int
    producers: list[str] = dataclasses.field(default_factory=list)
    frozen: list[str] = dataclasses.field(default_factory=list)
    keep: np.ndarray | None = None
    importance: np.ndarray | None = None

    @property
    def prunable(self) -> bool:
        return not self.frozen and bool(self.producers)


@dataclasses.dataclass
class PruningPlan:
    """What `prune_filters` removes: channel groups and which weight axes follow them.

    `axes[layer][i]` maps axis -> channel spec for the layer's i-th weight.
    """

    groups: list[ChannelGroup]
    axes: dict[str, list[dict[int, Spec]]]
    outputs: dict[str, Spec]  # producer layer -> its output group

    def set_ratio(self, ratio: float, round_to: int = 1) -> PruningPlan:
        """Keeps round(size * (1 - ratio)) channels of every prunable group, the ones with
        the highest importance (rounded to a multiple of `round_to`, at least one)."""
        if not 0 <= ratio < 1:
            raise ValueError(f"ratio is the fraction of filters removed, in [0, 1); got {ratio}")
        for g in self.groups:
            n = g.size
            if g.prunable:
                n = max(1, int(round(g.size * (1 - ratio))))
                if round_to > 1 and g.size >= round_to:
                    n = min(g.size, max(round_to, int(round(n / round_to)) * round_to))
            order = np.argsort(-g.importance, kind="stable") if g.prunable else np.arange(g.size)
            g.keep = np.sort(order[:n])
        return self

    def kept(self, spec: Spec) -> np.ndarray:
        """Indices kept along a tensor's channel axis."""
        parts, offset = [], 0
        for gid, size in spec:
            parts.append(self.groups[gid].keep + offset)
            offset += size
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def params_after(self, model: keras.Model) -> int:
        """Trainable parameters of the pruned model, without building it."""
        trainable = {id(w) for w in model.trainable_weights}
        total = 0
        for layer in model.layers:
            plan = self.axes.get(layer.name)
            for i, w in enumerate(layer.weights):
                if id(w) not in trainable:
                    continue
                shape = list(w.shape)
                for axis, spec in (plan[i] if plan else {}).items():
                    shape[axis] = len(self.kept(spec))
                total += int(np.prod(shape))
        return total


class _Groups:
    """Union-find over channel groups."""

    def __init__(self):
        self.parent: list[int] = []
        self.items: list[ChannelGroup] = []

    def new(self, size: int, frozen: str | None = None) -> Spec:
        self.parent.append(len(self.parent))
        self.items.append(ChannelGroup(size, frozen=[frozen] if frozen else []))
        return ((len(self.parent) - 1, size),)

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            self.items[a].producers += self.items[b].producers
            self.items[a].frozen += self.items[b].frozen

    def freeze(self, spec: Spec, reason: str) -> None:
        for gid, _ in spec:
            self.items[self.find(gid)].frozen.append(reason)


def _channels(tensor) -> int:
    return int(tensor.shape[-1]) if tensor.shape and tensor.shape[-1] is not None else -1


def _functional(model: keras.Model) -> keras.Model:
    if isinstance(model, keras.Sequential) or not hasattr(model, "_nodes_by_depth"):
        try:
            return keras.Model(model.inputs, model.outputs, name=model.name)
        except (AttributeError, ValueError, TypeError):
            raise TypeError(
                f"prune_filters needs a graph of layers (a functional or Sequential model); "
                f"{type(model).__name__} {model.name!r} has none. Build it with keras.Input."
            ) from None
    return model


def plan_pruning(model: keras.Model) -> PruningPlan:
    """Finds the channel groups of `model` and each group's L1 importance (no ratio yet)."""
    model = _functional(model)
    groups = _Groups()
    spec_of: dict[int, Spec] = {}
    axes: dict[str, list[dict[int, Spec]]] = {}
    outputs: dict[str, Spec] = {}
    uses: dict[str, int] = {}
    by_depth = model._nodes_by_depth
    nodes = [n for depth in sorted(by_depth, reverse=True) for n in by_depth[depth]]
    for node in nodes:
        uses[node.operation.name] = uses.get(node.operation.name, 0) + 1

    for node in nodes:
        layer = node.operation
        ins = [spec_of[id(t)] for t in node.input_tensors]
        outs = node.output_tensors
        kind = type(layer)
        out: Spec | None = None
        if isinstance(layer, keras.layers.InputLayer):
            out = groups.new(_channels(outs[0]), "model input")
        elif uses[layer.name] > 1:
            pass  # a shared layer: unknown below
        elif kind in _PRODUCERS and getattr(layer, "groups", 1) == 1 and len(ins) == 1:
            in_axis, out_axis = _PRODUCERS[kind]
            out = groups.new(_channels(outs[0]))
            groups.items[out[0][0]].producers.append(layer.name)
            outputs[layer.name] = out
            w = [{in_axis % layer.kernel.ndim: ins[0], out_axis % layer.kernel.ndim: out}]
            axes[layer.name] = w + [{0: out}] * (len(layer.weights) - 1)
        elif (
            isinstance(layer, keras.layers.DepthwiseConv2D)
            and layer.depth_multiplier == 1
            or isinstance(layer, keras.layers.BatchNormalization)
            and layer.axis in (-1, len(outs[0].shape) - 1)
        ):
            out = ins[0]
            first = {2: out} if isinstance(layer, keras.layers.DepthwiseConv2D) else {0: out}
            axes[layer.name] = [first] + [{0: out}] * (len(layer.weights) - 1)
        elif isinstance(layer, _CHANNELWISE) and not layer.weights and len(ins) == 1:
            out = ins[0]
        elif isinstance(layer, ResizeLike):
            out = ins[0]  # the second input gives the size only
        elif isinstance(layer, ELEMENTWISE_MERGES) and all(_same_layout(s, ins[0]) for s in ins):
            for s in ins[1:]:
                for (a, _), (b, _) in zip(ins[0], s, strict=True):
                    groups.union(a, b)
            out = ins[0]
        elif isinstance(layer, keras.layers.Concatenate) and layer.axis in (
            -1,
            len(outs[0].shape) - 1,
        ):
            out = tuple(seg for s in ins for seg in s)
        if out is not None and len(outs) == 1 and sum(n for _, n in out) == _channels(outs[0]):
            spec_of[id(outs[0])] = out
            continue
        # Unknown layer (or one whose channels do not add up): its inputs and outputs stay.
        reason = f"{type(layer).__name__} {layer.name!r}"
        for s in ins:
            groups.freeze(s, reason)
        axes.pop(layer.name, None)
        outputs.pop(layer.name, None)
        for t in outs:
            spec_of[id(t)] = groups.new(_channels(t), reason)

    for t in model.outputs:
        groups.freeze(spec_of[id(t)], "model output")
    return _resolve(model, groups, spec_of, axes, outputs)


def _same_layout(a: Spec, b: Spec) -> bool:
    return [n for _, n in a] == [n for _, n in b]


def _resolve(model, groups: _Groups, spec_of, axes, outputs) -> PruningPlan:
    """Renumbers the groups by their roots and computes the L1 importances."""
    roots = sorted({groups.find(g) for g in range(len(groups.parent))})
    index = {r: i for i, r in enumerate(roots)}
    items = [groups.items[r] for r in roots]

    def remap(spec: Spec) -> Spec:
        return tuple((index[groups.find(g)], n) for g, n in spec)

    axes = {k: [{a: remap(s) for a, s in w.items()} for w in v] for k, v in axes.items()}
    outputs = {k: remap(s) for k, s in outputs.items()}
    for g in items:
        g.importance = np.zeros(g.size)
        g.keep = np.arange(g.size)
    for name, spec in outputs.items():
        layer = model.get_layer(name)
        kernel = np.asarray(layer.kernel)
        out_axis = _PRODUCERS[type(layer)][1] % kernel.ndim
        other = tuple(a for a in range(kernel.ndim) if a != out_axis)
        items[spec[0][0]].importance += np.abs(kernel).sum(axis=other)
    return PruningPlan(items, axes, outputs)


def prune_filters(
    model: keras.Model,
    ratio: float | None = None,
    target_params: int | None = None,
    round_to: int = 1,
    name: str | None = None,
) -> keras.Model:
    """Removes the lowest-L1 filters and returns a smaller model with the kept weights.

    Args:
        model: a functional (or Sequential) Keras model, e.g. any kseg segmentation model.
        ratio: fraction of the filters of every prunable group to remove (0.5 halves the
            width; ContextNet's 2x -> 1.5x step is 0.25).
        target_params: instead of `ratio`, the largest trainable-parameter count to reach;
            the ratio is found by bisection (one ratio for all groups).
        round_to: keep a multiple of this many channels per group (8 suits SIMD kernels).
        name: of the pruned model; default the original's.

    Returns:
        A new model of the same graph with fewer channels. A kseg model comes back as a
        `GraphImageModel` that keeps its `input_multiple` and `task` and saves to
        `.keras`. With `ratio=0` it is an exact copy.

    Example:
        >>> wide = kseg.models.ContextNet(width_multiplier=2.0)
        >>> slim = kseg.export.prune_filters(wide, ratio=0.5)  # the shapes of the 1x model
    """
    if (ratio is None) == (target_params is None):
        raise ValueError("give exactly one of ratio (fraction of filters) or target_params")
    plan = plan_pruning(model)
    if target_params is not None:
        ratio = _ratio_for(plan, model, int(target_params), round_to)
    plan.set_ratio(float(ratio), round_to)
    return apply_plan(model, plan, name)


def _ratio_for(plan: PruningPlan, model: keras.Model, target: int, round_to: int) -> float:
    if plan.set_ratio(0.0, round_to).params_after(model) <= target:
        return 0.0
    high = 1 - 1e-9
    smallest = plan.set_ratio(high, round_to).params_after(model)
    if smallest > target:
        raise ValueError(
            f"target_params={target:,} is below what pruning can reach: {smallest:,} "
            "parameters with one channel per prunable group (the rest are fixed by the "
            "model's input, its outputs and layers the pruner does not change)"
        )
    low = 0.0
    for _ in range(40):
        mid = (low + high) / 2
        if plan.set_ratio(mid, round_to).params_after(model) <= target:
            high = mid
        else:
            low = mid
    return high


def apply_plan(model: keras.Model, plan: PruningPlan, name: str | None = None) -> keras.Model:
    """Builds the pruned model of `plan` and copies the kept weights into it."""
    source = _functional(model)

    def clone(layer):
        config = layer.get_config()
        if layer.name in plan.outputs:
            key = "units" if isinstance(layer, keras.layers.Dense) else "filters"
            config[key] = len(plan.kept(plan.outputs[layer.name]))
        return layer.__class__.from_config(config)

    clone_model = keras.models.clone_model(source, clone_function=clone)
    for old in source.layers:
        if not old.weights:
            continue
        new = clone_model.get_layer(old.name)
        weight_axes = plan.axes.get(old.name)
        values = []
        for i, w in enumerate(old.weights):
            value = np.asarray(w)
            for axis, spec in (weight_axes[i] if weight_axes else {}).items():
                value = np.take(value, plan.kept(spec), axis=axis)
            values.append(value)
        new.set_weights(values)
    name = name or model.name
    if isinstance(model, ImageModel):
        return GraphImageModel(
            inputs=clone_model.input,
            outputs=clone_model.output,
            name=name,
            input_multiple=model.input_multiple,
            task=model.task,
        )
    return keras.Model(clone_model.input, clone_model.output, name=name)


def width_schedule(start: float, widths: Sequence[float] = (1.5, 1.25, 1.0)) -> list[float]:
    """Per-step pruning ratios that take a `start`-wide model to each of `widths` in turn
    (ContextNet: 2.0 -> 1.5 -> 1.25 -> 1.0 is 0.25, 1/6, 0.2)."""
    ratios, current = [], start
    for w in widths:
        if not 0 < w < current:
            raise ValueError(f"widths must decrease from {start}; got {list(widths)}")
        ratios.append(1 - w / current)
        current = w
    return ratios
