"""Runs a peer script in bench/.peer-venv and returns its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEER_PYTHON = Path(os.environ.get("KSEG_PEER_PYTHON", BENCH / ".peer-venv" / "bin" / "python"))


def run_peer(script: str, *args: str) -> dict:
    if not PEER_PYTHON.exists():
        sys.exit(
            f"the PyTorch peer environment is missing ({PEER_PYTHON}); "
            "build it with `bash bench/setup_peer_venv.sh` (or set KSEG_PEER_PYTHON)"
        )
    out = subprocess.run(
        [str(PEER_PYTHON), str(BENCH / "peers" / script), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
