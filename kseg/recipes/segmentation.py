"""Segmentation recipes: a dataset declaration and what its runs read and write.

    python -m kseg.recipes.<dataset> {train,evaluate,predict} --model contextnet_cn14 \
        --data-dir DIR [options]
    python -m kseg.recipes.cityscapes --demo      # the embedded default, end to end
"""

from __future__ import annotations

import dataclasses
import os
import warnings

from kseg.errors import UserError
from kseg.recipes.runner import Runner, TrainingData, round_up
from kseg.tasks import SegmentationTask

# qat fine-tunes at this fraction of the trained run's learning rate: on the demo, a tenth
# lost 0.8 mIoU against post-training int8 and a hundredth gained 0.1 (bench/RESULTS.md).
QAT_RATE = 0.01

# --demo: the demo set's size and a schedule that learns it in minutes on 2 cores.
DEMO = {"epochs": 30, "batch_size": 8, "crop": (128, 256), "learning_rate": 0.01}


@dataclasses.dataclass(frozen=True)
class SegmentationRecipe:
    """What differs between segmentation datasets: the reader, splits and the crop size."""

    dataset: str  # key of kseg.data.SEGMENTATION_DATASETS
    crop: tuple[int, int]  # training crop (height, width) before rounding to the model
    crop_source: str
    train_split: str = "train"
    eval_split: str = "val"
    # --demo: the layout its set of real images is written in (a key of
    # `kseg.data.demo_data.DEMO_SETS`); None: the recipe has no --demo.
    demo: str | None = None
    # Used, with a note, when the dataset folder lacks `train_split` (VOC without SBD).
    train_split_fallback: str | None = None
    default_model: str = "contextnet_cn14"
    title: str = ""
    # The dataset's usual test protocol: every image resized to this size (and the
    # prediction back), and its mirror averaged in (LIP: 473x473 with flip).
    test_size: tuple[int, int] | None = None
    test_flip: bool = False

    task = SegmentationTask()
    commands = ("train", "evaluate", "predict", "qat")
    demo_commands = ("train", "evaluate", "predict")

    @property
    def name(self) -> str:
        return self.title or self.dataset

    def demo_defaults(self, config) -> dict:
        return dict(DEMO)

    # === Data ===
    def open(self, config, out: str):
        """The dataset reader of `--data-dir` (with --demo: the demo set, built first)."""
        from kseg.data import SEGMENTATION_DATASETS
        from kseg.errors import UserError

        if config.demo and not config.data_dir:
            from kseg.data.demo_data import DEMO_SETS

            build, _ = DEMO_SETS[self.demo]
            config.data_dir = build(os.path.join(out, "demo-data"))
            warnings.filterwarnings("ignore", message=".*the standard split has")
        if not config.data_dir:
            demo = " (or --demo)" if self.demo else ""
            raise UserError(f"--data-dir is required{demo}: the {self.name} dataset folder")
        reader = SEGMENTATION_DATASETS[self.dataset]
        options = {key: getattr(config, key) for key in reader.OPTIONS}
        return reader(
            config.data_dir, on_bad="skip" if config.skip_bad_files else "raise", **options
        )

    def count_classes(self, dataset) -> int:
        return dataset.num_classes

    def model_kwargs(self, config, preset, dataset) -> dict:
        return {"num_classes": dataset.num_classes, **config.model_kwargs}

    def train_samples(self, dataset, splits=None):
        """(split, samples) of the training split, or of its fallback if the folder lacks
        it; with `splits` (`--train-splits train,val`), those splits' samples together
        (split "train+val")."""
        from kseg.data.errors import DatasetLayoutError

        if splits:
            unknown = [s for s in splits if s not in dataset.splits]
            if unknown:
                raise UserError(
                    f"--train-splits: {dataset.name} has splits {', '.join(dataset.splits)}, "
                    f"not {', '.join(unknown)}"
                )
            samples = [sample for split in splits for sample in dataset.samples(split)]
            return "+".join(splits), samples
        try:
            return self.train_split, dataset.samples(self.train_split)
        except DatasetLayoutError as e:
            if self.train_split_fallback is None:
                raise
            first = str(e).splitlines()[0]
            print(f"No {self.train_split} split ({first}); training on {self.train_split_fallback}")
            return self.train_split_fallback, dataset.samples(self.train_split_fallback)

    def eval_crop(self, config, preset) -> tuple[int, int] | None:
        """`--eval-crop`, else the preset's centre crop (None: whole images)."""
        if config.eval_crop is not None:
            return None if config.eval_crop == "full" else tuple(config.eval_crop)
        return preset.eval_crop if preset is not None else None

    def training_data(self, runner: Runner, model, preset, batch: int, strategy) -> TrainingData:
        from kseg.data import segmentation_pipeline

        config, dataset = runner.config, runner.open_data()
        split, samples = self.train_samples(dataset, config.train_splits)
        if self.eval_split in (config.train_splits or ()):
            print(
                f"Note: the {self.eval_split} images are also training images here, so "
                "best.keras is picked on images the model trained on (train for a fixed "
                "schedule and use last-epoch*.keras, or evaluate on another split)"
            )
        multiple = getattr(model, "input_multiple", 1)
        crop = round_up(config.crop or preset.crop or self.crop, multiple)
        if not (config.crop or preset.crop):  # the recipe's default: not past every image
            crop = fitted_crop(crop, samples, multiple)
        check_step_pixels(crop, batch, strategy.num_replicas_in_sync, config.accumulate)
        train = segmentation_pipeline(
            dataset, samples, batch, training=True, crop=crop, seed=config.seed
        )
        details = {"crop": list(crop), "train_split": split}  # recorded in config.json
        if config.balance_classes:
            details["class_weights"] = self.balanced_weights(runner, preset, dataset, samples)
        if len(samples) < batch:  # each step takes a whole batch: no step would run
            unit = strategy.num_replicas_in_sync * config.accumulate  # what a batch divides by
            largest = len(samples) // unit * unit
            raise UserError(
                f"{dataset.name} {split}: {len(samples)} training image(s), fewer than one "
                f"batch of {batch} ({'--batch-size' if config.batch_size else 'the preset'}'s): "
                + (f"give --batch-size {largest} or less" if largest else "add images")
            )
        steps = config.steps_per_epoch or len(samples) // batch
        if config.steps_per_epoch:
            train = train.repeat().take(steps)
        # One image per replica; a strategy leaves out the last partial batch (the
        # evaluate command scores every image).
        replicas = strategy.num_replicas_in_sync
        eval_crop = self.eval_crop(config, preset)
        validation = segmentation_pipeline(
            dataset,
            dataset.samples(self.eval_split),
            replicas,
            training=False,
            pad_multiple=multiple,
            drop_remainder=replicas > 1,
            eval_crop=eval_crop,
        )
        return TrainingData(
            train,
            validation,
            steps,
            f"{dataset.name} {split} ({len(samples)} images), crop {crop[0]}x{crop[1]}",
            {**details, "eval_crop": eval_crop},
        )

    def balanced_weights(self, runner: Runner, preset, dataset, samples) -> list[float]:
        """`--balance-classes`: median frequency weights of the training labels, said in
        one line; refused for a loss that takes no class weights. A run that resumes keeps
        the weights its config.json records, which its saved loss holds, rather than
        counting every label again."""
        from kseg.data.class_balance import class_pixels, median_frequency_weights
        from kseg.recipes.config import read_run_record
        from kseg.train.checkpoints import last_checkpoint

        config = runner.config
        loss = config.loss or preset.loss
        if loss not in ("cross_entropy", "ohem") or not config.class_weights:
            raise UserError(
                f"--balance-classes weighs the cross-entropy (--loss cross_entropy or ohem), "
                f"and this run's loss is {loss}"
                + ("" if config.class_weights else " without class weights (--no-class-weights)")
            )
        resumed = config.resume and last_checkpoint(runner.out)
        recorded = (read_run_record(runner.out) or {}).get("preset", {}).get("class_weights")
        if resumed and recorded and len(recorded) == dataset.num_classes:
            weights, source = recorded, f"of the run in {runner.out} (its config.json)"
        else:
            weights = median_frequency_weights(*class_pixels(dataset, samples))
            source = f"median frequency balancing of {len(samples)} images"
        listed = ", ".join(
            f"{n} {w:.2f}" for n, w in zip(dataset.class_names, weights, strict=True)
        )
        print(f"Class weights, {source}: {listed}")
        return [round(float(w), 6) for w in weights]

    def callbacks(self, preset, state) -> list:
        return []

    # === Evaluation and prediction ===
    def evaluate(self, runner: Runner) -> dict:
        from kseg.data import segmentation_pipeline
        from kseg.train import metrics
        from kseg.train.checkpoints import atomic_write, atomic_write_json
        from kseg.train.metrics import iou_table, mean_iou

        config, dataset, out = runner.config, runner.open_data(), runner.out
        backend, path = self.trained_backend(runner, dataset)
        model = getattr(backend, "model", None)  # None: an exported file
        if config.zero_branch:
            model = _zero_branch(model, config.zero_branch, path)
        split = config.split or self.eval_split
        samples = dataset.samples(split)[: config.limit]
        crop = self.eval_crop(config, runner.trained_preset(model.name if model else None))
        flip = config.flip or (self.test_flip and not config.plain_eval)
        size = None if config.plain_eval else self.test_size
        augmented = config.scales is not None or flip or size is not None
        if augmented and model is None and (config.scales or config.flip):
            raise UserError("--scales and --flip evaluate a .keras model, not an exported file")
        augmented = augmented and model is not None
        ds = segmentation_pipeline(
            dataset, samples, 1, training=False,
            pad_multiple=backend.multiple if backend.input_size is None and not augmented else 1,
            eval_crop=crop,
        )  # fmt: skip
        networks = {}
        if model is not None:
            sliding = self.window(runner, model) if augmented else None
            confusions = self.task.evaluate_outputs(
                model, ds, dataset.num_classes, config.scales, flip, sliding, size
            )
            confusion = confusions.pop("logits")
            # Cross cooperative learning: each network's own score (Table 1), same pass
            networks = {n.removesuffix("_logits"): mean_iou(c) for n, c in confusions.items()}
        else:
            from kseg.predict.predictor import Predictor

            confusion = self.task.evaluate_file(Predictor(backend), ds, dataset.num_classes)
        window = "whole images" if crop is None else f"centre {crop[0]}x{crop[1]} crops"
        if augmented:
            window += f", resized to {size[0]}x{size[1]}" if size else ""
            window += f", scales {','.join(f'{s:g}' for s in config.scales or (1.0,))}"
            window += " with flips" if flip else ""
        print(f"\n{dataset.name} {split}, {len(samples)} images ({window}), {backend.name}")
        print(iou_table(confusion, dataset.class_names))
        if networks:
            scores = ", ".join(f"{n} {100 * v:.2f}" for n, v in networks.items())
            main = 100 * mean_iou(confusion)
            print(f"Networks' own mIoU: {scores}; the prediction (logits) {main:.2f}")
        names = dataset.class_names
        result = {
            "dataset": dataset.name,
            "split": split,
            "images": len(samples),
            "checkpoint": path,
            "eval_crop": None if crop is None else list(crop),
            "mean_iou": mean_iou(confusion),
            "iou": _by_class(names, metrics.iou_per_class(confusion)),
            "mean_dice": metrics.mean_dice(confusion),
            "dice": _by_class(names, metrics.dice_per_class(confusion)),
            "precision": _by_class(names, metrics.precision_per_class(confusion)),
            "mean_recall": metrics.mean_recall(confusion),
            "recall": _by_class(names, metrics.recall_per_class(confusion)),
            "pixel_accuracy": metrics.pixel_accuracy(confusion),
            "confusion": confusion.tolist(),
        }
        if networks:
            result["networks_mean_iou"] = networks
        if config.zero_branch:
            result["zero_branch"] = config.zero_branch
        if augmented:
            result["scales"], result["flip"] = list(config.scales or (1.0,)), flip
            result["test_size"] = list(size) if size else None
        os.makedirs(out, exist_ok=True)
        # The run's own model: evaluation.json; a --checkpoint: evaluation_<its name>.json
        stem = "evaluation"
        if config.checkpoint:
            stem += "_" + os.path.splitext(os.path.basename(config.checkpoint.rstrip(os.sep)))[0]
        if config.zero_branch:
            stem += f"_zero_{config.zero_branch}"
        stem += "_multiscale" if config.scales else ""
        stem += "_flip" if config.flip else ""
        # Written whole or not at all (a reader never sees half a file), as checkpoints are.
        atomic_write_json(os.path.join(out, f"{stem}.json"), result)
        columns = ("iou", "dice", "precision", "recall")
        rows = [",".join([name, *(_csv(result[c][name]) for c in columns)]) for name in names]
        means = [_csv(result[f"mean_{c}"]) if f"mean_{c}" in result else "" for c in columns]
        csv = "\n".join([f"class,{','.join(columns)}", *rows, ",".join(["mean", *means])]) + "\n"

        def write_csv(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(csv)

        atomic_write(os.path.join(out, f"{stem}.csv"), write_csv)
        return result

    def window(self, runner: Runner, model) -> tuple[int, int]:
        """The sliding window of multi-scale evaluation: the run's training crop."""
        preset = runner.trained_preset(model.name)
        crop = runner.config.crop or (preset.crop if preset else None) or self.crop
        return round_up(crop, getattr(model, "input_multiple", 1))

    def unreadable_input(self, runner: Runner, error: BaseException, command: str) -> None:
        """None: every image and label is checked before a command reads it
        (`SegmentationDataset.verify`, which decodes JPEGs whole): a decoder's error after
        that is a bug."""
        return None

    def memory_hint(self, command: str) -> str | None:
        """What lowers the memory of `command` when it ran out (training: `Runner.stopped`)."""
        if command == "evaluate":
            return (
                "--scales 1.0 scores images larger than the training crop in sliding windows "
                "of it (mmsegmentation's slide mode), which takes less memory; --eval-crop "
                "HxW scores only the centre window of each image"
            )
        if command == "predict":
            return (
                "python -m kseg.predict CHECKPOINT IMAGES --fit HxW segments the images at "
                "a smaller size"
            )
        return None

    def trained_backend(self, runner: Runner, dataset):
        """(backend, path) of `runner.load_backend`, refused unless the model outputs the
        classes of `dataset`."""
        backend, path = runner.load_backend()
        if backend.num_classes != dataset.num_classes:
            raise UserError(
                f"{path} outputs {backend.num_classes} classes, and {dataset.name} has "
                f"{dataset.num_classes}: give the --checkpoint of a model trained on this data"
            )
        return backend, path

    def predict(self, runner: Runner) -> None:
        """Every image of the split (or the first `--limit`), through `kseg.predict`."""
        from kseg.predict.outputs import ImageWriter, padded
        from kseg.predict.predictor import Predictor, segment_images

        config, dataset = runner.config, runner.open_data()
        if config.label_ids and not hasattr(dataset, "train_ids_to_label_ids"):
            raise UserError(
                f"--label-ids writes Cityscapes' labelIds; {dataset.name} has none: leave it out"
            )
        backend, path = self.trained_backend(runner, dataset)
        split = config.split or self.eval_split
        samples = dataset.samples(split, verify=False)[: config.limit]
        folder = os.path.join(runner.out, "predictions")
        writer = ImageWriter(folder, padded(dataset.palette), label_ids=config.label_ids)
        writer.outputs.adopt_unrecorded()  # this run's own folder, from before the record
        predictor = Predictor(backend)
        images = [s.image for s in samples]
        # Flat output names, as the official Cityscapes submission layout wants them.
        try:
            count, seconds = segment_images(
                predictor, images, writer, root_of=os.path.dirname, quiet=config.verbose == "0"
            )
        finally:
            writer.close()
        print(
            f"\nWrote {count} predictions (colour PNG and overlay) of {path} to {folder} "
            f"({count / max(seconds, 1e-9):.1f} images/s)"
        )

    # === Quantisation-aware training ===
    def qat(self, runner: Runner) -> None:
        """Fine-tunes `--checkpoint` (default: the run's best) with int8 simulated
        (`kseg.export.quantize_aware`) in `<out>/qat/`, then writes int8 and int8_io TFLite
        with the learned ranges to `<out>/qat/export/` and compares them on held-out images
        with the float model and its post-training int8."""
        import tempfile

        from kseg.export import export, quantize_aware, table
        from kseg.export.calibration import calibration_data
        from kseg.export.exporter import logits_miou
        from kseg.export.formats import logits_model
        from kseg.export.qat import is_quantize_aware
        from kseg.models.loading import load_model
        from kseg.recipes.config import read_run_record
        from kseg.train.checkpoints import best_or_last

        config, dataset = runner.config, runner.open_data()
        model, path = runner.load_trained()
        if is_quantize_aware(model):
            raise UserError(f"{path} is already a quantisation-aware model; give the float one")
        # The trained run's settings (its config.json beside the checkpoint, else in --out)
        # are the defaults; flags override them.
        record = read_run_record(os.path.dirname(path)) or read_run_record(runner.out) or {}
        trained = {**record.get("run", {}), **record.get("preset", {})}
        config.model = trained.get("model") or model.name
        for key in ("batch_size", "learning_rate", "optimizer", "weight_decay", "crop"):
            if getattr(config, key) is None and trained.get(key) is not None:
                setattr(config, key, trained[key])
        preset = runner.preset()
        height, width = round_up(config.crop or preset.crop or self.crop, model.input_multiple)
        config.crop = (height, width)
        config.precise_bn_batches = 0  # the batch norms are folded, their statistics frozen
        split, _ = self.train_samples(dataset)
        images, _ = calibration_data(dataset, split, 16, height, width)
        folder = os.path.join(runner.out, "qat")
        epochs = config.epochs or max(1, trained.get("epochs", preset.epochs) // 10)
        print(
            f"Quantisation-aware training of {path}: {epochs} epoch(s) at learning rate "
            f"{preset.learning_rate * QAT_RATE:g} ({QAT_RATE:g} x the run's), int8 ranges "
            f"calibrated on {len(images)} {split} crops"
        )
        runner.train_stage(
            folder, lambda: quantize_aware(model, images), epochs, preset.learning_rate * QAT_RATE
        )
        qat_model = load_model(best_or_last(folder))
        count = config.limit or 16
        eval_images, eval_labels = calibration_data(dataset, self.eval_split, count, height, width)
        artefacts = export(
            qat_model, os.path.join(folder, "export"), formats=("tflite",),
            quantize=("int8", "int8_io"), input_size=(height, width), eval_images=eval_images,
            eval_labels=eval_labels, class_names=dataset.class_names,
        )  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="kseg-ptq-") as tmp:
            ptq = export(
                model, tmp, formats=("tflite",), quantize=("int8",), input_size=(height, width),
                images=images, eval_images=eval_images, eval_labels=eval_labels, threads=(),
            )  # fmt: skip
        reference = logits_model(model, height, width).predict(eval_images, batch_size=1, verbose=0)
        classes = dataset.num_classes
        rows = [
            ("float (Keras)", logits_miou(eval_labels, reference, classes)),
            (f"int8 post-training ({len(images)} {split} crops)", _miou(ptq[0])),
            *((f"{a.format[len('tflite_') :]} QAT", _miou(a)) for a in artefacts),
        ]
        text = (
            f"mIoU on {len(eval_images)} held-out {self.eval_split} images at {height}x{width}\n"
            + "\n".join(f"  {label:40s} {100 * value:6.2f}" for label, value in rows)
        )
        with open(os.path.join(folder, "export", "qat_vs_ptq.txt"), "w") as f:
            f.write(text + "\n")
        print(f"\nExported {best_or_last(folder)} with its learned int8 ranges:")
        print(table(artefacts))
        print(f"\n{text}")

    # === Demo ===
    def export_demo(self, runner: Runner) -> None:
        """The demo's last step: the best model as builtins-only TFLite, fp32 and int8
        (calibrated on training images), each run in the LiteRT interpreter against Keras
        and scored on validation images. LiteRT cannot run adaptive ODE solvers, so ODE
        blocks go on the cheapest fixed grid whose arg-max agreement with the adaptive
        solve reaches 99.5% (`kseg.export.ode.choose_grid`), or on the closest grid where
        none does: a briefly trained model can have near-tied logits, and the demo should
        still end with its files and the agreement printed."""
        from kseg.export import export, table
        from kseg.export.calibration import calibration_data
        from kseg.export.ode import choose_grid, grid_table
        from kseg.ode.callbacks import ode_blocks

        model, path = runner.load_trained()
        crop = runner.config.crop or self.crop
        height, width = round_up(crop, getattr(model, "input_multiple", 1))
        dataset = runner.open_data()
        train_split, _ = self.train_samples(dataset)
        images, labels = calibration_data(dataset, train_split, 8, height, width)
        eval_images, eval_labels = calibration_data(dataset, self.eval_split, 16, height, width)
        grid, needed = {}, 0.995
        if any(block.solver.adaptive for block in ode_blocks(model)):
            chosen, trials = choose_grid(model, eval_images, needed)
            closest = chosen or max(trials, key=lambda t: t.agreement)
            print(
                f"\nFixed ODE grids against the adaptive solve on {len(eval_images)} "
                f"{self.eval_split} images: the cheapest with >= {100 * needed:g}% arg-max "
                f"agreement{'' if chosen else ' (none: the closest)'}\n"
                f"{grid_table(trials, closest)}"
            )
            grid = {"ode_steps": closest.steps, "ode_method": closest.method}
        artefacts = export(
            model, os.path.join(runner.out, "export"), formats=("tflite",),
            quantize=("fp32", "int8"), input_size=(height, width), images=images, labels=labels,
            eval_images=eval_images, eval_labels=eval_labels, class_names=dataset.class_names,
            **grid,
        )  # fmt: skip
        print(f"\nExported {path} at {height}x{width}:")
        print(table(artefacts))

    def finish_demo(self, runner: Runner, seconds: float) -> None:
        self.export_demo(runner)
        out = runner.out
        print(f"\nDemo finished in {seconds:.0f} s. Everything is in {out}/:")
        from kseg.data.demo_data import DEMO_SETS

        print(f"  demo-data/        the generated images and labels ({DEMO_SETS[self.demo][1]})")
        print("  best.keras, last-epoch*.keras, state.json, config.json, log.csv, tensorboard/")
        print("  evaluation.csv, evaluation.json   per-class IoU, Dice, precision and recall")
        print("  predictions/      colour PNGs and overlays")
        print("  export/           TFLite fp32 and int8 (builtin ops), verified in LiteRT")


def _zero_branch(model, branch: str, path: str):
    """The ContextNet `model` with its `branch`'s output zeroed (section 4, Fig. 2): the
    same weights, rebuilt with `zero_branch`."""
    from kseg.models import ContextNet

    if not isinstance(model, ContextNet) or model.branches != "both":
        raise UserError(
            f"--zero-branch: {path} is not a two-branch ContextNet (it is "
            f"{getattr(model, 'name', 'an exported file')}); zeroing a branch is ContextNet's "
            "branch analysis (section 4)"
        )
    zeroed = ContextNet.from_config({**model.get_config(), "zero_branch": branch})
    for layer in zeroed.layers:  # by name: the extra layer changes the layers' order
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return zeroed


def _miou(artefact) -> float:
    import numpy as np

    return float(np.nanmean(artefact.iou))


def check_step_pixels(crop: tuple[int, int], batch: int, replicas: int, pieces: int = 1) -> None:
    """Refuses a crop and batch whose pixels in one loss computation reach 2^31:
    TensorFlow's shapes count them in 32 bits there (the labels flattened for the loss),
    and the step fails with a negative shape. The loss sees one replica's share of the
    batch, or one of its `pieces` (`--accumulate`)."""
    per_loss = -(-batch // replicas) // pieces
    pixels = per_loss * crop[0] * crop[1]
    if pixels >= 2**31:
        each = f" on each of {replicas} replicas" if replicas > 1 else ""
        piece = f" in each of {pieces} pieces" if pieces > 1 else ""
        raise UserError(
            f"--crop {crop[0]}x{crop[1]} with --batch-size {batch} is {pixels:,} pixels a "
            f"step{each}{piece}, and TensorFlow counts them in 32 bits (at most "
            f"{2**31 - 1:,}): lower --batch-size or --crop, or raise --accumulate"
        )


def fitted_crop(crop: tuple[int, int], samples, multiple: int) -> tuple[int, int]:
    """`crop`, each side no larger than the largest training image's (rounded up to
    `multiple`): a default crop larger than every image (512x512 on 256x256 medical
    images) would spend most of each step on padding that counts for nothing."""
    from PIL import Image

    from kseg.data.images import oriented_size

    height = width = 0
    for s in samples:
        with Image.open(s.image) as im:  # the header only
            w, h = oriented_size(im)
        height, width = max(height, h), max(width, w)
        if height >= crop[0] and width >= crop[1]:  # the crop fits: no need to read on
            return tuple(crop)
    largest = round_up((height, width), multiple)
    fitted = tuple(min(c, side) for c, side in zip(crop, largest, strict=True))
    if fitted != tuple(crop):
        print(
            f"Crop {fitted[0]}x{fitted[1]}: the default {crop[0]}x{crop[1]} is larger than "
            f"every training image (at most {height}x{width}); --crop sets another"
        )
    return fitted


def _by_class(names, values) -> dict:
    """{class name: value}, None for NaN (no value, e.g. IoU of a class absent from labels
    and predictions)."""
    return {n: (None if v != v else float(v)) for n, v in zip(names, values, strict=True)}


def _csv(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.6f}"
