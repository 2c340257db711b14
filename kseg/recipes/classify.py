"""The command line shared by the image-classification recipes: train and evaluate.

    python -m kseg.recipes.cifar10 {train,evaluate} --model res_ode_net --data-dir DIR
    python -m kseg.recipes.cifar100 train --model choicenet_40 --data-dir DIR
    python -m kseg.recipes.cifar10 --demo      # real images that ship here, end to end

Defaults are the paper's (`kseg.train.presets`, chosen by the model); `--help` shows them.
The preset also says which images pick the best epoch: the test set (the official code of
the ODE nets) or images held out of the training set (ChoiceNet, `holdout` below).
The run folder holds the checkpoints (atomic, resumed), `preprocessing.json` (the
normalisation the model was trained with, which the ODE-features recipe reuses),
`log.csv` and `results.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable

from kseg.recipes.cli import parse_model_kwargs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PREPROCESSING = "preprocessing.json"


@dataclasses.dataclass(frozen=True)
class ClassificationRecipe:
    """What differs between classification datasets."""

    dataset: str  # e.g. "cifar10"
    title: str  # e.g. "CIFAR-10"
    num_classes: int
    load: Callable  # (root, split) -> (uint8 images NxHxWx3, int32 labels)
    mean: tuple[float, float, float] | None  # None: computed from the training images
    std: tuple[float, float, float] | None
    default_model: str
    train_splits: tuple[str, ...] = ("train",)
    test_split: str = "test"
    # Held out of the training images for validation when the preset asks for it: a
    # count, or a fraction of the training set.
    holdout: int | float = 5000
    augment: bool = True  # SVHN trains without augmentation (ChoiceNet section 3.1.2)


# --demo: a subset of the real demo source (Fashion-MNIST, or digits 0-4), small widths
# and few epochs, so that it runs in minutes on two CPU cores.
DEMO = {
    "epochs": 6,
    "batch_size": 64,
    "train_images": 2000,
    "test_images": 400,
    "steps_images": 100,
}
# Per preset: a width and a rate that learn in six epochs at that size.
DEMO_MODEL = {
    "ode_nets": {"width": 64, "learning_rate": 0.05},
    "choicenet": {"width": 12, "learning_rate": 0.01},
}
DEMO_HOLDOUT = 0.1


def build_parser(recipe: ClassificationRecipe) -> argparse.ArgumentParser:
    from kseg.train.presets import preset_for

    preset = preset_for(recipe.default_model)
    p = argparse.ArgumentParser(
        prog=f"python -m kseg.recipes.{recipe.dataset}",
        description=f"Train and evaluate image classifiers on {recipe.title}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "command",
        nargs="?",
        choices=("train", "evaluate"),
        help="what to do; with --demo and no command: both",
    )
    p.add_argument(
        "--model", default=recipe.default_model, help="a name from kseg.models.list_models()"
    )
    p.add_argument(
        "--data-dir",
        help=f"folder holding {recipe.title} in its official layout "
        f"(default: the Keras cache, ~/.keras/datasets)",
    )
    p.add_argument("--out", help="run folder; default runs/<dataset>-<model>")
    p.add_argument(
        "--demo",
        action="store_true",
        help="train and evaluate on real images that ship here instead (Fashion-MNIST from "
        "Debian's dataset-fashion-mnist when installed, else scikit-learn's digits 0-4): "
        + ", ".join(f"{k} {v}" for k, v in DEMO.items())
        + "; per preset "
        + "; ".join(f"{p}: {v}" for p, v in DEMO_MODEL.items()),
    )
    p.add_argument("--epochs", type=int, help=f"default {preset.epochs} ({preset.source})")
    p.add_argument("--batch-size", type=int, help=f"default {preset.batch_size}")
    p.add_argument("--learning-rate", type=float, help=f"default {preset.learning_rate}")
    p.add_argument(
        "--width",
        type=int,
        help="filters of the main blocks (ODE nets: 256; ChoiceNet: the growth, 67/81/90)",
    )
    p.add_argument(
        "--model-kwargs",
        type=parse_model_kwargs,
        default={},
        help="more model arguments as JSON, e.g. '{\"modules\": 2}' for ChoiceNet",
    )
    p.add_argument("--train-images", type=int, help="train on the first N images only")
    p.add_argument("--test-images", type=int, help="test on the first N only")
    p.add_argument(
        "--steps-images",
        type=int,
        help="evaluate: count solver steps per image on the first N test images (Table 1, "
        "Fig. 1; default all)",
    )
    p.add_argument("--steps-per-epoch", type=int, help="limit each epoch")
    p.add_argument("--seed", type=int, help="deterministic pipeline and initial weights")
    p.add_argument("--no-resume", action="store_true", help="start afresh")
    p.add_argument("--no-tensorboard", action="store_true")
    p.add_argument("--checkpoint", help="evaluate: the model (default best, else last, in --out)")
    p.add_argument("--verbose", default="auto", help="Keras progress bars: auto, 0, 1 or 2")
    return p


@dataclasses.dataclass
class Data:
    name: str
    train: tuple  # (images, labels)
    test: tuple
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def load_data(recipe: ClassificationRecipe, args) -> Data:
    """The dataset from --data-dir or the Keras cache, or the demo source with --demo."""
    if args.demo:
        from kseg.data.classification_pipeline import channel_statistics
        from kseg.data.demo_classification import demo_source

        train, test = demo_source(args.train_images, args.test_images, seed=args.seed or 0)
        mean, std = channel_statistics(train.images)
        classes = len(train.classes)
        name = (
            f"{train.name.rsplit(' ', 1)[0]} (demo: real images that ship here, not {recipe.title})"
        )
        return Data(
            name, (train.images, train.labels), (test.images, test.labels), classes, mean, std
        )
    import numpy as np

    root = args.data_dir or os.path.join(os.path.expanduser("~"), ".keras", "datasets")
    parts = [recipe.load(root, split) for split in recipe.train_splits]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = recipe.load(root, recipe.test_split)
    if args.train_images:
        train = (train[0][: args.train_images], train[1][: args.train_images])
    if args.test_images:
        test = (test[0][: args.test_images], test[1][: args.test_images])
    mean, std = recipe.mean, recipe.std
    if mean is None:
        from kseg.data.classification_pipeline import channel_statistics

        mean, std = channel_statistics(train[0])
    return Data(recipe.title, train, test, recipe.num_classes, mean, std)


def main(recipe: ClassificationRecipe, argv: list[str] | None = None) -> None:
    parser = build_parser(recipe)
    args = parser.parse_args(argv)
    if args.command is None and not args.demo:
        parser.error("give a command (train, evaluate) or --demo")
    import keras

    if args.demo:
        from kseg.train.presets import preset_for

        demo_model = DEMO_MODEL.get(preset_for(args.model).name, {})
        for key, value in {**DEMO, **demo_model}.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    out = args.out or os.path.join("runs", f"{recipe.dataset}-{args.model}")
    try:
        data = load_data(recipe, args)
    except FileNotFoundError as error:
        raise SystemExit(
            f"{error}\n\nOr run `python -m kseg.recipes.{recipe.dataset} --demo` "
            "to train on real images that ship here."
        ) from None
    started = time.time()
    for command in [args.command] if args.command else ["train", "evaluate"]:
        {"train": train, "evaluate": evaluate}[command](recipe, data, args, out)
    if args.demo:
        print(f"\nDemo finished in {time.time() - started:.0f} s; the run is in {out}/")


def _model_kwargs(args, preset, classes: int) -> dict:
    kwargs = {"num_classes": classes}
    if args.width:
        kwargs["width"] = args.width
    if preset.dropout is not None:
        kwargs["dropout"] = preset.dropout
    return {**kwargs, **args.model_kwargs}


def train(recipe: ClassificationRecipe, data: Data, args, out: str) -> None:
    from kseg.data.classification_pipeline import (
        AUGMENTATIONS,
        classification_pipeline,
        split_holdout,
    )
    from kseg.models import create_model
    from kseg.train import ResumableReduceLROnPlateau, compile_classifier, preset_for
    from kseg.train.checkpoints import atomic_write
    from kseg.train.engine import fit, resume_point
    from kseg.utils.summary import count_params

    preset = preset_for(args.model)
    if args.learning_rate is not None:
        preset = dataclasses.replace(preset, learning_rate=args.learning_rate)
    epochs = args.epochs or preset.epochs
    batch = args.batch_size or preset.batch_size
    resumed = None if args.no_resume else resume_point(out)
    if resumed:
        model, initial_epoch, state = resumed
        print(f"Resuming {out}: {initial_epoch} of {epochs} epochs done")
    else:
        model = create_model(args.model, **_model_kwargs(args, preset, data.classes))
        initial_epoch, state = 0, None
    images, labels = data.train
    if preset.validation == "holdout":
        holdout = DEMO_HOLDOUT if args.demo else recipe.holdout
        (images, labels), validation = split_holdout(images, labels, holdout)
        validation_name = f"{len(validation[1])} images held out of the training set"
    else:
        validation, validation_name = data.test, "the test images"
    augmentation = AUGMENTATIONS[preset.augmentation if recipe.augment else "none"]
    train_ds = classification_pipeline(
        images, labels, batch, training=True, mean=data.mean, std=data.std,
        augmentation=augmentation, seed=args.seed,
    )  # fmt: skip
    steps = args.steps_per_epoch or -(-len(images) // batch)
    if args.steps_per_epoch:
        train_ds = train_ds.repeat().take(steps)
    val_ds = classification_pipeline(
        *validation, batch, training=False, mean=data.mean, std=data.std
    )
    if not resumed:
        compile_classifier(model, preset, total_steps=epochs * steps, steps_per_epoch=steps)
    os.makedirs(out, exist_ok=True)
    preprocessing = {
        "source": data.name,
        "classes": data.classes,
        "mean": list(data.mean),
        "std": list(data.std),
        "image_size": list(images.shape[1:3]),
        "validation": validation_name,
        "augmentation": preset.augmentation if recipe.augment else "none",
    }

    def write(path):
        with open(path, "w") as f:
            json.dump(preprocessing, f, indent=1)

    atomic_write(os.path.join(out, PREPROCESSING), write)
    if initial_epoch >= epochs:
        print(f"{out} already has {initial_epoch} epochs (asked for {epochs}); nothing to train")
        return
    print(
        f"Training {model.name} ({count_params(model):,} parameters) on {data.name} "
        f"({len(images)} images), batch {batch}, {steps} steps x {epochs} epochs, best epoch "
        f"on {validation_name}; preset: {preset.source}"
    )
    callbacks = []
    if preset.schedule == "plateau":
        history = (state or {}).get("history", {}).get("val_accuracy", [])
        callbacks.append(
            ResumableReduceLROnPlateau(
                history=history,
                monitor="val_accuracy",
                mode="max",
                factor=preset.plateau_factor,
                patience=preset.plateau_patience,
                verbose=1,
            )
        )
    verbose = int(args.verbose) if str(args.verbose).isdigit() else args.verbose
    fit(
        model,
        train_ds,
        val_ds,
        epochs,
        out,
        initial_epoch=initial_epoch,
        state=state,
        tensorboard=not args.no_tensorboard,
        verbose=verbose,
        extra_callbacks=callbacks,
        precise_bn_batches=0,
    )


def read_preprocessing(folder: str) -> dict:
    """The run's `preprocessing.json`, with a clear error if it is missing."""
    path = os.path.join(folder, PREPROCESSING)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} is missing: it records how the model's images were normalised. Train "
            "with a kseg classification recipe, or write it: "
            '{"source": ..., "classes": N, "mean": [r, g, b], "std": [r, g, b], '
            '"image_size": [h, w]}'
        )
    with open(path) as f:
        return json.load(f)


