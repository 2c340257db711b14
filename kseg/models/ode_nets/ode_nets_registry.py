"""Registry entries: the ResNet, Res-ODE Net and ODE-only Net of Carrara et al. 2019."""

from __future__ import annotations

from kseg.models.ode_nets.ode_nets import ODEOnlyNet, ResNetGN, ResODENet
from kseg.models.registry import register_model
from kseg.train.presets import TrainingPreset, register_presets

register_model("resnet_gn", ResNetGN)
register_model("res_ode_net", ResODENet)
register_model("ode_only_net", ODEOnlyNet)

ODE_NETS_PRESET = TrainingPreset(
    name="ode_nets",
    source=(
        "Carrara et al. 2019 (ODE Nets), section 5: 200 epochs, SGD momentum 0.9, batch "
        "128, learning rate 0.1 divided by 10 when it plateaus (the official code: on "
        "test accuracy, patience 10; kseg: on 5,000 held-out training images), weight "
        "decay 1e-4, dropout 0.5"
    ),
    optimizer="sgd",
    learning_rate=0.1,
    poly_power=0.0,
    epochs=200,
    batch_size=128,
    momentum=0.9,
    weight_decay=1e-4,
    schedule="plateau",
    plateau_factor=0.1,
    plateau_patience=10,
    dropout=0.5,
)
register_presets(["resnet_gn", "res_ode_net", "ode_only_net"], ODE_NETS_PRESET)
