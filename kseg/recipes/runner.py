"""One runner for every recipe: train (with resume, fine-tuning and progressive pruning),
evaluate and predict, for a segmentation or a classification recipe.

A recipe (`kseg.recipes.segmentation.SegmentationRecipe`,
`kseg.recipes.classification.ClassificationRecipe`) declares a dataset and supplies its
data; its task (`kseg.tasks`) owns compile, the monitored score, evaluation and
prediction; the runner owns what every run does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time

from kseg.errors import UserError, disk_full, out_of_memory
from kseg.recipes.config import CONFIG, RunConfig, read_run_record, write_run_record


@dataclasses.dataclass
class TrainingData:
    """What a recipe hands the runner for one training stage."""

    train: object  # tf.data.Dataset of (image, label) batches
    validation: object | None
    steps: int  # per epoch
    description: str  # e.g. "Cityscapes train (2975 images), crop 1024x2048"
    details: dict = dataclasses.field(default_factory=dict)  # recorded in config.json


def round_up(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    return tuple(-(-s // multiple) * multiple for s in size)


def keras_verbosity(verbose: str) -> int:
    """`--verbose` as Keras' `fit` takes it; "auto": progress bars (1) in a terminal, one
    line an epoch (2) in a log file, where the bars' redrawing would write a line a step."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def describe_precision(model) -> str:
    """How the model computes when not in float32 alone, as the training line says it:
    its layers' compute dtype and whether its optimiser scales the loss ("" in float32)."""
    import keras

    computes = {layer.dtype_policy.compute_dtype for layer in model.layers if layer.weights}
    if computes <= {"float32"}:
        return ""
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    return (
        f"mixed precision: {'/'.join(sorted(computes - {'float32'}))} compute, float32 "
        f"weights{', loss scaled' if scaled else ''}"
    )


# What a run writes in its folder by name (folders of outputs keep their own records).
RUN_FILES = (
    "config.json", "state.json", "log.csv", "best.keras", "last-epoch*.keras", "tensorboard",
    "evaluation*.json", "evaluation*.csv", "pruning.json", "preprocessing.json",
    "results.json", "solver_steps.png", "classes.txt",
)  # fmt: skip
RUN_MARK = ".kseg-run"  # in a folder a kseg command has run in


def accumulation(batch: int, replicas: int, pieces: int) -> str:
    """How `--accumulate` splits each replica's share of a batch, for the training line
    ("" for one piece); a number of pieces that does not divide it is a `UserError`."""
    if pieces == 1:
        return ""
    share = batch // replicas
    if share % pieces:
        divisors = ", ".join(str(d) for d in range(2, share + 1) if share % d == 0) or "none"
        each = f"each of {replicas} replicas' {share}" if replicas > 1 else f"the {share}"
        raise UserError(
            f"--accumulate {pieces} cannot split {each} images of a step into equal pieces: "
            f"give a divisor of {share} ({divisors})"
        )
    each = " a replica" * (replicas > 1)
    return (
        f" in {pieces} pieces of {share // pieces}{each} (--accumulate; batch norm on each piece)"
    )


def claim_run_folder(folder: str) -> None:
    """Marks `folder` as a run folder, first refusing one that holds a file of a name a
    run writes when no kseg command ran there (no mark, no run record): the run would
    overwrite the user's file."""
    import glob

    mark = os.path.join(folder, RUN_MARK)
    if os.path.exists(mark):
        return
    if os.path.isdir(folder):
        try:
            record = read_run_record(folder)
        except ValueError:  # not JSON: a config.json of the user's own
            record = None
        if not (isinstance(record, dict) and "run" in record):  # else a run of an older kseg
            for pattern in RUN_FILES:
                found = sorted(glob.glob(os.path.join(folder, pattern)))
                if found:
                    raise UserError(
                        f"{found[0]} is not a kseg run's, and a run in {folder} would "
                        "overwrite it: give --out a folder of its own"
                    )
    os.makedirs(folder, exist_ok=True)
    open(mark, "w").close()


