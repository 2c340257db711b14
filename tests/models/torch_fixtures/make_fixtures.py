"""Writes the PyTorch side of tests/models/test_torch_checkpoint.py and test_hrnet_torch.py.
Run by hand where PyTorch, torchvision, timm and safetensors import (torch 2.14.1,
torchvision 0.29.1, timm 1.0.31 and safetensors 0.8 made the files here):

    python tests/models/torch_fixtures/make_fixtures.py [formats hrnet classifier ocr xception]

- `formats/`: one state dict as `torch.save` writes it since PyTorch 1.6 (`zip.pth`) and
  before (`legacy.pth`, inside a training checkpoint's dict), as safetensors, and its
  arrays (`expected.npz`); a training checkpoint holding it beside an argparse Namespace
  and a numpy scalar (`training.pth`); a whole pickled module (`module.pth`), which kseg
  refuses.
- `hrnet_w48_names.json.gz`: every tensor name and shape of timm's `hrnet_w48`, whose
  names are HRNet-Image-Classification's (the ImageNet weights HRNetV2 starts from).
- `xception65_names.json.gz`: every tensor name and shape of timm's `xception65` (DeepLab's
  ImageNet weights of Xception-65, ported from TensorFlow).
- `xception_reference.npz`: timm's aligned Xception with one middle-flow module, at output
  stride 16, with `random_state` weights, an input batch, and its stride-4 and last
  features (each projected onto 8 channels by a fixed random matrix, `projections`).
- `reference.npz`: a small HRNet (timm's network with widths 4 to 32, one module of one
  block a stage) with `random_state` weights, HRNet-Semantic-Segmentation's head
  (`last_layer`) on it, an input batch and the logits PyTorch computes. timm's fusion
  upsamples by nearest neighbour, the segmentation code (and kseg) bilinearly: the fusion
  upsamplings are set to bilinear (align_corners=False, as kseg's resize).
- `ocr_reference.npz`: the same small HRNet with HRNet-OCR's head (seg_hrnet_ocr.py's
  modules and forward, written here) and that code's upsampling, bilinear with aligned
  corners, `random_state` weights, an input batch and its logits and auxiliary logits.
- `classifier_reference.npz`: the same small HRNet with HRNet-Image-Classification's
  ImageNet head (timm's `head="classification"`, 5 classes) and its fusions as that code
  computes them (nearest-neighbour upsampling), `random_state` weights, an input batch
  and its class logits.
"""

import argparse
import functools
import gzip
import json
import pathlib
import sys

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.models.hrnet import HighResolutionNet
from timm.models.xception_aligned import XceptionAligned

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from torch_state import projections, random_state  # noqa: E402

NUM_CLASSES = 5


def stage(branches: int, channels, block="BASIC"):
    return dict(
        num_modules=1,
        num_branches=branches,
        block_type=block,
        num_blocks=(1,) * branches if block == "BASIC" else (4,),
        num_channels=tuple(channels),
        fuse_method="SUM",
    )


def tiny_hrnet(bilinear=True, align_corners=False, **kwargs):
    cfg = dict(
        stem_width=64,
        stage1=stage(1, (64,), "BOTTLENECK"),
        stage2=stage(2, (4, 8)),
        stage3=stage(3, (4, 8, 16)),
        stage4=stage(4, (4, 8, 16, 32)),
    )
    net = HighResolutionNet(cfg, **{"head": "", **kwargs})
    for module in net.modules():
        if bilinear and isinstance(module, torch.nn.Upsample):
            module.mode, module.align_corners = "bilinear", align_corners
    return net


def seg_head(width):
    """HRNet-Semantic-Segmentation's `last_layer` (HRNet-OCR's `aux_head`): a 1x1
    conv-BN-ReLU and a 1x1 conv to the classes."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(width, width, 1),
        torch.nn.BatchNorm2d(width),
        torch.nn.ReLU(),
        torch.nn.Conv2d(width, NUM_CLASSES, 1),
    )


def branches(body, x, align_corners):
    """The HRNet `body`'s branches on `x`, upsampled to the first one's size and
    concatenated: HRNetV2's representation."""
    x = body.act2(body.bn2(body.conv2(body.act1(body.bn1(body.conv1(x))))))
    xs = body.stages(x)
    size = xs[0].shape[2:]
    up = [F.interpolate(t, size, mode="bilinear", align_corners=align_corners) for t in xs[1:]]
    return torch.cat([xs[0], *up], 1)


class Segmenter(torch.nn.Module):
    """HRNet-Semantic-Segmentation's HRNetV2: the branches upsampled to the first one's
    size and concatenated, `last_layer`, the logits upsampled 4x."""

    def __init__(self):
        super().__init__()
        self.body = tiny_hrnet()
        self.last_layer = seg_head(4 + 8 + 16 + 32)

    def forward(self, x):
        x = self.last_layer(branches(self.body, x, align_corners=False))
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


