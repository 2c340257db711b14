"""`python -m kseg.recipes.lip`: train, evaluate and predict on lip."""

from kseg.recipes.cli import command
from kseg.recipes.segmentation import SegmentationRecipe

# LIP's usual protocol (as HRNet and CE2P): 473x473 training crops; at test every image
# resized to 473x473 with its mirror averaged in, the prediction resized back.
RECIPE = SegmentationRecipe(
    "lip",
    (473, 473),
    "LIP's usual 473x473",
    title="LIP",
    test_size=(473, 473),
    test_flip=True,
)


main = command(RECIPE)


if __name__ == "__main__":
    main()
