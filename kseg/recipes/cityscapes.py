"""`python -m kseg.recipes.cityscapes`: Cityscapes fine (19 classes); `--demo` runs on a
small generated set in the Cityscapes layout."""

from kseg.recipes.cli import Recipe
from kseg.recipes.cli import main as _main

RECIPE = Recipe(
    "cityscapes",
    (1024, 2048),
    "the full frame: ContextNet trains on full-resolution input",
    demo=True,
)


def main(argv: list[str] | None = None) -> None:
    _main(RECIPE, argv)


if __name__ == "__main__":
    main()
