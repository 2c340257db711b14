"""`python -m kseg.recipes.voc`: train, evaluate and predict on PASCAL VOC 2012.

Trains on `train_aug` (10,582 images: VOC train plus SBD, what DeepLab and paper 003 use)
when the folder has it, else on VOC's 1,464 `train` images; evaluates on `val`.
DeepLabV3+ and the cross cooperative network take paper 003's 513x513 crops and validate
on centre crops (their presets); other models take 512x512 crops.

    python -m kseg.recipes.voc train --model cross_cooperative --data-dir ~/data/VOCdevkit
"""

from kseg.recipes.cli import Recipe
from kseg.recipes.cli import main as _main

RECIPE = Recipe(
    "voc",
    (512, 512),
    "a common VOC crop; ContextNet does not train on VOC",
    train_split="train_aug",
    train_split_fallback="train",
)


def main(argv: list[str] | None = None) -> None:
    _main(RECIPE, argv)


if __name__ == "__main__":
    main()
