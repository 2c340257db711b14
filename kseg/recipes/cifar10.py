"""`python -m kseg.recipes.cifar10`: CIFAR-10 (10 classes, 32x32) for the ODE Nets of
Carrara et al. 2019 (`--model resnet_gn|res_ode_net|ode_only_net`, validated on the test
set as their official code) and ChoiceNet (`--model choicenet_30|37|40`, 5,000 training
images held out); `--demo` trains on real images that ship here when CIFAR-10 is absent."""

from functools import partial

from kseg.data.classification import load_cifar
from kseg.data.classification_pipeline import CIFAR10_MEAN, CIFAR10_STD
from kseg.recipes.classification import ClassificationRecipe
from kseg.recipes.cli import command

RECIPE = ClassificationRecipe(
    dataset="cifar10",
    title="CIFAR-10",
    num_classes=10,
    load=partial(load_cifar, classes=10),
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    default_model="res_ode_net",
)


main = command(RECIPE)


if __name__ == "__main__":
    main()
