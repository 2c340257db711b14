"""`python -m kseg.export MODEL.keras --out DIR`: write and verify edge artefacts.

Prints a table: format, file size, latency with 1 and 2 threads, parity with Keras.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
        line += f"; mIoU on the calibration images {100 * before:.2f} -> {100 * after:.2f}"
    print(line)
    return pruned


def main(argv: list[str] | None = None) -> None:
    from kseg.data import SEGMENTATION_DATASETS
    from kseg.errors import run_command
    from kseg.export.exporter import FORMATS
    from kseg.export.formats import TFLITE_MODES
    from kseg.recipes.config import size

    p = argparse.ArgumentParser(
        prog="python -m kseg.export", description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", help="a .keras file (from a recipe's --out folder)")
    p.add_argument("--out", required=True, help="folder for the artefacts")
    p.add_argument("--formats", default=",".join(FORMATS), help="comma-separated")
    p.add_argument("--quantize", default="fp32", help=f"TFLite variants: {','.join(TFLITE_MODES)}")
    p.add_argument("--input-size", type=size, default=(1024, 2048), help="HEIGHTxWIDTH")
    p.add_argument("--calib-data", help="dataset folder for int8 calibration and parity")
    p.add_argument("--calib-dataset", default="cityscapes", choices=sorted(SEGMENTATION_DATASETS))
    p.add_argument("--calib-split", default="val")
    p.add_argument("--calib-images", type=int, default=8)
    p.add_argument(
        "--prune",
        type=float,
        help="remove this fraction of the filters (lowest L1 first) before exporting; "
        "fine-tune afterwards, or prune during training with a recipe's --prune-from",
    )
    p.add_argument("--round-to", type=int, default=1, help="pruning keeps multiples of this")
    p.add_argument("--ode-steps", type=int, help="export ODE blocks on this fixed grid")
    p.add_argument("--ode-method", default="rk4", choices=("rk4", "midpoint", "heun", "euler"))
    p.add_argument(
        "--labels",
        help="a text file with the class names, one a line, for labels.txt and the TFLite "
        "metadata (default: the --calib-data dataset's, else class_0, class_1, ...)",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    args = p.parse_args(argv)
    run_command(lambda: run(args), argv)


def run(args) -> None:
    from kseg.data import SEGMENTATION_DATASETS
    from kseg.export.exporter import export, table
    from kseg.models.loading import load_model

    model = load_model(args.model)
    height, width = args.input_size
    images = labels = class_names = None
    if args.labels:
        with open(args.labels) as f:
            class_names = [line.strip() for line in f if line.strip()]
    if args.calib_data:
        from kseg.export.calibration import calibration_data

        dataset = SEGMENTATION_DATASETS[args.calib_dataset](args.calib_data)
        class_names = class_names or dataset.class_names
        images, labels = calibration_data(
            dataset, args.calib_split, args.calib_images, height, width
        )
    if args.prune:
        model = _prune(model, args.prune, args.round_to, images, labels)
    artefacts = export(
        model, args.out, formats=tuple(args.formats.split(",")),
        quantize=tuple(args.quantize.split(",")), input_size=(height, width), images=images,
        labels=labels, ode_steps=args.ode_steps, ode_method=args.ode_method,
        class_names=class_names,
    )  # fmt: skip
    print(f"\n{args.model} at {height}x{width}, artefacts in {args.out}:")
    print(table(artefacts))


if __name__ == "__main__":
    main()
