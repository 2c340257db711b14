"""The one command line of every recipe: `python -m kseg.recipes.<dataset>`.

    python -m kseg.recipes.<dataset> {train,evaluate,predict} --model NAME --data-dir DIR
    python -m kseg.recipes.<dataset> train --config runs/x/config.json --epochs 10
    python -m kseg.recipes.cityscapes --demo      # the embedded default, end to end

Flags override `--config`, which overrides the defaults; training defaults are the
model's paper preset (`--help` shows them). A user's mistake prints one `error: ...` line
and exits with status 2 (`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse

from kseg.errors import UserError, command_parser
from kseg.recipes import config as types
from kseg.recipes.config import RunConfig, read_config_file

SUPPRESS = argparse.SUPPRESS


def build_parser(recipe) -> argparse.ArgumentParser:
    """The recipe's parser. Only the flags given land in the namespace (the rest come from
    `--config` or `RunConfig`'s defaults)."""
    from kseg.train.strategy import STRATEGIES, SYNC_BN

    segmentation = recipe.task.name == "segmentation"
    from kseg.train.presets import preset_for

    preset = preset_for(recipe.default_model, recipe.dataset)
    p = command_parser(
        f"python -m kseg.recipes.{recipe.dataset}",
        f"Train, evaluate{' and predict' if segmentation else ''} on {recipe.name}.",
        argument_default=SUPPRESS,
        formatter_class=argparse.HelpFormatter,  # the help texts say the preset's defaults
    )
    p.add_argument(
        "command",
        nargs="?",
        choices=recipe.commands,
        default=None,
        help=f"what to do; with --demo and no command: "
        f"{', '.join(getattr(recipe, 'demo_commands', recipe.commands))}"
        + (
            "; qat: quantisation-aware fine-tuning of --checkpoint (--epochs, default a "
            "tenth of the run's, at a hundredth of its learning rate), then int8 TFLite "
            "with the learned ranges in <out>/qat/"
            if "qat" in recipe.commands
            else ""
        ),
    )
    p.add_argument(
        "--config", help="a run's config.json (or a JSON file of settings) to start from"
    )
    p.add_argument(
        "--model", help=f"a name from kseg.models.list_models() (default {recipe.default_model})"
    )
    p.add_argument(
        "--model-kwargs",
        type=types.model_kwargs,
        help='model arguments as JSON, e.g. \'{"paths": "one_way"}\' for cross_cooperative',
    )
    if segmentation:
        from kseg.data import SEGMENTATION_DATASETS

        p.add_argument("--data-dir", help="the dataset folder in its official layout")
        if "mask_suffix" in SEGMENTATION_DATASETS[recipe.dataset].OPTIONS:
            p.add_argument(
                "--mask-suffix",
                help="what follows an image's name in its mask's file name, with the "
                "extension: _mask.gif pairs a.jpg with a_mask.gif (default: the ending that "
                "pairs the most images, .png on a tie)",
            )
    else:
        p.add_argument(
            "--data-dir",
            help=getattr(recipe, "data_dir_help", None)
            or f"folder holding {recipe.name} in its official layout (default: the Keras "
            "cache, ~/.keras/datasets)",
        )
    p.add_argument(
        "--out", help="run folder (checkpoints, logs, results); default runs/<dataset>-<model>"
    )
    if recipe.demo:
        defaults = recipe.demo_defaults(RunConfig(model=recipe.default_model))
        p.add_argument(
            "--demo",
            action="store_true",
            help="run on real images that ship here instead of the dataset ("
            + ", ".join(f"{k} {v}" for k, v in defaults.items())
            + ")",
        )
    g = p.add_argument_group("training (defaults: the model's paper preset)")
    g.add_argument(
        "--epochs", type=types.positive, help=f"default {preset.epochs} ({preset.source})"
    )
    g.add_argument("--batch-size", type=types.positive, help=f"default {preset.batch_size}")
    g.add_argument(
        "--learning-rate",
        type=types.positive_number,
        help=f"base rate, default {preset.learning_rate}",
    )
    g.add_argument(
        "--optimizer",
        choices=("sgd", "rmsprop", "adam", "adamw"),
        help=f"default {preset.optimizer}",
    )
    g.add_argument(
        "--weight-decay", type=types.non_negative_number, help=f"default {preset.weight_decay}"
    )
    g.add_argument(
        "--loss",
        choices=recipe.task.loss_names,
        help=f"default {preset.loss} (the preset's; ohem: HRNet's online hard example "
        "mining, probability threshold 0.9, at least 131,072 pixels"
        + (
            "; dice: soft Dice over the batch, for classes that fill a small part of each "
            "image; cross_entropy_dice: the two summed)"
            if segmentation
            else ")"
        ),
    )
    g.add_argument(
        "--no-class-weights",
        dest="class_weights",
        action="store_false",
        help="ignore the preset's class weights (HRNet's Cityscapes weights for HRNetV2)",
    )
    g.add_argument(
        "--steps-per-epoch", type=types.positive, help="limit each epoch (default: the whole split)"
    )
    g.add_argument(
        "--seed", type=types.non_negative, help="deterministic pipeline and initial weights"
    )
    g.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="start afresh even if --out has a checkpoint",
    )
    g.add_argument(
        "--init-from",
        help="fine-tune: initialise from this kseg .keras file (or a run folder's best) every "
        "weight whose name and shape match (e.g. all but a head with another number of "
        "classes); for the HRNets and SegNode also HRNet's PyTorch weights (.pth, .bin, "
        ".safetensors: the ImageNet weights its papers start from), the model then built "
        "as PyTorch computes it",
    )
    g.add_argument(
        "--strategy", choices=STRATEGIES, help="tf.distribute strategy (default: one device)"
    )
    g.add_argument(
        "--sync-bn",
        choices=SYNC_BN,
        help="batch norm statistics over the global batch, all replicas together (SyncBN), "
        "so that a batch split over GPUs normalises as the paper's batch did; default auto: "
        "on with more than one replica, unless --accumulate",
    )
    g.add_argument(
        "--logical-cpus",
        type=types.non_negative,
        help="split the CPU into this many logical devices (try --strategy mirrored)",
    )
    g.add_argument(
        "--mixed-precision",
        choices=("none", "float16", "bfloat16"),
        help="Keras' mixed precision: layers compute in float16 (with loss scaling) or "
        "bfloat16, weights and logits stay float32; for GPUs (float16) and TPUs "
        "(bfloat16); default none. Export writes float32 models either way",
    )
    g.add_argument("--no-tensorboard", dest="tensorboard", action="store_false")
    g.add_argument(
        "--verbose",
        choices=("auto", "0", "1", "2"),
        help="Keras' output: 1 progress bars, 2 one line an epoch, 0 none; default auto, bars "
        "in a terminal and one line an epoch when the output goes to a file",
    )
    g.add_argument(
        "--graph-optimization",
        choices=("auto", "on", "off"),
        help="TensorFlow's graph optimiser (Grappler) on the training steps; default auto: "
        "on with a GPU, off on CPU, where it adds start-up time without speeding steps up",
    )
    g.add_argument(
        "--accumulate",
        type=types.positive,
        metavar="N",
        help="run each training batch in N pieces, one after another, their gradients "
        "summed into one step: a paper's batch in less memory. Batch norm normalises each "
        "piece alone (not over replicas); N must divide each replica's batch. Default 1",
    )
    g.add_argument(
        "--val-every",
        type=types.positive,
        metavar="N",
        help="validate, and pick best.keras, every N epochs and after the last one (default "
        "1: every epoch). A long run's validation on full-size images can take a large share "
        "of its time; mmsegmentation validates every 4,000 or 8,000 iterations. A plateau "
        "schedule's patience then counts validations",
    )
    g.add_argument(
        "--recompute-norm-act",
        action="store_true",
        help="less training memory for a little more time: batch norm -> ReLU -> conv chains "
        "normalise again in the backward pass instead of keeping their output (same gradients)",
    )
    if segmentation:
        g.add_argument(
            "--crop",
            type=types.size,
            help=f"training crop HxW, default the preset's (DeepLabV3+: 513x513 on VOC, "
            f"768x768 on Cityscapes), else {recipe.crop[0]}x{recipe.crop[1]} "
            f"({recipe.crop_source}) or the largest training image's size if smaller; "
            "rounded up to the model's input multiple",
        )
        g.add_argument(
            "--eval-crop",
            type=types.eval_crop,
            help="validate and evaluate on the centre HxW window of each image, or 'full' "
            "images; default the preset's (DeepLabV3+ on VOC: 513x513), else full",
        )
        g.add_argument(
            "--train-splits",
            type=types.splits,
            help="train on these splits together, e.g. train,val (HRNet's test-server runs) "
            "or, on Cityscapes, train,train_extra (the coarse labels)",
        )
        g.add_argument(
            "--balance-classes",
            action="store_true",
            help="weigh each class in the cross-entropy by median frequency balancing of the "
            "training labels (Eigen & Fergus 2015, SegNet's CamVid weights): rare classes "
            "count more; computed at the start of each run and recorded in config.json",
        )
        g.add_argument(
            "--skip-bad-files",
            action="store_true",
            help="leave out unreadable or mismatched files (counted) instead of stopping",
        )
        g.add_argument(
            "--precise-bn-batches",
            type=types.non_negative,
            help="re-estimate BatchNorm statistics on this many training batches before each "
            "validation (default 8; 0: keep the moving averages, as the paper)",
        )
        g.add_argument(
            "--prune-from",
            type=types.positive_number,
            help="progressive pruning (ContextNet section 3.2.2): train at this width "
            "multiplier (the paper: 2.0), then prune to each of --prune-to with fine-tuning",
        )
        g.add_argument(
            "--prune-to",
            type=types.widths,
            help="the widths of the pruning steps (section 3.2.2; default 1.5,1.25,1.0)",
        )
        g.add_argument(
            "--monitor",
            choices=("top", "bottom", "mean"),
            help="cross_cooperative: the network whose validation mIoU picks best.keras "
            "(default mean, the model's prediction; evaluate reports all three)",
        )
        g.add_argument(
            "--finetune-epochs",
            type=types.positive,
            help="epochs after each pruning step, at a tenth of the learning rate (the paper "
            "does not say; default a quarter of --epochs)",
        )
    else:
        g.add_argument(
            "--width",
            type=types.positive,
            help="filters of the main blocks (ODE nets: 256; ChoiceNet: the growth, 67/81/90; "
            "HRNets: 48)",
        )
        g.add_argument(
            "--train-images",
            type=types.positive,
            help="train on N images only (the first N; ImageNet: N spread over its classes)",
        )
        g.add_argument(
            "--test-images",
            type=types.positive,
            help="test on N images only (the first N; ImageNet: N spread over its classes)",
        )
    e = p.add_argument_group("evaluate and predict")
    exported = (
        "a .keras file or another run's folder (its best, else last), or an exported "
        ".tflite, .onnx or SavedModel folder run in its own "
        "runtime, or an HRNet's PyTorch checkpoint with --model (evaluate writes "
        "evaluation_<name>.json); "
    )
    e.add_argument(
        "--checkpoint",
        help=f"the model: {exported if segmentation else ''}default: best, else last, in --out",
    )
    if segmentation:
        e.add_argument("--split", help=f"split to use (default {recipe.eval_split})")
        e.add_argument(
            "--limit",
            type=types.positive,
            help="only the first N images (qat scores on 16 by default)",
        )
        e.add_argument(
            "--scales",
            type=types.scales,
            help="evaluate: multi-scale, e.g. 0.5,0.75,1.0,1.25,1.5,1.75 (HRNet's): softmax "
            "averaged over the resized images, sliding windows of the training crop where "
            "a scaled image is larger",
        )
        e.add_argument(
            "--flip", action="store_true", help="evaluate: also average the mirrored images"
        )
        if recipe.test_size or recipe.test_flip:
            e.add_argument(
                "--plain-eval",
                action="store_true",
                help=f"evaluate whole images without {recipe.name}'s test protocol (resize "
                f"to {recipe.test_size[0]}x{recipe.test_size[1]} and flip)",
            )
        e.add_argument(
            "--zero-branch",
            choices=("deep", "shallow"),
            help="evaluate: a ContextNet with this branch's output zeroed (section 4's "
            "branch analysis, Fig. 2); writes evaluation_zero_<branch>.json",
        )
        e.add_argument(
            "--label-ids",
            action="store_true",
            help="predict, on Cityscapes: also write its official labelIds PNGs",
        )
    if hasattr(recipe, "add_arguments"):  # the recipe's own flags
        recipe.add_arguments(g, e, preset)
    return p


