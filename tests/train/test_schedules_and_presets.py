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
    default = preset_for("pspnet_resnet50")  # a model without a paper preset
    assert default.name == "default" and default.optimizer == "adamw"


def test_presets_load_from_toml_and_name_a_wrong_field(tmp_path):
    from kseg.train.presets import load_presets

    path = tmp_path / "mine.toml"
    required = 'source = "mine"\noptimizer = "sgd"\npoly_power = 0.9\nepochs = 3\nbatch_size = 2\n'
    arrays = "step_epochs = [1, 2]\ncrop = [64, 96]\n"
    path.write_text(f"[mine]\n{required}learning_rate = 0.1\n{arrays}")
    preset = load_presets(path)["mine"]
    assert (preset.name, preset.learning_rate, preset.weight_decay) == ("mine", 0.1, None)
    assert preset.step_epochs == (1, 2) and preset.crop == (64, 96)  # arrays become tuples
    hash(preset)  # and the frozen preset stays hashable
    path.write_text(f"[mine]\n{required}learning_rat = 0.1\n")
    with pytest.raises(ValueError, match=r"preset \[mine\] has unknown fields \['learning_rat'\]"):
        load_presets(path)
    path.write_text(f"[mine]\n{required}")
    with pytest.raises(ValueError, match=r"preset \[mine\]: .*'learning_rate'"):
        load_presets(path)


def test_every_preset_file_table_is_a_models_preset():
    """Each family's TOML tables are given to its models (none is dead data), as is the
    default preset."""
    from pathlib import Path

    import kseg
    from kseg.train.presets import DEFAULT_PRESET, has_preset, load_presets

    files = sorted(Path(kseg.__file__).parent.glob("models/*/*_training.toml"))
    assert len(files) == 6
    tables = {name: p for f in files for name, p in load_presets(f).items()}
    assert len(tables) == 12
    assert has_preset("segnode")  # the families have registered theirs
    for name, preset in tables.items():
        assert PRESETS[name] == preset, name
    assert DEFAULT_PRESET.name == "default" and "default" not in PRESETS


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


def test_choicenet_presets_are_sections_331_and_332():
    from kseg.train import preset_for

    spe = 7  # steps per epoch
    for name in ("choicenet_30", "choicenet_37", "choicenet_40"):
        preset = preset_for(name)
        assert (preset.optimizer, preset.batch_size, preset.epochs) == ("sgd", 128, 500)
        assert (preset.dropout, preset.validation, preset.augmentation) == (
            0.5,
            "holdout",
            "crop_flip",
        )
        optimizer = preset.make_optimizer(total_steps=500 * spe, steps_per_epoch=spe)
        assert optimizer.nesterov and optimizer.momentum == 0.9
        # 0.001 for 100 epochs, 0.0001 for the next 100, 0.00001 for the final 300
        steps = [0, 100 * spe - 1, 100 * spe, 200 * spe - 1, 200 * spe, 500 * spe]
        for step, want in zip(steps, [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5], strict=True):
            optimizer.iterations.assign(step)
            assert float(optimizer.learning_rate) == pytest.approx(want), step
        with pytest.raises(ValueError, match="steps_per_epoch"):
            preset.make_optimizer(total_steps=10)
    for name in ("choicenet_unet", "res_unet", "dense_unet", "unet"):
        preset = preset_for(name)
        assert preset.name == "choicenet_unet"
        optimizer = preset.make_optimizer(total_steps=300, steps_per_epoch=1)
        assert isinstance(optimizer, keras.optimizers.Adam) and preset.weight_decay == 5e-4
        assert optimizer.weight_decay is None  # coupled L2 (PyTorch's Adam), on the model
        rates = []
        for step in (99, 100, 200):
            optimizer.iterations.assign(step)
            rates.append(float(optimizer.learning_rate))
        assert rates == pytest.approx([1e-3, 1e-4, 1e-5])
    # models share their paper's preset
    assert preset_for("res_ode_net").name == "ode_nets"
    assert preset_for("residual_hrnet").name == "segnode_baseline"


def test_deeplab_presets_are_ikedo_and_hotta_section_4_per_dataset():
    from kseg.train import preset_for

    for name in ("deeplabv3plus_resnet101", "deeplabv3plus_xception65", "cross_cooperative"):
        voc, cityscapes = preset_for(name, "voc"), preset_for(name, "cityscapes")
        assert (voc.optimizer, voc.batch_size, voc.learning_rate) == ("sgd", 6, 0.007)
        assert (cityscapes.batch_size, cityscapes.learning_rate) == (6, 0.035)
        assert voc.crop == voc.eval_crop == (513, 513)  # random crops, centre crops
        assert cityscapes.crop == (768, 768) and cityscapes.eval_crop is None
        assert preset_for(name).name == voc.name  # other datasets: the VOC setting
        optimizer = voc.make_optimizer(total_steps=100)
        optimizer.iterations.assign(50)
        assert float(optimizer.learning_rate) == pytest.approx(0.007 * 0.5**0.9)
        # equation 1: CE(top) + CE(bottom), the mean prediction not trained on
        weights = (voc.main_weight, voc.aux_weight)
        assert weights == ((0.0, 1.0) if name == "cross_cooperative" else (1.0, 0.0))
