"""The training loop shared by every recipe: `fit` with atomic checkpoints, logs,
PreciseBN and a stop on divergence, and resuming from a run folder."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from kseg.errors import TrainingDiverged
from kseg.layers.recompute import recomputing_norm_act
from kseg.tasks.base import main_logits, output_names  # noqa: F401 (kept importable here)
from kseg.train.accumulation import accumulating_train_step
from kseg.train.checkpoints import LOG, AtomicCheckpoint, last_checkpoint, read_state
from kseg.train.graph_optimization import graph_optimization as optimizing_graphs
from kseg.train.precise_bn import PreciseBN
from kseg.train.presets import TrainingPreset
from kseg.train.step_function import set_step_functions
from kseg.train.strategy import is_chief
from kseg.utils.heap import frozen_heap


def _task(model):
    from kseg.tasks import task_for

    return task_for(model)


def monitor_name(model: keras.Model) -> str:
    """The validation score that picks the best checkpoint (the model's task's)."""
    return _task(model).monitor(model)


def with_targets(ds: tf.data.Dataset, model: keras.Model) -> tf.data.Dataset:
    """The dataset with one label per output, as the model's task trains it."""
    return _task(model).targets(ds, model)


def compile_model(
    model: keras.Model,
    preset: TrainingPreset,
    num_classes: int,
    total_steps: int,
    steps_per_epoch: int | None = None,
) -> keras.Model:
    """`kseg.tasks.SegmentationTask().compile`, under its earlier name."""
    from kseg.tasks import SegmentationTask

    return SegmentationTask().compile(model, preset, num_classes, total_steps, steps_per_epoch)


def compile_classifier(
    model: keras.Model,
    preset: TrainingPreset,
    total_steps: int,
    steps_per_epoch: int | None = None,
) -> keras.Model:
    """`kseg.tasks.ClassificationTask().compile`, under its earlier name."""
    from kseg.tasks import ClassificationTask

    classes = model.output.shape[-1]
    return ClassificationTask().compile(model, preset, classes, total_steps, steps_per_epoch)


def evaluate_confusion(model: keras.Model, ds: tf.data.Dataset, num_classes: int) -> np.ndarray:
    """`kseg.tasks.SegmentationTask().evaluate`, under its earlier name."""
    from kseg.tasks import SegmentationTask

    return SegmentationTask().evaluate(model, ds, num_classes)


def predict_labels(model: keras.Model, image: np.ndarray, multiple: int = 1) -> np.ndarray:
    """`kseg.tasks.SegmentationTask().predict`, under its earlier name."""
    from kseg.tasks import SegmentationTask

    return SegmentationTask().predict(model, image, multiple)


def resume_point(folder: str):
    """(model loaded with its optimiser state, epochs done, state) or None."""
    found = last_checkpoint(folder)
    if found is None:
        return None
    path, epoch = found
    model = keras.saving.load_model(path)
    return model, epoch, read_state(folder) or {}


def _build_from_one_replica(model: keras.Model, strategy: tf.distribute.Strategy):
    """Keras' `fit` builds the metrics from the first batch, reduced over the replicas in
    one `strategy.reduce` call on the whole (x, y) structure; MultiWorkerMirroredStrategy
    cannot reduce a structure and fails ("Attempt to convert a value (PerReplica...)").
    This replacement builds from the first local replica's batch: only its shapes count."""

    def build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (
                        strategy.experimental_local_results(v)[0]
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    next(it),
                )
                break
        _build_before_tracing(model, strategy, data_batch)

    return build


def _build_before_tracing(model: keras.Model, strategy, element_spec) -> None:
    """Creates the optimizer's, the metrics' and the losses' variables from the shapes of
    a batch. Without a distribution strategy set at compile time, Keras' TensorFlow trainer
    leaves them to the first training step, and TensorFlow then traces that step twice
    (once creating variables, once without); `fit` traces it once after this."""
    with strategy.scope():
        if not _build_from_outputs(model, element_spec):
            model._symbolic_build(data_batch=element_spec)


def _build_from_outputs(model: keras.Model, element_spec) -> bool:
    """What Keras' `_symbolic_build` builds (the compiled metrics and losses, the
    optimizer's variables), from the shapes of a built functional model's outputs.

    Keras finds the outputs' shapes by running the model and the loss symbolically: for
    HRNetV2 its thousand layers and the L2 terms of its 920 kernels, seconds of start-up
    that the first training step's tracing repeats anyway. A functional model states its
    outputs, and building the metrics and losses needs only their structure, rank and
    channels. Returns False, having built nothing, for any other model."""
    outputs = getattr(model, "outputs", None)
    if not outputs or not all(layer.built for layer in model._flatten_layers()):
        return False
    x, y, _ = keras.utils.unpack_x_y_sample_weight(element_spec)
    batch = keras.tree.flatten(x)[0].shape[0]
    y_true = keras.tree.map_structure(
        lambda spec: None if spec is None else keras.KerasTensor(spec.shape, spec.dtype.name), y
    )
    y_pred = keras.tree.map_structure(
        lambda out: keras.KerasTensor((batch, *out.shape[1:]), out.dtype), model.output
    )
    if model._compile_metrics is not None and not model._compile_metrics.built:
        model._compile_metrics.build(y_true, y_pred)
    if model._compile_loss is not None and not model._compile_loss.built:
        model._compile_loss.build(y_true, y_pred)
    if model.optimizer is not None and not model.optimizer.built:
        _build_optimizer(model.optimizer, model.trainable_variables)
    model._post_build()
    return True


