"""The function that Keras' `fit` and `evaluate` call for each batch, traced as one
`tf.function`.

Keras' TensorFlow trainer traces the step (`train_step`, `test_step`) as one `tf.function`
and calls it from a second one that takes the batch from the iterator
(`keras.src.backend.tensorflow.trainer`, `_make_function`). The outer function exists to
run several steps in one call (`steps_per_execution`). At one step a call it does the same
work as a single function, but TensorFlow traces and instantiates two functions, and every
variable is captured twice. That costs start-up time before the first step.

`one_step_function` is Keras' function for one step a call, without the nesting: it takes
one batch from the iterator, runs the step under the model's distribution strategy and
reduces the logs over the replicas, as Keras does.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras.src.backend.tensorflow.trainer import reduce_per_replica


def set_step_functions(model: keras.Model) -> None:
    """Gives the model `one_step_function`s as its train and test functions, where it has
    none yet (`compile` clears them, as it clears Keras' own) and they stand in for Keras'
    own: one step a call, traced (not eager), and no XLA (Keras compiles only its inner
    function with XLA)."""
    if model.steps_per_execution != 1 or model.run_eagerly or model.jit_compile:
        return
    if model.train_function is None:
        model.train_function = one_step_function(model, model.train_step)
    if model.test_function is None:
        model.test_function = one_step_function(model, model.test_step)


def one_step_function(model: keras.Model, step):
    """A function of an iterator that runs `step` (the model's `train_step` or `test_step`)
    on its next batch and returns the logs, for `model.train_function` or
    `model.test_function`. An exhausted `tf.data` iterator raises `OutOfRangeError` from
    the traced function, which Keras' epoch iterator turns into the end of the epoch."""
    step = model._autoconvert_optionals(step)  # Keras' own: an empty Optional becomes None
    strategy = model.distribute_strategy

    def on_data(data):
        outputs = strategy.run(step, args=(data,))
        return reduce_per_replica(outputs, strategy, reduction="auto")

    @tf.autograph.experimental.do_not_convert
    def on_iterator(iterator):
        return on_data(iterator.get_next())

    on_iterator = tf.function(on_iterator, reduce_retracing=True)
    on_batch = tf.function(tf.autograph.experimental.do_not_convert(on_data), reduce_retracing=True)

    def function(iterator):
        if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
            return on_iterator(iterator)
        # `train_on_batch` and `test_on_batch` pass a Python iterator of one batch
        return on_batch(next(iter(iterator)))

    function.on_iterator = on_iterator  # the traced function, to look into
    return function
