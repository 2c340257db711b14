"""Selective int8: LiteRT's per-layer quantisation error, and int8 files that keep the
layers with the largest error in float.

The error comes from `tf.lite.experimental.QuantizationDebugger`, which runs the float
and the int8 model side by side on the calibration images and compares every quantised
op's output. kseg ranks ops by the root mean squared error in units of the op's own
quantisation step (RMSE / scale): rounding alone gives about 0.29 (1 / sqrt(12)); much
more means the int8 range fits the values badly (outliers, wide ranges).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class LayerError:
    op: str  # TFLite op, e.g. CONV_2D
    tensor: str  # its output tensor's name (holds the Keras layer's path)
    steps: float  # RMSE of its int8 output in quantisation steps (RMSE / scale)
    max_abs_error: float

    @property
    def layer(self) -> str:
        """The Keras layer the op's output comes from: the tensor name's second-to-last
        scope without the `_<n>` the traced call adds (a fused conv + batch norm +
        activation is named after its activation layer)."""
        parts = self.tensor.split(";")[0].split("/")
        return re.sub(r"_\d+$", "", parts[-2] if len(parts) > 1 else parts[0])


def _debugger(saved_model: str, calibration: Callable[[], Iterable[np.ndarray]], denylist=()):
    import tensorflow as tf

    from kseg.export.formats import tflite_converter

    converter = tflite_converter(saved_model, "int8", calibration)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylist) or None)
    return tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=converter.representative_dataset,
        debug_options=options,
    )  # fmt: skip


def layer_errors(
    saved_model: str, calibration: Callable[[], Iterable[np.ndarray]]
) -> list[LayerError]:
    """Every quantised op's error on the calibration images, largest first."""
    debugger = _debugger(saved_model, calibration)
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    buffer.seek(0)
    errors = []
    for row in csv.DictReader(buffer):
        scale = float(row["scale"])
        rmse = float(row["mean_squared_error"]) ** 0.5
        steps = rmse / scale if scale > 0 else 0.0
        errors.append(
            LayerError(row["op_name"], row["tensor_name"], steps, float(row["max_abs_error"]))
        )
    return sorted(errors, key=lambda e: -e.steps)


def resolve_keep_float(errors: list[LayerError], keep: str | Sequence[str]) -> list[LayerError]:
    """The ops to keep in float: `"auto"` (the 3 worst), `"auto:N"` (the N worst), or
    Keras layer names (each must match at least one op)."""
    from kseg.errors import UserError

    if isinstance(keep, str):
        match = re.fullmatch(r"auto(?::(\d+))?", keep)
        if match:
            return errors[: int(match.group(1) or 3)]
        keep = [k for k in keep.split(",") if k]
    chosen = []
    for name in keep:
        found = [e for e in errors if e.layer == name]
        if not found:
            known = sorted({e.layer for e in errors})
            raise UserError(
                f"--keep-float: no quantised op of a layer {name!r}; layers: {', '.join(known)}"
            )
        chosen += found
    return chosen


def export_int8_keep_float(
    saved_model: str,
    path: str,
    calibration: Callable[[], Iterable[np.ndarray]],
    keep: list[LayerError],
) -> str:
    """An int8 file (float input and output) whose `keep` ops compute in float."""
    debugger = _debugger(saved_model, calibration, [e.tensor for e in keep])
    with open(path, "wb") as f:
        f.write(debugger.get_nondebug_quantized_model())
    return path


def error_table(errors: list[LayerError], keep: list[LayerError], top: int = 20) -> str:
    lines = [f"{'layer':40s} {'op':18s} {'RMSE/step':>9s} {'max|err|':>9s}"]
    for e in errors[:top]:
        mark = "  kept in float" if e in keep else ""
        lines.append(
            f"{e.layer[:40]:40s} {e.op[:18]:18s} {e.steps:9.2f} {e.max_abs_error:9.3g}{mark}"
        )
    if len(errors) > top:
        lines.append(f"... {len(errors) - top} more ops")
    return "\n".join(lines)
