"""PyTorch checkpoints read without PyTorch (`kseg.models.torch_checkpoint`), against files
PyTorch itself wrote (tests/models/torch_fixtures/make_fixtures.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest

from kseg.errors import UserError
from kseg.models.torch_checkpoint import read_state_dict
from tests.models.torch_fixtures.torch_state import write_safetensors

FORMATS = Path(__file__).parent / "torch_fixtures" / "formats"


@pytest.mark.parametrize("name", ["zip.pth", "legacy.pth", "tensors.safetensors", "training.pth"])
def test_each_format_torch_writes_reads_as_its_arrays(name):
    """Since PyTorch 1.6's zip, before it (inside a training checkpoint's dict), safetensors
    and a training checkpoint that also holds other Python objects (read as inert
    stand-ins): every tensor with its dtype, shape and values, including a transposed
    (not contiguous) tensor, a view at an offset into its storage, half, bfloat16 and
    integer tensors."""
    expected = np.load(FORMATS / "expected.npz")
    state = read_state_dict(FORMATS / name)
    assert sorted(state) == sorted(expected.files)
    for key in expected.files:
        value = state[key]
        assert value.shape == expected[key].shape, key
        if key == "bf16":
            assert value.dtype.name == "bfloat16"
            value = value.astype(np.float32)
        else:
            assert value.dtype == expected[key].dtype, key
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


def test_a_pickled_module_is_refused_without_running_it(tmp_path):
    """A whole `nn.Module` is no state dict: refused with one message naming its class
    (which is not imported, let alone run), as is a file that is no checkpoint."""
    with pytest.raises(UserError, match="a pickled torch.nn.modules.linear.Linear rather"):
        read_state_dict(FORMATS / "module.pth")
    assert "torch" not in sys.modules
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(UserError, match="notes.pth: not a PyTorch state dict"):
        read_state_dict(tmp_path / "notes.pth")
    with pytest.raises(UserError, match="missing.pth: no such file"):
        read_state_dict(tmp_path / "missing.pth")


def test_dataparallels_prefix_is_dropped(tmp_path):
    write_safetensors(tmp_path / "w.safetensors", {"module.conv.weight": np.ones(2, "float32")})
    assert list(read_state_dict(tmp_path / "w.safetensors")) == ["conv.weight"]
