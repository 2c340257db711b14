"""Training on several splits together (`--train-splits`), and Cityscapes' coarsely
labelled `train_extra` read through the official label table."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from kseg.data import Cityscapes
from kseg.errors import UserError
from kseg.recipes import cityscapes
from kseg.recipes.cli import parse


def test_train_splits_join_the_splits(demo_cityscapes):
    config = parse(cityscapes.RECIPE, ["train", "--train-splits", "train,val"])
    assert config.train_splits == ("train", "val")
    dataset = Cityscapes(demo_cityscapes)
    name, samples = cityscapes.RECIPE.train_samples(dataset, config.train_splits)
    want = dataset.samples("train") + dataset.samples("val")
    assert name == "train+val" and samples == want and len(samples) == 12
    with pytest.raises(UserError, match="not trainval"):
        cityscapes.RECIPE.train_samples(dataset, ("trainval",))


def test_train_extra_reads_coarse_labels_through_the_official_table(demo_cityscapes, tmp_path):
    """A train_extra made of the demo's training frames with their labels saved as
    gtCoarse: the same training ids come out."""
    root = tmp_path / "cityscapes"
    shutil.copytree(demo_cityscapes, root)
    fine = Cityscapes(str(root)).samples("train")
    for sample in fine:
        city = os.path.basename(os.path.dirname(sample.image))
        image_dir = root / "leftImg8bit" / "train_extra" / city
        label_dir = root / "gtCoarse" / "train_extra" / city
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample.image, image_dir)
        stem = os.path.basename(sample.label).replace("_gtFine_labelIds.png", "")
        shutil.copy(sample.label, label_dir / f"{stem}_gtCoarse_labelIds.png")
    dataset = Cityscapes(str(root))
    with pytest.warns(UserWarning, match="standard split has 19998"):
        coarse = dataset.samples("train_extra")
    assert [os.path.basename(s.image) for s in coarse] == [os.path.basename(s.image) for s in fine]
    table = dataset.label_map
    for c, f in zip(coarse, fine, strict=True):
        np.testing.assert_array_equal(
            table[np.asarray(Image.open(c.label))], table[np.asarray(Image.open(f.label))]
        )
    assert set(np.unique(table[np.asarray(Image.open(coarse[0].label))])) - {255} <= set(range(19))
