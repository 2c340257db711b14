"""`python -m kseg.recipes.imagenet`: ImageNet (ILSVRC-2012) pre-training of the HRNets,
the start SegNode's Table 1 assumes (Khoshsirat & Kambhamettu, section 4.1: "We pretrain
our baseline and SegNode networks on ImageNet"), and their top-1 and top-5 errors.

    python -m kseg.recipes.imagenet train --model segnode --data-dir /data/imagenet
    python -m kseg.recipes.imagenet evaluate --model segnode --data-dir /data/imagenet
    python -m kseg.recipes.cityscapes train --model segnode \\
        --init-from runs/imagenet-segnode/best.keras --data-dir /data/cityscapes
    python -m kseg.recipes.imagenet --demo   # real images that ship here, end to end

`--model` is an HRNet-family network (segnode, residual_hrnet, hrnetv2_w48) built with
HRNet's ImageNet classification head (`head="classification"`); its backbone layers keep
their segmentation names, so `--init-from` hands them to the segmentation network and
reports the classification head unused. The protocol is HRNet-Image-Classification's
(the `segnode_imagenet` preset, kseg/models/segnode/segnode_training.toml); 10 training
images of each class pick the best epoch, and `evaluate` reports on the validation set
(`--ten-crop`: 10-crop testing). The run folder holds what every run's does and
`classes.txt`, the WordNet ids in the order of the logits.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shutil
import warnings

import numpy as np

from kseg.errors import UserError
from kseg.recipes.cli import command
from kseg.recipes.runner import Runner, TrainingData
from kseg.tasks import ClassificationTask

CLASSES_FILE = "classes.txt"
HOLDOUT_PER_CLASS = 10  # training images per class that pick the best epoch
BATCH_EVAL = 50

# --demo: Fashion-MNIST (or digits 0-4) as an ImageNet-layout folder of JPEG files, a
# small SegNode on 64x64 crops for a few epochs: the whole file path in minutes on CPU.
DEMO = {
    "epochs": 4,
    "batch_size": 32,
    "train_images": 1500,
    "test_images": 300,
    "width": 8,
    "crop": (64, 64),
}
DEMO_MODEL = {"modules": 1, "blocks": 1}  # where the model takes them
DEMO_HOLDOUT = 5


@dataclasses.dataclass
class Data:
    name: str
    train: object  # kseg.data.imagenet.ImageFiles
    val: object
    classes: tuple[str, ...]


class ImageNetRecipe:
    """What the runner and the command line ask of a recipe, for ImageNet's files."""

    dataset = "imagenet"
    name = title = "ImageNet (ILSVRC-2012)"
    default_model = "segnode"
    task = ClassificationTask()
    commands = ("train", "evaluate")
    demo = True
    # --data-dir's help: the dataset is never downloaded
    data_dir_help = "the folder holding ImageNet's train/ and val/ (see kseg.data.imagenet)"

    def add_arguments(self, training, evaluation, preset) -> None:
        """The recipe's own flags, in the command line's training and evaluation groups."""
        training.add_argument(
            "--crop",
            type=square,
            metavar="N",
            help=f"the square training crop and evaluation centre crop, N or NxN (default "
            f"{preset.crop[0]}, the preset's; evaluation resizes the shorter side to 8/7 of "
            "it first)",
        )
        training.add_argument(
            "--skip-bad-files",
            action="store_true",
            help="decode every image of the split before training or evaluating (about 2,600 "
            "a second on two cores) and leave out those that do not decode, counted, instead "
            "of stopping at the first; without it, a run that stops at one names them",
        )
        evaluation.add_argument(
            "--ten-crop",
            action="store_true",
            help="evaluate: softmax averaged over the four corners, the centre and their "
            "mirror images (10-crop testing) instead of the centre crop",
        )

    def demo_defaults(self, config) -> dict:
        return dict(DEMO)

    # === Data ===
    def open(self, config, out: str) -> Data:
        """The train and val image lists of --data-dir, or of the demo folder that --demo
        writes into the run folder."""
        from kseg.data.imagenet import list_images

        if config.demo:
            root, name = write_demo_folder(os.path.join(out, "demo-imagenet"), config)
        elif config.data_dir:
            root, name = config.data_dir, self.title
        else:
            raise UserError(
                f"give --data-dir, {self.data_dir_help}; kseg never downloads ImageNet. Or run "
                "`python -m kseg.recipes.imagenet --demo` on real images that ship here"
            )
        train, val = list_images(root, "train"), list_images(root, "val")
        if config.train_images:
            train = train.spread(config.train_images)
        if config.test_images:
            val = val.spread(config.test_images)
        return Data(name, train, val, train.classes)

    def count_classes(self, data: Data) -> int:
        return len(data.classes)

    def model_kwargs(self, config, preset, data: Data) -> dict:
        from kseg.models.registry import model_class, registered_arguments

        parameters = inspect.signature(model_class(config.model)).parameters
        if "head" not in parameters:
            raise UserError(
                f"{config.model} has no ImageNet classification head: the ImageNet recipe "
                "pre-trains the HRNets (segnode, residual_hrnet, hrnetv2_w48)"
            )
        if registered_arguments(config.model).get("ocr"):
            plain = config.model.removesuffix("_ocr")
            raise UserError(
                f"{config.model}'s OCR head is a segmentation head: pre-train {plain}, whose "
                f"backbone is the same, and start {config.model} from it with --init-from"
            )
        kwargs = {"num_classes": len(data.classes), "head": "classification"}
        if config.width:
            kwargs["width"] = config.width
        if config.demo:
            kwargs.update({k: v for k, v in DEMO_MODEL.items() if k in parameters})
        return {**kwargs, **config.model_kwargs}

    def crop(self, config, preset) -> int:
        """The square crop size: --crop (the demo's), else the preset's, else 224."""
        size = config.crop or preset.crop or (224, 224)
        if size[0] != size[1]:
            raise UserError(f"ImageNet crops are square; got {size[0]}x{size[1]}")
        return int(size[0])

    def training_data(self, runner: Runner, model, preset, batch: int, strategy) -> TrainingData:
        from kseg.data.imagenet_pipeline import imagenet_pipeline
        from kseg.train.checkpoints import atomic_write
        from kseg.train.strategy import is_chief

        config, data = runner.config, runner.open_data()
        size = self.crop(config, preset)
        per_class = DEMO_HOLDOUT if config.demo else HOLDOUT_PER_CLASS
        train, held = holdout_per_class(self.checked(data, "train", config), per_class)
        train_ds = imagenet_pipeline(
            train.paths, train.labels, batch, training=True, size=size, seed=config.seed
        )
        steps = config.steps_per_epoch or -(-len(train) // batch)
        if config.steps_per_epoch:
            train_ds = train_ds.repeat().take(steps)
        val_ds = imagenet_pipeline(held.paths, held.labels, batch, training=False, size=size)
        if is_chief(strategy):
            os.makedirs(runner.out, exist_ok=True)
            text = "".join(f"{c}\n" for c in data.classes)
            atomic_write(os.path.join(runner.out, CLASSES_FILE), lambda tmp: _write(tmp, text))
        validation = f"{len(held)} training images held out ({per_class} a class)"
        description = (
            f"{data.name} ({len(train)} images, {len(data.classes)} classes), random resized "
            f"{size}x{size} crops, best epoch on {validation}"
        )
        details = {"imagenet": {"crop": size, "validation": validation}}
        return TrainingData(train_ds, val_ds, steps, description, details)

    def callbacks(self, preset, state) -> list:
        return []

    # === Evaluation ===
    def evaluate(self, runner: Runner) -> dict:
        """Top-1 and top-5 error on the validation images (centre crops, or with
        --ten-crop the softmax averaged over ten), written to `results.json`."""
        from kseg.data.imagenet_pipeline import imagenet_pipeline
        from kseg.train.checkpoints import atomic_write_json
        from kseg.utils.summary import count_params

        config, data = runner.config, runner.open_data()
        model, path = runner.load_trained()
        outputs = model.output.shape[-1]
        if outputs != len(data.classes):
            raise UserError(
                f"{path} gives {outputs} classes and {data.name} has {len(data.classes)}"
            )
        size = self.crop(config, runner.preset())
        crops = "ten" if config.ten_crop else "center"
        val = self.checked(data, "val", config)
        ds = imagenet_pipeline(
            val.paths, val.labels, BATCH_EVAL, training=False, size=size, crops=crops
        )
        top1, top5 = top_k_errors(model, ds, crops == "ten")
        protocol = f"{'10 crops' if crops == 'ten' else 'centre crop'} {size}x{size}"
        results = {
            "model": model.name,
            "checkpoint": path,
            "data": data.name,
            "images": len(val),
            "protocol": protocol,
            "top1_error": top1,
            "top5_error": top5,
            "params": count_params(model),
        }
        atomic_write_json(os.path.join(runner.out, "results.json"), results)
        print(
            f"{model.name}: top-1 error {100 * top1:.2f}%, top-5 error {100 * top5:.2f}% on "
            f"{len(val)} {data.name} val images ({protocol}), "
            f"{count_params(model):,} parameters"
        )
        return results

    # === Files that do not decode ===
    def checked(self, data: Data, split: str, config):
        """The images of `split`; with --skip-bad-files only those TensorFlow decodes, the
        others counted in a warning."""
        files = getattr(data, split)
        if not config.skip_bad_files:
            return files
        from kseg.data.decode_check import undecodable

        print(f"Checking that each of the {len(files):,} {split} images decodes", flush=True)
        problems = undecodable(files.paths)
        if not problems:
            return files
        warnings.warn(
            f"{data.name}: skipped {len(problems)} {split} image(s) that do not decode "
            f"(--skip-bad-files), e.g. {next(iter(problems.values()))}",
            stacklevel=2,
        )
        return files.take([i for i, p in enumerate(files.paths) if p not in problems])

    def unreadable_input(self, runner: Runner, error: BaseException, command: str) -> str | None:
        """When `command` stopped at an image TensorFlow cannot decode, which of its split's
        images do not decode (all of them are decoded to find out), else None."""
        from kseg.data.decode_check import decode_failure, undecodable
        from kseg.data.errors import CorruptFileError

        reason = decode_failure(error)
        if reason is None:
            return None
        data = runner.open_data()
        split = "train" if command == "train" else "val"
        files = getattr(data, split)
        print(
            f"{command} stopped at an image that TensorFlow cannot decode ({reason}); "
            f"decoding each of the {len(files):,} {split} images to name it",
            flush=True,
        )
        problems = undecodable(files.paths)
        if not problems:
            return None
        return str(CorruptFileError(data.name, list(problems.values()), skip="--skip-bad-files"))

    def predict(self, runner: Runner) -> None:
        raise UserError("the ImageNet recipe trains and evaluates; it has no predict")

    def memory_hint(self, command: str) -> str | None:
        return None

    def finish_demo(self, runner: Runner, seconds: float) -> None:
        import json

        config = runner.config
        kwargs = self.model_kwargs(config, runner.preset(), runner.open_data())
        backbone = {k: v for k, v in kwargs.items() if k not in ("num_classes", "head")}
        best = os.path.join(runner.out, "best.keras")
        print(
            f"\nDemo finished in {seconds:.0f} s; the run is in {runner.out}/. Its backbone "
            "starts a segmentation run:\n"
            f"  python -m kseg.recipes.cityscapes --demo --model {config.model} "
            f"--model-kwargs '{json.dumps(backbone)}' --init-from {best}"
        )


def square(text: str) -> tuple[int, int]:
    """--crop: N or NxN pixels."""
    import argparse

    from kseg.recipes.config import side_or_size

    h, w = side_or_size(text)
    if h != w:
        raise argparse.ArgumentTypeError(
            f"ImageNet crops are square: give N, e.g. 224; got {text!r}"
        )
    return h, w


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def holdout_per_class(files, per_class: int):
    """(the rest, `per_class` images of each class): the held-out ones evenly spaced
    through each class's sorted files, the same in every run."""
    held = []
    for label in np.unique(files.labels):
        index = np.flatnonzero(files.labels == label)
        if len(index) <= per_class:
            raise UserError(
                f"class {files.classes[label]} has {len(index)} training images; "
                f"{per_class} of each are held out to pick the best epoch"
            )
        held += index[np.linspace(0, len(index) - 1, per_class).round().astype(int)].tolist()
    keep = np.setdiff1d(np.arange(len(files)), held)
    return files.take(keep), files.take(np.sort(held))


def top_k_errors(model, ds, ten_crop: bool) -> tuple[float, float]:
    """(top-1, top-5 error) of `model` on the batches of `ds`; with `ten_crop`, each
    image's ten crops' softmax averaged."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)  # one graph for every batch, not op by op
    def score(images):
        if not ten_crop:
            return model(images, training=False)
        n = tf.shape(images)[0]
        flat = tf.reshape(images, tf.concat([[-1], tf.shape(images)[2:]], 0))
        probs = tf.nn.softmax(model(flat, training=False), axis=-1)
        return tf.reduce_mean(tf.reshape(probs, [n, 10, -1]), axis=1)

    hits1 = hits5 = count = 0
    for images, labels in ds:
        scores = score(images)
        k = min(5, scores.shape[-1])
        hits1 += int(tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, scores, 1), tf.int32)))
        hits5 += int(tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, scores, k), tf.int32)))
        count += int(labels.shape[0])
    return 1 - hits1 / count, 1 - hits5 / count


def write_demo_folder(root: str, config) -> tuple[str, str]:
    """The demo source (Fashion-MNIST, else digits 0-4) as an ImageNet-layout folder of
    JPEG files under `root`, written once: (root, the data's name)."""
    from PIL import Image

    from kseg.data.demo_classification import demo_source

    train, test = demo_source(config.train_images, config.test_images, seed=config.seed or 0)
    source = train.name.rsplit(" ", 1)[0]
    name = f"{source} (demo: real images that ship here as JPEG files, not ImageNet)"
    done, written = os.path.join(root, ".complete"), f"{len(train.labels)} {len(test.labels)}"
    if os.path.exists(done):
        with open(done) as f:
            if f.read() == written:
                return root, name
        shutil.rmtree(root)  # a demo folder of other counts, written here before
    for split, images in (("train", train), ("val", test)):
        for i, (image, label) in enumerate(zip(images.images, images.labels, strict=True)):
            folder = os.path.join(root, split, images.classes[label].replace(" ", "_"))
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, f"{split}_{i:05d}.JPEG"), quality=95)
    _write(done, written)
    return root, name


RECIPE = ImageNetRecipe()
main = command(RECIPE)


if __name__ == "__main__":
    main()
