"""What `kseg.predict` reads: image files, folders (recursive), globs and videos, and
live sources: cameras and network streams.

The search itself is the standalone `segment.py`'s (`kseg.predict.standalone`); here its
mistakes become kseg's `UserError`.
"""

from __future__ import annotations

import glob
import os
import re

from kseg.errors import UserError
from kseg.predict import standalone

# Devices FFmpeg reads as cameras (Linux's video4linux2 nodes).
CAMERA_PREFIX = "/dev/video"


def expand_inputs(inputs: list[str], out: str | None = None) -> tuple[list[str], list[str]]:
    """(images, videos): files as given, folders searched recursively, globs expanded;
    each sorted, without repeats, and without kseg's own outputs in the output folder
    `out`. An input that matches nothing is a `UserError`."""
    try:
        return standalone.expand_inputs(inputs, out)
    except standalone.UsageError as e:
        raise UserError(str(e)) from None


def is_live(source: str, input_format: str | None = None) -> bool:
    """Whether `source` is a live source rather than files: a URL (rtsp://, http://, ...), a
    camera device (/dev/video0), or, with an FFmpeg input format (`-f`, e.g. "v4l2",
    "avfoundation", "dshow", "lavfi"), any input that is neither a file or folder on disk
    nor a glob."""
    if "://" in source or source.startswith(CAMERA_PREFIX):
        return True
    return bool(input_format) and not os.path.exists(source) and not glob.has_magic(source)


def live_name(source: str) -> str:
    """A file name for a live source's outputs: its URL without the scheme, or the device's
    name, with what file names cannot hold replaced ("rtsp://cam.local/live" ->
    "cam.local_live", "/dev/video0" -> "video0")."""
    rest = source.split("://", 1)[1] if "://" in source else os.path.basename(source) or source
    return re.sub(r"[^A-Za-z0-9.-]+", "_", rest).strip("_.")[:60] or "stream"
