"""Segment images and videos with any backend, in batches, streaming from disk."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Iterator

import numpy as np

from kseg.predict.backends import Backend
from kseg.predict.standalone import (
    Progress,
    Windows,
    resize_bilinear,
    resized_labels,
    segment_files,
    tiled_prediction,
)


def _pad_to(image: np.ndarray, multiple: int) -> np.ndarray:
    h, w = image.shape[:2]
    return np.pad(image, ((0, (-h) % multiple), (0, (-w) % multiple), (0, 0)))


def fitted_size(height: int, width: int, box: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of an image scaled, aspect kept, up or down, to fit `box` in either
    orientation: its long side within the box's long side and its short side within the
    box's short side (mmsegmentation's `Resize(scale, keep_ratio=True)`)."""
    scale = min(max(box) / max(height, width), min(box) / min(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class Predictor:
    """Logits at each image's own size from a backend.

    A backend with a fixed input size gets the image resized to it (bilinear, as
    `tf.image.resize`; the standalone `segment.py`'s resize), and its logits are resized
    back; a free-size backend gets the image padded at the bottom and right to its
    multiple, and the logits are cropped back. With `fit` (height, width), a free-size
    backend gets each image scaled to fit that box first (`fitted_size`), and the logits
    are resized back: the scale the model was trained at, for photos larger than its
    training images, and the time and memory of that size rather than the photo's.

    With `tile` (height, width), each image (after `fit`) is segmented at its own
    resolution in overlapping windows of that size, every 2/3 of it, whose logits are
    averaged (`kseg.predict.standalone.tiled_bands`, mmsegmentation's "slide" mode): for
    images much larger than the model was trained on (aerial, whole-slide). A fixed-size
    backend's windows are its input size. Without `fit`, `labels` holds a window's height
    of logits at a time, not the image's.
    """

    def __init__(
        self,
        backend: Backend,
        fit: tuple[int, int] | None = None,
        tile: tuple[int, int] | None = None,
    ):
        self.backend, self.fit, self.tile = backend, fit, tile

    def logits(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """float32 logits (H, W, classes) of each uint8 RGB image (H, W, 3)."""
        out = self.model_logits(images)
        return [resize_bilinear(o, *im.shape[:2]) for o, im in zip(out, images, strict=True)]

    def labels(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """The label map (H, W) of each uint8 RGB image (H, W, 3): the arg-max of `logits`,
        computed a band of rows at a time from the model's logits (`resized_labels`), or
        tiled without `fit`, from the windows' (`tiled_prediction`), so a large photo's logits
        never exist at its size. uint8 for up to 256 classes."""
        if self.tile and not self.fit:
            windows = self._windows()
            return [tiled_prediction(self.backend, im, windows, labels=True) for im in images]
        out = self.model_logits(images)
        return [resized_labels(o, *im.shape[:2]) for o, im in zip(out, images, strict=True)]

    def model_logits(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """float32 logits of each uint8 RGB image at the size the model ran at (the
        backend's fixed size, the fitted size, or the image's own; tiled, the image's own
        or its fitted size), before `logits`
        resizes them to the image's: a photo larger than that costs its labels, not its
        logits (`kseg.predict.standalone.resized_labels`)."""
        if self.tile:
            return [self._tiled(image) for image in images]
        x = [np.asarray(im, np.float32) / 255.0 for im in images]
        fixed = self.backend.input_size
        if fixed is not None:
            return list(self.backend(np.stack([resize_bilinear(i, *fixed) for i in x])))
        if self.fit:
            x = [resize_bilinear(i, *fitted_size(*i.shape[:2], self.fit)) for i in x]
        multiple = self.backend.multiple
        padded = [_pad_to(i, multiple) for i in x]
        if len({p.shape for p in padded}) == 1:
            out = list(self.backend(np.stack(padded)))
        else:  # sizes differ: one at a time
            out = [self.backend(p[None])[0] for p in padded]
        return [o[: i.shape[0], : i.shape[1]] for o, i in zip(out, x, strict=True)]

    def _windows(self) -> Windows:
        """The windows of `tile` for this backend: its input size for a fixed-size one."""
        fixed = self.backend.input_size
        return Windows(fixed or self.tile, self.backend.multiple, fixed)

    def _tiled(self, image: np.ndarray) -> np.ndarray:
        """Logits of the uint8 image (scaled by `fit` first) in windows of `tile`."""
        if self.fit:
            x = np.asarray(image, np.float32) / 255.0
            image = resize_bilinear(x, *fitted_size(*image.shape[:2], self.fit))
        return tiled_prediction(self.backend, image, self._windows())


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def segment_images(
    predictor: Predictor,
    paths: list[str],
    writer,
    root_of=None,
    batch_size: int = 4,
    quiet: bool = False,
    skip_bad: bool = False,
) -> tuple[int, float]:
    """Reads, segments and writes `paths` in batches; returns (images segmented, seconds).
    `root_of(path)` gives the folder the output names are relative to (default: the
    image's own folder); `skip_bad` leaves unreadable images out instead of stopping. The
    loop is the standalone `segment.py`'s (`segment_files`)."""
    from kseg.errors import UserError
    from kseg.predict.standalone import UsageError, read_image

    # The writer takes label maps, or logits when it writes the probabilities.
    predict = predictor.model_logits if writer.probabilities else predictor.labels
    try:
        return segment_files(
            paths, predict, writer, root_of or os.path.dirname, batch_size, quiet, read_image,
            skip_bad,
        )  # fmt: skip
    except UsageError as e:  # an unreadable image
        raise UserError(str(e)) from None


def upright_frame(frame) -> np.ndarray:
    """A decoded PyAV video frame as RGB uint8 the way players show it: turned by the
    rotation of the stream's display matrix (phones record portrait video as landscape
    frames with a rotation; `frame.rotation` is the counter-clockwise angle)."""
    image = frame.to_ndarray(format="rgb24")
    quarters = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, quarters)) if quarters else image


def segment_video(
    predictor: Predictor,
    path: str,
    out_path: str,
    palette: np.ndarray,
    batch_size: int = 4,
    quiet: bool = False,
    outputs=None,
    input_format: str | None = None,
    max_frames: int | None = None,
    live: bool = False,
) -> tuple[int, float]:
    """Segments every frame of the video `path`, upright (`upright_frame`), and writes the
    overlay video `out_path` (H.264 at the source frame rate, upright without a rotation,
    with the source's sound up to the last frame, copied as it is); returns (frames,
    seconds). `out_path` lies in `outputs` (a
    `kseg.predict.outputs.OutputFolder`), which records the video; the caller has checked
    `out_path` against it before any work, as `kseg.predict` does. Without `outputs`, the
    video's own folder, checked here: a file kseg did not write is refused.

    `path` may be anything FFmpeg opens, in `input_format` (FFmpeg's `-f`) when given: a
    camera (`/dev/video0` in "v4l2"), a network stream (rtsp://...), a test source ("lavfi").
    `max_frames` stops after that many frames. A `live` source has no end of its own:
    Ctrl-C (or SIGTERM) ends it, and the video of the frames so far is kept. Its frames are
    read as it sends them and segmented one at a time, each the newest when the model is
    free; the ones that came while it was busy are left out, and counted in a line
    (`kseg.predict.inputs.NewestFrames`). Every written frame keeps its source frame's
    time, so the video plays at the source's pace."""
    from kseg.errors import UserError
    from kseg.predict.inputs import NewestFrames
    from kseg.predict.outputs import OutputFolder

    own = outputs is None
    if own:  # a caller's folder has been checked by the caller, before the images
        outputs = OutputFolder(os.path.dirname(out_path) or ".")
        outputs.check([os.path.basename(out_path)])
    name = os.path.relpath(out_path, outputs.folder)
    try:
        import av
    except ImportError:
        raise UserError("videos need PyAV: pip install 'kseg[video]' (or pip install av)") from None
    try:
        source = av.open(path, format=input_format)
    except (av.error.FFmpegError, ValueError) as e:  # ValueError: an unknown input format
        raise UserError(f"{path}: unreadable video ({e})") from None
    if not source.streams.video:
        source.close()
        raise UserError(f"{path}: no video stream in it")
    stream_in = source.streams.video[0]
    decoded = _timed_frames(source.decode(stream_in), live)
    newest = NewestFrames(decoded) if live else None
    try:
        frames = itertools.islice(newest or decoded, max_frames)  # None: every frame
        first = next(frames, None)
        if first is None:
            raise UserError(f"{path}: no video frames in it")
        known = [n for n in (stream_in.frames, max_frames) if n]  # a live source: neither
        progress = Progress(min(known) if known else None, "frames", quiet)
        sound = source.streams.audio[0] if source.streams.audio and not live else None
        with outputs.writing(name) as partial:
            # with sound, the video goes to a file of its own first, then both into place
            silent = _beside(partial, "video") if sound else partial
            try:
                with av.open(silent, "w") as sink:
                    rate = stream_in.average_rate or 25
                    end = _write_overlays(
                        predictor, first, frames, sink, rate, palette,
                        1 if live else batch_size, progress, live,
                    )  # fmt: skip
                if sound:
                    _add_sound(silent, path, input_format, sound.index, first[1] or 0, end, partial)
            finally:
                if sound and os.path.lexists(silent):
                    os.remove(silent)
    finally:  # a reader still inside the source must not have it closed under it
        if newest is None or newest.close():
            source.close()
    if own:
        outputs.close()
    done = progress.close()
    if newest is not None and newest.dropped:
        print(
            f"Left out {newest.dropped} frames of {path} that came while the model was busy; "
            "the video keeps each written frame's time"
        )
    return done


def _beside(path: str, what: str) -> str:
    """A temporary file beside `path`, of the same extension."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".kseg-{what}-{name}")


def _add_sound(video: str, source: str, input_format, index: int, start, end, out: str):
    """Writes `out`: the video stream of the file `video` and the sound (stream `index`)
    of `source` from the time `start` (the first frame's, where `video` starts) to `end`
    seconds after it, both as they are (no encoding), interleaved by time. A sound the
    container cannot hold is left out, in a line that says so."""
    import heapq

    import av

    with av.open(video) as frames, av.open(source, format=input_format) as sounds:
        picture, sound = frames.streams.video[0], sounds.streams[index]
        with av.open(out, "w") as sink:
            codec = sound.codec_context.name
            if codec not in sink.supported_codecs:
                print(f"Left out the sound of {source}: {codec} does not go in {out[-4:]}")
                sound = None
            streams = {picture: sink.add_stream_from_template(picture)}
            packets = [_timed_packets(frames.demux(picture), 0)]
            if sound is not None:
                streams[sound] = sink.add_stream_from_template(sound)
                # the video starts at the first frame's time: the sound, moved as much
                packets.append(_timed_packets(sounds.demux(sound), round(start / sound.time_base)))
            for _, packet in heapq.merge(*packets, key=lambda timed: timed[0]):
                # (sound before the first frame stays: a decoder's priming, which the
                # container's edit list then skips, as the source's did)
                if packet.stream is not picture and packet.pts * sound.time_base >= end:
                    continue
                packet.stream = streams[packet.stream]
                sink.mux(packet)


def _timed_packets(packets: Iterable, ticks: int) -> Iterator[tuple[float, object]]:
    """(decoding time in seconds, packet) of each demuxed packet, its times moved back by
    `ticks` of its stream's time base; a demuxer's flushing packet (no time) is left out."""
    for packet in packets:
        if packet.dts is None or packet.pts is None:
            continue
        packet.pts, packet.dts = packet.pts - ticks, packet.dts - ticks
        yield float(packet.dts * packet.time_base), packet


def _timed_frames(decoded: Iterable, live: bool) -> Iterator[tuple[np.ndarray, float | None]]:
    """(upright image, seconds) of each decoded PyAV frame: its presentation time, or
    without one, a live frame's arrival time (a file's: None, the next frame's slot)."""
    for frame in decoded:
        seconds = frame.time
        if seconds is None and live:
            seconds = time.monotonic()
        yield upright_frame(frame), seconds


def _write_overlays(
    predictor, first, frames, sink, rate, palette, batch_size, progress, live
) -> None:
    """Encodes the overlay of `first` and each later (image, seconds) of `frames` into the
    container `sink`: H.264 at `rate` frames a second, each frame at its time from the
    first (in the rate's frame slots: a frame left out leaves its slot empty, which players
    show as the frame before), upright without a rotation. Ctrl-C ends a `live` source: the
    video so far is finished. Returns the video's length in seconds."""
    import av

    from kseg.predict.outputs import overlay

    stream = sink.add_stream("libx264", rate=rate)
    # H.264 in yuv420p takes even sizes: an odd last row or column is left out.
    height, width = first[0].shape[0] // 2 * 2, first[0].shape[1] // 2 * 2
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    start, slot = first[1], -1
    try:
        for chunk in batched(itertools.chain([first], frames), batch_size):
            images = [image for image, _ in chunk]
            for (image, seconds), labels in zip(chunk, predictor.labels(images), strict=True):
                frame = av.VideoFrame.from_ndarray(
                    overlay(image, labels, palette)[:height, :width], "rgb24"
                )
                at = None if seconds is None or start is None else (seconds - start) * rate
                slot = frame.pts = max(slot + 1, round(at) if at is not None else 0)
                for packet in stream.encode(frame):
                    sink.mux(packet)
                progress.update(1)  # a frame at a time: the count is the video's
    except KeyboardInterrupt:  # how a live source ends: its video so far is kept
        if not live:
            raise
    for packet in stream.encode():
        sink.mux(packet)
    return float((slot + 1) / rate)