def _build_optimizer(optimizer: keras.optimizers.Optimizer, variables) -> None:
    """`optimizer.build(variables)`, its slot variables' TensorFlow variables all named
    alike.

    Keras names each slot after its weight (`head_classifier_kernel_momentum`), and
    TensorFlow writes that name into the attributes of the op that creates the variable.
    Each creation is then an op TensorFlow's eager runtime has not run before, which it
    sets up anew: hundreds of set-ups before the first training step (bench/RESULTS.md,
    "startup"). Under one name the creations repeat, and are set up once per shape.
    Keras' names and paths, which its files, checkpoints and logs use, are Keras' own;
    only the `tf.Variable`s under the slots share their (unused) name."""

    def one_name(next_creator, **kwargs):
        return next_creator(**{**kwargs, "name": "slot"})

    with tf.variable_creator_scope(one_name):
        optimizer.build(variables)


def _logs_as_vectors(step):
    def wrapped(data):
        return tf.nest.map_structure(lambda v: tf.reshape(v, [-1]), step(data))

    return wrapped


def validation_epochs(epochs: int, every: int) -> int | list[int]:
    """Keras' `validation_freq` for validating every `every` epochs and after the last of
    `epochs` (counted from 1, as Keras counts them here)."""
    if every == 1:
        return 1
    return [e for e in range(1, epochs + 1) if e % every == 0 or e == epochs]


def fit(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    epochs: int,
    folder: str,
    initial_epoch: int = 0,
    state: dict | None = None,
    tensorboard: bool = True,
    verbose: int | str = "auto",
    extra_callbacks: list | None = None,
    precise_bn_batches: int = 8,
    task=None,
    monitor: str | None = None,
    graph_optimization: str = "auto",
    recompute_norm_act: bool = False,
    accumulate: int = 1,
    val_every: int = 1,
) -> keras.callbacks.History:
    """Trains with atomic checkpoints, CSV (appended on resume) and TensorBoard logs.

    `task` (default: the model's) maps labels to the outputs and names the monitored
    score (`monitor` overrides it: the logged validation score that picks best.keras).
    `precise_bn_batches` > 0 re-estimates BatchNorm statistics on that many training
    batches before each validation (see `kseg.train.precise_bn`). Under a multi-worker
    strategy only the chief writes checkpoints and logs. A loss that stops being finite
    (training or validation) ends the run with `TrainingDiverged`; the checkpoints of the
    earlier epochs are kept. `graph_optimization` ("auto", "on", "off") says whether
    Grappler optimises the training and validation steps (`kseg.train.graph_optimization`;
    "auto": only with a GPU). `recompute_norm_act` trains with the batch norm -> ReLU ->
    conv chains recomputing their norm and ReLU in the backward pass instead of keeping
    their output: less memory for a little more time, the same gradients
    (`kseg.layers.recompute`). `accumulate` > 1 runs each batch in that many pieces, their
    gradients summed into one step (`kseg.train.accumulation`). `val_every` > 1 validates
    (and so may replace best.keras) only every that many epochs and after the last one;
    the other epochs' validation scores are None in the history and NA in log.csv."""
    task = task or _task(model)
    strategy = model.distribute_strategy
    chief = is_chief(strategy)
    if chief:
        os.makedirs(folder, exist_ok=True)
    checkpoint = AtomicCheckpoint(
        folder,
        (monitor or task.monitor(model)) if val_ds is not None else None,
        state=state,
        write=chief,
    )
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        *(extra_callbacks or []),
        *([PreciseBN(train_ds, precise_bn_batches)] if precise_bn_batches > 0 else []),
        checkpoint,
    ]
    if chief:
        log = os.path.join(folder, LOG)
        callbacks.append(keras.callbacks.CSVLogger(log, append=initial_epoch > 0))
        if tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(folder, "tensorboard")))
    if accumulate > 1:
        model.train_step = accumulating_train_step(model, accumulate)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        model._maybe_symbolic_build = _build_from_one_replica(model, strategy)
        # Keras reduces each log across workers with MEAN along axis 0, which fails on
        # scalars (tensorflow/tensorflow#72388); as vectors of one they reduce to a scalar.
        model.train_step = _logs_as_vectors(model.train_step)
        model.test_step = _logs_as_vectors(model.test_step)
    train_targets = task.targets(train_ds, model)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _build_before_tracing(model, strategy, train_targets.element_spec)
    set_step_functions(model)
    # frozen_heap: the collector's passes during tracing skip what existed before training
    with (
        optimizing_graphs(graph_optimization),
        recomputing_norm_act(recompute_norm_act),
        frozen_heap(),
    ):
        history = model.fit(
            train_targets,
            validation_data=None if val_ds is None else task.targets(val_ds, model),
            epochs=epochs,
            initial_epoch=initial_epoch,
            validation_freq=validation_epochs(epochs, val_every),
            shuffle=False,  # the pipeline shuffles
            callbacks=callbacks,
            verbose=verbose,
        )
    if checkpoint.diverged:
        epoch, keys = checkpoint.diverged
        found = last_checkpoint(folder)
        kept = f"the last good checkpoint, {found[0]}," if found else "no earlier checkpoint"
        best = os.path.join(folder, "best.keras")
        kept += f" and {best}" if os.path.exists(best) else ""
        raise TrainingDiverged(
            f"training diverged in epoch {epoch + 1}: {', '.join(keys)} not finite. That "
            f"epoch was not saved; {kept} stay as they were. Lower the learning rate "
            "(--learning-rate), check the labels (values at or above the number of classes, "
            "other than 255, are errors), or try another --optimizer."
        )
    return history
