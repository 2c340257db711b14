"""Gradient accumulation (`--accumulate N`): each training step's batch run in N pieces,
one after another, their gradients summed into one optimiser update.

A paper's batch (HRNet's 12 crops of 512x1024, SegNode's 16) may not fit one GPU. In
pieces, a step holds the activations of one piece at a time. Each piece's loss is weighted
by its share of the batch's images, so for a loss that is a mean over images (Keras'
cross-entropy of an ignore-free batch, focal loss) the update is the whole batch's, up to
float rounding; weight decay, added to each piece's loss, counts once. The learning rate
schedule, the steps of an epoch and the logged loss and metrics are the batch's.

What differs, as with mmsegmentation's `accumulative_counts` and timm's
`--grad-accum-steps`:
- batch normalisation normalises each piece by its own statistics and updates its moving
  averages once a piece, as on a smaller batch;
- a loss over the batch's pixels (cross-entropy with ignored pixels, OHEM, Dice, class
  weights as HRNet weighs them) is taken over each piece's pixels, and the pieces' values
  are averaged by their images.

The pieces run in a `tf.while_loop` of one iteration at a time, so TensorFlow cannot run
two pieces side by side and hold both their activations. The update comes after the loop,
once: under a distribution strategy the summed gradients are all-reduced once a step.
Synchronised batch norm cannot run in the loop (TensorFlow allows no all-reduce inside
one); written out one piece after another instead, the step took more memory than the
whole batch (bench/RESULTS.md, "accumulate"), so it is refused.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras.src import tree
from keras.src.losses import loss as loss_module
from keras.src.trainers.data_adapters import data_adapter_utils


def accumulating_train_step(model: keras.Model, pieces: int):
    """A `train_step` for `model` (a Keras TensorFlow trainer, compiled) that splits each
    batch into `pieces` of (nearly) equal size and sums their gradients, weighted by their
    share of the batch, into one update. A model with synchronised batch norm is a
    ValueError (see the module's note)."""
    from kseg.train.precise_bn import batch_norm_layers

    if any(getattr(layer, "synchronized", False) for layer in batch_norm_layers(model)):
        raise ValueError(
            "batch norm synchronised over replicas cannot run in the pieces' loop: "
            "accumulate with it off (--sync-bn off)"
        )

    def train_step(data):
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        first = next(t for t in tree.flatten(x) if t is not None)
        batch = tf.shape(first)[0]
        count = tf.minimum(batch, pieces)  # no empty piece when the batch is smaller
        # A known batch that divides gives the pieces a known size: Keras' per-output loss
        # trackers weigh each update by it.
        static = first.shape[0]
        known = static // pieces if static and static % pieces == 0 else None
        weights = model.trainable_weights

        def piece(i, sums):
            start, stop = i * batch // count, (i + 1) * batch // count

            def part(t):
                if t is None:
                    return None
                cut = t[start:stop]
                return tf.ensure_shape(cut, [known, *cut.shape[1:]]) if known else cut

            xi, yi, wi = tree.map_structure(part, (x, y, sample_weight), none_is_leaf=True)
            n = stop - start
            with tf.GradientTape() as tape:
                y_pred = model(xi, training=True)
                loss = model._compute_loss(
                    x=xi, y=yi, y_pred=y_pred, sample_weight=wi, training=True
                )
                model._loss_tracker.update_state(
                    loss_module.unscale_loss_for_distribution(loss), sample_weight=n
                )
                loss = model.optimizer.scale_loss(loss)
            grads = tape.gradient(loss, weights)
            model.compute_metrics(xi, yi, y_pred, sample_weight=wi)
            share = tf.cast(n, tf.float32) / tf.cast(batch, tf.float32)
            summed = [
                s if g is None else s + tf.cast(g, s.dtype) * tf.cast(share, s.dtype)
                for s, g in zip(sums, grads, strict=True)
            ]
            return i + 1, summed

        zeros = [tf.zeros(w.shape, w.dtype) for w in weights]
        _, sums = tf.while_loop(
            lambda i, _: i < count, piece, (tf.constant(0), zeros), parallel_iterations=1
        )
        model.optimizer.apply_gradients(zip(sums, weights, strict=True))
        return model.get_metrics_result()

    return train_step
