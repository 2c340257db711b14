"""Edge export: SavedModel, builtins-only TFLite (fp32, fp16, dynamic, int8) and ONNX,
each verified in its own runtime against Keras; structured filter pruning; and
quantisation-aware training for int8."""

from kseg.export.exporter import (
    FORMATS,
    Artefact,
    ExportSettingError,
    export,
    sample_images,
    table,
)
from kseg.export.formats import (
    TFLITE_MODES,
    export_onnx,
    export_saved_model,
    export_tflite,
    logits_model,
)
from kseg.export.ode import fixed_grid, fixed_grid_error
from kseg.export.parity import ExportParityError, Parity, parity
from kseg.export.pruning import (
    ChannelGroup,
    PruningPlan,
    apply_plan,
    plan_pruning,
    prune_filters,
    width_schedule,
)
from kseg.export.qat import calibrate, quantize_aware

__all__ = [
    "FORMATS",
    "TFLITE_MODES",
    "Artefact",
    "ChannelGroup",
    "ExportParityError",
    "ExportSettingError",
    "Parity",
    "PruningPlan",
    "apply_plan",
    "calibrate",
    "export",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "fixed_grid",
    "fixed_grid_error",
    "logits_model",
    "parity",
    "plan_pruning",
    "prune_filters",
    "quantize_aware",
    "sample_images",
    "table",
    "width_schedule",
]
