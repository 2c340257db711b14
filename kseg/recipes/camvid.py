"""`python -m kseg.recipes.camvid`: train, evaluate and predict on camvid."""

from kseg.recipes.cli import command
from kseg.recipes.segmentation import SegmentationRecipe

RECIPE = SegmentationRecipe(
    "camvid", (352, 480), "SegNet protocol images are 360x480", eval_split="test", title="CamVid"
)


main = command(RECIPE)


if __name__ == "__main__":
    main()
