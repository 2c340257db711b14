"""A model file of any format kseg writes, as one callable: images in, logits out.

`open_model(path)` takes a `.keras` file, a SavedModel folder, a `.tflite` file (fp32,
fp16, dynamic, int8 or int8_io) or an `.onnx` file. Every backend takes float32 images
(N, H, W, 3) in [0, 1] and returns float32 logits (N, H, W, classes). Exported files have
a fixed input size (`input_size`); a Keras model takes any size that is a multiple of
`multiple`.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from kseg.errors import ModelFileError


class Backend:
    """What `kseg.predict` needs of a model."""

    name: str = ""
    input_size: tuple[int, int] | None = None  # fixed (height, width), or None
    multiple: int = 1  # a free size must be a multiple of this

    def __call__(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @functools.cached_property
    def num_classes(self) -> int:
        """The classes the model outputs: its logits' channels on one blank image, where
        the backend cannot read them from the model without a run."""
        height, width = self.input_size or (self.multiple, self.multiple)
        return int(self(np.zeros((1, height, width, 3), np.float32)).shape[-1])


class KerasBackend(Backend):
    """A loaded Keras model (`open_model` loads a `.keras` file into one)."""

    def __init__(self, model, name: str = "keras"):
        import tensorflow as tf

        from kseg.tasks.base import main_logits

        self.model, self.name = model, name
        self.multiple = getattr(model, "input_multiple", 1)
        self.num_classes = int(main_logits(model.output).shape[-1])  # no trace needed
        # One traced function for every image size (input_signature with free sizes).
        self._run = tf.function(
            lambda x: main_logits(model(x, training=False)),
            input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
            reduce_retracing=True,
        )

    def __call__(self, images):
        return self._run(np.asarray(images, np.float32)).numpy()


class SavedModelBackend(Backend):
    def __init__(self, path: str):
        import tensorflow as tf

        self.serve = tf.saved_model.load(path).signatures["serve"]
        shape = self.serve.structured_input_signature[1]["image"].shape
        self.input_size = (int(shape[1]), int(shape[2]))
        self.name = f"saved_model {os.path.basename(path.rstrip(os.sep))}"

    def __call__(self, images):
        import tensorflow as tf

        outs = [self.serve(image=tf.constant(x[None]))["logits"].numpy() for x in images]
        return np.concatenate(outs)


class TFLiteBackend(Backend):
    """A `.tflite` file through the standalone `segment.py`'s LiteRT segmenter."""

    def __init__(self, path: str, threads: int = 2):
        from kseg.predict.standalone import Segmenter

        self.segmenter = Segmenter(path, threads)
        self.input_size = self.segmenter.input_size
        self.num_classes = self.segmenter.num_classes  # the output tensor's shape
        self.name = self.segmenter.name

    def __call__(self, images):
        return self.segmenter.run(images)


class ONNXBackend(Backend):
    def __init__(self, path: str, threads: int = 2):
        from kseg.export.runtimes import _onnx_session

        self.session = _onnx_session(path, threads)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        h, w = first.shape[1:3]
        self.input_size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.name = f"onnx {os.path.basename(path)}"

    def __call__(self, images):
        outs = [self.session.run(None, {self.input_name: x[None]})[0] for x in images]
        return np.concatenate(outs).astype(np.float32)


def open_model(path: str, threads: int = 2) -> Backend:
    """The backend for `path`, chosen by its form: `.keras`, a SavedModel folder,
    `.tflite` or `.onnx`."""
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ModelFileError(f"{path} is a folder without saved_model.pb: not a SavedModel")
        return SavedModelBackend(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".keras":
        from kseg.models.loading import load_model

        return KerasBackend(load_model(path), f"keras {os.path.basename(path)}")
    from kseg.predict.standalone import UsageError

    try:
        if suffix == ".tflite":
            return TFLiteBackend(path, threads)
        if suffix == ".onnx":
            return ONNXBackend(path, threads)
    except UsageError as e:
        raise ModelFileError(str(e)) from e
    except (ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path} could not be opened ({e})") from e
    from kseg.models.torch_checkpoint import is_torch_checkpoint

    if is_torch_checkpoint(path):
        raise ModelFileError(
            f"{path} is a PyTorch checkpoint: make it a kseg model first, e.g. python -m "
            f"kseg.convert {path} --model hrnetv2_w48 --num-classes N --out MODEL.keras"
        )
    raise ModelFileError(
        f"{path}: unknown model format {suffix!r}; give a .keras, .tflite or .onnx file or a "
        "SavedModel folder"
    )
