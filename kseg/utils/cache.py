"""kseg's folder in the Keras cache."""

from __future__ import annotations

import os


def kseg_cache(*parts: str) -> str:
    """`kseg/<parts>` in the Keras cache (`$KERAS_HOME`, by default ~/.keras, where Keras
    keeps datasets and weights)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "kseg", *parts)
