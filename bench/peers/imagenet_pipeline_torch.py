"""The PyTorch peer of bench/imagenet_pipeline.py: HRNet-Image-Classification's ImageNet
input (torchvision's ImageFolder, RandomResizedCrop(224) + flip for training,
Resize(256) + CenterCrop(224) for evaluation, ToTensor, Normalize, a DataLoader with
worker processes) on a folder in ImageNet's layout. Prints images per second of each as
one JSON line."""

import argparse
import json
import os
import time

import torch
import torchvision
import torchvision.datasets as datasets
import torchvision.transforms as T


def rate(loader, batches: int) -> float:
    """Images a second over `batches` batches, after one batch of warm-up (the workers'
    start), cycling through the loader's epochs."""

    def endless():
        while True:
            yield from loader

    it = endless()
    next(it)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += len(next(it)[1])
    return images / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    transforms = {
        "train": T.Compose(
            [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), normalize]
        ),
        "val": T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalize]),
    }
    result = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    for split, transform in transforms.items():
        loader = torch.utils.data.DataLoader(
            datasets.ImageFolder(os.path.join(args.root, split), transform),
            batch_size=args.batch,
            shuffle=split == "train",
            num_workers=args.workers,
            persistent_workers=True,
        )
        result[split] = rate(loader, args.batches)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
