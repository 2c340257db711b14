"""`python -m kseg.recipes.lip`: train, evaluate and predict on lip."""

from kseg.recipes.cli import Recipe
from kseg.recipes.cli import main as _main

RECIPE = Recipe("lip", (473, 473), "LIP's usual 473x473")


def main(argv: list[str] | None = None) -> None:
    _main(RECIPE, argv)


if __name__ == "__main__":
    main()
