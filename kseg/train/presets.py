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
    optimizer: str  # "rmsprop", "sgd" or "adam"
    learning_rate: float
    poly_power: float
    epochs: int
    batch_size: int
    aux_weight: float = 0.0
    momentum: float = 0.9
    rho: float = 0.9  # RMSprop discounting factor
    epsilon: float = 1e-7
    weight_decay: float | None = None

    def make_optimizer(self, total_steps: int) -> keras.optimizers.Optimizer:
        """The optimiser with the poly schedule over `total_steps` steps."""
        schedule = PolyDecay(self.learning_rate, total_steps, power=self.poly_power)
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
        raise ValueError(f"unknown optimizer {self.optimizer!r}: rmsprop, sgd or adam")


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
}


def preset_for(model_name: str) -> TrainingPreset:
    """The preset of the paper that `model_name` (a registry name) comes from."""
    family = model_name.split("_")[0]
    if family not in PRESETS:
        raise ValueError(
            f"no training preset for {model_name!r}; presets exist for: {', '.join(PRESETS)}"
        )
    return PRESETS[family]