def parse(recipe, argv: list[str] | None = None) -> RunConfig:
    """The run configuration from the command line (and `--config`)."""
    parser = build_parser(recipe)
    flags = vars(parser.parse_args(argv))
    flags.pop("debug", None)
    path = flags.pop("config", None)
    file_values = read_config_file(path) if path else {}
    _check_file_values(parser, file_values, path)
    config = RunConfig.from_sources(file_values, flags)
    if config.command is None and not config.demo:
        parser.error(f"give a command ({', '.join(recipe.commands)}) or --demo")
    config.model = config.model or recipe.default_model
    if config.demo:
        for key, value in recipe.demo_defaults(config).items():
            if getattr(config, key) is None:
                setattr(config, key, value)
    return config


def _check_file_values(parser: argparse.ArgumentParser, values: dict, path: str) -> None:
    """The numbers of a `--config` file, checked as the command line checks its flags'."""
    for action in parser._actions:
        value = values.get(action.dest)
        if callable(action.type) and type(value) in (int, float):
            try:
                action.type(str(value))
            except argparse.ArgumentTypeError as e:
                raise UserError(f"--config {path}: {action.dest}: {e}") from None


def main(recipe, argv: list[str] | None = None) -> None:
    """Parses `argv` and runs it; a user error exits with status 2 and one message."""
    from kseg.errors import run_command

    run_command(lambda: _run(recipe, argv), argv)


def command(recipe):
    """The `main(argv=None)` of a recipe module."""

    def recipe_main(argv: list[str] | None = None) -> None:
        main(recipe, argv)

    return recipe_main


def _run(recipe, argv):
    config = parse(recipe, argv)
    if config.logical_cpus:
        from kseg.train.strategy import split_cpu

        split_cpu(config.logical_cpus)
    import keras

    from kseg.recipes.runner import Runner

    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    before = keras.mixed_precision.global_policy()
    if config.mixed_precision != "none":  # the models the run builds take it
        keras.mixed_precision.set_global_policy(f"mixed_{config.mixed_precision}")
    try:
        Runner(recipe, config).run()
    finally:  # a caller's later models are as before (`main` called from Python)
        keras.mixed_precision.set_global_policy(before)
