"""`python -m kseg.recipes.voc`: train, evaluate and predict on voc."""

from kseg.recipes.cli import Recipe
from kseg.recipes.cli import main as _main

RECIPE = Recipe("voc", (512, 512), "a common VOC crop; ContextNet does not train on VOC")


def main(argv: list[str] | None = None) -> None:
    _main(RECIPE, argv)


if __name__ == "__main__":
    main()
