"""`python -m kseg.export MODEL.keras --out DIR`: write and verify edge artefacts.

Prints a table: format, file size, latency with 1 and 2 threads, parity with Keras.
"""

from __future__ import annotations

import argparse
import os


def _prune(model, ratio: float, round_to: int, images, labels):
    """Prunes and prints what it cost: parameters, and mIoU when labels are at hand."""
    from kseg.export.exporter import logits_miou
    from kseg.export.formats import main_logits
    from kseg.export.pruning import prune_filters
    from kseg.utils.summary import count_params

    pruned = prune_filters(model, ratio=ratio, round_to=round_to)
    line = (
        f"Pruned {ratio:.0%} of the filters: {count_params(model):,} -> "
        f"{count_params(pruned):,} parameters"
    )
    if labels is not None:
        classes = main_logits(model(images[:1])).shape[-1]
        before = logits_miou(labels, main_logits(model.predict(images, verbose=0)), classes)
        after = logits_miou(labels, main_logits(pruned.predict(images, verbose=0)), classes)
        line += f"; mIoU on the held-out images {100 * before:.2f} -> {100 * after:.2f}"
    print(line)
    return pruned


def _ode_steps(text: str) -> int | str:
    """`--ode-steps`: `auto`, or a number of steps."""
    from kseg.recipes.config import positive

    if text == "auto":
        return text
    try:
        return positive(text)
    except argparse.ArgumentTypeError:
        message = f"expected auto or a number of steps, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def main(argv: list[str] | None = None) -> None:
    from kseg.data import SEGMENTATION_DATASETS
    from kseg.errors import command_parser, run_command
    from kseg.export.exporter import FORMATS
    from kseg.export.formats import TFLITE_MODES
    from kseg.recipes.config import fraction, positive, share, size

    p = command_parser("python -m kseg.export", __doc__.splitlines()[0])
    p.add_argument("model", help="a .keras file (from a recipe's --out folder)")
    p.add_argument("--out", required=True, help="folder for the artefacts")
    p.add_argument(
        "--formats",
        type=_names_of(FORMATS),
        default=",".join(FORMATS),
        help="comma-separated, any of these",
    )
    p.add_argument(
        "--quantize",
        type=_names_of(TFLITE_MODES),
        default="fp32",
        help=f"TFLite variants, comma-separated, any of {','.join(TFLITE_MODES)}",
    )
    p.add_argument("--input-size", type=size, default=(1024, 2048), help="HEIGHTxWIDTH")
    p.add_argument(
        "--calib-data",
        help="dataset folder: int8 is calibrated on --calib-split images and every file is "
        "checked and scored per class on held-out --eval-split images; or a folder of "
        "photos without labels: calibrated on the first --calib-images, checked on the "
        "--eval-images after them (without it: one VOC photo, with a warning)",
    )
    p.add_argument(
        "--calib-dataset",
        choices=[*sorted(SEGMENTATION_DATASETS), "photos"],
        help="the reader of --calib-data (default: custom for a folder with classes.txt, "
        "labelmap.txt, labelme's files or a COCO export, your own data's layouts; cityscapes "
        "for one with leftImg8bit/; else photos)",
    )
    p.add_argument("--calib-split", default="train", help="calibration images' split")
    p.add_argument("--calib-images", type=positive, default=8)
    p.add_argument("--eval-split", default="val", help="held-out images' split")
    p.add_argument("--eval-images", type=positive, default=16)
    p.add_argument(
        "--prune",
        type=fraction,
        help="remove this fraction of the filters (lowest L1 first) before exporting; "
        "fine-tune afterwards, or prune during training with a recipe's --prune-from",
    )
    p.add_argument(
        "--round-to",
        type=positive,
        default=8,
        help="pruning keeps multiples of this many channels (int8 and SIMD kernels work in "
        "blocks of 8; bench/pruning_round_to.py measures it)",
    )
    p.add_argument(
        "--ode-steps",
        type=_ode_steps,
        help="export ODE blocks on a fixed grid of this many steps, or `auto`: the cheapest of "
        "euler/midpoint/rk4 x 1/2/4/8 steps that reaches --ode-agreement with the adaptive "
        "solve on the checked images (table printed and written to ode_grid.txt)",
    )
    p.add_argument(
        "--ode-agreement", type=share, default=0.995, help="agreement --ode-steps auto needs"
    )
    p.add_argument("--ode-method", default="rk4", choices=("rk4", "midpoint", "heun", "euler"))
    p.add_argument(
        "--int8-report",
        action="store_true",
        help="write int8_layer_errors.txt: each op's int8 error on the calibration images",
    )
    p.add_argument(
        "--keep-float",
        help="also write <name>_int8_mixed.tflite with these layers (comma-separated, as "
        "int8_layer_errors.txt names them) in float, or `auto` / `auto:N`: the 3 / N worst",
    )
    p.add_argument(
        "--labels",
        help="a class list for labels.txt and the TFLite metadata: names one a line, a "
        "classes.txt (name or name R G B), a labelmap.txt or labelme's labels.txt (default: "
        "the --calib-data dataset's, else those of the data the run beside MODEL trained "
        "on, by its config.json, else class_0, class_1, ...)",
    )
    args = p.parse_args(argv)
    run_command(lambda: run(args), argv)


