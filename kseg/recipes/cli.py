"""The command line shared by the dataset recipes: train, evaluate and predict.

    python -m kseg.recipes.<dataset> {train,evaluate,predict} --model contextnet_cn14 \
        --data-dir DIR [options]
    python -m kseg.recipes.cityscapes --demo      # the embedded default, end to end

Defaults are the paper's (see `kseg.train.presets`); `--help` shows them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What differs between datasets: the reader, splits and the crop size."""

    dataset: str  # key of kseg.data.SEGMENTATION_DATASETS
    crop: tuple[int, int]  # training crop (height, width) before rounding to the model
    crop_source: str
    train_split: str = "train"
    eval_split: str = "val"
    demo: bool = False
    # Used, with a note, when the dataset folder lacks `train_split` (VOC without SBD).
    train_split_fallback: str | None = None


DEMO = {"epochs": 30, "batch_size": 8, "crop": (128, 256), "learning_rate": 0.01}


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        message = f"expected HEIGHTxWIDTH, e.g. 512x1024; got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    return h, w


def _eval_crop(text: str) -> tuple[int, int] | str:
    return "full" if text.lower() == "full" else _size(text)


def parse_model_kwargs(text: str) -> dict:
    """`--model-kwargs`: a JSON object of model arguments."""
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        message = f"expected a JSON object like '{{\"backbone_width\": 0.5}}'; got {text!r} ({e})"
        raise argparse.ArgumentTypeError(message) from None
    if not isinstance(kwargs, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return kwargs


def _widths(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        message = f"expected widths like 1.5,1.25,1.0; got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def build_parser(recipe: Recipe) -> argparse.ArgumentParser:
    from kseg.train.presets import PRESETS
    from kseg.train.strategy import STRATEGIES

    preset = PRESETS["contextnet"]
    p = argparse.ArgumentParser(
        prog=f"python -m kseg.recipes.{recipe.dataset}",
        description=f"Train, evaluate and predict on {recipe.dataset}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "command",
        nargs="?",
        choices=("train", "evaluate", "predict"),
        help="what to do; with --demo and no command: all three",
    )
    p.add_argument(
        "--model", default="contextnet_cn14", help="a name from kseg.models.list_models()"
    )
    p.add_argument(
        "--model-kwargs",
        type=parse_model_kwargs,
        default={},
        help='model arguments as JSON, e.g. \'{"paths": "one_way"}\' for cross_cooperative',
    )
    p.add_argument("--data-dir", help="the dataset folder in its official layout")
    p.add_argument(
        "--out", help="run folder (checkpoints, logs, results); default runs/<dataset>-<model>"
    )
    if recipe.demo:
        p.add_argument(
            "--demo",
            action="store_true",
            help="build a small real-image set in the Cityscapes layout and run on it "
            f"(epochs {DEMO['epochs']}, batch {DEMO['batch_size']}, crop "
            f"{DEMO['crop'][0]}x{DEMO['crop'][1]}, learning rate {DEMO['learning_rate']})",
        )
    p.add_argument("--epochs", type=int, help=f"default {preset.epochs} ({preset.source})")
    p.add_argument("--batch-size", type=int, help=f"default {preset.batch_size}")
    p.add_argument(
        "--learning-rate", type=float, help=f"poly base rate, default {preset.learning_rate}"
    )
    p.add_argument(
        "--crop",
        type=_size,
        help=f"training crop HxW, default the preset's (DeepLabV3+: 513x513 on VOC, "
        f"768x768 on Cityscapes), else {recipe.crop[0]}x{recipe.crop[1]} "
        f"({recipe.crop_source}); rounded up to the model's input multiple",
    )
    p.add_argument(
        "--eval-crop",
        type=_eval_crop,
        help="validate and evaluate on the centre HxW window of each image, or 'full' "
        "images; default the preset's (DeepLabV3+ on VOC: 513x513), else full",
    )
    p.add_argument(
        "--prune-from",
        type=float,
        help="progressive pruning (ContextNet section 3.2.2): train at this width "
        "multiplier (the paper: 2.0), then prune to each of --prune-to with fine-tuning",
    )
    p.add_argument(
        "--prune-to",
        type=_widths,
        default=(1.5, 1.25, 1.0),
        help="the widths of the pruning steps (section 3.2.2)",
    )
    p.add_argument(
        "--finetune-epochs",
        type=int,
        help="epochs after each pruning step, at a tenth of the learning rate (the paper "
        "does not say; default a quarter of --epochs)",
    )
    p.add_argument(
        "--steps-per-epoch", type=int, help="limit each epoch (default: the whole split)"
    )
    p.add_argument("--seed", type=int, help="deterministic pipeline and initial weights")
    p.add_argument(
        "--no-resume", action="store_true", help="start afresh even if --out has a checkpoint"
    )
    p.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="leave out unreadable or mismatched files instead of stopping",
    )
    p.add_argument(
        "--strategy", choices=STRATEGIES, default="default", help="tf.distribute strategy"
    )
    p.add_argument(
        "--logical-cpus",
        type=int,
        default=0,
        help="split the CPU into this many logical devices (try --strategy mirrored)",
    )
    p.add_argument("--mixed-precision", choices=("none", "float16", "bfloat16"), default="none")
    p.add_argument("--no-tensorboard", action="store_true")
    p.add_argument(
        "--precise-bn-batches",
        type=int,
        default=8,
        help="re-estimate BatchNorm statistics on this many training batches before each "
        "validation (0: keep the moving averages, as the paper)",
    )
    p.add_argument(
        "--checkpoint", help="model for evaluate/predict (default: best, else last, in --out)"
    )
    p.add_argument("--split", help=f"split for evaluate/predict (default {recipe.eval_split})")
    p.add_argument("--limit", type=int, help="evaluate/predict only the first N images")
    p.add_argument(
        "--label-ids",
        action="store_true",
        help="predict: also write official Cityscapes labelIds PNGs",
    )
    p.add_argument("--verbose", default="auto", help="Keras progress bars: auto, 0, 1 or 2")
    return p


def main(recipe: Recipe, argv: list[str] | None = None) -> None:
    args = build_parser(recipe).parse_args(argv)
    demo = getattr(args, "demo", False)
    if args.command is None and not demo:
        build_parser(recipe).error("give a command (train, evaluate, predict) or --demo")
    if args.logical_cpus:
        from kseg.train.strategy import split_cpu

        split_cpu(args.logical_cpus)
    import keras

    if args.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(f"mixed_{args.mixed_precision}")
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    out = args.out or os.path.join("runs", f"{recipe.dataset}-{args.model}")
    if demo:
        from kseg.data.demo_data import build_demo_cityscapes

        args.data_dir = args.data_dir or build_demo_cityscapes(os.path.join(out, "demo-data"))
        warnings.filterwarnings("ignore", message=".*the standard split has")
        for key, value in DEMO.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if not args.data_dir:
        build_parser(recipe).error("--data-dir is required (or --demo)")
    from kseg.data import SEGMENTATION_DATASETS

    dataset = SEGMENTATION_DATASETS[recipe.dataset](
        args.data_dir, on_bad="skip" if args.skip_bad_files else "raise"
    )
    commands = [args.command] if args.command else ["train", "evaluate", "predict"]
    started = time.time()
    for command in commands:
        {"train": train, "evaluate": evaluate, "predict": predict}[command](
            recipe, dataset, args, out
        )
    if demo:
        export_demo(recipe, dataset, args, out)
        print(f"\nDemo finished in {time.time() - started:.0f} s. Everything is in {out}/:")
        print("  demo-data/        the generated images and labels (Cityscapes layout)")
        print("  best.keras, last-epoch*.keras, state.json, log.csv, tensorboard/")
        print("  evaluation.csv, evaluation.json   per-class IoU")
        print("  predictions/      colour PNGs and overlays")
        print("  export/           TFLite fp32 and int8 (builtin ops), verified in LiteRT")


def _round_up(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    return tuple(-(-s // multiple) * multiple for s in size)


def train(recipe: Recipe, dataset, args, out: str) -> None:
    from kseg.models import create_model

    if args.prune_from:
        return train_progressive(recipe, dataset, args, out)
    _train_stage(
        recipe, dataset, args, out,
        lambda: create_model(args.model, num_classes=dataset.num_classes, **args.model_kwargs),
        epochs=args.epochs, learning_rate=args.learning_rate,
    )  # fmt: skip


def _train_samples(recipe: Recipe, dataset):
    """(split, samples) of the recipe's training split, or of its fallback if the folder
    lacks it."""
    from kseg.data.errors import DatasetLayoutError

    try:
        return recipe.train_split, dataset.samples(recipe.train_split)
    except DatasetLayoutError as e:
        if recipe.train_split_fallback is None:
            raise
        first = str(e).splitlines()[0]
        print(f"No {recipe.train_split} split ({first}); training on {recipe.train_split_fallback}")
        return recipe.train_split_fallback, dataset.samples(recipe.train_split_fallback)


def _train_stage(
    recipe: Recipe,
    dataset,
    args,
    folder: str,
    make_model,
    epochs: int | None,
    learning_rate: float | None,
) -> None:
    """Trains the model of `make_model()` (or resumes the one in `folder`) for `epochs`."""
    from kseg.data import segmentation_pipeline
    from kseg.train import compile_model, get_strategy, preset_for
    from kseg.train.engine import fit, resume_point
    from kseg.utils.summary import count_params

    preset = preset_for(args.model, recipe.dataset)
    if learning_rate is not None:
        preset = dataclasses.replace(preset, learning_rate=learning_rate)
    epochs = epochs or preset.epochs
    batch = args.batch_size or preset.batch_size
    strategy = get_strategy(args.strategy)
    train_split, train_samples = _train_samples(recipe, dataset)
    val_samples = dataset.samples(recipe.eval_split)
    with strategy.scope():
        resumed = None if args.no_resume else resume_point(folder)
        if resumed:
            model, initial_epoch, state = resumed
            print(f"Resuming {folder}: {initial_epoch} of {epochs} epochs done")
        else:
            model = make_model()
            initial_epoch, state = 0, None
        multiple = getattr(model, "input_multiple", 1)
        crop = _round_up(args.crop or preset.crop or recipe.crop, multiple)
        train_ds = segmentation_pipeline(
            dataset, train_samples, batch, training=True, crop=crop, seed=args.seed
        )
        steps = args.steps_per_epoch or max(1, len(train_samples) // batch)
        if args.steps_per_epoch:
            train_ds = train_ds.repeat().take(steps)
        # One image per replica; a strategy leaves out the last partial batch (the
        # evaluate command scores every image).
        replicas = strategy.num_replicas_in_sync
        val_ds = segmentation_pipeline(
            dataset,
            val_samples,
            replicas,
            training=False,
            pad_multiple=multiple,
            drop_remainder=replicas > 1,
            eval_crop=_eval_crop_size(args, preset),
        )
        if not resumed:
            total = epochs * steps
            compile_model(model, preset, dataset.num_classes, total, steps_per_epoch=steps)
    if initial_epoch >= epochs:
        print(f"{folder} already has {initial_epoch} epochs (asked for {epochs}); nothing to train")
        return
    print(
        f"Training {model.name} ({count_params(model):,} parameters) on {dataset.name} "
        f"{train_split} ({len(train_samples)} images), crop {crop[0]}x{crop[1]}, "
        f"batch {batch}, {steps} steps x {epochs} epochs, "
        f"{strategy.num_replicas_in_sync} replica(s); preset: {preset.source}"
    )
    verbose = int(args.verbose) if str(args.verbose).isdigit() else args.verbose
    fit(
        model,
        train_ds,
        val_ds,
        epochs,
        folder,
        initial_epoch=initial_epoch,
        state=state,
        tensorboard=not args.no_tensorboard,
        precise_bn_batches=args.precise_bn_batches,
        verbose=verbose,
    )


def train_progressive(recipe: Recipe, dataset, args, out: str) -> None:
    """ContextNet's progressive pruning (section 3.2.2): train at `--prune-from` times the
    width, then prune the lowest-L1 filters to each of `--prune-to` in turn, fine-tuning
    after each step. Stage k lives in `out/width<w>/` and resumes there; the last stage's
    best model is copied to `out/best.keras` and `out/pruning.json` sums the stages up."""
    import keras

    from kseg.export.pruning import prune_filters, width_schedule
    from kseg.models import create_model
    from kseg.train import preset_for
    from kseg.train.checkpoints import BEST, atomic_write, best_or_last, read_state
    from kseg.utils.summary import count_params

    widths = [args.prune_from, *args.prune_to]
    ratios = width_schedule(args.prune_from, args.prune_to)
    folders = [os.path.join(out, f"width{w:g}") for w in widths]
    preset = preset_for(args.model, recipe.dataset)
    preset_rate = args.learning_rate or preset.learning_rate
    finetune_epochs = args.finetune_epochs or max(1, (args.epochs or preset.epochs) // 4)
    print(
        f"Progressive pruning: train at width {widths[0]:g}, then prune to "
        f"{', '.join(f'{w:g}' for w in widths[1:])} with {finetune_epochs} fine-tuning "
        f"epoch(s) each at learning rate {preset_rate / 10:g}"
    )
    _train_stage(
        recipe, dataset, args, folders[0],
        lambda: create_model(
            args.model,
            num_classes=dataset.num_classes,
            **{**args.model_kwargs, "width_multiplier": args.prune_from},
        ),
        epochs=args.epochs, learning_rate=args.learning_rate,
    )  # fmt: skip
    stages = []
    for k, ratio in enumerate(ratios, start=1):
        source = best_or_last(folders[k - 1])

        def pruned(source=source, ratio=ratio):
            model = prune_filters(keras.saving.load_model(source, compile=False), ratio=ratio)
            print(f"Pruned {source}: {ratio:.1%} of the filters removed")
            return model

        _train_stage(
            recipe, dataset, args, folders[k], pruned,
            epochs=finetune_epochs, learning_rate=preset_rate / 10,
        )  # fmt: skip
    for w, folder in zip(widths, folders, strict=True):
        path = best_or_last(folder)
        best = (read_state(folder) or {}).get("best")
        model = keras.saving.load_model(path, compile=False)
        stages.append(
            {
                "width": w,
                "model": path,
                "params": count_params(model),
                "best_val_miou": best if best is not None and abs(best) != float("inf") else None,
            }
        )
    final = best_or_last(folders[-1])
    atomic_write(os.path.join(out, BEST), lambda tmp: shutil.copyfile(final, tmp))

    def write_summary(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump({"stages": stages}, f, indent=1)

    atomic_write(os.path.join(out, "pruning.json"), write_summary)
    for s in stages:
        best = s["best_val_miou"]
        score = "" if best is None else f", best validation mIoU {100 * best:.2f}"
        print(f"  width {s['width']:g}: {s['params']:,} parameters{score}  ({s['model']})")
    print(f"Final model: {os.path.join(out, BEST)}")


def _eval_crop_size(args, preset) -> tuple[int, int] | None:
    """`--eval-crop`, else the preset's centre crop (None: whole images)."""
    if args.eval_crop is not None:
        return None if args.eval_crop == "full" else args.eval_crop
    return preset.eval_crop if preset is not None else None


def _preset_of(model, recipe: Recipe):
    """The preset of a loaded model (kseg models keep their registry name), or None."""
    from kseg.train import preset_for

    try:
        return preset_for(model.name, recipe.dataset)
    except ValueError:
        return None


def _load(args, out: str):
    import keras

    path = args.checkpoint
    if path is None:
        from kseg.train.checkpoints import BEST, last_checkpoint

        best = os.path.join(out, BEST)
        last = last_checkpoint(out)
        path = best if os.path.exists(best) else (last[0] if last else None)
    if path is None or not os.path.exists(path):
        sys.exit(
            f"no model to use: {path or out + '/best.keras'} does not exist; train first "
            "or pass --checkpoint"
        )
    return keras.saving.load_model(path, compile=False), path


def evaluate(recipe: Recipe, dataset, args, out: str) -> dict:
    from kseg.data import segmentation_pipeline
    from kseg.train.engine import evaluate_confusion
    from kseg.train.metrics import iou_per_class, iou_table, mean_iou

    model, path = _load(args, out)
    split = args.split or recipe.eval_split
    samples = dataset.samples(split)[: args.limit]
    crop = _eval_crop_size(args, _preset_of(model, recipe))
    ds = segmentation_pipeline(
        dataset,
        samples,
        1,
        training=False,
        pad_multiple=getattr(model, "input_multiple", 1),
        eval_crop=crop,
    )
    confusion = evaluate_confusion(model, ds, dataset.num_classes)
    window = "whole images" if crop is None else f"centre {crop[0]}x{crop[1]} crops"
    print(f"\n{dataset.name} {split}, {len(samples)} images ({window}), model {path}")
    print(iou_table(confusion, dataset.class_names))
    iou = iou_per_class(confusion)
    result = {
        "dataset": dataset.name,
        "split": split,
        "images": len(samples),
        "checkpoint": path,
        "eval_crop": None if crop is None else list(crop),
        "mean_iou": mean_iou(confusion),
        "iou": {
            n: (None if v != v else float(v)) for n, v in zip(dataset.class_names, iou, strict=True)
        },
        "confusion": confusion.tolist(),
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "evaluation.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out, "evaluation.csv"), "w") as f:
        f.write("class,iou\n")
        for name, value in result["iou"].items():
            f.write(f"{name},{'' if value is None else f'{value:.6f}'}\n")
        f.write(f"mean,{result['mean_iou']:.6f}\n")
    return result


def predict(recipe: Recipe, dataset, args, out: str) -> None:
    import numpy as np
    from PIL import Image

    from kseg.train.engine import predict_labels

    model, path = _load(args, out)
    split = args.split or recipe.eval_split
    samples = dataset.samples(split, verify=False)[: args.limit or 8]
    folder = os.path.join(out, "predictions")
    os.makedirs(folder, exist_ok=True)
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(dataset.palette)] = dataset.palette
    multiple = getattr(model, "input_multiple", 1)
    for s in samples:
        image = np.asarray(Image.open(s.image).convert("RGB"))
        labels = predict_labels(model, image, multiple)
        stem = os.path.splitext(os.path.basename(s.image))[0]
        coloured = Image.fromarray(labels, mode="P")
        coloured.putpalette(palette.reshape(-1).tolist())
        coloured.save(os.path.join(folder, f"{stem}_pred.png"))
        overlay = (0.5 * image + 0.5 * palette[labels]).astype(np.uint8)
        Image.fromarray(overlay).save(os.path.join(folder, f"{stem}_overlay.jpg"), quality=90)
        if args.label_ids and hasattr(dataset, "train_ids_to_label_ids"):
            ids = dataset.train_ids_to_label_ids(labels)
            Image.fromarray(ids).save(os.path.join(folder, f"{stem}_labelIds.png"))
    print(f"\nWrote {len(samples)} predictions (colour PNG and overlay) of {path} to {folder}")


def export_demo(recipe: Recipe, dataset, args, out: str) -> None:
    """The demo's last step: the best model as builtins-only TFLite, fp32 and int8
    (calibrated on validation images), each run in the LiteRT interpreter against Keras."""
    from kseg.export import export, table
    from kseg.export.calibration import calibration_data

    model, path = _load(args, out)
    height, width = _round_up(args.crop or recipe.crop, getattr(model, "input_multiple", 1))
    images, labels = calibration_data(dataset, recipe.eval_split, 8, height, width)
    artefacts = export(
        model, os.path.join(out, "export"), formats=("tflite",), quantize=("fp32", "int8"),
        input_size=(height, width), images=images, labels=labels,
    )  # fmt: skip
    print(f"\nExported {path} at {height}x{width}:")
    print(table(artefacts))
