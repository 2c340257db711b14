"""What an exported file says of itself: TFLite metadata of an image segmenter, as
MediaPipe Tasks' `ImageSegmenter` reads it, and the same facts in an ONNX file's metadata.

The metadata is a flatbuffer of the published TFLite metadata schema (`ModelMetadata`,
file identifier "M001", `metadata_schema.fbs` of the TFLite support library and MediaPipe)
stored in a buffer of the model that the model's `metadata` list names
"TFLITE_METADATA"; files it refers to (the label file) are appended to the `.tflite` file
as a zip archive. kseg writes the few tables a segmenter needs with `flatbuffers` (which
TensorFlow installs): MediaPipe's own writer does not import in its numpy-2 release.

What it records: the input is an RGB image normalised as (pixel - 0) / 255, so an app
passes camera pixels as they are; the output is per-class scores (the logits, one channel
per class) whose axis labels are `labels.txt`.

ONNX has no segmenter schema; its files carry string pairs (`metadata_props`, which
onnxruntime's `get_modelmeta().custom_metadata_map` and Netron show), where kseg writes
the same facts: the class names (a JSON list, as Ultralytics writes its "names"), the
input's layout and scale, and what the output holds.
"""

from __future__ import annotations

import json
import zipfile

import flatbuffers
import numpy as np

METADATA_NAME = "TFLITE_METADATA"
MIN_PARSER_VERSION = "1.0.0"
# Enum and union values of the schema.
_TENSOR_AXIS_LABELS = 2
_RGB = 1
_CONTENT_FEATURE, _CONTENT_IMAGE = 1, 2
_UNIT_NORMALIZATION = 1


def _floats(b: flatbuffers.Builder, values: list[float]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _offsets(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _table(b: flatbuffers.Builder, fields: int, slots) -> int:
    """A table of `fields` slots from (slot, kind, value) with kind "offset", "byte" or
    "uint"."""
    b.StartObject(fields)
    for slot, kind, value in slots:
        if kind == "offset":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "byte":
            b.PrependUint8Slot(slot, value, 0)
        else:
            b.PrependUint32Slot(slot, value, 0)
    return b.EndObject()


def segmenter_metadata(
    name: str, description: str, labels_file: str, height: int, width: int, version: str
) -> bytes:
    """The `ModelMetadata` flatbuffer of a segmenter taking (1, height, width, 3) images in
    [0, 1] and giving (1, height, width, classes) scores labelled by `labels_file`."""
    b = flatbuffers.Builder(1024)
    # Input: an RGB image, normalised (pixel - 0) / 255, values in [0, 1].
    size = _table(b, 2, [(0, "uint", width), (1, "uint", height)])
    image = _table(b, 2, [(0, "byte", _RGB), (1, "offset", size)])
    content_in = _table(b, 3, [(0, "byte", _CONTENT_IMAGE), (1, "offset", image)])
    mean, std = _floats(b, [0.0]), _floats(b, [255.0])
    normalization = _table(b, 2, [(0, "offset", mean), (1, "offset", std)])
    unit = _table(b, 2, [(0, "byte", _UNIT_NORMALIZATION), (1, "offset", normalization)])
    units = _offsets(b, [unit])
    stats_in = _table(b, 2, [(0, "offset", _floats(b, [1.0])), (1, "offset", _floats(b, [0.0]))])
    input_name = b.CreateString("image")
    input_description = b.CreateString("RGB image; pixel values divided by 255 (in [0, 1])")
    tensor_in = _table(
        b, 7,
        [(0, "offset", input_name), (1, "offset", input_description), (3, "offset", content_in),
         (4, "offset", units), (5, "offset", stats_in)],
    )  # fmt: skip
    # Output: per-class scores, one channel per line of the label file.
    feature = _table(b, 0, [])
    content_out = _table(b, 3, [(0, "byte", _CONTENT_FEATURE), (1, "offset", feature)])
    label_name = b.CreateString(labels_file)
    label_description = b.CreateString("The class of each output channel, one a line.")
    label_file = _table(
        b, 5,
        [(0, "offset", label_name), (1, "offset", label_description),
         (2, "byte", _TENSOR_AXIS_LABELS)],
    )  # fmt: skip
    output_name = b.CreateString("logits")
    output_description = b.CreateString("per-class scores (logits); arg-max is the class")
    tensor_out = _table(
        b, 7,
        [(0, "offset", output_name), (1, "offset", output_description),
         (3, "offset", content_out), (6, "offset", _offsets(b, [label_file]))],
    )  # fmt: skip
    subgraph = _table(
        b, 10,
        [(2, "offset", _offsets(b, [tensor_in])), (3, "offset", _offsets(b, [tensor_out]))],
    )  # fmt: skip
    model = _table(
        b, 8,
        [(0, "offset", b.CreateString(name)), (1, "offset", b.CreateString(description)),
         (2, "offset", b.CreateString(version)), (3, "offset", _offsets(b, [subgraph])),
         (7, "offset", b.CreateString(MIN_PARSER_VERSION))],
    )  # fmt: skip
    b.Finish(model, file_identifier=b"M001")
    return bytes(b.Output())


def attach_metadata(path: str, metadata: bytes, files: dict[str, bytes]) -> None:
    """Stores `metadata` in the `.tflite` file at `path` (a new buffer named by a
    "TFLITE_METADATA" entry of the model's metadata) and appends `files` (name -> bytes)
    as the zip archive the metadata's associated files refer to."""
    from tensorflow.lite.python import schema_py_generated as schema

    with open(path, "rb") as f:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(f.read(), 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME] + [entry]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    with open(path, "wb") as f:
        f.write(b.Output())
    with zipfile.ZipFile(path, "a") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def onnx_metadata(
    name: str, labels: list[str], height: int, width: int, version: str
) -> dict[str, str]:
    """The string pairs kseg writes in an exported segmenter's ONNX file."""
    return {
        "model": name,
        "labels": json.dumps(labels),
        "input": f"image: float32 (1, {height}, {width}, 3), RGB, pixel / 255 (0 to 1)",
        "output": (
            f"logits: float32 (1, {height}, {width}, {len(labels)}), a channel a class in "
            "the order of labels; the label map is their arg-max over the last axis"
        ),
        "producer": f"kseg {version}",
    }


def attach_onnx_metadata(path: str, metadata: dict[str, str]) -> None:
    """Sets `metadata` as the ONNX file's `metadata_props` (keeping pairs of other keys)."""
    import onnx

    model = onnx.load(path)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)
