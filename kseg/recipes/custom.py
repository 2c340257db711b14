"""`python -m kseg.recipes.custom`: train, evaluate and predict on your own images.

    python -m kseg.recipes.custom train --data-dir DIR [--init-from best.keras]
    python -m kseg.recipes.custom evaluate --data-dir DIR
    python -m kseg.recipes.custom predict --data-dir DIR
    python -m kseg.recipes.custom --demo   # all three on real images in DIR's layout

DIR holds `classes.txt` (one class a line: `name` or `name R G B`),
`images/{train,val}/` and `masks/{train,val}/` (PNG, pixel value = class index, 255 =
ignore, or colour PNGs by the colours of classes.txt; masks named NAME_mask.gif or by
another ending pair too, `--mask-suffix`); without `images/val` a tenth of the images
validates; see `kseg.data.FolderDataset`. DIR may also be a labelling tool's Pascal VOC
export as it is unzipped (labelmap.txt, JPEGImages/, SegmentationClass/;
`kseg.data.VocExport`), a folder of labelme's JSON files beside their images
(`kseg.data.LabelmeFolder`) or a COCO export (`kseg.data.CocoFolder`). Models train with
their paper's preset, or kseg's default for a model without one; 512x512 crops unless
`--crop` says otherwise, or the largest training image's size where that is smaller.
"""

from kseg.recipes.cli import command
from kseg.recipes.segmentation import SegmentationRecipe

# No paper gives a crop for your own data: 512x512 is mmsegmentation's usual one (ADE20K,
# VOC), fitted to the images where they are smaller.
CROP = (512, 512)

RECIPE = SegmentationRecipe(
    "custom", CROP, "kseg's default crop for your own data", demo="folder", title="your own data"
)


main = command(RECIPE)


if __name__ == "__main__":
    main()
