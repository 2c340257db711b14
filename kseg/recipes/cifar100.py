"""`python -m kseg.recipes.cifar100`: CIFAR-100 (100 fine classes, 32x32) for ChoiceNet
(Rayhan et al., Table 1: `--model choicenet_30|choicenet_37|choicenet_40`); 5,000 training
images held out for validation, normalised with the training set's channel statistics.
`--demo` trains on real images that ship here when CIFAR-100 is absent."""

import dataclasses
from functools import partial

from kseg.data.classification import load_cifar
from kseg.recipes.cifar10 import RECIPE as CIFAR10
from kseg.recipes.cli import command

# CIFAR-10's reader and protocol with 100 classes, statistics from the training images.
RECIPE = dataclasses.replace(
    CIFAR10,
    dataset="cifar100", title="CIFAR-100", num_classes=100,
    load=partial(load_cifar, classes=100), mean=None, std=None, default_model="choicenet_40",
)  # fmt: skip


main = command(RECIPE)


if __name__ == "__main__":
    main()
