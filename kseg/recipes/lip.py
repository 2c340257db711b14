"""`python -m kseg.recipes.lip`: train, evaluate and predict on lip."""

from kseg.recipes.cli import command
from kseg.recipes.segmentation import SegmentationRecipe

RECIPE = SegmentationRecipe("lip", (473, 473), "LIP's usual 473x473", title="LIP")


main = command(RECIPE)


if __name__ == "__main__":
    main()
