"""TensorFlow's graph optimiser (Grappler) during training: off by default on machines
without a GPU, where it costs start-up time and buys no step time."""

from __future__ import annotations

import contextlib

import tensorflow as tf

SETTINGS = ("auto", "on", "off")


@contextlib.contextmanager
def graph_optimization(setting: str = "auto"):
    """Within the block, functions TensorFlow builds (Keras' training and validation steps
    on their first call) are optimised by Grappler's meta-optimizer if `setting` is "on",
    not if "off"; "auto" means on when a GPU is present. The previous setting returns
    afterwards.

    On CPU Grappler makes the first training step slower without making later steps
    faster (bench/RESULTS.md, segnode_memory, has the numbers); on a GPU it converts
    convolutions to the layout cuDNN prefers, so "auto" keeps it there.
    """
    if setting not in SETTINGS:
        raise ValueError(
            f"graph optimisation must be one of {', '.join(SETTINGS)}, got {setting!r}"
        )
    enabled = bool(tf.config.list_physical_devices("GPU")) if setting == "auto" else setting == "on"
    options = tf.config.optimizer.get_experimental_options()
    previous = options.get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not enabled})
    try:
        yield enabled
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": previous})
