"""`python -m kseg.recipes.pascal_context`: train, evaluate and predict on pascal_context."""

from kseg.recipes.cli import command
from kseg.recipes.segmentation import SegmentationRecipe

RECIPE = SegmentationRecipe(
    "pascal_context",
    (520, 520),
    "HRNet's PASCAL-Context crop (rounded up to the model's input multiple)",
    title="PASCAL-Context",
)


main = command(RECIPE)


if __name__ == "__main__":
    main()
