"""kseg's drawing of labelme's shapes (`kseg.data.labelme.draw_shapes`) against labelme's
own (`labelme.utils.shape.shapes_to_label`, what its export and labelme2voc call), pixel
for pixel, on random annotations of every shape type.

labelme needs Qt and imports no TensorFlow, so the two sides run in two environments:

    .venv/bin/python bench/labelme_parity.py write /tmp/labelme-parity
    python3 -m venv /tmp/lm && /tmp/lm/bin/pip install labelme==6.3.1
    /tmp/lm/bin/python bench/labelme_parity.py check /tmp/labelme-parity

`write` saves images, labelme files and kseg's label maps; `check` loads each file with
labelme's `LabelFile` and counts the pixels where the label maps differ.
"""

from __future__ import annotations

import argparse
import base64
import glob
import io
import json
import os

import numpy as np
from PIL import Image

VALUES = {"_background_": 0, "a": 1, "b": 2, "c": 3, "__ignore__": 255}
KINDS = ("polygon", "rectangle", "circle", "line", "linestrip", "point", "oriented_rectangle")


def _points(rng, count: int, width: int, height: int) -> list[list[float]]:
    return (rng.random((count, 2)) * [width, height]).round(2).tolist()


def _mask(rng, width: int, height: int) -> tuple[list[list[float]], str]:
    """A random blob's box and its PNG, as labelme's AI tools save a mask shape."""
    h, w = int(rng.integers(3, 20)), int(rng.integers(3, 20))
    x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
    blob = rng.random((h, w)) > 0.3
    png = io.BytesIO()
    Image.fromarray(blob).save(png, format="PNG")
    box = [[float(x), float(y)], [float(x + w - 1), float(y + h - 1)]]
    return box, base64.b64encode(png.getvalue()).decode()


def write(folder: str, files: int, seed: int) -> None:
    from kseg.data.labelme import draw_shapes

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in range(files):
        height, width = (int(v) for v in rng.integers(30, 200, size=2))
        image = f"img{n}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(
            os.path.join(folder, image)
        )
        shapes = []
        for _ in range(8):
            kind = str(rng.choice([*KINDS, "mask"]))
            shape = {"label": str(rng.choice([k for k in VALUES if k != "_background_"])),
                     "group_id": None, "description": "", "shape_type": kind, "flags": {},
                     "mask": None}  # fmt: skip
            count = {"polygon": int(rng.integers(3, 9)), "linestrip": int(rng.integers(2, 6)),
                     "point": 1, "oriented_rectangle": 4}.get(kind, 2)  # fmt: skip
            if kind == "mask":
                shape["points"], shape["mask"] = _mask(rng, width, height)
            else:
                shape["points"] = _points(rng, count, width, height)
            shapes.append(shape)
        record = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image,
                  "imageData": None, "imageHeight": height, "imageWidth": width}  # fmt: skip
        with open(os.path.join(folder, f"img{n}.json"), "w") as f:
            json.dump(record, f)
        np.save(os.path.join(folder, f"img{n}.npy"), draw_shapes(record, VALUES))
    print(f"wrote {files} labelme files and kseg's label maps to {folder}")


def check(folder: str) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import labelme
    from labelme import LabelFile
    from labelme.utils.shape import shapes_to_label

    differing, pixels = 0, 0
    paths = sorted(glob.glob(os.path.join(folder, "img*.json")))
    for path in paths:
        shapes = [
            {k: s.get(k) for k in ("label", "points", "shape_type", "group_id", "mask")}
            for s in LabelFile(path).shapes
        ]
        theirs, _ = shapes_to_label(np.load(path[:-5] + ".npy").shape, shapes, VALUES)
        ours = np.load(path[:-5] + ".npy")
        differing += int((theirs != ours).sum())
        pixels += ours.size
    print(
        f"labelme {labelme.__version__}: {differing} of {pixels} pixels differ between "
        f"kseg's and labelme's label maps of {len(paths)} files"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("write", "check"))
    p.add_argument("folder")
    p.add_argument("--files", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    write(args.folder, args.files, args.seed) if args.step == "write" else check(args.folder)


if __name__ == "__main__":
    main()
