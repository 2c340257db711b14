"""`python -m kseg.predict MODEL INPUT... --out DIR`: segment images, folders and videos.

MODEL is a `.keras` file, a SavedModel folder, a `.tflite` (fp32, fp16, dynamic, int8,
int8_io) or an `.onnx` file. INPUT is image files, folders (searched recursively), globs
or videos (.mp4, .avi, .mov, .mkv, .webm). For each image DIR gets `<name>_pred.png` (the
label map as a palette PNG), `<name>_overlay.jpg`, and on request Cityscapes labelIds and
per-class probabilities; for each video `<name>_overlay.mp4`.
"""

from __future__ import annotations

import argparse
import os

from kseg.errors import command_parser


def build_parser() -> argparse.ArgumentParser:
    from kseg.predict.standalone import add_output_arguments
    from kseg.recipes.config import positive, size

    p = command_parser(
        "python -m kseg.predict", __doc__.splitlines()[0], formatter_class=argparse.HelpFormatter
    )
    p.add_argument("model", help=".keras, .tflite or .onnx file, or a SavedModel folder")
    p.add_argument("inputs", nargs="+", help="images, folders, globs or videos")
    add_output_arguments(p, required_out=True)
    p.add_argument(
        "--fit",
        type=size,
        metavar="HxW",
        help="segment each image scaled, aspect kept, to fit HxW in either orientation "
        "(e.g. 1024x2048, the scale of a Cityscapes model); the outputs keep the image's "
        "size. For .keras files; exported files have a fixed input size",
    )
    p.add_argument(
        "--tile",
        nargs="?",
        const="input",
        metavar="HxW",
        help="segment each image at its own resolution (after --fit) in overlapping windows "
        "of HxW, every 2/3 of a window, their logits averaged: for images much larger than "
        "the model's training images (aerial, whole-slide). An exported file's windows are "
        "its input size (--tile alone); a .keras file's are given (e.g. its training crop)",
    )
    p.add_argument(
        "--input-format",
        metavar="FMT",
        help="FFmpeg's input format for a live source (its -f): v4l2 for a Linux camera "
        "(/dev/video0), avfoundation on macOS (0), dshow on Windows (video=NAME), lavfi for "
        "FFmpeg's test sources; URLs (rtsp://, http://) and /dev/video* need none. A live "
        "source runs until Ctrl-C, which keeps its overlay video",
    )
    p.add_argument(
        "--frames",
        type=positive,
        metavar="N",
        help="at most N frames of each video or live source",
    )
    return p


def _tile(text: str | None, backend, model: str) -> tuple[int, int] | None:
    """`--tile`'s window: the file's input size for an exported file, the given HxW for a
    .keras file; None without --tile."""
    from kseg.errors import UserError
    from kseg.recipes.config import size

    if text is None:
        return None
    fixed = backend.input_size
    try:
        given = None if text == "input" else size(text)
    except argparse.ArgumentTypeError as e:
        raise UserError(f"--tile: {e}") from None
    if fixed and given not in (None, fixed):
        raise UserError(
            f"--tile: {model} takes {fixed[0]}x{fixed[1]} images, so its windows are that size; "
            "give --tile alone"
        )
    if not fixed and given is None:
        raise UserError(
            f"--tile: give the window for {model}, e.g. --tile 1024x1024 (its training crop)"
        )
    return fixed or given


def main(argv: list[str] | None = None) -> None:
    from kseg.errors import run_command

    args = build_parser().parse_args(argv)
    hint = "lower --batch-size, or segment large photos at a smaller size with --fit HxW"
    run_command(lambda: run(args), argv, memory_hint=hint)


def run(args) -> dict:
    from kseg.errors import UserError
    from kseg.predict.backends import open_model
    from kseg.predict.inputs import expand_inputs, is_live, live_name
    from kseg.predict.outputs import ImageWriter, default_palette, padded, read_palette
    from kseg.predict.predictor import Predictor, segment_images, segment_video
    from kseg.predict.standalone import (
        bundled_palette,
        check_label_ids,
        output_bases,
        output_root,
        throughput,
    )
    from kseg.recipes.config import trained_data
    from kseg.train.checkpoints import model_of

    live = [x for x in args.inputs if is_live(x, args.input_format)]
    files = [x for x in args.inputs if x not in live]
    images, videos = expand_inputs(files, args.out) if files else ([], [])
    args.model = model_of(args.model)
    backend = open_model(args.model, threads=args.threads)
    if args.fit and backend.input_size is not None:
        h, w = backend.input_size
        raise UserError(
            f"--fit: {args.model} takes {h}x{w} images, and every image is resized to that; "
            "--fit is for .keras files"
        )
    predictor = Predictor(backend, args.fit, _tile(args.tile, backend, args.model))
    classes = backend.num_classes
    if args.classes:
        palette = read_palette(args.classes, classes)
    elif bundled := bundled_palette(args.model, classes):  # an export folder's file
        palette, path = bundled
        print(f"Colours of {path}, the classes of the export")
    else:  # a run's model: the colours of the data it trained on
        trained = trained_data(args.model, classes)
        palette = default_palette(classes) if trained is None else padded(trained.palette)
    if args.label_ids:
        check_label_ids(classes, UserError)
    # Outputs keep each image's path relative to the folder it was found in.
    root_of = output_root(args.inputs)
    writer = ImageWriter(args.out, palette, args.label_ids, args.probabilities)
    clips = [f"{stem}_overlay.mp4" for stem in output_bases(videos, os.path.dirname)]
    clips += [f"{live_name(source)}_overlay.mp4" for source in live]
    writer.outputs.check(clips)  # the images' outputs are checked before they start
    summary = {"images": 0, "frames": 0, "seconds": 0.0}
    try:
        if images:
            n, seconds = segment_images(
                predictor, images, writer, root_of, args.batch_size, args.quiet,
                args.skip_bad_files,
            )  # fmt: skip
            summary["images"] += n
            summary["seconds"] += seconds
            print(f"Segmented {n} image{'s' * (n != 1)} in {seconds:.1f} s "
                  f"({throughput(n, seconds)}) with {backend.name}; "
                  f"outputs in {args.out}")  # fmt: skip
        for video, clip in zip(videos + live, clips, strict=True):
            out = os.path.join(args.out, clip)
            n, seconds = segment_video(
                predictor, video, out, palette, args.batch_size, args.quiet, writer.outputs,
                args.input_format if video in live else None, args.frames, video in live,
            )  # fmt: skip
            summary["frames"] += n
            summary["seconds"] += seconds
            print(f"Segmented {n} frames of {video} in {seconds:.1f} s "
                  f"({throughput(n, seconds, 'frames')}) with {backend.name}: {out}")  # fmt: skip
    finally:
        writer.close()
    return summary


if __name__ == "__main__":
    main()
