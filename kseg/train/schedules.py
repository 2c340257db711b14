"""Learning-rate schedules."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kseg")
class PolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Poly schedule (Chen et al., DeepLab): lr = base * (1 - step / total) ** power.

    ContextNet section 3.1: base 0.045, power 0.98. After `total_steps` the rate stays at
    `end_learning_rate`.
    """

    def __init__(
        self,
        base_learning_rate: float,
        total_steps: int,
        power: float = 0.9,
        end_learning_rate: float = 0.0,
    ):
        if total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        self.base_learning_rate = float(base_learning_rate)
        self.total_steps = int(total_steps)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)

    def __call__(self, step):
        progress = ops.minimum(ops.cast(step, "float32") / self.total_steps, 1.0)
        decayed = (self.base_learning_rate - self.end_learning_rate) * (
            1.0 - progress
        ) ** self.power
        return decayed + self.end_learning_rate

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "total_steps": self.total_steps,
            "power": self.power,
            "end_learning_rate": self.end_learning_rate,
        }
