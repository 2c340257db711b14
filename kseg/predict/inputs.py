"""What `kseg.predict` reads: image files, folders (recursive), globs and videos, and
live sources: cameras and network streams.

The search itself is the standalone `segment.py`'s (`kseg.predict.standalone`); here its
mistakes become kseg's `UserError`.
"""

from __future__ import annotations

import glob
import os
import re
import threading
from collections.abc import Iterator

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


class NewestFrames:
    """A live source's frames, each the newest when the model is ready for one: a thread
    reads the source as fast as it sends (so a camera's driver or a stream's network buffer
    never fills and loses or garbles frames) and keeps only its newest frame. The frames
    the model had no time for are left out and counted (`dropped`), as live video apps do;
    each frame keeps its time, so the overlay video plays at the source's pace.

    `frames` yields the source's items; iterating gives them. `close()` stops the thread
    and says whether it has ended (a thread still inside the source's read after a second
    may not have its source closed under it)."""

    def __init__(self, frames: Iterator):
        self.dropped = 0
        self._frames, self._newest, self._ended, self._error = frames, None, False, None
        self._stop = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="kseg-live-source", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for item in self._frames:
                with self._changed:
                    if self._stop:
                        return
                    self.dropped += self._newest is not None
                    self._newest = item
                    self._changed.notify()
        except Exception as e:  # raised again in the model's thread
            self._error = e
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify()

    def __iter__(self):
        return self

    def __next__(self):
        with self._changed:
            while self._newest is None and not self._ended:
                self._changed.wait(0.1)  # in short waits: Ctrl-C reaches the main thread
            if self._newest is None:
                if self._error is not None:
                    raise self._error
                raise StopIteration
            item, self._newest = self._newest, None
            return item

    def close(self) -> bool:
        with self._changed:
            self._stop = True
        self._thread.join(timeout=1.0)
        return not self._thread.is_alive()
