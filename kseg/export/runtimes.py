"""Run an exported artefact in its own runtime: LiteRT, onnxruntime, or TensorFlow in a
fresh process (so nothing of the exporting process is reused)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from kseg.predict.standalone import interpreter as litert_interpreter
from kseg.predict.standalone import quantize_input


def run_tflite(path: str, images: np.ndarray, threads: int = 2) -> np.ndarray:
    """Float logits for each (H, W, 3) image through the `ai-edge-litert` interpreter
    (`kseg.predict.backends.TFLiteBackend`); integer inputs and outputs are (de)quantised
    with the parameters stored in the file."""
    from kseg.predict.backends import TFLiteBackend

    return TFLiteBackend(path, threads)(images)


def tflite_latency(
    path: str, image: np.ndarray, threads: int, runs: int = 3, copies: bool = False
) -> float:
    """Median seconds of one inference with the interpreter's own buffers.

    Tensors are allocated once and the image is written into the input tensor before
    timing, as an edge application that preprocesses into that buffer does (LiteRT's
    `benchmark_model` also times `invoke` alone). `copies=True` adds copying the image in
    and every output out through numpy, which at 1024x2048x19 float logits costs as much
    as the network. The signature runner is not used: it re-allocates on every call.
    """
    interpreter = litert_interpreter(path, threads)
    details = interpreter.get_input_details()[0]
    index = details["index"]
    outputs = [d["index"] for d in interpreter.get_output_details()]
    x = quantize_input(details, np.asarray(image, np.float32)[None])
    interpreter.set_tensor(index, x)

    def run():
        if copies:
            interpreter.set_tensor(index, x)
        interpreter.invoke()
        if copies:
            return [interpreter.get_tensor(i) for i in outputs]

    return _median_time(run, runs)


def _onnx_session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_onnx(path: str, images: np.ndarray, threads: int = 2) -> np.ndarray:
    """Logits for each (H, W, 3) image through onnxruntime (`kseg.predict.backends`)."""
    from kseg.predict.backends import ONNXBackend

    return ONNXBackend(path, threads)(images)


def onnx_latency(path: str, image: np.ndarray, threads: int, runs: int = 3) -> float:
    """Median seconds of one inference, the counterpart of `tflite_latency`: session built
    once, input and outputs bound to buffers allocated before timing (IOBinding)."""
    session = _onnx_session(path, threads)
    x = np.ascontiguousarray(image[None], np.float32)
    import onnxruntime as ort

    name = session.get_inputs()[0].name
    binding = session.io_binding()
    binding.bind_cpu_input(name, x)
    for output, value in zip(session.get_outputs(), session.run(None, {name: x}), strict=True):
        buffer = ort.OrtValue.ortvalue_from_shape_and_type(value.shape, value.dtype)
        binding.bind_ortvalue_output(output.name, buffer)
    return _median_time(lambda: session.run_with_iobinding(binding), runs)


def _median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


_SAVED_MODEL_CHILD = """
import gc, os, sys
gc.disable()  # a short-lived process: no collector passes over TensorFlow's import
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serve"]
images = np.load(sys.argv[2])
out = [serve(image=tf.constant(x[None])) for x in images]
np.save(sys.argv[3], np.concatenate([o["logits"].numpy() for o in out]))
np.save(sys.argv[4], np.concatenate([o["labels"].numpy() for o in out]))
"""


def run_saved_model(path: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) from `tf.saved_model.load` in a fresh Python process."""
    with tempfile.TemporaryDirectory() as tmp:
        files = [os.path.join(tmp, n) for n in ("in.npy", "logits.npy", "labels.npy")]
        np.save(files[0], images)
        subprocess.run(
            [sys.executable, "-c", _SAVED_MODEL_CHILD, path, *files],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return np.load(files[1]), np.load(files[2])
