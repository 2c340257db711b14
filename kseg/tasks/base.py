"""What every task shares: the main logits of a model's outputs and the loss names."""

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


# `--loss`: the training loss of either task.
LOSSES = ("cross_entropy", "focal")