def evaluate(recipe: ClassificationRecipe, data: Data, args, out: str) -> None:
    """Test error and, for ODE models, the solver steps per image (Table 1) and the most
    and least demanding images (Fig. 1); written to `results.json` and `solver_steps.png`."""
    import keras
    import numpy as np

    from kseg.data.classification_pipeline import normalize_numpy
    from kseg.features import plot_extreme_images, solver_statistics
    from kseg.models.ode_nets.ode_nets import ODE_LAYER
    from kseg.train.checkpoints import best_or_last
    from kseg.utils.summary import count_params

    path = args.checkpoint or best_or_last(out)
    model = keras.saving.load_model(path, compile=False)
    images, labels = data.test
    x = normalize_numpy(images, data.mean, data.std)
    logits = np.concatenate(
        [model.predict(x[i : i + 256], verbose=0) for i in range(0, len(x), 256)]
    )
    accuracy = float(np.mean(logits.argmax(-1) == labels))
    results = {
        "model": model.name,
        "checkpoint": path,
        "data": data.name,
        "test_images": len(labels),
        "test_error": 1 - accuracy,
        "params": count_params(model),
    }
    line = (
        f"{model.name}: test error {100 * (1 - accuracy):.2f}% on {len(labels)} images "
        f"of {data.name}, {count_params(model):,} parameters"
    )
    if any(layer.name == ODE_LAYER for layer in model.layers):
        n = args.steps_images or len(images)
        stats = solver_statistics(model, x[:n])
        steps = stats["accepted_steps"]
        results["solver"] = {
            "images": int(n),
            **{f"{k}_mean": float(np.mean(v)) for k, v in stats.items()},
            **{f"{k}_std": float(np.std(v)) for k, v in stats.items()},
        }
        line += f", solver steps {np.mean(steps):.1f} ± {np.std(steps):.1f} per image"
        plot_extreme_images(
            images[:n],
            steps,
            os.path.join(out, "solver_steps.png"),
            title=f"{model.name}: most (top) and fewest (bottom) steps",
        )
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(line)
