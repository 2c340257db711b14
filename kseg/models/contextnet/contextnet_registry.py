"""Registry entries of the ContextNet variants (Table 4 of Poudel et al. 2018)."""

from __future__ import annotations

from kseg.models.contextnet.contextnet import ContextNet
from kseg.models.contextnet.contextnet_presets import CONTEXTNET_VARIANTS
from kseg.models.registry import register_model
from kseg.train.presets import TrainingPreset, register_presets

for _variant in CONTEXTNET_VARIANTS:
    register_model(f"contextnet_{_variant}", ContextNet, variant=_variant)

# Section 4's branch analysis (Fig. 2): cn14's context or detail branch alone, the
# classifier on its output.
ABLATIONS = {"contextnet_deep_only": "deep", "contextnet_shallow_only": "shallow"}
for _name, _branch in ABLATIONS.items():
    register_model(_name, ContextNet, variant="cn14", branches=_branch, name=_name)


CONTEXTNET_PRESET = TrainingPreset(
    name="contextnet",
    source=(
        "Poudel et al. 2018 (ContextNet), section 3.1: RMSprop, discounting 0.9, momentum "
        "0.9, epsilon 1, poly rate 0.045 with power 0.98, up to 1000 epochs; section 2.2.3: "
        "auxiliary loss weight 0.4; section 3: batch size 16; section 4: L2 regularisation "
        "of every layer but the depthwise convolutions, at MobileNetV2's 4e-5 (the paper "
        "gives no value)"
    ),
    optimizer="rmsprop",
    learning_rate=0.045,
    poly_power=0.98,
    epochs=1000,
    batch_size=16,
    aux_weight=0.4,
    momentum=0.9,
    rho=0.9,
    epsilon=1.0,
    weight_decay=4e-5,
    decay_scope="kernels",
    decay_depthwise=False,
)
register_presets(
    [f"contextnet_{v}" for v in CONTEXTNET_VARIANTS] + list(ABLATIONS), CONTEXTNET_PRESET
)
