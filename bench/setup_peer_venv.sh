#!/usr/bin/env bash
# Builds bench/.peer-venv: the PyTorch peers the benchmarks measure kseg against
# (pytorchcv's ContextNet, torchdiffeq). torch 2.13.0 is the CPU build this machine kind
# keeps on disk. pytorchcv pulls in torchvision, which its ContextNet module never imports.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .peer-venv
.peer-venv/bin/pip install -q --upgrade pip
.peer-venv/bin/pip install -q "torch==2.13.0" "pytorchcv==0.0.*" "torchdiffeq>=0.2,<0.3" \
  "onnx>=1.16,<1.24" "onnxruntime>=1.20,<1.32" numpy
# bench/imagenet_pipeline.py's peer, torchvision's ImageNet input, in a venv of its own:
# the torchvision wheel for torch 2.13.0 does not import here, 0.29.1 with torch 2.14.1 does.
python3 -m venv .peer-vision-venv
.peer-vision-venv/bin/pip install -q --upgrade pip
.peer-vision-venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1" numpy
