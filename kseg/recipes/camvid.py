"""`python -m kseg.recipes.camvid`: train, evaluate and predict on camvid."""

from kseg.recipes.cli import Recipe
from kseg.recipes.cli import main as _main

RECIPE = Recipe("camvid", (352, 480), "SegNet protocol images are 360x480", eval_split="test")


def main(argv: list[str] | None = None) -> None:
    _main(RECIPE, argv)


if __name__ == "__main__":
    main()
