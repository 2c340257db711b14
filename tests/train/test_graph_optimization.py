"""kseg.train.graph_optimization: Grappler off for training on CPU, the previous setting
restored afterwards, even when training fails."""

import pytest
import tensorflow as tf

from kseg.train.graph_optimization import graph_optimization


def _disabled() -> bool:
    return tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)


def test_auto_follows_the_gpu_and_the_previous_setting_returns():
    before = _disabled()
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    with graph_optimization("auto") as enabled:
        assert enabled == has_gpu
        assert _disabled() == (not has_gpu)
    assert _disabled() == before
    with graph_optimization("on"):
        assert not _disabled()
        with graph_optimization("off"):
            assert _disabled()
        assert not _disabled()
    assert _disabled() == before


def test_restored_after_an_error_and_unknown_settings_named():
    before = _disabled()
    with pytest.raises(RuntimeError), graph_optimization("off"):
        raise RuntimeError("training failed")
    assert _disabled() == before
    with pytest.raises(ValueError, match="auto, on, off, got 'fast'"), graph_optimization("fast"):
        pass
