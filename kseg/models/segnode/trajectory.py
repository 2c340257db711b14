"""SegNode's trajectory read-out (section 4.8): segmentation logits from the ODE state at
intermediate solve times (Fig. 3) and mIoU against solve time over a dataset (Fig. 4)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import keras
import numpy as np

from kseg.models.segnode.segnode import ODE_LAYER
from kseg.train.engine import main_logits
from kseg.train.metrics import confusion_matrix, mean_iou


def _split(model: keras.Model):
    """(encoder: image -> initial states, ODE block, decoder: states -> outputs)."""
    block = model.get_layer(ODE_LAYER)
    encoder = keras.Model(model.input, block.input)
    decoder = keras.Model(block.output, model.output)
    return encoder, block, decoder


def trajectory_logits(
    model: keras.Model,
    images: np.ndarray,
    times: Sequence[float],
    method: str | None = None,
    steps: int | None = None,
) -> np.ndarray:
    """Logits (len(times), N, H, W, classes) read out of the ODE state at each time.

    The head is applied to the state h(t) at each t in `times` (within [0, t1]); at t1 this
    is the model's own output. `method` and `steps` override the block's solver (e.g. a
    fixed grid, to see what a cheaper solve gives); the default is the block's own.
    """
    encoder, block, decoder = _split(model)
    states = block.solve(encoder(images, training=False), times, method=method, steps=steps)
    out = []
    for k in range(len(times)):
        state = [s[k] for s in states]
        out.append(np.asarray(main_logits(decoder(state, training=False))))
    return np.stack(out)


def miou_over_time(
    model: keras.Model,
    batches: Iterable,
    times: Sequence[float],
    num_classes: int,
    method: str | None = None,
    steps: int | None = None,
) -> list[float]:
    """Mean IoU of the read-out at each solve time over (images, labels) batches; labels
    outside [0, num_classes) are ignored (Fig. 4 plots 100 minus these, in percent)."""
    totals = np.zeros((len(times), num_classes, num_classes), np.int64)
    for images, labels in batches:
        logits = trajectory_logits(model, np.asarray(images), times, method, steps)
        for k, y in enumerate(logits):
            totals[k] += confusion_matrix(labels, y.argmax(-1), num_classes).numpy()
    return [mean_iou(c) for c in totals]


def plot_miou_over_time(times: Sequence[float], mious: Sequence[float], path: str) -> str:
    """Fig. 4 as a PNG: mean IoU error (100 - mIoU, percent) against the solve time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    ax.plot(list(times), [100 * (1 - m) for m in mious], marker="o")
    ax.set_xlabel("solve time t")
    ax.set_ylabel("mean IoU error (%)")
    ax.set_title("SegNode trajectory read-out")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
