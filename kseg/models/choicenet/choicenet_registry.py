"""Registry entries: ChoiceNet-30, -37 and -40 (Rayhan et al., Table 1)."""

from __future__ import annotations

from kseg.models.choicenet.choicenet import ChoiceNet
from kseg.models.registry import register_model
from kseg.train.presets import TrainingPreset, register_presets

# Growth per preset, set to Table 1's CIFAR-10 parameter counts (see choicenet.py).
WIDTHS = {"choicenet_30": 67, "choicenet_37": 81, "choicenet_40": 90}


for _name, _width in WIDTHS.items():
    register_model(_name, ChoiceNet, name=_name, width=_width)

CHOICENET_PRESET = TrainingPreset(
    name="choicenet",
    source=(
        "Rayhan et al. (ChoiceNet), section 3.3.1: SGD, batch 128, learning rate 0.001 "
        "for 100 epochs, 0.0001 for the next 100 and 0.00001 for the final 300; the "
        "learning parameters of [13, 14] for the rest: Nesterov momentum 0.9, weight "
        "decay 1e-4; section 3.4.1: dropout 0.5; section 3.1: the best epoch on "
        "held-out training images (5,000 of CIFAR, 10% of SVHN)"
    ),
    optimizer="sgd",
    learning_rate=1e-3,
    poly_power=0.0,
    epochs=500,
    batch_size=128,
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-4,
    schedule="step",
    step_epochs=(100, 200),
    step_factor=0.1,
    dropout=0.5,
    validation="holdout",
    augmentation="crop_flip",
)
CHOICENET_UNET_PRESET = TrainingPreset(
    name="choicenet_unet",
    source=(
        "Rayhan et al. (ChoiceNet), section 3.3.2, the U-Nets of Table 4: Adam, "
        "learning rate 0.001 divided by 10 after every 100 epochs, weight decay 5e-4; "
        "300 epochs and batch 4 are kseg's (the paper trains 'until the network "
        "converged' and gives no batch size)"
    ),
    optimizer="adam",
    learning_rate=1e-3,
    poly_power=0.0,
    epochs=300,
    batch_size=4,
    weight_decay=5e-4,
    schedule="step",
    step_epochs=(100, 200),
    step_factor=0.1,
)
register_presets(list(WIDTHS), CHOICENET_PRESET)
