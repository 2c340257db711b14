"""Runs a peer script in bench/.peer-venv and returns its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEER_PYTHON = Path(os.environ.get("KSEG_PEER_PYTHON", BENCH / ".peer-venv" / "bin" / "python"))
# torchvision's peer (bench/imagenet_pipeline.py) runs in a venv of its own
VISION_PEER_PYTHON = Path(
    os.environ.get("KSEG_VISION_PEER_PYTHON", BENCH / ".peer-vision-venv" / "bin" / "python")
)


def run_peer(script: str, *args: str, python: Path = PEER_PYTHON) -> dict:
    if not python.exists():
        variable = "KSEG_VISION_PEER_PYTHON" if python == VISION_PEER_PYTHON else "KSEG_PEER_PYTHON"
        sys.exit(
            f"the PyTorch peer environment is missing ({python}); "
            f"build it with `bash bench/setup_peer_venv.sh` (or set {variable})"
        )
    out = subprocess.run(
        [str(python), str(BENCH / "peers" / script), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
