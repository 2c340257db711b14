"""`python -m kseg.recipes.svhn`: SVHN cropped digits (10 classes, 32x32) for ChoiceNet
(Rayhan et al. section 3.1.2, Table 1): the train and extra sets (604,388 images) without
augmentation, 10% of them held out for validation, tested on the 26,032 test images.
`--demo` trains on real images that ship here when SVHN is absent."""

from kseg.data.classification import load_svhn
from kseg.recipes.classification import ClassificationRecipe
from kseg.recipes.cli import command

RECIPE = ClassificationRecipe(
    dataset="svhn",
    title="SVHN",
    num_classes=10,
    load=load_svhn,
    mean=None,
    std=None,
    default_model="choicenet_40",
    train_splits=("train", "extra"),
    holdout=0.1,
    augment=False,
)


main = command(RECIPE)


if __name__ == "__main__":
    main()
