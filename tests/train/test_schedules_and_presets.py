"""Poly schedule against its closed form; presets carry the paper's numbers."""

import keras
import pytest

from kseg.train import PRESETS, PolyDecay, preset_for


def test_poly_decay_closed_form_and_round_trip():
    schedule = PolyDecay(0.045, 1000, power=0.98)
    for step in (0, 1, 250, 999, 1000, 5000):
        want = 0.045 * (1 - min(step, 1000) / 1000) ** 0.98
        assert float(schedule(step)) == pytest.approx(want, rel=1e-5, abs=1e-9)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(again(250)) == pytest.approx(float(schedule(250)))


def test_contextnet_preset_is_section_3_1():
    preset = preset_for("contextnet_cn14_500")
    assert preset is PRESETS["contextnet"]
    assert (preset.learning_rate, preset.poly_power, preset.epochs) == (0.045, 0.98, 1000)
    assert (preset.aux_weight, preset.batch_size) == (0.4, 16)
    optimizer = preset.make_optimizer(total_steps=100)
    assert isinstance(optimizer, keras.optimizers.RMSprop)
    assert (optimizer.rho, optimizer.momentum, optimizer.epsilon) == (0.9, 0.9, 1.0)
    assert "section 3.1" in preset.source
    with pytest.raises(ValueError, match="presets exist for models starting with: contextnet"):
        preset_for("pspnet_resnet50")


def test_plateau_callback_resumes_with_the_patience_it_had():
    """Replaying a run's val_accuracy history gives the state Keras' own callback reached
    by living through those epochs (the second path), including after a reduction."""
    import keras

    from kseg.train import ResumableReduceLROnPlateau

    history = [0.5, 0.6, 0.6, 0.55, 0.6, 0.58, 0.7, 0.65]
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    for k in range(len(history) + 1):
        lived = keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max", patience=2)
        lived.set_model(model)
        lived.on_train_begin()
        for epoch, value in enumerate(history[:k]):
            lived.on_epoch_end(epoch, {"val_accuracy": value})
        replayed = ResumableReduceLROnPlateau(
            history=history[:k], monitor="val_accuracy", mode="max", patience=2
        )
        replayed.set_model(model)
        replayed.on_train_begin()
        assert (replayed.best, replayed.wait, replayed.cooldown_counter) == (
            lived.best,
            lived.wait,
            lived.cooldown_counter,
        ), k


def test_ode_nets_preset_is_section_5():
    from kseg.train import preset_for

    for name in ("resnet_gn", "res_ode_net", "ode_only_net"):
        preset = preset_for(name)
        assert (preset.optimizer, preset.learning_rate, preset.momentum) == ("sgd", 0.1, 0.9)
        assert (preset.batch_size, preset.epochs, preset.weight_decay) == (128, 200, 1e-4)
        assert (preset.schedule, preset.plateau_factor, preset.dropout) == ("plateau", 0.1, 0.5)
        optimizer = preset.make_optimizer(total_steps=10)
        assert float(optimizer.learning_rate) == pytest.approx(0.1)
