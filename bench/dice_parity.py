"""kseg's `SparseDiceLoss` against segmentation_models_pytorch's `DiceLoss` (multiclass
mode, from logits, ignore_index 255) on one random batch with ignored pixels.

The two run in two environments (smp needs torch): the peer environment of
`bench/setup_peer_venv.sh` with smp's files beside it (its package `__init__` imports
torchvision's compiled ops, which fail beside this machine's torch; only its losses are
loaded):

    .venv/bin/python bench/dice_parity.py write /tmp/dice.npz
    bench/.peer-venv/bin/pip install --no-deps --target /tmp/smp segmentation-models-pytorch==0.6.0
    PYTHONPATH=/tmp/smp bench/.peer-venv/bin/python bench/dice_parity.py check /tmp/dice.npz
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types

import numpy as np

SMOOTHS = (0.0, 1.0)


def write(path: str) -> None:
    from kseg.tasks import SparseDiceLoss

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4, 32, 48, 7)).astype("float32")
    labels = rng.integers(0, 6, (4, 32, 48))  # class 6 never labelled
    labels[0, :5], labels[1, :, :7] = 255, 255
    ours = [float(SparseDiceLoss(smooth=s, ignore_class=255)(labels, logits)) for s in SMOOTHS]
    np.savez(path, logits=logits, labels=labels, kseg=np.array(ours))
    print(f"wrote a batch {logits.shape} and kseg's Dice losses to {path}")


def check(path: str) -> None:
    import torch

    spec = importlib.util.find_spec("segmentation_models_pytorch")
    package = types.ModuleType("segmentation_models_pytorch")
    package.__path__ = list(spec.submodule_search_locations)  # its losses, not its __init__
    sys.modules["segmentation_models_pytorch"] = package
    from segmentation_models_pytorch.losses import DiceLoss

    data = np.load(path)
    logits = torch.from_numpy(data["logits"]).permute(0, 3, 1, 2)  # NHWC -> NCHW
    labels = torch.from_numpy(data["labels"]).long()
    for smooth, ours in zip(SMOOTHS, data["kseg"], strict=True):
        loss = DiceLoss("multiclass", from_logits=True, smooth=smooth, ignore_index=255)
        theirs = float(loss(logits, labels))
        print(f"smooth {smooth:g}: segmentation_models_pytorch {theirs:.7f}, kseg {ours:.7f}, "
              f"difference {abs(theirs - ours):.1e}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("write", "check"))
    p.add_argument("path")
    args = p.parse_args()
    write(args.path) if args.step == "write" else check(args.path)


if __name__ == "__main__":
    main()
