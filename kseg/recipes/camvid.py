"""`python -m kseg.recipes.camvid`: train, evaluate and predict on CamVid (SegNet's
split: 367 train, 101 val, 233 test). Checkpoints are picked on `val`; `evaluate --split
test` scores the test set; `--demo` runs on real images written in CamVid's layout."""

from kseg.recipes.cli import command
from kseg.recipes.segmentation import SegmentationRecipe

RECIPE = SegmentationRecipe(
    "camvid", (352, 480), "SegNet protocol images are 360x480", demo="camvid", title="CamVid"
)


main = command(RECIPE)


if __name__ == "__main__":
    main()
