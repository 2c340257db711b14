"""`python -m kseg.recipes.pascal_context`: train, evaluate and predict on pascal_context."""

from kseg.recipes.cli import Recipe
from kseg.recipes.cli import main as _main

RECIPE = Recipe("pascal_context", (480, 480), "a common PASCAL-Context crop")


def main(argv: list[str] | None = None) -> None:
    _main(RECIPE, argv)


if __name__ == "__main__":
    main()