OCR_MID, OCR_KEY = 512, 256  # HRNet-OCR's MODEL.OCR.MID_CHANNELS and KEY_CHANNELS


def bn_relu(channels):
    """HRNet-OCR's `ModuleHelper.BNReLU`."""
    return torch.nn.Sequential(torch.nn.BatchNorm2d(channels), torch.nn.ReLU())


def conv_bn_relu(cin, cout):
    return [torch.nn.Conv2d(cin, cout, 1, bias=False), bn_relu(cout)]


class ObjectAttention(torch.nn.Module):
    """HRNet-OCR's `_ObjectAttentionBlock` at scale 1: pixels attend over the classes'
    representations, with its module names (f_pixel, f_object, f_down, f_up)."""

    def __init__(self):
        super().__init__()
        pair = lambda cin: conv_bn_relu(cin, OCR_KEY) + conv_bn_relu(OCR_KEY, OCR_KEY)  # noqa: E731
        self.f_pixel = torch.nn.Sequential(*pair(OCR_MID))
        self.f_object = torch.nn.Sequential(*pair(OCR_MID))
        self.f_down = torch.nn.Sequential(*conv_bn_relu(OCR_MID, OCR_KEY))
        self.f_up = torch.nn.Sequential(*conv_bn_relu(OCR_KEY, OCR_MID))

    def forward(self, x, proxy):
        b, _, h, w = x.shape
        query = self.f_pixel(x).view(b, OCR_KEY, -1).permute(0, 2, 1)
        key = self.f_object(proxy).view(b, OCR_KEY, -1)
        value = self.f_down(proxy).view(b, OCR_KEY, -1).permute(0, 2, 1)
        attention = F.softmax(OCR_KEY**-0.5 * torch.matmul(query, key), dim=-1)
        context = torch.matmul(attention, value).permute(0, 2, 1).reshape(b, OCR_KEY, h, w)
        return self.f_up(context)


class SpatialOCR(torch.nn.Module):
    """HRNet-OCR's `SpatialOCR_Module`: the attention's context concatenated before the
    pixel features, conv-BNReLU, dropout."""

    def __init__(self):
        super().__init__()
        self.object_context_block = ObjectAttention()
        self.conv_bn_dropout = torch.nn.Sequential(
            *conv_bn_relu(2 * OCR_MID, OCR_MID), torch.nn.Dropout2d(0.05)
        )

    def forward(self, feats, proxy):
        context = self.object_context_block(feats, proxy)
        return self.conv_bn_dropout(torch.cat([context, feats], 1))


class OCRSegmenter(torch.nn.Module):
    """HRNet-Semantic-Segmentation's HRNet-OCR (seg_hrnet_ocr.py), its module names and its
    forward, with the code's upsampling: bilinear with aligned corners (ALIGN_CORNERS) in
    the fusions, the concatenation and the logits' 4x."""

    def __init__(self):
        super().__init__()
        self.body = tiny_hrnet(align_corners=True)
        width = 4 + 8 + 16 + 32
        self.conv3x3_ocr = torch.nn.Sequential(
            torch.nn.Conv2d(width, OCR_MID, 3, padding=1), *bn_relu(OCR_MID)
        )
        self.ocr_distri_head = SpatialOCR()
        self.cls_head = torch.nn.Conv2d(OCR_MID, NUM_CLASSES, 1)
        self.aux_head = seg_head(width)

    def forward(self, x):
        feats = branches(self.body, x, align_corners=True)
        aux = self.aux_head(feats)
        feats = self.conv3x3_ocr(feats)
        n, k, c = aux.shape[0], aux.shape[1], feats.shape[1]
        probs = F.softmax(aux.view(n, k, -1), dim=2)  # SpatialGather_Module
        context = torch.matmul(probs, feats.view(n, c, -1).permute(0, 2, 1))
        context = context.permute(0, 2, 1).unsqueeze(3)
        logits = self.cls_head(self.ocr_distri_head(feats, context))
        up4 = lambda t: F.interpolate(t, scale_factor=4, mode="bilinear", align_corners=True)  # noqa: E731
        return up4(logits), up4(aux)


