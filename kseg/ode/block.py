"""`ODEBlock`: a Keras layer whose output is the solution of dy/dt = func(t, y), y(0) = x."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

import keras
import tensorflow as tf
from keras.src.models.functional import Functional

from kseg.layers.norm import trace_state
from kseg.layers.recompute import call_functional, recomputes
from kseg.ode.config import SolverConfig, upgrade_config
from kseg.ode.odeint import odeint
from kseg.ode.solvers import get_solver


@keras.saving.register_keras_serializable(package="kseg")
class ODEBlock(keras.layers.Layer):
    """Neural-ODE block (Chen et al. 2018): integrates a Keras layer as a derivative.

    The derivative `func` maps a state to its time derivative with the same shape (a
    state may be a list of tensors, e.g. SegNode's four streams); if its
    `call` takes a `t` argument it receives the time (see `ConcatConv2D`). Adaptive methods
    (dopri5, bdf) train with the adjoint method, so memory does not grow with the
    number of steps; fixed-grid methods (euler, midpoint, heun, rk4) unroll `steps`
    steps into plain ops, which is how ODE models export to TFLite, and train by
    back-propagation through them or by the adjoint on their grid (`SolverConfig.gradient`).

    After each call, the non-trainable weights `nfe`, `accepted_steps` and `rejected_steps`
    hold that call's function evaluations and steps (for a batch, shared by its images; -1
    where the method does not report them, see `kseg.ode.SolveInfo`), and after each
    differentiation `backward_nfe`, `backward_accepted_steps` and `backward_rejected_steps`
    those of the backward pass (kseg's adjoint, the aca and the checkpoint gradients;
    evaluations with their VJPs). `set_solver` switches a trained block to other tolerances
    or to a fixed grid without retraining (SegNode section 4.8); re-trace compiled functions
    afterwards (e.g. `model.compile(...)` again).

    Args:
        func: Keras layer or model, the derivative.
        t1: end time of the integration, which starts at 0.
        solver: a `kseg.ode.SolverConfig` (or a dict of its fields): method, tolerances,
            fixed-grid steps, step limit and gradient; None takes its defaults (dopri5 at
            rtol = atol = 1e-3, trained with kseg's adjoint).
        return_times: increasing times in [0, t1]; if given, the output is the trajectory
            at those times with a time axis after the batch axis, (batch, T, ...).

    Example:
        >>> func = keras.Sequential([keras.layers.Conv2D(8, 3, padding="same")])
        >>> block = ODEBlock(func, solver=SolverConfig("rk4", steps=4))
        >>> block(np.zeros((2, 16, 16, 8), "float32")).shape
        TensorShape([2, 16, 16, 8])
    """

    def __init__(
        self,
        func: keras.layers.Layer,
        t1: float = 1.0,
        solver: SolverConfig | dict | None = None,
        return_times: Sequence[float] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.func = func
        self.t1 = float(t1)
        self.return_times = None if return_times is None else [float(t) for t in return_times]
        self.solver = SolverConfig.of(solver)
        if self.return_times is not None:
            rt = self.return_times
            if (
                not rt
                or rt[0] < 0
                or rt[-1] > self.t1
                or any(b <= a for a, b in zip(rt, rt[1:], strict=False))
            ):
                raise ValueError(
                    f"return_times must be strictly increasing within [0, t1={self.t1}], got {rt}"
                )
        self._takes_t = "t" in inspect.signature(func.call).parameters

    # Whether a call writes its solve's counts to `nfe`, `accepted_steps` and
    # `rejected_steps`. The export turns it off (`kseg.export.ode.without_counts`): traced into
    # an exported graph, the writes are resource variables, and a TFLite file with them
    # has a second subgraph (their initialiser), which MediaPipe's segmenter refuses.
    record_counts = True

    def set_solver(self, *args, **kwargs) -> None:
        """Changes the solver used from the next call on; takes the arguments of
        `SolverConfig.with_changes` (method, rtol, atol, steps, gradient, first_step): None
        keeps a setting, except that a new method without a gradient takes its default one."""
        self.solver = self.solver.with_changes(*args, **kwargs)

    # The solver's settings, read-only; `set_solver` or `solver` change them.
    method = property(lambda self: self.solver.method)
    rtol = property(lambda self: self.solver.rtol)
    atol = property(lambda self: self.solver.atol)
    steps = property(lambda self: self.solver.steps)
    max_num_steps = property(lambda self: self.solver.max_num_steps)
    gradient = property(lambda self: self.solver.gradient)
    first_step = property(lambda self: self.solver.first_step)

    def build(self, input_shape):
        if not self.func.built:
            self.func.build(input_shape)
        self.nfe, self.accepted_steps, self.rejected_steps = (
            self.add_weight(shape=(), initializer="zeros", trainable=False, dtype="float32", name=n)
            for n in ("nfe", "accepted_steps", "rejected_steps")
        )
        self.backward_nfe, self.backward_accepted_steps, self.backward_rejected_steps = (
            self.add_weight(shape=(), initializer="zeros", trainable=False, dtype="float32", name=n)
            for n in ("backward_nfe", "backward_accepted_steps", "backward_rejected_steps")
        )

    def load_own_variables(self, store):
        # Files saved before the backward counters existed hold the three forward ones.
        if len(store.keys()) == 3:
            for i, weight in enumerate((self.nfe, self.accepted_steps, self.rejected_steps)):
                weight.assign(store[f"{i}"])
            return
        super().load_own_variables(store)

    def _record_backward(self, info) -> None:
        for weight, count in zip(
            (self.backward_nfe, self.backward_accepted_steps, self.backward_rejected_steps),
            info,
            strict=True,
        ):
            weight.assign(tf.cast(count, weight.dtype))

    def _derivative(self, t, y, training=None):
        if self._takes_t:
            return self.func(y, t=t, training=training)
        if recomputes(training) and isinstance(self.func, Functional):
            return call_functional(self.func, y, training=training)
        return self.func(y, training=training)

    def _solve_derivative(self, solver: SolverConfig, times: list[float], training=None):
        """The derivative a solve on `times` calls: `_derivative` as a tf.function, one per
        `training` value, kept for the block's life, unless the solve evaluates it once.

        A solve calls the derivative at many places: an adaptive one at about ten in the
        graph (the stages, the first-step rule, the backward pass), a fixed grid at every
        stage of every step, unrolled. Traced once, it is called at each: start-up time
        saved in a traced step (bench/RESULTS.md), and when the model runs eagerly, one
        graph call an evaluation instead of Keras' layers one by one. Kept across calls, it
        is traced once per state shape instead of once per call; the solver does not enter
        it, so `set_solver` keeps it. A single evaluation (one Euler step) gains nothing
        and would pay for the function's own tracing, about a second at SegNode's size.
        It is kept per value of what a trace reads besides the state's shape: `training`,
        whether the norm -> ReLU -> conv chains recompute (`kseg.layers.recompute`), and
        the derivative's batch norms' Python state (`kseg.layers.norm.trace_state`:
        PreciseBN averages their calls)."""
        derivative = functools.partial(self._derivative, training=training)
        once = not solver.adaptive and len(times) == 2 and solver.steps == 1
        if once and get_solver(solver.method).evaluations == 1:
            return derivative
        if (
            not isinstance(training, bool | None)  # a symbolic flag
            or tf.distribute.get_strategy().num_replicas_in_sync > 1  # each its variables
        ):
            return tf.function(derivative, autograph=False)  # traced for this call alone
        # Set past Keras' attribute tracking, which has no use for functions.
        cache = self.__dict__.setdefault("_derivatives", {})
        if "_func_norms" not in self.__dict__:
            self.__dict__["_func_norms"] = [
                layer
                for layer in self.func._flatten_layers(include_self=True)
                if isinstance(layer, keras.layers.BatchNormalization)
            ]
        key = (training, recomputes(training), trace_state(self.__dict__["_func_norms"]))
        if key not in cache:
            cache[key] = tf.function(derivative, autograph=False)
        return cache[key]

    @staticmethod
    def _odeint(derivative, inputs, times, solver: SolverConfig, **extra):
        """`odeint` with `solver`'s settings, in float32 when `inputs` are half precision
        (a mixed-precision policy): the states, step sizes, error control and the
        gradients' sums stay float32, and only the derivative's layers compute in half
        precision, their outputs cast to float32: the default tolerance, 1e-3, is the
        rounding of a float16 state and a quarter of a bfloat16 one's. The states come
        back in the inputs' dtype."""
        half = tf.nest.flatten(inputs)[0].dtype
        if half not in (tf.float16, tf.bfloat16):
            return ODEBlock._odeint_with(derivative, inputs, times, solver, **extra)
        to32 = functools.partial(tf.nest.map_structure, lambda v: tf.cast(v, tf.float32))
        out = ODEBlock._odeint_with(
            lambda t, y: to32(derivative(t, y)), to32(inputs), times, solver, **extra
        )
        states, *info = out if extra.get("return_info") else (out,)
        states = tf.nest.map_structure(lambda v: tf.cast(v, half), states)
        return (states, *info) if info else states

    @staticmethod
    def _odeint_with(derivative, inputs, times, solver: SolverConfig, **extra):
        """`odeint` with `solver`'s settings, in the inputs' dtype."""
        return odeint(
            derivative,
            inputs,
            times,
            method=solver.method,
            rtol=solver.rtol,
            atol=solver.atol,
            gradient=solver.gradient,
            max_num_steps=solver.max_num_steps,
            options=solver.options(),
            **extra,
        )

    def _times(self) -> list[float]:
        if self.return_times is None:
            return [0.0, self.t1]
        return self.return_times if self.return_times[0] == 0 else [0.0, *self.return_times]

    def call(self, inputs, training=None):
        # The adjoint's backward solve runs outside this call: it must see the same
        # `training` (batch statistics in batch norm) as the forward solve.
        times = self._times()
        final_only = self.return_times is None
        # Without counts (an export's trace) the gradient writes none either: a SavedModel
        # cannot hold a gradient function that writes a variable.
        record_backward = self._record_backward if self.record_counts else None
        states, info = self._odeint(
            self._solve_derivative(self.solver, times, training), inputs, times, self.solver,
            return_info=True, on_backward=record_backward, final_only=final_only,
        )  # fmt: skip
        if self.record_counts:
            for weight, count in zip(
                (self.nfe, self.accepted_steps, self.rejected_steps), info, strict=True
            ):
                weight.assign(tf.cast(count, weight.dtype))
        if final_only:
            return states
        skip = 0 if self.return_times[0] == 0 else 1

        def batch_first(s):
            return tf.transpose(s[skip:], [1, 0, *range(2, len(s.shape))])

        return tf.nest.map_structure(batch_first, states)

    def solve(
        self,
        inputs,
        times: Sequence[float],
        method: str | None = None,
        steps: int | None = None,
    ):
        """The state at each of `times` (increasing, within [0, t1]) from y(0) = `inputs`.

        Each tensor of the state gets a leading time axis, (len(times), batch, ...): the
        trajectory z(t) that Carrara et al. read features from and SegNode's read-out
        decodes. `method` and `steps` override the block's solver for this call only.
        """
        times = [float(t) for t in times]
        if (
            not times
            or times[0] < 0
            or times[-1] > self.t1 + 1e-9
            or any(b <= a for a, b in zip(times, times[1:], strict=False))
        ):
            raise ValueError(
                f"times must be strictly increasing within [0, t1={self.t1}], got {times}"
            )
        solver = self.solver.with_changes(method, steps=steps)
        grid = times if times[0] == 0 else [0.0, *times]
        states = self._odeint(self._solve_derivative(solver, grid), inputs, grid, solver)
        first = len(grid) - len(times)
        return tf.nest.map_structure(lambda s: s[first:], states)

    def per_sample_stats(self, images) -> dict[str, list[int]]:
        """Function evaluations, accepted and rejected steps of each image solved alone.

        In a batch, an adaptive solver takes the steps its hardest image needs; these are
        the per-image counts of Carrara et al. (Table 1 mean and deviation, Fig. 1).
        `images` are the block's input states; one compiled solve runs per image.
        """

        @tf.function(reduce_retracing=True)
        def solve_one(x):
            self(x)
            return [tf.identity(w) for w in (self.nfe, self.accepted_steps, self.rejected_steps)]

        stats = {"nfe": [], "accepted_steps": [], "rejected_steps": []}
        for i in range(len(images)):
            counts = solve_one(tf.convert_to_tensor(images[i : i + 1]))
            for key, count in zip(stats, counts, strict=True):
                stats[key].append(int(count.numpy()))
        return stats

    def per_sample_nfe(self, images) -> list[int]:
        """Function evaluations that each image needs when solved alone."""
        return self.per_sample_stats(images)["nfe"]

    def compute_output_shape(self, input_shape):
        if _is_shape(input_shape):
            if self.return_times is None:
                return tuple(input_shape)
            return (input_shape[0], len(self.return_times), *input_shape[1:])
        return [self.compute_output_shape(s) for s in input_shape]

    def get_config(self):
        return {
            **super().get_config(),
            "func": keras.saving.serialize_keras_object(self.func),
            "t1": self.t1,
            "solver": self.solver.to_dict(),
            "return_times": self.return_times,
        }

    @classmethod
    def from_config(cls, config):
        config = upgrade_config(config)  # files saved before SolverConfig
        config["func"] = keras.saving.deserialize_keras_object(config["func"])
        return cls(**config)


def _is_shape(shape) -> bool:
    """True for one tensor's shape, False for a list of shapes (a nested state)."""
    return all(d is None or isinstance(d, int) for d in shape)


@keras.saving.register_keras_serializable(package="kseg")
class ConcatConv2D(keras.layers.Layer):
    """Conv2D that sees the time as an extra constant input channel.

    As `ConcatConv2d` in Carrara et al.'s official code (fabiocarrara/neural-ode-features),
    the t channel is concatenated before the image channels.

    Args:
        filters, kernel_size, strides, padding, use_bias: as for `keras.layers.Conv2D`.

    Example:
        >>> ConcatConv2D(16, 3)(np.zeros((1, 8, 8, 16), "float32"), t=0.5).shape
        TensorShape([1, 8, 8, 16])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        strides: int = 1,
        padding: str = "same",
        use_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.use_bias = use_bias
        self.conv = keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias, name="conv"
        )

    def build(self, input_shape):
        self.conv.build((*input_shape[:-1], input_shape[-1] + 1))

    def call(self, inputs, t=0.0):
        t_channel = tf.ones_like(inputs[..., :1]) * tf.cast(t, inputs.dtype)
        return self.conv(tf.concat([t_channel, inputs], axis=-1))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape((*input_shape[:-1], input_shape[-1] + 1))

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "use_bias": self.use_bias,
        }
