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
