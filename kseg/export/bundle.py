"""What makes an export folder a deployable bundle besides the model files: `labels.txt`
(and `classes.txt` with the classes' colours), the standalone `segment.py` and a
`README.txt` with the table measured at export."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

README = """\
{name}: semantic segmentation exported by kseg {version} at {height}x{width}
({classes} classes, names in labels.txt).

Files
  *.tflite       LiteRT models, each with MediaPipe ImageSegmenter metadata (input
                 normalisation to [0, 1], labels.txt, per-class scores); int8_io takes
                 the image's uint8 bytes as they are and gives int8 scores
  *.onnx         the same network for onnxruntime
  labels.txt     the class names, one a line, in output-channel order
  classes.txt    the names with their colours (name R G B), when known: segment.py and
                 kseg.predict colour the label PNGs and overlays with them
  segment.py     segments images with a .tflite file; needs only ai-edge-litert, numpy
                 and pillow (no TensorFlow, no kseg)

Run on images and folders (label PNGs and overlays in DIR):
  pip install ai-edge-litert numpy pillow   (and pillow-heif for HEIC photos)
  python segment.py {first_tflite} photos/ --out DIR
Images much larger than the model's input (aerial, whole-slide), at their own
resolution in overlapping windows of that size:
  python segment.py {first_tflite} aerial.tif --tile --out DIR

Time a file on this machine (warm-up, 50 runs of invoke, p50/p90, peak memory, XNNPACK
on and off; in the manner of LiteRT's benchmark_model):
  python segment.py {first_tflite} --benchmark --threads 4

On an ARM board or an Android phone, LiteRT's own benchmark_model binary times the file
as the device runs it (prebuilt binaries for android_arm64 and linux_arm64 are linked
from LiteRT's "benchmark" documentation page; kseg's docs/deploy.md has the steps):
  adb push {first_tflite} benchmark_model /data/local/tmp/
  adb shell chmod +x /data/local/tmp/benchmark_model
  adb shell /data/local/tmp/benchmark_model --graph=/data/local/tmp/{first_tflite} \\
      --num_threads=4

Measured at export on the exporting machine ({threads_text}; latency is the median of
one invoke with the image already in the input tensor; parity is against Keras):
{table}
{per_class}"""


def write_labels(
    out: str, class_names: Sequence[str] | None, num_classes: int, palette=None
) -> str:
    """Writes `out/labels.txt` (one class a line), and with `palette` (uint8[>= K, 3], the
    classes' colours) `out/classes.txt` (`name R G B`, `kseg.predict.standalone.BUNDLE_CLASSES`);
    returns the path of labels.txt."""
    from kseg.predict.standalone import BUNDLE_CLASSES

    names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        from kseg.errors import UserError

        raise UserError(f"{len(names)} class names for a model of {num_classes} classes")
    path = os.path.join(out, "labels.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")
    if palette is not None:
        with open(os.path.join(out, BUNDLE_CLASSES), "w", encoding="utf-8") as f:
            f.writelines(  # a class list's names have no spaces: traffic_light
                f"{n.replace(' ', '_')} {r} {g} {b}\n"
                for n, (r, g, b) in zip(names, palette[: len(names)], strict=True)
            )
    return path


def write_segment_py(out: str) -> str:
    """Copies the standalone segmenter (`kseg.predict.standalone`) to `out/segment.py`."""
    from kseg.predict import standalone

    path = os.path.join(out, "segment.py")
    shutil.copyfile(standalone.__file__, path)
    return path


def write_readme(out: str, name: str, input_size, num_classes: int, artefacts, threads) -> str:
    """`out/README.txt`: the files, how to run and time them, and the export's table."""
    import kseg
    from kseg.export.exporter import table

    tflites = [os.path.basename(a.path) for a in artefacts if a.format.startswith("tflite")]
    text = README.format(
        name=name, version=kseg.__version__, height=input_size[0], width=input_size[1],
        classes=num_classes, first_tflite=tflites[0] if tflites else f"{name}_fp32.tflite",
        threads_text=", ".join(f"{t} thread{'s' * (t > 1)}" for t in threads),
        table=table(artefacts, threads),
        per_class="\nIoU per class: per_class_iou.txt\n" if any(a.iou for a in artefacts) else "",
    )  # fmt: skip
    path = os.path.join(out, "README.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