def formats():
    folder = HERE / "formats"
    folder.mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(0)
    state = {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "bn.running_var": torch.rand(4, generator=g),
        "bn.num_batches_tracked": torch.tensor(7),
        "half": torch.randn(2, 3, generator=g).half(),
        "bf16": torch.randn(5, generator=g).bfloat16(),
        "transposed": torch.randn(3, 4, generator=g).t(),  # not contiguous
        "view": torch.randn(10, generator=g)[2:6],  # at an offset into its storage
        "ints": torch.arange(6).reshape(2, 3),
    }
    torch.save(state, folder / "zip.pth")
    checkpoint = {"state_dict": state, "epoch": 3}
    torch.save(checkpoint, folder / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "tensors.safetensors")
    torch.save(torch.nn.Linear(2, 2), folder / "module.pth")
    options = argparse.Namespace(lr=0.01)  # what training scripts keep beside the weights
    training = {"model": state, "args": options, "best_miou": np.float64(0.8), "epoch": 3}
    torch.save(training, folder / "training.pth")
    expected = {
        k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in state.items()
    }
    np.savez(folder / "expected.npz", **expected)


def hrnet():
    names = {k: list(v.shape) for k, v in timm.create_model("hrnet_w48").state_dict().items()}
    with gzip.open(HERE / "hrnet_w48_names.json.gz", "wt") as f:
        json.dump(names, f)

    model = Segmenter().eval()
    shapes = {k.removeprefix("body."): list(v.shape) for k, v in model.state_dict().items()}
    state = random_state(shapes)
    model.load_state_dict(
        {
            ("" if k.startswith("last_layer") else "body.") + k: torch.from_numpy(v)
            for k, v in state.items()
        }
    )
    images = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((images / 255 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2))
    with torch.no_grad():
        logits = model(x).numpy().transpose(0, 2, 3, 1)
    np.savez_compressed(
        HERE / "reference.npz", shapes=json.dumps(shapes), images=images, logits=logits
    )
    print(f"{len(names)} names of hrnet_w48; logits {logits.shape}")


def classifier():
    model = tiny_hrnet(bilinear=False, head="classification", num_classes=NUM_CLASSES).eval()
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.from_numpy(v) for k, v in random_state(shapes).items()})
    images = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((images / 255 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2))
    with torch.no_grad():
        logits = model(x).numpy()
    np.savez_compressed(
        HERE / "classifier_reference.npz", shapes=json.dumps(shapes), images=images, logits=logits
    )
    print(f"classifier: {len(shapes)} tensors; logits {logits.shape}")


def ocr():
    model = OCRSegmenter().eval()
    shapes = {k.removeprefix("body."): list(v.shape) for k, v in model.state_dict().items()}
    state = random_state(shapes)
    head = ("conv3x3_ocr", "ocr_distri_head", "cls_head", "aux_head")
    model.load_state_dict(
        {("" if k.startswith(head) else "body.") + k: torch.from_numpy(v) for k, v in state.items()}
    )
    images = np.random.default_rng(3).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((images / 255 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2))
    with torch.no_grad():
        logits, aux = (t.numpy().transpose(0, 2, 3, 1) for t in model(x))
    np.savez_compressed(
        HERE / "ocr_reference.npz",
        shapes=json.dumps(shapes),
        images=images,
        logits=logits,
        aux_logits=aux,
    )
    print(f"ocr: {len(shapes)} tensors; logits {logits.shape}")


def xception():
    names = {k: list(v.shape) for k, v in timm.create_model("xception65").state_dict().items()}
    with gzip.open(HERE / "xception65_names.json.gz", "wt") as f:
        json.dump(names, f)
    blocks = [
        dict(in_chs=64, out_chs=128, stride=2),
        dict(in_chs=128, out_chs=256, stride=2),
        dict(in_chs=256, out_chs=728, stride=2),
        dict(in_chs=728, out_chs=728, stride=1),
        dict(in_chs=728, out_chs=(728, 1024, 1024), stride=2),
        dict(
            in_chs=1024, out_chs=(1536, 1536, 2048), stride=1, no_skip=True, start_with_relu=False
        ),
    ]
    norm = functools.partial(torch.nn.BatchNorm2d, eps=0.001)
    model = XceptionAligned(blocks, output_stride=16, norm_layer=norm).eval()
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.from_numpy(v) for k, v in random_state(shapes).items()})
    low = []  # entry block 2's second separable conv; the ReLU after it works in place
    model.blocks[1].stack.conv2.register_forward_hook(lambda m, i, o: low.append(o.clone()))
    images = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(((images / 255 - 0.5) / 0.5).astype(np.float32).transpose(0, 3, 1, 2))
    with torch.no_grad():
        high = model.forward_features(x).numpy().transpose(0, 2, 3, 1)
    low = low[0].numpy().transpose(0, 2, 3, 1)
    p_high, p_low = projections(high.shape[-1]), projections(low.shape[-1])
    np.savez_compressed(
        HERE / "xception_reference.npz",
        shapes=json.dumps(shapes),
        images=images,
        high=high @ p_high,
        low=low @ p_low,
    )
    print(f"{len(names)} names of xception65; features {high.shape}, {low.shape}")


if __name__ == "__main__":
    for job in sys.argv[1:] or ["formats", "hrnet", "classifier", "ocr", "xception"]:
        globals()[job]()
