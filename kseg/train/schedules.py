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


def step_schedule(
    learning_rate: float, epochs: tuple[int, ...], factor: float, steps_per_epoch: int
) -> keras.optimizers.schedules.PiecewiseConstantDecay:
    """`learning_rate` times `factor` ** k after the k-th epoch of `epochs` (ChoiceNet's
    0.001 / 0.0001 / 0.00001 at epochs 100 and 200), as a per-step schedule."""
    if list(epochs) != sorted(set(epochs)) or any(e < 1 for e in epochs):
        raise ValueError(f"step epochs must increase and be positive, got {epochs}")
    # The rate at iteration i drives update i + 1, and PiecewiseConstantDecay switches
    # after a boundary: epoch e's last update is at iteration e * steps - 1.
    boundaries = [int(e) * int(steps_per_epoch) - 1 for e in epochs]
    values = [float(learning_rate * factor**k) for k in range(len(epochs) + 1)]
    if not boundaries:
        boundaries, values = [0], values * 2  # a constant rate
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def resume_schedule(optimizer: keras.optimizers.Optimizer, schedule) -> str | None:
    """Gives a resumed run's optimiser `schedule`, this command's (`make_schedule` of its
    epochs, steps per epoch and learning rate), where the checkpoint's schedule differs,
    and says what changed; None where nothing did.

    A checkpoint keeps the schedule of the command that started the run: a poly schedule
    over 100 epochs holds the rate at its end, 0, through any epoch a resumed run adds,
    and a step schedule would step at the old epoch length. A plateau run's rate (a
    number its callback lowers) stays the checkpoint's."""
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return None
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under loss scaling
    saved = optimizer.get_config()["learning_rate"]
    if saved == keras.saving.serialize_keras_object(schedule):
        return None
    step = int(optimizer.iterations.numpy())
    before = float(optimizer.learning_rate)
    optimizer.learning_rate = schedule
    return (
        f"the learning-rate schedule is this command's ({_describe(schedule)}; the "
        f"checkpoint's was {_describe(saved)}): {before:.4g} -> {float(schedule(step)):.4g} "
        f"at step {step}"
    )


def _describe(schedule) -> str:
    """A schedule (or its serialised form, or a fixed rate) in a few words."""
    if isinstance(schedule, (int, float)):
        return f"a fixed {schedule:g}"
    config = schedule["config"] if isinstance(schedule, dict) else schedule.get_config()
    if "total_steps" in config:
        return f"poly from {config['base_learning_rate']:g} over {config['total_steps']} steps"
    if "boundaries" in config:
        return f"steps after {', '.join(str(b + 1) for b in config['boundaries'])}"
    return str(config)


class ResumableReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """`ReduceLROnPlateau` that survives a resume.

    The reduced rate itself is part of the optimiser state in the checkpoint; this callback
    also replays the monitored values of the finished epochs (`history`, from the run's
    `state.json`), so the patience count and the best value continue where they stopped.
    """

    def __init__(self, history: list[float | None] | None = None, **kwargs):
        super().__init__(**kwargs)
        # an epoch without the score (not validated) counts as Keras' callback counts it:
        # not at all
        self.replay = [float(v) for v in history or [] if v is not None]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.replay and self.monitor_op is None:
            self._set_monitor_op()
        for value in self.replay:
            if self.in_cooldown():
                self.cooldown_counter -= 1
                self.wait = 0
            if self._is_improvement(value, self.best):
                self.best, self.wait = value, 0
            elif not self.in_cooldown():
                self.wait += 1
                if self.wait >= self.patience:  # the rate was reduced at this epoch
                    self.cooldown_counter, self.wait = self.cooldown, 0

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.monitor not in logs:  # not validated: not counted
            rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            logs["learning_rate"] = float(rate)  # logged as Keras' callback logs it
            return
        super().on_epoch_end(epoch, logs)
