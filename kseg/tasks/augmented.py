"""Multi-scale and flip evaluation (HRNet's and mmsegmentation's test-time protocol):
the softmax probabilities of each output averaged over the image resized by each scale,
and its mirror, each resized back to the image; a scaled image larger than the window
(the training crop) is covered by overlapping windows whose logits are averaged."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from kseg.predict.standalone import Windows, tiled_prediction


def _outputs(model, x) -> dict:
    out = model(x, training=False)
    return out if isinstance(out, dict) else {"logits": out}


def _padded_logits(model, x: np.ndarray, multiple: int, names) -> dict:
    """Logits of (1, h, w, 3) `x` padded up to `multiple` and cropped back."""
    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (0, -h % multiple), (0, -w % multiple), (0, 0)))
    out = _outputs(model, padded)
    return {n: np.asarray(out[n])[:, :h, :w] for n in names}


def window_logits(model, x: np.ndarray, window, multiple: int, names) -> dict:
    """Logits of (1, h, w, 3) `x`: in one pass when it fits `window` (None: always), else
    averaged over windows of that size every 2/3 of it (`kseg.predict.standalone.
    tiled_prediction`, which `kseg.predict --tile` runs too), each padded up to `multiple`."""
    h, w = x.shape[1:3]
    if window is None or (h <= window[0] and w <= window[1]):
        return _padded_logits(model, x, multiple, names)
    channels = {}

    def run(batch):  # the named outputs side by side, split again below
        out = _outputs(model, batch)
        channels.update({n: out[n].shape[-1] for n in names})
        return np.concatenate([np.asarray(out[n], np.float32) for n in names], axis=-1)

    joined = tiled_prediction(run, x[0], Windows(window, multiple))
    parts = np.split(joined, np.cumsum([channels[n] for n in names])[:-1], axis=-1)
    return {n: part[None] for n, part in zip(names, parts, strict=True)}


def augmented_probabilities(
    model,
    image: np.ndarray,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: tuple[int, int] | None = None,
    multiple: int = 1,
    names: Sequence[str] = ("logits",),
    size: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """{output name: (H, W, classes) softmax probabilities of (H, W, 3) `image`, averaged
    over `scales` (bilinear resizes of the image, relative to `size` when given: LIP's
    473x473) and, with `flip`, their mirrors}."""
    h, w = image.shape[:2]
    base_h, base_w = size or (h, w)
    total, passes = {}, 0
    for scale in scales:
        size = (max(1, round(base_h * scale)), max(1, round(base_w * scale)))
        x = tf.image.resize(image[None].astype(np.float32), size, "bilinear").numpy()
        for flipped in (False, True) if flip else (False,):
            logits = window_logits(model, x[:, :, ::-1] if flipped else x, window, multiple, names)
            for n, v in logits.items():
                p = tf.nn.softmax(v[:, :, ::-1] if flipped else v, axis=-1)
                p = tf.image.resize(p, (h, w), "bilinear").numpy()[0]
                total[n] = total.get(n, 0) + p
            passes += 1
    return {n: v / passes for n, v in total.items()}
