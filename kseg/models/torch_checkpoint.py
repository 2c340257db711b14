"""PyTorch checkpoints read as numpy arrays, without PyTorch.

A state dict (parameter name -> tensor) comes in one of three containers, all read here:
- `.safetensors` (timm's and the Hugging Face hub's): a JSON header, then the raw arrays;
- the zip format `torch.save` writes since PyTorch 1.6 (`.pth`, `.pt`, `.bin`): a pickle
  whose tensors point at raw storages, one file each in the zip;
- the format before it (the `.pth` files of 2019, HRNet's published weights among them):
  pickles in a row, then the storages one after another.

The pickles are read by an unpickler that builds dicts, numbers, strings and arrays, and
an inert stand-in for any other Python class a checkpoint holds (an argparse Namespace of
its training options, a numpy scalar): no code in the file runs. A pickled model object
rather than its state dict is refused.
"""

from __future__ import annotations

import collections
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")

# PyTorch's storage classes (the names its pickles carry) and safetensors' dtype names.
_STORAGES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_SAFETENSORS = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-1.6 `torch.save` file

# PyTorch's batch-norm tensors and the Keras variables of the same meaning, for the model
# families' name maps (`kseg.models.hrnet.hrnet_torch`, `...backbones.xception_torch`).
BATCH_NORM_VARIABLES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def keras_kernel(value: np.ndarray, depthwise: bool = False) -> np.ndarray:
    """A PyTorch conv weight in Keras' layout: (out, in, h, w) -> (h, w, in, out), or for
    a depthwise conv (channels, 1, h, w) -> (h, w, channels, 1)."""
    return np.transpose(value, (2, 3, 0, 1) if depthwise else (2, 3, 1, 0))


def _bfloat16():
    import tensorflow as tf

    return tf.bfloat16.as_numpy_dtype


def is_torch_checkpoint(path) -> bool:
    return Path(str(path)).suffix.lower() in SUFFIXES


def read_state_dict(path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors by name, as numpy arrays. A training checkpoint's state
    dict is found under "state_dict" or "model"; "module." (DataParallel's prefix) is
    dropped from the names."""
    from kseg.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".safetensors":
            state = _read_safetensors(path)
        elif zipfile.is_zipfile(path):
            state = _read_zip(path)
        else:
            state = _read_legacy(path)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, struct.error) as e:
        raise UserError(
            f"{path}: not a PyTorch state dict kseg can read ({e}); save the model's "
            "`state_dict()` with torch.save, or as .safetensors"
        ) from None
    if not isinstance(state, dict):
        raise UserError(
            f"{path}: holds a pickled {type(state).__name__} rather than a state dict; save "
            "the model's `state_dict()` with torch.save, or as .safetensors"
        )
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    arrays = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, np.ndarray)}
    if not arrays:
        raise UserError(f"{path}: holds no tensors (keys: {', '.join(map(str, state))})")
    return arrays


def _read_safetensors(path: Path) -> dict:
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        data = f.read()
    state = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _bfloat16() if entry["dtype"] == "BF16" else _SAFETENSORS[entry["dtype"]]
        begin, end = entry["data_offsets"]
        state[name] = np.frombuffer(data[begin:end], dtype).reshape(entry["shape"]).copy()
    return state


class _StorageType:
    """Stands for a `torch.*Storage` class in the pickle: its numpy dtype."""

    def __init__(self, name: str):
        self.dtype = _bfloat16() if name == "BFloat16Storage" else _STORAGES[name]


def _rebuild_tensor(storage, offset, size, stride, *_):
    """`torch._utils._rebuild_tensor_v2`: the view of a storage a tensor is."""
    if isinstance(storage, _Pending):  # a legacy file's storages follow its pickle
        return _Pending(storage.key, (offset, size, stride))
    size, stride = tuple(size), tuple(stride)
    base = storage[offset:]
    strides = tuple(s * base.itemsize for s in stride)
    return np.lib.stride_tricks.as_strided(base, size, strides).copy()


class _Pending:
    """A legacy file's storage (`view` None) or tensor (`view`: offset, size and stride)
    before the storages are read."""

    def __init__(self, key: str, view=None):
        self.key, self.view = key, view


def _rebuild_parameter(data, *_):
    return data  # `torch._utils._rebuild_parameter`: a Parameter is its tensor


class _Opaque:
    """Stands for any other class in the pickle (a training checkpoint's argparse
    Namespace, a numpy scalar, a whole pickled module): it keeps what the pickle gives
    it and runs none of the class's code."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class _Unpickler(pickle.Unpickler):
    """Builds dicts, arrays, numbers and strings, and a `_Opaque` for any other class.
    `storages` maps a persistent id's key and dtype to the storage's array."""

    _CLASSES = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, storages):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) in self._CLASSES:
            return self._CLASSES[(module, name)]
        if module == "torch" and (name in _STORAGES or name == "BFloat16Storage"):
            return _StorageType(name)
        return type(f"{module}.{name}", (_Opaque,), {})

    def persistent_load(self, pid):
        _, storage_type, key, _location, numel = pid[:5]
        return self._storages(str(key), storage_type.dtype, numel)


def _read_zip(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError("a zip without one data.pkl")
        root = pickles[0][: -len("data.pkl")]

        def storage(key, dtype, _numel):
            return np.frombuffer(archive.read(f"{root}data/{key}"), dtype)

        with archive.open(pickles[0]) as f:
            return _Unpickler(f, storage).load()


def _read_legacy(path: Path) -> dict:
    with open(path, "rb") as f:
        if pickle.load(f) != _LEGACY_MAGIC:
            raise ValueError("neither safetensors, a zip nor a legacy torch.save file")
        pickle.load(f)  # the protocol version
        pickle.load(f)  # the saving system's byte order and type sizes
        dtypes = {}

        def storage(key, dtype, _numel):
            dtypes[key] = np.dtype(dtype)
            return _Pending(key)

        state = _Unpickler(f, storage).load()
        storages = {}
        for key in pickle.load(f):  # then each storage: its length, its bytes
            (numel,) = struct.unpack("<q", f.read(8))
            storages[key] = np.frombuffer(f.read(numel * dtypes[key].itemsize), dtypes[key])
    return _resolve(state, storages)


def _resolve(value, storages):
    """`value` with each pending tensor rebuilt on its storage."""
    if isinstance(value, _Pending):
        return _rebuild_tensor(storages[value.key], *value.view)
    if isinstance(value, dict):
        return {k: _resolve(v, storages) for k, v in value.items()}
    return value
