"""`python -m kseg.recipes.ode_features`: the transfer protocol of Carrara et al. 2019.

    python -m kseg.recipes.ode_features --models runs/cifar10-res_ode_net/best.keras,... \
        --target-dir DIR          # DIR/tiny-imagenet-200/ (Tiny-ImageNet-200 validation)
    python -m kseg.recipes.ode_features --demo   # trains the three nets on the demo source

For each source model (trained by a classification recipe, whose run folder holds
`preprocessing.json`): the target images are resized to the source resolution and
normalised with the source statistics; globally pooled features are read at t = 0, 0.05,
..., 1 of the ODE block (the last 7 residual blocks of a ResNet); a linear SVM with C in
{0.01, 0.1, 1, 10, 100} is chosen by 5-fold cross-validation and retrained on the whole
set. Without --target-dir the target is scikit-learn's real digits without the source's
classes. Written to --out: `transfer.csv` (accuracy per position), `transfer.png` (Fig. 2),
`solver_steps.json` (steps per image, mean and deviation, Table 1) and
`solver_steps-<model>.png` (the most and least demanding images, Fig. 1).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

from kseg.errors import command_parser

DEMO_MODELS = ("resnet_gn", "res_ode_net", "ode_only_net")


def build_parser() -> argparse.ArgumentParser:
    from kseg.features import PAPER_CS
    from kseg.recipes.config import non_negative, positive

    def at_least_two(text: str) -> int:  # cross-validation needs two folds
        if positive(text) < 2:
            raise argparse.ArgumentTypeError(f"expected at least 2 folds, got {text!r}")
        return int(text)

    p = command_parser(
        "python -m kseg.recipes.ode_features",
        "Linear-SVM transfer of ODE Net features z(t) (Carrara et al. 2019).",
    )
    p.add_argument("--models", help="comma-separated .keras files of trained source models")
    p.add_argument("--target-dir", help="folder holding tiny-imagenet-200/ (its val split)")
    p.add_argument("--out", default=os.path.join("runs", "ode_features"), help="results folder")
    p.add_argument(
        "--demo",
        action="store_true",
        help="without --models: first train resnet_gn, res_ode_net and "
        "ode_only_net as `python -m kseg.recipes.cifar10 --demo` does",
    )
    p.add_argument("--limit", type=positive, help="use the first N target images only")
    p.add_argument("--folds", type=at_least_two, default=5, help="cross-validation folds")
    p.add_argument("--cs", default=",".join(f"{c:g}" for c in PAPER_CS), help="SVM C grid")
    p.add_argument(
        "--steps-images",
        type=non_negative,
        default=200,
        help="count solver steps on the first N target images (0: skip)",
    )
    p.add_argument("--demo-epochs", type=positive, help="--demo: epochs of each source model")
    p.add_argument("--jobs", type=int, default=None, help="parallel SVM fits (scikit-learn)")
    return p


def load_target(args, preprocessing: dict):
    """(name, uint8 images at the source size, labels) of the target task."""
    import numpy as np
    from PIL import Image

    if args.target_dir:
        from kseg.data.classification import load_tiny_imagenet

        images, labels = load_tiny_imagenet(args.target_dir, "val")
        name = "Tiny-ImageNet-200 val"
    else:
        from kseg.data.demo_classification import demo_target

        target = demo_target(preprocessing["source"])
        images, labels = target.images, target.labels
        name = f"{target.name} (embedded default: real images that ship here)"
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    h, w = preprocessing["image_size"]
    if images.shape[1:3] != (h, w):
        # Bilinear with PIL's antialiasing, as torchvision's Resize in the official code.
        images = np.stack(
            [np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR)) for im in images]
        )
    return name, images, labels


def train_demo_sources(args) -> list[str]:
    from kseg.recipes import cifar10

    paths = []
    for name in DEMO_MODELS:
        folder = os.path.join(args.out, f"source-{name}")
        extra = ["--epochs", str(args.demo_epochs)] if args.demo_epochs else []
        cifar10.main(
            [
                "train",
                "--demo",
                "--model",
                name,
                "--out",
                folder,
                "--verbose",
                "0",
                "--no-tensorboard",
                "--seed",
                "0",
                *extra,
            ]
        )
        paths.append(os.path.join(folder, "best.keras"))
    return paths


def run(args) -> list[dict]:
    import numpy as np

    from kseg.data.classification_pipeline import normalize_numpy
    from kseg.features import (
        extract,
        linear_svm_transfer,
        plot_accuracy_over_time,
        solver_step_report,
    )
    from kseg.models.loading import load_model
    from kseg.recipes.classification import read_preprocessing

    os.makedirs(args.out, exist_ok=True)
    paths = args.models.split(",") if args.models else train_demo_sources(args)
    cs = [float(c) for c in args.cs.split(",")]
    rows, curves, steps_summary, targets = [], {}, {}, set()
    for path in paths:
        model = load_model(path)
        pre = read_preprocessing(os.path.dirname(os.path.abspath(path)))
        target, images, labels = load_target(args, pre)
        targets.add(target)
        x = normalize_numpy(images, pre["mean"], pre["std"])
        started = time.time()
        features = extract(model, x)
        seconds = time.time() - started
        accuracies = []
        for position, name, values in zip(
            features.positions, features.names, features.values, strict=True
        ):
            result = linear_svm_transfer(values, labels, cs, args.folds, n_jobs=args.jobs)
            accuracies.append(result.cv_accuracy)
            rows.append(
                {
                    "model": model.name,
                    "source": pre["source"],
                    "target": target,
                    "position": float(position),
                    "feature": name,
                    "cv_accuracy": result.cv_accuracy,
                    "C": result.c,
                    "train_accuracy": result.train_accuracy,
                    "converged": result.converged,
                }
            )
        curves[model.name] = (features.positions, accuracies)
        best = int(np.argmax(accuracies))
        print(
            f"{model.name}: best linear-SVM accuracy {100 * accuracies[best]:.1f}% at "
            f"{features.names[best]} ({len(labels)} target images, features in "
            f"{seconds:.0f} s)"
        )
        n = min(args.steps_images, len(x))
        plot = os.path.join(args.out, f"solver_steps-{model.name}.png")
        report = solver_step_report(model, x[:n], images[:n], plot) if n else None
        if report:
            steps_summary[model.name] = report
            print(
                f"  solver steps per target image: {report['accepted_steps_mean']:.1f} ± "
                f"{report['accepted_steps_std']:.1f}"
            )
    with open(os.path.join(args.out, "transfer.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(args.out, "solver_steps.json"), "w") as f:
        json.dump(steps_summary, f, indent=1)
    title = f"linear SVM on {' / '.join(sorted(targets))}"
    plot_accuracy_over_time(curves, os.path.join(args.out, "transfer.png"), title)
    print(f"Written: {args.out}/transfer.csv, transfer.png, solver_steps.json")
    return rows


def main(argv: list[str] | None = None) -> None:
    from kseg.errors import run_command

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.models and not args.demo:
        parser.error("give --models (trained .keras files) or --demo")
    run_command(lambda: run(args), argv)


if __name__ == "__main__":
    main()
