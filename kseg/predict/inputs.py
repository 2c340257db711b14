"""What `kseg.predict` reads: image files, folders (recursive), globs and videos."""

from __future__ import annotations

import glob
import os

from kseg.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def is_video(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTENSIONS)


def expand_inputs(inputs: list[str]) -> tuple[list[str], list[str]]:
    """(images, videos): files as given, folders searched recursively, globs expanded;
    each sorted, without repeats. An input that matches nothing is an error."""
    images, videos = [], []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "**", "*"), recursive=True))
        elif any(c in item for c in "*?["):
            found = sorted(glob.glob(item, recursive=True))
        elif os.path.isfile(item):
            if not item.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS):
                raise UserError(
                    f"{item}: not an image ({', '.join(IMAGE_EXTENSIONS)}) or a video "
                    f"({', '.join(VIDEO_EXTENSIONS)})"
                )
            found = [item]
        else:
            raise UserError(f"{item}: no such file, folder or glob match")
        found = [p for p in found if os.path.isfile(p)]
        matched = [p for p in found if p.lower().endswith(IMAGE_EXTENSIONS)]
        clips = [p for p in found if is_video(p)]
        if not matched and not clips:
            raise UserError(f"{item}: no images or videos in it")
        images += matched
        videos += clips
    return list(dict.fromkeys(images)), list(dict.fromkeys(videos))


def read_image(path: str):
    """RGB uint8 (H, W, 3); an unreadable file is a `UserError` naming it."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable image ({e})") from None