class Runner:
    """Runs `config.command` (or, with `--demo` and no command, all of the recipe's) of
    `recipe` in the run folder `config.out`."""

    def __init__(self, recipe, config: RunConfig):
        self.recipe, self.config = recipe, config
        self.task = recipe.task
        self.out = config.out or os.path.join("runs", f"{recipe.dataset}-{config.model}")
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise UserError(f"--out {self.out} is a file, not a folder: give a folder for the run")
        if config.checkpoint:  # a run folder: the model it hands on
            from kseg.train.checkpoints import model_of

            config.checkpoint = model_of(config.checkpoint)
        self.data = None
        self._strategy = None

    # === Settings ===
    def preset(self, model_name: str | None = None, learning_rate: float | None = None):
        """The model's preset for this dataset, with the run's overrides."""
        from kseg.train.presets import preset_for

        preset = preset_for(model_name or self.config.model, self.recipe.dataset)
        changes = {
            "learning_rate": learning_rate or self.config.learning_rate,
            "optimizer": self.config.optimizer,
            "weight_decay": self.config.weight_decay,
            "loss": self.config.loss,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(preset, **changes) if changes else preset

    def own_settings(self, preset) -> str:
        """The values of `preset` (from `self.preset()`) that differ from the paper
        preset's, e.g. "optimizer adamw, learning rate 0.01", or ""."""
        from kseg.train.presets import preset_for

        paper = preset_for(self.config.model, self.recipe.dataset)
        names = ("optimizer", "learning_rate", "weight_decay", "loss")
        return ", ".join(
            f"{name.replace('_', ' ')} {getattr(preset, name)}"
            for name in names
            if getattr(preset, name) != getattr(paper, name)
        )

    def open_data(self):
        if self.data is None:
            self.data = self.recipe.open(self.config, self.out)
        return self.data

    def strategy(self):
        """The run's `tf.distribute` strategy, made once for all its training stages: the
        collective ops of a second MirroredStrategy in one process can pair with the
        first one's (a shape mismatch after a stage with synchronised batch norm)."""
        if self._strategy is None:
            from kseg.train.strategy import get_strategy

            self._strategy = get_strategy(self.config.strategy)
        return self._strategy

    # === Commands ===
    def run(self) -> None:
        started = time.time()
        claim_run_folder(self.out)
        demo = getattr(self.recipe, "demo_commands", self.recipe.commands)
        commands = [self.config.command] if self.config.command else list(demo)
        self.open_data()
        for command in commands:
            try:
                getattr(self, command)()
            except Exception as error:  # exhausted memory or a bad file outside training
                bad = self.recipe.unreadable_input(self, error, command)
                if bad is not None:
                    raise UserError(bad) from error
                memory = out_of_memory(error)
                hint = self.recipe.memory_hint(command) if memory else None
                if hint is None:
                    raise
                raise UserError(f"{memory} in {command}: {hint}") from error
        if self.config.demo and set(commands) <= set(demo):  # not after `qat --demo`
            self.recipe.finish_demo(self, time.time() - started)

    def train(self) -> None:
        from kseg.models import create_model

        if self.config.prune_from:
            return self.train_progressive()
        self.train_stage(self.out, lambda: self.new_model(create_model), self.config.epochs)

    def evaluate(self):
        return self.recipe.evaluate(self)

    def predict(self):
        return self.recipe.predict(self)

    def qat(self):
        return self.recipe.qat(self)

    # === Training ===
    def new_model(self, create_model, **overrides):
        from kseg.train.checkpoints import model_of

        if self.config.init_from:  # a run folder: the model it hands on, recorded as such
            self.config.init_from = model_of(self.config.init_from)
        source = self.config.init_from
        model = self.build_model(create_model, source, **overrides)
        if source:
            from kseg.train.init_from import init_from

            init_from(model, source)
        return model

    def build_model(self, create_model, source: str | None, **overrides):
        """`--model` with the recipe's arguments, `--model-kwargs` and `overrides`, built
        to take the weights of `source` (`kseg.train.init_from.source_arguments`)."""
        from kseg.train.init_from import source_arguments

        kwargs = self.recipe.model_kwargs(self.config, self.preset(), self.open_data())
        kwargs = {**source_arguments(self.config.model, source), **kwargs, **overrides}
        return create_model(self.config.model, **kwargs)

    def train_stage(self, folder: str, make_model, epochs: int | None, learning_rate=None):
        """Trains the model of `make_model()` (or resumes the one in `folder`) for `epochs`
        (None: the preset's)."""
        from kseg.train.checkpoints import last_checkpoint, read_state
        from kseg.train.engine import fit, resume_point
        from kseg.train.presets import apply_weight_decay, describe_weight_decay, has_preset
        from kseg.train.schedules import resume_schedule
        from kseg.train.strategy import is_chief, synchronize_batch_norm
        from kseg.utils.summary import count_params

        config, data = self.config, self.open_data()
        preset = self.preset(learning_rate=learning_rate)
        epochs = epochs or preset.epochs
        batch = config.batch_size or preset.batch_size
        strategy = self.strategy()
        if config.resume and last_checkpoint(folder):
            self.check_same_model(folder)
        with strategy.scope():
            resumed = resume_point(folder) if config.resume else None
            if resumed:
                model, initial_epoch, state = resumed
                apply_weight_decay(model, preset)  # a .keras file keeps no regulariser
                print(f"Resuming {folder}: {initial_epoch} of {epochs} epochs done")
            else:
                model = make_model()
                initial_epoch, state = 0, None
            replicas = strategy.num_replicas_in_sync
            pieces = accumulation(batch, replicas, config.accumulate)
            sync_bn = config.sync_bn
            if config.accumulate > 1 and replicas > 1 and sync_bn != "off":
                if sync_bn == "on":
                    raise UserError(
                        "--accumulate runs each replica's pieces in a loop, where batch norm "
                        "cannot be synchronised over the replicas: give --sync-bn off (or "
                        "leave it to auto, which is off with --accumulate)"
                    )
                sync_bn = "off"  # auto: the pieces' loop cannot all-reduce
            synced, per_replica = synchronize_batch_norm(model, sync_bn, replicas)
            prepared = self.recipe.training_data(self, model, preset, batch, strategy)
            if "class_weights" in prepared.details:  # --balance-classes
                weights = tuple(prepared.details["class_weights"])  # recorded with the run
                preset = dataclasses.replace(preset, class_weights=weights)
            if resumed and read_state(folder) is None:
                state = self.recovered_state(folder, initial_epoch, prepared.validation)
            if resumed:
                changed = resume_schedule(
                    model.optimizer, preset.make_schedule(epochs * prepared.steps, prepared.steps)
                )
                if changed:
                    print(f"Resuming with other settings: {changed}")
            else:
                self.task.compile(
                    model,
                    preset,
                    self.recipe.count_classes(data),
                    epochs * prepared.steps,
                    steps_per_epoch=prepared.steps,
                    loss=config.loss,
                    class_weights=config.class_weights,
                )
        if initial_epoch >= epochs:
            done = f"{folder} already has {initial_epoch} epochs (asked for {epochs})"
            print(f"{done}; nothing to train")
            return
        if is_chief(strategy):
            write_run_record(
                folder, config, preset, self.recipe.dataset,
                epochs=epochs, batch_size=batch, learning_rate=preset.learning_rate,
                optimizer=preset.optimizer, weight_decay=preset.weight_decay, **prepared.details,
            )  # fmt: skip
        if not has_preset(config.model):
            print(f"{config.model} has no paper preset; training with {preset.source}")
        weights = config.model_kwargs.get("backbone_weights")
        weights = any(weights) if isinstance(weights, (list, tuple)) else weights
        for line in [] if resumed else getattr(model, "backbone_report", []):
            print(line)
        if not (resumed or config.init_from or weights) and self.task.name == "segmentation":
            if pretraining := getattr(model, "pretraining", None):
                print(f"Note: this run starts from scratch. {pretraining}")
        synced_bn = ""
        if synced or per_replica:
            inside = f"; {per_replica} in ODE blocks stay per replica" if per_replica else ""
            synced_bn = f" with batch norm over all ({synced} layers, --sync-bn{inside})"
        print(
            f"Training {model.name} ({count_params(model):,} parameters) on "
            f"{prepared.description}, batch {batch}{pieces}, {prepared.steps} steps x {epochs} "
            "epochs, "
            + (f"validated every {config.val_every} and the last, " if config.val_every > 1 else "")
            + f"{replicas} replica(s){synced_bn}; {describe_weight_decay(model, preset)}; "
            f"preset: {preset.source}"
            + (f"; this run's own: {own}" if (own := self.own_settings(preset)) else "")
            + (f"; {precision}" if (precision := describe_precision(model)) else "")
        )
        verbose = keras_verbosity(config.verbose)
        try:
            fit(
                model,
                prepared.train,
                prepared.validation,
                epochs,
                folder,
                initial_epoch=initial_epoch,
                state=state,
                tensorboard=config.tensorboard,
                graph_optimization=config.graph_optimization,
                recompute_norm_act=config.recompute_norm_act,
                accumulate=config.accumulate,
                val_every=config.val_every,
                precise_bn_batches=config.precise_bn_batches if self.task.precise_bn else 0,
                verbose=verbose,
                extra_callbacks=self.recipe.callbacks(preset, state),
                task=self.task,
                monitor=self.monitored(model),
            )
        except (KeyboardInterrupt, Exception) as stop:
            said = self.stopped(stop, folder, epochs, f"{model.name} on {prepared.description}, "
                                f"batch {batch}")  # fmt: skip
            if said is None:
                raise
            raise said from None

    def monitored(self, model) -> str:
        """The validation score that picks `best.keras`: the task's, or that of the network
        `--monitor` names."""
        if self.config.monitor:
            return self.task.monitor(model, self.config.monitor)
        return self.task.monitor(model)

    def recovered_state(self, folder: str, epochs_done: int, validation) -> dict:
        """The state of a resumed run whose folder has checkpoints but no `state.json` (a
        run copied without it): its history and best score from `log.csv`, else the score
        of its `best.keras` on `validation`, measured again, so that the next epoch does
        not replace a better `best.keras`. Says which."""
        import keras

        from kseg.train.checkpoints import BEST, LOG, state_from_log

        state = state_from_log(folder, epochs_done)
        if state is not None:
            print(f"{folder} has no state.json: the history and best score of its "
                  f"{epochs_done} epochs come from its {LOG}")  # fmt: skip
            return state
        best = os.path.join(folder, BEST)
        if validation is None or not os.path.exists(best):
            return {}
        model = keras.saving.load_model(best)
        monitor = self.monitored(model)
        scores = model.evaluate(self.task.targets(validation, model), return_dict=True, verbose=0)
        score = float(scores[monitor.removeprefix("val_")])
        print(f"{folder} has no state.json or {LOG}: {BEST} scored again on the validation "
              f"data, {monitor} {score:.4f}, the score later epochs must beat")  # fmt: skip
        return {"best": score, "best_epoch": None}

    def stopped(self, stop: BaseException, folder: str, epochs: int, run: str):
        """What `run_command` reports when training in `folder` stops with `stop`: Ctrl-C,
        SIGTERM, a full disk, exhausted memory or an image file that cannot be decoded,
        each with the epochs saved and how to resume (`run`: the model, data and batch, for
        memory); None for anything else."""
        from kseg.train.checkpoints import last_checkpoint

        memory = out_of_memory(stop)
        bad = None
        if isinstance(stop, Exception) and not (memory or disk_full(stop)):
            bad = self.recipe.unreadable_input(self, stop, "train")
            if bad is None:
                return None
        found = last_checkpoint(folder)
        done = found[1] if found else 0
        kept = f"{done} of {epochs} epochs are saved in {folder}"
        if isinstance(stop, KeyboardInterrupt):
            return type(stop)(f"{kept}; the same command resumes from epoch {done + 1}")
        if bad is not None:
            return UserError(f"{bad}\n{kept}; the same command resumes from epoch {done + 1}")
        if memory:
            crop = self.task.name == "segmentation"  # the classification recipes have none
            return UserError(
                f"{memory} while training {run}: lower "
                f"{'--batch-size or --crop' if crop else '--batch-size'}, run each batch in "
                "pieces (--accumulate 2), or try --recompute-norm-act (or --mixed-precision "
                "float16 on a GPU); "
                f"{kept}, and the same command with smaller settings resumes from epoch "
                f"{done + 1}"
            )
        space = [f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"]
        if found:
            space.append(
                f"an epoch's save takes up to {2 * os.path.getsize(found[0]) / 2**20:.0f} MiB "
                "more, its checkpoint and a copy as the best model"
            )
        return UserError(
            f"no space left on the disk of {folder} ({'; '.join(space)}): {kept}. Free some "
            f"space and run the same command: it resumes from epoch {done + 1}"
        )

    def check_same_model(self, folder: str) -> None:
        """Refuses to resume the run in `folder` as another model: its config.json names
        the model it trains, which this command's --model and --model-kwargs must repeat."""
        record = read_run_record(folder)
        if not record:  # a run of a kseg older than the record
            return
        before = record["run"]
        was = (before.get("model"), before.get("model_kwargs") or {})
        now = (self.config.model, self.config.model_kwargs or {})
        if was == now:
            return

        def named(model, kwargs):
            return f"{model} {json.dumps(kwargs)}" if kwargs else model

        raise UserError(
            f"{folder} holds a run of {named(*was)}, and this command trains {named(*now)}: "
            f"resume that run with its --model and --model-kwargs (or --config "
            f"{os.path.join(folder, CONFIG)}), give another --out, or start afresh in it "
            "with --no-resume"
        )

    def train_progressive(self) -> None:
        """ContextNet's progressive pruning (section 3.2.2): train at `--prune-from` times
        the width, then prune the lowest-L1 filters to each of `--prune-to` in turn,
        fine-tuning after each step. Stage k lives in `out/width<w>/` and resumes there;
        the last stage's best model is copied to `out/best.keras` and `out/pruning.json`
        sums the stages up."""
        import keras

        from kseg.export.pruning import prune_filters, width_schedule
        from kseg.models import create_model
        from kseg.train.checkpoints import (
            BEST,
            atomic_write,
            atomic_write_json,
            best_or_last,
            read_state,
        )
        from kseg.utils.summary import count_params

        config, out = self.config, self.out
        widths = [config.prune_from, *config.prune_to]
        ratios = width_schedule(config.prune_from, config.prune_to)
        folders = [os.path.join(out, f"width{w:g}") for w in widths]
        preset = self.preset()
        finetune_epochs = config.finetune_epochs or max(1, (config.epochs or preset.epochs) // 4)
        print(
            f"Progressive pruning: train at width {widths[0]:g}, then prune to "
            f"{', '.join(f'{w:g}' for w in widths[1:])} with {finetune_epochs} fine-tuning "
            f"epoch(s) each at learning rate {preset.learning_rate / 10:g}"
        )
        self.train_stage(
            folders[0],
            lambda: self.new_model(create_model, width_multiplier=config.prune_from),
            config.epochs,
        )
        for k, ratio in enumerate(ratios, start=1):
            source = best_or_last(folders[k - 1])

            def pruned(source=source, ratio=ratio):
                model = prune_filters(keras.saving.load_model(source, compile=False), ratio=ratio)
                print(f"Pruned {source}: {ratio:.1%} of the filters removed")
                return model

            self.train_stage(
                folders[k], pruned, finetune_epochs, learning_rate=preset.learning_rate / 10
            )
        stages = []
        for w, folder in zip(widths, folders, strict=True):
            path = best_or_last(folder)
            best = (read_state(folder) or {}).get("best")
            model = keras.saving.load_model(path, compile=False)
            finite = best is not None and abs(best) != float("inf")
            stages.append(
                {
                    "width": w,
                    "model": path,
                    "params": count_params(model),
                    "best_val_miou": best if finite else None,
                }
            )
        final = best_or_last(folders[-1])
        atomic_write(os.path.join(out, BEST), lambda tmp: shutil.copyfile(final, tmp))
        atomic_write_json(os.path.join(out, "pruning.json"), {"stages": stages})
        for s in stages:
            best = s["best_val_miou"]
            score = "" if best is None else f", best validation mIoU {100 * best:.2f}"
            print(f"  width {s['width']:g}: {s['params']:,} parameters{score}  ({s['model']})")
        print(f"Final model: {os.path.join(out, BEST)}")

    # === Evaluation and prediction ===
    def load_trained(self):
        """(model, path): `--checkpoint`, else the run folder's best, else its last.
        `--checkpoint` may be a trained model's PyTorch checkpoint (HRNet-Semantic-
        Segmentation's HRNetV2): `--model` built as PyTorch computes, every weight from it."""
        from kseg.models.loading import load_model
        from kseg.models.torch_checkpoint import is_torch_checkpoint
        from kseg.train.checkpoints import best_or_last

        path = self.config.checkpoint
        if path is not None and is_torch_checkpoint(path):
            return self.torch_trained(path), path
        if path is None:
            try:
                path = best_or_last(self.out)
            except FileNotFoundError:
                raise UserError(
                    f"no model to use: {self.out} has no best.keras or last-epoch*.keras; "
                    "train first, or pass --checkpoint MODEL.keras"
                ) from None
        return load_model(path), path

    def torch_trained(self, path: str):
        """`--model` with every weight from the PyTorch checkpoint `path`
        (`kseg.train.init_from.load_trained`)."""
        from kseg.models import create_model
        from kseg.train.init_from import load_trained

        model = self.build_model(create_model, path)
        load_trained(model, path)
        return model

    def load_backend(self):
        """(backend, path) for evaluation and prediction: as `load_trained`, and
        `--checkpoint` may also be an exported file (`.tflite`, `.onnx`, a SavedModel
        folder), which then runs in its own runtime (`kseg.predict.open_model`)."""
        from kseg.models.torch_checkpoint import is_torch_checkpoint
        from kseg.predict.backends import KerasBackend, open_model

        path = self.config.checkpoint
        if path is not None and not (path.endswith(".keras") or is_torch_checkpoint(path)):
            return open_model(path), path
        model, path = self.load_trained()
        return KerasBackend(model, f"keras {path}"), path

    def trained_preset(self, model_name: str | None):
        """The preset the model in the run folder trained with: the run's `config.json`
        names the model (a model renamed since still finds its preset), else `model_name`
        (None for an exported file outside a run folder: no preset)."""
        from kseg.recipes.config import read_run_record

        record = read_run_record(self.out) or {}
        name = record.get("run", {}).get("model") or model_name
        return self.preset(name) if name else None