def _names_of(choices: tuple[str, ...]):
    """An argparse type: comma-separated names, each one of `choices`."""

    def names(text: str) -> tuple[str, ...]:
        chosen = tuple(name.strip() for name in text.split(",") if name.strip())
        unknown = [name for name in chosen if name not in choices]
        if unknown or not chosen:
            problem = f"unknown {', '.join(map(repr, unknown))}" if unknown else "none given"
            raise argparse.ArgumentTypeError(f"{problem}; choose from {','.join(choices)}")
        return chosen

    return names


def _reader_of(folder: str, reader: str | None) -> str:
    """How `--calib-data` is read: `--calib-dataset`, else your own data's layouts when the
    folder holds classes.txt, labelmap.txt, labelme's files or a COCO export, Cityscapes'
    when it holds leftImg8bit/, and else as a folder of unlabelled photos."""
    from kseg.data.folder import FolderDataset, reader_of

    if reader is not None:
        return reader
    # classes.txt, or a layout that `reader_of` tells from this one (VOC, labelme, COCO)
    if (
        os.path.isfile(os.path.join(folder, "classes.txt"))
        or reader_of(folder) is not FolderDataset
    ):
        return "custom"
    return "cityscapes" if os.path.isdir(os.path.join(folder, "leftImg8bit")) else "photos"


def _calibration_dataset(model, folder: str, reader: str | None):
    """The dataset of `--calib-data` (its reader: `_reader_of`), refused when its classes
    are not the model's."""
    from kseg.data import SEGMENTATION_DATASETS
    from kseg.errors import UserError
    from kseg.tasks.base import main_logits

    reader = _reader_of(folder, reader)
    dataset = SEGMENTATION_DATASETS[reader](folder)
    classes = main_logits(model.output).shape[-1]
    if classes != dataset.num_classes:
        raise UserError(
            f"{model.name} outputs {classes} classes, but the {reader} data in {folder} has "
            f"{dataset.num_classes}: calibrate on the data the model was trained on (or name "
            "its reader with --calib-dataset)"
        )
    return dataset


def _trained_classes(model, path: str):
    """(names, colours) of the classes of the data that the run beside `path` trained on
    (`kseg.recipes.config.trained_data`), or (None, None)."""
    from kseg.recipes.config import trained_data
    from kseg.tasks.base import main_logits

    dataset = trained_data(path, main_logits(model.output).shape[-1])
    return (None, None) if dataset is None else _classes_of(dataset)


def _classes_of(dataset):
    """(names, colours or None) of a dataset reader's classes."""
    names = list(dataset.class_names)
    return names, dataset.palette if len(dataset.palette) >= len(names) else None


def run(args) -> None:
    from kseg.export.exporter import export, table
    from kseg.models.loading import load_model
    from kseg.train.checkpoints import model_of

    args.model = model_of(args.model)
    model = load_model(args.model)
    height, width = args.input_size
    images = labels = eval_images = eval_labels = class_names = palette = None
    if args.labels:
        from kseg.data.folder import read_class_list

        listed = read_class_list(args.labels)
        class_names, palette = list(listed.names), listed.palette if listed.coloured else None
    reader = _reader_of(args.calib_data, args.calib_dataset) if args.calib_data else None
    if reader == "photos":
        from kseg.export.calibration import photo_data

        images, eval_images = photo_data(
            args.calib_data, args.calib_images, args.eval_images, height, width
        )
        print(
            f"Calibrating on {len(images)} photos of {args.calib_data} and checking on "
            f"{len(eval_images)} after them, resized to {height}x{width} (no labels: no "
            "mIoU)"
        )
    elif reader:
        from kseg.export.calibration import calibration_data

        dataset = _calibration_dataset(model, args.calib_data, reader)
        if not class_names:
            class_names, palette = _classes_of(dataset)
        images, labels = calibration_data(
            dataset, args.calib_split, args.calib_images, height, width
        )
        eval_images, eval_labels = calibration_data(
            dataset, args.eval_split, args.eval_images, height, width
        )
    if not class_names:
        class_names, palette = _trained_classes(model, args.model)
    if args.prune:
        model = _prune(model, args.prune, args.round_to, eval_images, eval_labels)
    artefacts = export(
        model, args.out, formats=args.formats, quantize=args.quantize,
        input_size=(height, width), images=images, labels=labels, eval_images=eval_images,
        eval_labels=eval_labels,
        ode_steps=args.ode_steps, ode_method=args.ode_method, ode_agreement=args.ode_agreement,
        class_names=class_names, palette=palette, int8_report=args.int8_report,
        keep_float=args.keep_float,
    )  # fmt: skip
    print(f"\n{args.model} at {height}x{width}, artefacts in {args.out}:")
    print(table(artefacts))
    scores = os.path.join(args.out, "per_class_iou.txt")
    if eval_labels is not None and os.path.exists(scores):
        with open(scores, encoding="utf-8") as f:
            print(f"\n{f.read().rstrip()}")


if __name__ == "__main__":
    main()
