"""`python -m kseg.recipes.cityscapes`: Cityscapes fine (19 classes); `--demo` runs on a
small generated set in the Cityscapes layout."""

from kseg.recipes.cli import command
from kseg.recipes.segmentation import SegmentationRecipe

RECIPE = SegmentationRecipe(
    "cityscapes",
    (1024, 2048),
    "the full frame: ContextNet trains on full-resolution input",
    demo="cityscapes",
    title="Cityscapes",
)


main = command(RECIPE)


if __name__ == "__main__":
    main()
