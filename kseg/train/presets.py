"""Each paper's optimiser and schedule, as a named preset that cites its source.

Presets hold what the papers state; `None` marks what a paper leaves open, which the
recipes fill in (the README lists those choices).
"""

from __future__ import annotations

import dataclasses

import keras

from kseg.train.schedules import PolyDecay


@dataclasses.dataclass(frozen=True)
class TrainingPreset:
    name: str
    source: str  # where the paper states these values
    optimizer: str  # "rmsprop", "sgd", "adam" or "adamw"
    learning_rate: float
    poly_power: float
    epochs: int
    batch_size: int
    aux_weight: float = 0.0
    momentum: float = 0.9
    rho: float = 0.9  # RMSprop discounting factor
    epsilon: float = 1e-7
    weight_decay: float | None = None
    # "poly" (PolyDecay over the run) or "plateau": a constant rate that
    # `plateau_callback` divides by 1 / plateau_factor when the validation accuracy stops
    # improving for `plateau_patience` epochs.
    schedule: str = "poly"
    plateau_factor: float = 0.1
    plateau_patience: int = 10
    dropout: float | None = None  # where a paper states it (a model argument)

    def make_optimizer(self, total_steps: int) -> keras.optimizers.Optimizer:
        """The optimiser with its schedule (poly over `total_steps` steps, or plateau)."""
        if self.schedule == "poly":
            schedule = PolyDecay(self.learning_rate, total_steps, power=self.poly_power)
        elif self.schedule == "plateau":
            schedule = self.learning_rate
        else:
            raise ValueError(f"unknown schedule {self.schedule!r}: poly or plateau")
        if self.optimizer == "rmsprop":
            return keras.optimizers.RMSprop(
                schedule,
                rho=self.rho,
                momentum=self.momentum,
                epsilon=self.epsilon,
                weight_decay=self.weight_decay,
            )
        if self.optimizer == "sgd":
            return keras.optimizers.SGD(
                schedule, momentum=self.momentum, weight_decay=self.weight_decay
            )
        if self.optimizer == "adam":
            return keras.optimizers.Adam(schedule, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return keras.optimizers.AdamW(schedule, weight_decay=self.weight_decay)
        raise ValueError(f"unknown optimizer {self.optimizer!r}: rmsprop, sgd, adam or adamw")


PRESETS: dict[str, TrainingPreset] = {
    "contextnet": TrainingPreset(
        name="contextnet",
        source=(
            "Poudel et al. 2018 (ContextNet), section 3.1: RMSprop, discounting 0.9, momentum "
            "0.9, epsilon 1, poly rate 0.045 with power 0.98, up to 1000 epochs; section 2.2.3: "
            "auxiliary loss weight 0.4; section 3: batch size 16"
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
    ),
    "hrnetv2": TrainingPreset(
        name="hrnetv2",
        source=(
            "Wang et al. 2019 (HRNetV2), Cityscapes: SGD, learning rate 0.01, momentum 0.9, "
            "weight decay 5e-4, poly power 0.9, batch 12, 120K iterations (484 epochs of "
            "2975 images); SegNode trains its HRNetV2 row like this"
        ),
        optimizer="sgd",
        learning_rate=0.01,
        poly_power=0.9,
        epochs=484,
        batch_size=12,
        momentum=0.9,
        weight_decay=5e-4,
    ),
    "segnode_baseline": TrainingPreset(
        name="segnode_baseline",
        source=(
            "Khoshsirat & Kambhamettu (SegNode), section 4.1, Baseline network: AdamW, weight "
            "decay 0.05, batch 16, poly power 0.9, learning rate 1e-4; epochs: HRNetV2's 484 "
            "(the paper gives none). U-Node and NODEs-UNet: the paper tuned them without "
            "saying how; kseg trains them with this preset"
        ),
        optimizer="adamw",
        learning_rate=1e-4,
        poly_power=0.9,
        epochs=484,
        batch_size=16,
        weight_decay=0.05,
    ),
    "segnode": TrainingPreset(
        name="segnode",
        source=(
            "Khoshsirat & Kambhamettu (SegNode), section 4.1: SGD, learning rate 0.1, "
            "momentum 0.9, no weight decay, poly power 0.9; batch 16 and 484 epochs are the "
            "Baseline's and HRNetV2's (the paper states none for SegNode)"
        ),
        optimizer="sgd",
        learning_rate=0.1,
        poly_power=0.9,
        epochs=484,
        batch_size=16,
        momentum=0.9,
    ),
    "ode_nets": TrainingPreset(
        name="ode_nets",
        source=(
            "Carrara et al. 2019 (ODE Nets), section 5: 200 epochs, SGD momentum 0.9, batch "
            "128, learning rate 0.1 divided by 10 when it plateaus (the official code: on "
            "test accuracy, patience 10), weight decay 1e-4, dropout 0.5"
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
    ),
}


# The registry name's first word picks the preset.
_FAMILIES = {
    "contextnet": "contextnet",
    "hrnetv2": "hrnetv2",
    "residual": "segnode_baseline",
    "segnode": "segnode",
    "unode": "segnode_baseline",
    "nodes": "segnode_baseline",
    "resnet": "ode_nets",
    "res": "ode_nets",
    "ode": "ode_nets",
}

# HRNet-OCR's auxiliary (soft object region) loss weight, Yuan et al. 2020 section 3.4.
OCR_AUX_WEIGHT = 0.4


def preset_for(model_name: str) -> TrainingPreset:
    """The preset of the paper that `model_name` (a registry name) comes from; OCR
    variants add the auxiliary loss of their soft object regions."""
    family = _FAMILIES.get(model_name.split("_")[0])
    if family is None:
        raise ValueError(
            f"no training preset for {model_name!r}; presets exist for models starting "
            f"with: {', '.join(_FAMILIES)}"
        )
    preset = PRESETS[family]
    if model_name.endswith("_ocr"):
        preset = dataclasses.replace(
            preset,
            aux_weight=OCR_AUX_WEIGHT,
            source=f"{preset.source}; OCR auxiliary loss weight 0.4 (Yuan et al. 2020)",
        )
    return preset
