"""Base class of kseg's functional segmentation models: input checks live here."""

from __future__ import annotations

import keras


def check_image_shape(shape, multiple: int, channels: int | None, model_name: str) -> None:
    """Raises ValueError unless `shape` is (batch, H, W, C) with H, W multiples of `multiple`.

    Unknown (None) dimensions pass; they are checked when the model is called on data.
    """
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"{model_name} takes a batch of channels-last images (batch, height, width, "
            f"channels); got an input of shape {shape}. Add a batch axis to a single image."
        )
    _, h, w, c = shape
    if channels is not None and c is not None and c != channels:
        raise ValueError(f"{model_name} was built for {channels}-channel images; got {c} channels.")
    bad = [d for d in (h, w) if d is not None and d % multiple]
    if bad:
        fit = tuple(-(-d // multiple) * multiple if d is not None else None for d in (h, w))
        raise ValueError(
            f"{model_name} takes images whose height and width are multiples of {multiple}; "
            f"got {h}x{w}. Resize or pad the image, e.g. to {fit[0]}x{fit[1]}."
        )


class SegmentationModel(keras.Model):
    """A functional model mapping images (N, H, W, C) to per-pixel logits.

    Subclasses build their graph and call `super().__init__(inputs, outputs, ...)`, then set
    `input_multiple`: the number that image height and width must be divisible by. Calling
    the model on an image of another size raises a ValueError that names the allowed sizes.
    """

    input_multiple: int = 1

    def call(self, inputs, training=None, mask=None):
        check_image_shape(inputs.shape, self.input_multiple, self.input_shape[-1], self.name)
        return super().call(inputs, training=training, mask=mask)


@keras.saving.register_keras_serializable(package="kseg")
class GraphSegmentationModel(SegmentationModel):
    """A segmentation model kept as its layer graph, with its `input_multiple`.

    What graph rewrites such as `kseg.export.prune_filters` return: the architecture is no
    longer one a model class can rebuild from its arguments (a pruned ContextNet has
    per-layer channel counts), so the `.keras` file stores the graph itself, like a
    `keras.Model(inputs, outputs)`, plus the input size rule of the original model.

    Args:
        *args, **kwargs: as `keras.Model(inputs, outputs, name=...)`.
        input_multiple: image height and width must be multiples of this.
    """

    def __init__(self, *args, input_multiple: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_multiple = int(input_multiple)

    def get_config(self):
        return {**super().get_config(), "input_multiple": self.input_multiple}
