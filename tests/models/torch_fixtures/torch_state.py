"""PyTorch state dicts for the tests: random HRNet weights from their names and shapes
alone, the same in the tests and in `make_reference.py` (each tensor from its own seed,
the CRC-32 of its name, so that neither side depends on the other's order of tensors), and
a .safetensors writer (its format: an 8-byte header length, a JSON header, the arrays)."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np


def random_state(shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    state = {}
    for name, shape in shapes.items():
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        tensor = name.rpartition(".")[2]
        if tensor == "num_batches_tracked":
            state[name] = np.zeros(shape, np.int64)
        elif len(shape) == 4:  # a conv kernel, He-initialised
            fan_in = int(np.prod(shape[1:]))
            state[name] = rng.normal(0, np.sqrt(2 / fan_in), shape).astype(np.float32)
        elif tensor in ("weight", "running_var"):  # batch norm's scale and variance
            state[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:  # biases and means
            state[name] = rng.normal(0, 0.1, shape).astype(np.float32)
    return state


def projections(channels: int, size: int = 8) -> np.ndarray:
    """A fixed random (channels, size) matrix: features compared through it are compared
    in full with overwhelming probability, and the fixture stays small."""
    return np.random.default_rng(channels).normal(0, 1, (channels, size)).astype(np.float32)


def write_safetensors(path, state: dict[str, np.ndarray]) -> None:
    dtypes = {"float32": "F32", "int64": "I64"}
    header, offset = {}, 0
    for name, value in state.items():
        size = value.nbytes
        header[name] = {
            "dtype": dtypes[str(value.dtype)],
            "shape": list(value.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for value in state.values():
            f.write(np.ascontiguousarray(value).tobytes())
