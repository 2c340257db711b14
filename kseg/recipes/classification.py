"""Image-classification recipes: a dataset declaration and what its runs read and write.

    python -m kseg.recipes.cifar10 {train,evaluate} --model res_ode_net --data-dir DIR
    python -m kseg.recipes.cifar100 train --model choicenet_40 --data-dir DIR
    python -m kseg.recipes.cifar10 --demo      # real images that ship here, end to end

The preset says which images pick the best epoch: the test set (the official code of the
ODE nets) or images held out of the training set (ChoiceNet, `holdout` below). The run
folder holds the checkpoints, `config.json`, `preprocessing.json` (the normalisation the
model was trained with, which the ODE-features recipe reuses), `log.csv` and
`results.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

from kseg.errors import UserError
from kseg.recipes import config as types
from kseg.recipes.runner import Runner, TrainingData
from kseg.tasks import ClassificationTask

PREPROCESSING = "preprocessing.json"

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

    task = ClassificationTask()
    commands = ("train", "evaluate")
    demo = True

    @property
    def name(self) -> str:
        return self.title

    def add_arguments(self, training, evaluation, preset) -> None:
        """The recipe's own flags, in the command line's training and evaluation groups."""
        training.add_argument(
            "--no-augment",
            dest="augment",
            action="store_false",
            help="train without augmentation (ChoiceNet's C10 and C100 columns of Table 1)",
        )
        evaluation.add_argument(
            "--steps-images",
            type=types.positive,
            help="count solver steps per image on the first N test images (Table 1, Fig. 1; "
            "default all)",
        )

    def demo_defaults(self, config) -> dict:
        from kseg.train.presets import preset_for

        return {**DEMO, **DEMO_MODEL.get(preset_for(config.model).name, {})}

    # === Data ===
    def open(self, config, out: str) -> Data:
        """The dataset from --data-dir or the Keras cache, or the demo source with --demo."""
        if config.demo:
            from kseg.data.classification_pipeline import channel_statistics
            from kseg.data.demo_classification import demo_source

            train, test = demo_source(
                config.train_images, config.test_images, seed=config.seed or 0
            )
            mean, std = channel_statistics(train.images)
            source = train.name.rsplit(" ", 1)[0]
            name = f"{source} (demo: real images that ship here, not {self.title})"
            return Data(
                name, (train.images, train.labels), (test.images, test.labels),
                len(train.classes), mean, std,
            )  # fmt: skip
        import numpy as np

        root = config.data_dir or os.path.join(os.path.expanduser("~"), ".keras", "datasets")
        try:
            parts = [self.load(root, split) for split in self.train_splits]
            test = self.load(root, self.test_split)
        except FileNotFoundError as error:
            raise UserError(
                f"{error}\n\nOr run `python -m kseg.recipes.{self.dataset} --demo` to train on "
                "real images that ship here."
            ) from None
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        if config.train_images:
            train = (train[0][: config.train_images], train[1][: config.train_images])
        if config.test_images:
            test = (test[0][: config.test_images], test[1][: config.test_images])
        mean, std = self.mean, self.std
        if mean is None:
            from kseg.data.classification_pipeline import channel_statistics

            mean, std = channel_statistics(train[0])
        return Data(self.title, train, test, self.num_classes, mean, std)

    def count_classes(self, data) -> int:
        return data.classes

    def model_kwargs(self, config, preset, data) -> dict:
        kwargs = {"num_classes": data.classes}
        if config.width:
            kwargs["width"] = config.width
        if preset.dropout is not None:
            kwargs["dropout"] = preset.dropout
        return {**kwargs, **config.model_kwargs}

    def training_data(self, runner: Runner, model, preset, batch: int, strategy) -> TrainingData:
        from kseg.data.classification_pipeline import (
            AUGMENTATIONS,
            classification_pipeline,
            split_holdout,
        )
        from kseg.train.checkpoints import atomic_write_json
        from kseg.train.strategy import is_chief

        config, data = runner.config, runner.open_data()
        images, labels = data.train
        if preset.validation == "holdout":
            holdout = DEMO_HOLDOUT if config.demo else self.holdout
            if isinstance(holdout, int) and len(images) < 10 * holdout:
                holdout = DEMO_HOLDOUT  # a subset (--train-images): a tenth of it
            (images, labels), validation = split_holdout(images, labels, holdout)
            validation_name = f"{len(validation[1])} images held out of the training set"
        else:
            validation, validation_name = data.test, "the test images"
        augmentation = preset.augmentation if self.augment and config.augment else "none"
        train = classification_pipeline(
            images, labels, batch, training=True, mean=data.mean, std=data.std,
            augmentation=AUGMENTATIONS[augmentation], seed=config.seed,
        )  # fmt: skip
        steps = config.steps_per_epoch or -(-len(images) // batch)
        if config.steps_per_epoch:
            train = train.repeat().take(steps)
        val = classification_pipeline(
            *validation, batch, training=False, mean=data.mean, std=data.std
        )
        preprocessing = {
            "source": data.name,
            "classes": data.classes,
            "mean": list(data.mean),
            "std": list(data.std),
            "image_size": list(images.shape[1:3]),
            "validation": validation_name,
            "augmentation": augmentation,
        }
        if is_chief(strategy):
            os.makedirs(runner.out, exist_ok=True)
            atomic_write_json(os.path.join(runner.out, PREPROCESSING), preprocessing)
        description = f"{data.name} ({len(images)} images), best epoch on {validation_name}"
        return TrainingData(train, val, steps, description, {"preprocessing": preprocessing})

    def callbacks(self, preset, state) -> list:
        if preset.schedule != "plateau":
            return []
        from kseg.train import ResumableReduceLROnPlateau

        history = (state or {}).get("history", {}).get("val_accuracy", [])
        return [
            ResumableReduceLROnPlateau(
                history=history,
                monitor="val_accuracy",
                mode="max",
                factor=preset.plateau_factor,
                patience=preset.plateau_patience,
                verbose=1,
            )  # fmt: skip
        ]

    # === Evaluation ===
    def evaluate(self, runner: Runner) -> dict:
        """Test error and, for ODE models, the solver steps per image (Table 1) and the
        most and least demanding images (Fig. 1); written to `results.json` and
        `solver_steps.png`."""
        from kseg.data.classification_pipeline import normalize_numpy
        from kseg.features import solver_step_report
        from kseg.train.checkpoints import atomic_write_json
        from kseg.utils.summary import count_params

        config, data, out = runner.config, runner.open_data(), runner.out
        model, path = runner.load_trained()
        images, labels = data.test
        x = normalize_numpy(images, data.mean, data.std)
        accuracy = self.task.evaluate(model, x, labels)
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
        n = config.steps_images or len(images)
        report = solver_step_report(model, x[:n], images[:n], os.path.join(out, "solver_steps.png"))
        if report:
            results["solver"] = report
            line += (
                f", solver steps {report['accepted_steps_mean']:.1f} ± "
                f"{report['accepted_steps_std']:.1f} per image"
            )
        atomic_write_json(os.path.join(out, "results.json"), results)
        print(line)
        return results

    def predict(self, runner: Runner) -> None:
        raise UserError("classification recipes train and evaluate; they have no predict")

    def memory_hint(self, command: str) -> str | None:
        """None: exhausted memory outside training says `run_command`'s general advice (the
        test images go through the model in fixed batches)."""
        return None

    def unreadable_input(self, runner: Runner, error: BaseException, command: str) -> None:
        """None: the images are arrays in memory, no files a decoder could fail on."""
        return None

    def finish_demo(self, runner: Runner, seconds: float) -> None:
        print(f"\nDemo finished in {seconds:.0f} s; the run is in {runner.out}/")


@dataclasses.dataclass
class Data:
    name: str
    train: tuple  # (images, labels)
    test: tuple
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def read_preprocessing(folder: str) -> dict:
    """The run's `preprocessing.json`, with a clear error if it is missing."""
    path = os.path.join(folder, PREPROCESSING)
    if not os.path.exists(path):
        raise UserError(
            f"{path} is missing: it records how the model's images were normalised. Train "
            "with a kseg classification recipe, or write it: "
            '{"source": ..., "classes": N, "mean": [r, g, b], "std": [r, g, b], '
            '"image_size": [h, w]}'
        )
    with open(path) as f:
        return json.load(f)
