"""`python -m kseg.recipes.pascal_context`: train, evaluate and predict on PASCAL-Context
(59 classes). `--demo` runs on real images written in its layout with its labels."""

from kseg.recipes.cli import command
from kseg.recipes.segmentation import SegmentationRecipe

RECIPE = SegmentationRecipe(
    "pascal_context",
    (520, 520),
    "HRNet's PASCAL-Context crop (rounded up to the model's input multiple)",
    demo="pascal_context",
    title="PASCAL-Context",
)


main = command(RECIPE)


if __name__ == "__main__":
    main()
