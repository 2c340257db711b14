"""ODEBlock and ConcatConv2D: a Keras layer around odeint."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kseg.ode import ConcatConv2D, ODEBlock, SolverConfig, odeint


@keras.saving.register_keras_serializable(package="kseg_tests")
class ConvFunc(keras.layers.Layer):
    """GroupNorm-ReLU-ConcatConv twice: the derivative shape of Carrara et al.'s ODE nets."""

    def __init__(self, channels=8, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.norm1 = keras.layers.GroupNormalization(2)
        self.conv1 = ConcatConv2D(channels, 3)
        self.norm2 = keras.layers.GroupNormalization(2)
        self.conv2 = ConcatConv2D(channels, 3)

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.conv1.build(input_shape)
        self.norm2.build(input_shape)
        self.conv2.build(input_shape)

    def call(self, inputs, t=0.0):
        x = self.conv1(tf.nn.relu(self.norm1(inputs)), t=t)
        return self.conv2(tf.nn.relu(self.norm2(x)), t=t)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def _model(func=None, **solver):
    """An ODE block (derivative `func`, default `ConvFunc(8)`) on 8x8x8 inputs, pooled and
    classified into 3 classes."""
    inputs = keras.Input((8, 8, 8))
    x = ODEBlock(func or ConvFunc(8), name="ode", solver=solver)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def _data(n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 8)).astype("float32"), rng.integers(0, 3, n)


def test_linear_derivative_matches_closed_form():
    dense = keras.layers.Dense(2, use_bias=False)
    dense.build((None, 2))
    dense.set_weights([np.array([[0.0, 1.0], [-1.0, 0.0]], "float32")])  # rotation
    block = ODEBlock(dense, t1=1.0, solver={"rtol": 1e-6, "atol": 1e-6})
    y = block(np.array([[1.0, 0.0]], "float32"))
    np.testing.assert_allclose(y, [[np.cos(1.0), np.sin(1.0)]], atol=1e-5)


def test_solve_returns_the_trajectory_at_any_times():
    """Rotation: y(t) = (cos t, sin t) at the 21 times of Carrara et al., adaptive and on a
    fixed grid; times not starting at 0 and out-of-range times."""
    dense = keras.layers.Dense(2, use_bias=False)
    dense.build((None, 2))
    dense.set_weights([np.array([[0.0, 1.0], [-1.0, 0.0]], "float32")])
    block = ODEBlock(dense, t1=1.0, solver={"rtol": 1e-6, "atol": 1e-6})
    times = np.arange(21) * 0.05
    want = np.stack([np.cos(times), np.sin(times)], -1)[:, None]
    y0 = np.array([[1.0, 0.0]], "float32")
    np.testing.assert_allclose(block.solve(y0, times), want, atol=1e-5)
    np.testing.assert_allclose(block.solve(y0, times, method="rk4", steps=40), want, atol=1e-6)
    np.testing.assert_allclose(block.solve(y0, [0.5]), want[10:11], atol=1e-5)
    with pytest.raises(ValueError, match="strictly increasing within"):
        block.solve(y0, [0.5, 1.5])
    # 20 steps on 21 evenly spaced times is one step per interval, also when the times
    # arrive as float32 (0.6 - 0.55 = 0.05000001 once must not become two steps).
    for t in (list(times), tf.constant(times, tf.float32)):
        _, info = odeint(lambda t, y: -y, y0, t, method="euler", options={"steps": 20},
                         return_info=True)  # fmt: skip
        assert int(info.accepted) == 20


def test_gradients_reach_every_weight_of_a_conv_derivative():
    model = _model()
    x, _ = _data(2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) ** 2)
    grads = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None and np.any(g) for g in grads)
    assert model.get_layer("ode").nfe.numpy() > 0


def test_fit_in_graph_mode_and_nfe_is_logged():
    model = _model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    block = model.get_layer("ode")
    nfe, accepted, rejected = (
        float(w.numpy()) for w in (block.nfe, block.accepted_steps, block.rejected_steps)
    )
    assert accepted >= 1 and rejected >= 0
    assert nfe == 2 + 6 * (accepted + rejected)  # f(t0, y0), first-step rule, 6 per step


def test_keras_round_trip(tmp_path):
    model = _model(method="rk4", steps=4)
    x, _ = _data(2)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-6)
    assert loaded.get_layer("ode").solver == SolverConfig("rk4", steps=4)


def test_return_times_gives_the_trajectory():
    func = ConvFunc(8)
    block = ODEBlock(func, return_times=[0.0, 0.25, 1.0], solver={"method": "rk4", "steps": 8})
    x, _ = _data(2)
    traj = block(x)
    assert traj.shape == (2, 3, 8, 8, 8)
    np.testing.assert_allclose(traj[:, 0], x, atol=1e-6)
    final = ODEBlock(func, solver={"method": "rk4", "steps": 8})(x)
    np.testing.assert_allclose(traj[:, -1], final, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="strictly increasing"):
        ODEBlock(func, return_times=[0.5, 0.2])


