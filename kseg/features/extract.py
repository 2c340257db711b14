"""Image features read out of a classifier's hidden states (Carrara et al. 2019, section 5):
z(t) of an ODE block for t = 0, 0.05, ..., 1, or the outputs of a ResNet's last 7 blocks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from kseg.models.ode_nets.ode_nets import HEAD_NORM, ODE_LAYER

# Section 5: "we sample z(t) between 0 and 1 with a sample rate of 0.05".
PAPER_TIMES = tuple(round(0.05 * k, 2) for k in range(21))


@dataclasses.dataclass
class Features:
    """Features of N images at K places in a network.

    Attributes:
        positions: (K,) where each feature is read, in [0, 1]: the solve time t for an ODE
            block, the block index evenly spread over [0, 1] for a ResNet (as Fig. 2 plots).
        names: (K,) labels, e.g. "t=0.45" or "block3_add".
        values: (K, N, C) globally average-pooled features.
    """

    positions: np.ndarray
    names: list[str]
    values: np.ndarray


def _has_layer(model: keras.Model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def _pool(model: keras.Model, state):
    """The classifier's GroupNorm and ReLU, then global average pooling (the official
    code's feature extractor is the classifier without its last layer)."""
    x = tf.nn.relu(model.get_layer(HEAD_NORM)(state, training=False))
    return tf.reduce_mean(x, axis=[-3, -2])


def extract(
    model: keras.Model,
    images: np.ndarray,
    times: Sequence[float] | None = None,
    batch_size: int = 64,
    method: str | None = None,
    steps: int | None = None,
) -> Features:
    """Globally pooled features of `images` (N, H, W, C, normalised as in training).

    For a model with an ODE block (`ResODENet`, `ODEOnlyNet`): z(t) at each of `times`
    (default 0, 0.05, ..., 1), solved by the block's own solver unless `method` / `steps`
    say otherwise. For `ResNetGN`: the outputs of its last 7 residual blocks (`times` must
    be None). Each state passes the classifier's GroupNorm and ReLU and is averaged over
    space, so z(1) gives exactly the vector the classifier's dropout and dense layer see.

    Example:
        >>> feats = extract(model, images)          # 21 x N x 256 for a Res-ODE Net
        >>> feats.values[feats.names.index("t=0.45")]
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    if _has_layer(model, ODE_LAYER):
        block = model.get_layer(ODE_LAYER)
        times = [float(t) for t in (PAPER_TIMES if times is None else times)]
        encoder = keras.Model(model.input, block.input)

        def run(x):
            states = block.solve(encoder(x, training=False), times, method=method, steps=steps)
            return tf.stack([_pool(model, s) for s in tf.unstack(states)])

        positions, names = np.array(times), [f"t={t:g}" for t in times]
    elif hasattr(model, "feature_layers"):
        if times is not None:
            raise ValueError(f"{model.name} has no ODE block; its features are per block")
        names = list(model.feature_layers)
        taps = keras.Model(model.input, [model.get_layer(n).output for n in names])

        def run(x):
            return tf.stack([_pool(model, s) for s in taps(x, training=False)])

        positions = np.linspace(0.0, 1.0, len(names))
    else:
        raise ValueError(
            f"{model.name} has neither an ODE block named {ODE_LAYER!r} nor `feature_layers`; "
            "features come from kseg's ResNetGN, ResODENet and ODEOnlyNet"
        )
    # One trace for every batch size: building the graph of an unrolled solve takes longer
    # than running it.
    run = tf.function(run, input_signature=[tf.TensorSpec((None, *images.shape[1:]), tf.float32)])
    values = [run(images[i : i + batch_size]).numpy() for i in range(0, len(images), batch_size)]
    return Features(positions, names, np.concatenate(values, axis=1))


def solver_statistics(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image, solved alone: function evaluations, accepted and rejected steps of the
    model's ODE block (Carrara et al. Table 1 reports the steps' mean and deviation)."""
    if not _has_layer(model, ODE_LAYER):
        raise ValueError(f"{model.name} has no ODE block; it takes no solver steps")
    block = model.get_layer(ODE_LAYER)
    encoder = keras.Model(model.input, block.input)
    states = np.concatenate(
        [
            encoder(np.asarray(images[i : i + 64], np.float32), training=False).numpy()
            for i in range(0, len(images), 64)
        ]
    )
    return {k: np.array(v) for k, v in block.per_sample_stats(states).items()}


def solver_step_report(
    model: keras.Model, x: np.ndarray, images: np.ndarray, plot_path: str
) -> dict | None:
    """For a model with an ODE block: the solver statistics of `x` (normalised images) as
    means and deviations, and the most and least demanding `images` plotted to
    `plot_path` (Carrara et al. Table 1 and Fig. 1). None for a model without one."""
    from kseg.features.plots import plot_extreme_images

    if not _has_layer(model, ODE_LAYER):
        return None
    stats = solver_statistics(model, x)
    plot_extreme_images(
        images,
        stats["accepted_steps"],
        plot_path,
        title=f"{model.name}: most (top) and fewest (bottom) steps",
    )
    return {
        "images": len(x),
        **{f"{k}_mean": float(np.mean(v)) for k, v in stats.items()},
        **{f"{k}_std": float(np.std(v)) for k, v in stats.items()},
    }
