"""What every task shares: compile, the main logits of a model's outputs and the loss
names."""

from __future__ import annotations


def main_logits(outputs):
    """The main logits of a model's outputs (dict outputs carry auxiliary heads too)."""
    return outputs["logits"] if isinstance(outputs, dict) else outputs


def output_names(model) -> list[str] | None:
    """Names of a dict-output model's outputs ("logits" first), None for one output."""
    out = model.output
    if isinstance(out, dict):
        return ["logits", *sorted(k for k in out if k != "logits")]
    return None


# `--loss`: the training loss of either task, and the segmentation task's Dice losses.
LOSSES = ("cross_entropy", "focal", "ohem")
DICE_LOSSES = ("dice", "cross_entropy_dice")


class Task:
    """A kind of model's training contract. Subclasses say which loss and metrics each
    output gets (`losses`, `metrics`); compile is the same for every task."""

    name = ""
    loss_names = LOSSES  # what `--loss` may name
    precise_bn = False  # re-estimate BatchNorm statistics before each validation
    ignore_label: int | None = None  # the label value the loss leaves out

    def compile(
        self,
        model,
        preset,
        num_classes: int,
        total_steps: int,
        steps_per_epoch: int | None = None,
        loss: str | None = None,
        class_weights: bool = True,
    ):
        """The task's losses and metrics for `num_classes` (the model's output channels;
        another number is a ValueError) with `loss` (one of `LOSSES`; None: the preset's,
        with its class weights unless `class_weights` is False), and the preset's
        optimiser and schedule over `total_steps` (`steps_per_epoch` for step schedules),
        with its weight decay (coupled L2 on the weights, `apply_weight_decay`, or the
        optimiser's decoupled decay for AdamW)."""
        from kseg.train.presets import apply_weight_decay

        outputs = main_logits(model.output).shape[-1]
        if outputs != num_classes:  # the metrics would count classes the model has not
            raise ValueError(
                f"{model.name} outputs {outputs} classes, and compile was given "
                f"num_classes={num_classes}: build the model with num_classes={num_classes} "
                f"or compile with {outputs}"
            )
        apply_weight_decay(model, preset)
        model.compile(
            optimizer=preset.make_optimizer(total_steps, steps_per_epoch),
            **self.losses(
                model,
                preset,
                loss or preset.loss,
                preset.class_weights if class_weights else None,
            ),
            metrics=self.metrics(model, num_classes),
            jit_compile=False,
        )
        return model

    def losses(self, model, preset, loss: str, class_weights=None) -> dict:
        """`loss` (one of `LOSSES`, with `ignore_label` and `class_weights`) for
        `model.compile`; a task whose models have several outputs adds `loss_weights`."""
        from kseg.tasks.losses import make_loss

        return {"loss": make_loss(loss, self.ignore_label, class_weights)}

    def metrics(self, model, num_classes: int):
        raise NotImplementedError