def test_set_solver_switches_to_a_fixed_grid_close_to_the_adaptive_solve():
    func = ConvFunc(8)
    block = ODEBlock(func, solver={"rtol": 1e-6, "atol": 1e-6})
    x, _ = _data(2)
    reference = block(x).numpy()
    errors = []
    for steps, tol in ((2, 1e-2), (16, 1e-3)):
        block.set_solver("rk4", steps=steps)
        errors.append(abs(block(x).numpy() - reference).max())
        assert errors[-1] < tol
        assert block.nfe.numpy() == 4 * steps
    assert errors[1] < errors[0] / 10  # float32 and the reference's own error limit the rest
    with pytest.raises(ValueError, match="choose one of"):
        block.set_solver("ode45")


def test_concat_conv_sees_time():
    conv = ConcatConv2D(4, 3)
    x = np.ones((1, 5, 5, 3), "float32")
    a, b = conv(x, t=0.0), conv(x, t=1.0)
    kernel_t = conv.conv.kernel.numpy()[:, :, 0, :]  # the t channel's weights (first input)
    np.testing.assert_allclose((b - a)[0, 2, 2], kernel_t.sum(axis=(0, 1)), rtol=1e-5)
    assert conv.conv.kernel.shape == (3, 3, 4, 4)


def test_fixed_grid_block_equals_odeint():
    func = ConvFunc(8)
    x, _ = _data(1)
    block = ODEBlock(func, solver=SolverConfig("midpoint", steps=5))
    want = odeint(
        lambda t, y: func(y, t=t),
        tf.constant(x),
        [0.0, 1.0],
        method="midpoint",
        options={"steps": 5},
    )[-1]
    np.testing.assert_allclose(block(x), want, rtol=1e-6, atol=1e-6)


def test_nfe_logger_puts_evaluations_in_the_history():
    from kseg.ode import NFELogger

    model = _model(method="rk4", steps=3)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[NFELogger()])
    assert history.history["ode_nfe"] == [12.0, 12.0]  # rk4: 4 evaluations x 3 steps
    assert history.history["ode_accepted"] == [3.0, 3.0]
    assert history.history["ode_rejected"] == [0.0, 0.0]


def test_per_sample_nfe_differs_between_easy_and_hard_images():
    dense = keras.layers.Dense(2, use_bias=False)
    dense.build((None, 2))
    dense.set_weights([np.array([[-1.0, 0.0], [0.0, -1.0]], "float32")])  # dy/dt = -y
    block = ODEBlock(dense, solver={"rtol": 1e-6, "atol": 1e-6})
    counts = block.per_sample_nfe(np.array([[1e-3, -1e-3], [50.0, -50.0]], "float32"))
    # The small state's error is measured against atol, 1000 times its size: fewer steps.
    assert counts[0] < counts[1]


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_jit_compile_trains(method):
    """XLA compiles the solve and its gradient (kseg's adjoint for dopri5); the derivative
    is one ConcatConv2D, since XLA's compile time grows with the function (ConvFunc's
    four layers took three times as long)."""
    grid = {"steps": 2} if method == "rk4" else {}
    model = _model(ConcatConv2D(8, 3), method=method, **grid)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss, jit_compile=True)
    x, y = _data(4)
    eager = float(loss(y, model(x)))
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0).history["loss"]
    # one batch an epoch: the first epoch's loss is the compiled forward at the initial
    # weights, the second the loss after one compiled gradient step
    np.testing.assert_allclose(history[0], eager, rtol=1e-5)
    assert history[1] < history[0]


def test_fixed_grid_block_converts_to_builtin_tflite(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((8, 8, 8), batch_size=1)
    model = keras.Model(inputs, ODEBlock(ConvFunc(8), solver=SolverConfig("rk4", steps=3))(inputs))
    x, _ = _data(1)
    model.export(str(tmp_path / "sm"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Select TF ops
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model(x), rtol=1e-5, atol=1e-5)


class _CountingFunc(keras.layers.Layer):
    """dy/dt = -y, counting how often its Python `call` runs (once per trace when traced)."""

    runs = 0

    def call(self, y):
        _CountingFunc.runs += 1
        return -y


@pytest.mark.parametrize(
    ("solver", "runs_per_call"),
    [({"method": "rk4", "steps": 4}, 0), ({"method": "dopri5"}, 0),
     ({"method": "euler", "steps": 1}, 1)],
)  # fmt: skip
def test_the_derivative_is_traced_once_for_the_blocks_life(solver, runs_per_call):
    """Run eagerly, rk4 x 4 used to run the layer's Python 16 times a call, and an adaptive
    solve traced a new function every call. Now the derivative is one tf.function, traced
    once per shape, however many calls and solver changes; a single Euler step calls the
    layer directly (a function would only add its tracing)."""
    _CountingFunc.runs = 0
    block = ODEBlock(_CountingFunc(name="counting"), t1=0.1, solver=solver)
    x = np.ones((2, 3), "float32")
    tolerance = 0.01 if solver["method"] == "euler" else 1e-4  # 0.9 against exp(-0.1)
    np.testing.assert_allclose(block(x), np.exp(-0.1) * x, rtol=tolerance, atol=0)
    assert _CountingFunc.runs == 1
    block(x)
    if runs_per_call == 0:
        block.set_solver(rtol=1e-4, steps=2 if "steps" in solver else None)
    block(x)
    assert _CountingFunc.runs == 1 + 2 * runs_per_call
    block(np.ones((4, 3), "float32"))  # another shape: one more trace, or one more call
    assert _CountingFunc.runs == 2 + 2 * runs_per_call
