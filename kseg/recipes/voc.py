"""`python -m kseg.recipes.voc`: train, evaluate and predict on PASCAL VOC 2012.

Trains on `train_aug` (10,582 images: VOC train plus SBD, what DeepLab and Ikedo & Hotta 2022 use)
when the folder has it, else on VOC's 1,464 `train` images; evaluates on `val`.
DeepLabV3+ and the cross cooperative network take Ikedo & Hotta 2022's 513x513 crops and validate
on centre crops (their presets); other models take 512x512 crops. `--demo` runs on real
images written in the devkit's layout with VOC's labels.

    python -m kseg.recipes.voc train --model cross_cooperative --data-dir ~/data/VOCdevkit
"""

from kseg.recipes.cli import command
from kseg.recipes.segmentation import SegmentationRecipe

RECIPE = SegmentationRecipe(
    "voc",
    (512, 512),
    "a common VOC crop; ContextNet does not train on VOC",
    train_split="train_aug",
    train_split_fallback="train",
    demo="voc",
    title="PASCAL VOC 2012",
)


main = command(RECIPE)


if __name__ == "__main__":
    main()
