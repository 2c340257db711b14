"""Write a segmentation model as SavedModel, TFLite (fp32, fp16, dynamic, int8) and ONNX.

Every artefact takes one float32 image batch (1, H, W, 3) with values in [0, 1] (the
recipes' preprocessing: RGB divided by 255, no mean or std) and returns the main logits
(1, H, W, classes); the SavedModel's `serve` signature also returns `labels`, the arg-max
label map (1, H, W) as int32. TFLite files are converted with builtin ops only, so they
run on a plain edge runtime; a model that needs other ops fails to convert with the op
named.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from kseg.tasks.base import main_logits

TFLITE_MODES = ("fp32", "fp16", "dynamic", "int8", "int8_io")


def logits_model(model: keras.Model, height: int, width: int) -> keras.Model:
    """A functional model with a static (1, H, W, 3) input and the main logits out (the
    auxiliary outputs of training are dropped)."""
    from kseg.models.base import check_image_shape

    check_image_shape((1, height, width, 3), getattr(model, "input_multiple", 1), None, model.name)
    inputs = keras.Input((height, width, 3), batch_size=1, name="image")
    outputs = main_logits(model(inputs, training=False))
    return keras.Model(inputs, outputs, name=f"{model.name}_logits")


def export_saved_model(
    model: keras.Model, path: str, height: int, width: int, labels: bool = True
) -> str:
    """SavedModel with a `serve` (and `serving_default`) signature: image -> logits, and
    with `labels` the arg-max label map too (int32).

    The signature is one traced function, saved from a bare `tf.Module` that holds only
    the variables it reads: Keras' `ExportArchive` writes the same signature but first
    walks the model's whole layer graph as trackable objects and traces it again. The
    module holds the traced (concrete) function, as the signature and as `serve` (so
    `tf.saved_model.load(path).serve(image)` works as for Keras' export), and not the
    `tf.function` itself, which `tf.saved_model.save` would trace once more (its save
    context is another tracing key)."""
    core = logits_model(model, height, width)

    # autograph off, as Keras' own export traces: the model's Python is traced as written
    @tf.function(
        input_signature=[tf.TensorSpec((1, height, width, 3), tf.float32, "image")],
        autograph=False,
    )
    def serve(image):
        logits = core(image, training=False)
        if not labels:
            return {"logits": logits}
        return {"logits": logits, "labels": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    traced = serve.get_concrete_function()
    archive = tf.Module()
    # The tf.Variables the traced function captured: the TFLite converter reads their
    # values from the saved object graph, and saving only the Keras variables that wrap
    # them gave it uninitialised weights.
    archive.captured = list(traced.variables)
    archive.serve = traced
    tf.saved_model.save(archive, path, signatures={"serve": traced, "serving_default": traced})
    return path


def export_tflite(
    saved_model: str,
    path: str,
    mode: str = "fp32",
    calibration: Callable[[], Iterable[np.ndarray]] | None = None,
    learned_ranges: bool = False,
) -> str:
    """Converts a SavedModel from `export_saved_model` with builtin ops only.

    kseg converts the logits-only SavedModel (`labels=False`): TFLite's ARG_MAX is not
    delegated to XNNPACK and costs more than ContextNet itself at Cityscapes size
    (bench/RESULTS.md), so the arg-max is left to the application.

    Args:
        mode: "fp32"; "fp16" (float16 weights); "dynamic" (int8 weights, float
            activations); "int8" (weights and activations int8, float input and output;
            needs `calibration`, a callable returning an iterable of (H, W, 3) or
            (1, H, W, 3) images in [0, 1]); "int8_io" (as "int8" with integer input and
            output, the full-integer form of integer-only accelerators: a uint8 image and
            int8 logits, each with the scale and zero point stored in the file, so the
            runtime neither quantises the image nor dequantises the logits; the arg-max of
            the int8 logits is the label map. `kseg.export.runtimes` applies the stored
            parameters).
        learned_ranges: int8 / int8_io of a quantisation-aware model
            (`kseg.export.quantize_aware`): the ranges are its fake-quant ops', no
            calibration.
    """
    converter = tflite_converter(saved_model, mode, calibration, learned_ranges)
    try:
        content = converter.convert()
    except Exception as e:  # the converter raises ConverterError and others
        raise RuntimeError(
            f"TFLite {mode} conversion with builtin ops only failed; the model uses an op "
            f"that edge runtimes lack (see below). For ODE models, export with a fixed-grid "
            f"solver (ode_steps).\n{e}"
        ) from e
    with open(path, "wb") as f:
        f.write(content)
    return path


def tflite_converter(
    saved_model: str,
    mode: str,
    calibration: Callable[[], Iterable[np.ndarray]] | None = None,
    learned_ranges: bool = False,
) -> tf.lite.TFLiteConverter:
    """The converter `export_tflite` runs (builtin ops only, `mode`'s quantisation)."""
    if mode not in TFLITE_MODES:
        raise ValueError(f"unknown TFLite mode {mode!r}; choose one of {', '.join(TFLITE_MODES)}")
    if learned_ranges:
        return _learned_ranges_converter(saved_model, mode)
    converter = _saved_model_converter(saved_model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "int8_io"):
        if calibration is None:
            raise ValueError("int8 needs calibration images (e.g. --calib-data DIR)")

        def representative():
            for image in calibration():
                image = np.asarray(image, np.float32)
                yield [image[None] if image.ndim == 3 else image]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if mode == "int8_io":
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.int8
    return converter


def _saved_model_converter(saved_model: str) -> tf.lite.TFLiteConverter:
    """`TFLiteConverter.from_saved_model(saved_model, signature_keys=["serve"])` without
    its first `tf.saved_model.load`: `from_saved_model` loads the whole SavedModel into
    Python only to look up the signature, then hands the directory to a converter that
    imports it anew (and loads it once more for debug information). Here the signature is
    looked up in the SavedModel's protocol buffer. The converter class is TensorFlow's
    own, from a private module; where it is not there, the public route."""
    from tensorflow.core.protobuf import saved_model_pb2

    try:
        from tensorflow.lite.python import lite

        direct = lite.TFLiteSavedModelConverterV2
        model_type = lite.conversion_metadata_fb.ModelType.TF_SAVED_MODEL
    except (ImportError, AttributeError):
        return tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["serve"])
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    if not any("serve" in graph.signature_def for graph in proto.meta_graphs):
        raise ValueError(
            f"{saved_model} has no 'serve' signature; write it with export_saved_model"
        )
    lite.TFLiteConverterBase._set_original_model_type(model_type)
    return direct(saved_model, {tf.saved_model.SERVING}, ["serve"])


def _learned_ranges_converter(saved_model: str, mode: str) -> tf.lite.TFLiteConverter:
    """int8 from the fake-quant ops of a quantisation-aware model.

    The converter recognises such a model only in a concrete function's graph (from a
    SavedModel directly it asks for a representative dataset), and setting
    `supported_ops` to TFLITE_BUILTINS_INT8 makes it ask for one too, so the ops stay
    TFLITE_BUILTINS; `kseg.export.qat.float_ops` checks that every op came out int8.
    """
    if mode not in ("int8", "int8_io"):
        raise ValueError(f"a quantisation-aware model converts to int8 or int8_io, not {mode}")
    loaded = tf.saved_model.load(saved_model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [loaded.signatures["serve"]], loaded
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8_io":
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
    return converter


def export_onnx(model: keras.Model, path: str, height: int, width: int, opset: int = 17) -> str:
    """ONNX through tf2onnx, input "image" (1, H, W, 3) float32, output the logits."""
    import tf2onnx

    core = logits_model(model, height, width)
    core.output_names = ["logits"]
    spec = (tf.TensorSpec((1, height, width, 3), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(core, input_signature=spec, opset=opset, output_path=path)
    return path


def file_size_mb(path: str) -> float:
    if os.path.isdir(path):
        total = sum(
            os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files
        )
    else:
        total = os.path.getsize(path)
    return total / 2**20
