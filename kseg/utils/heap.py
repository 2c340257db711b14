"""Python's cyclic garbage collector around kseg's commands.

A kseg process holds over half a million long-lived objects: the modules of TensorFlow,
Keras and tfp and the graphs it traces. Each full pass of the collector walks all of
them, and tracing a model triggers many passes. `frozen_heap` moves the objects alive on
entry (the imports, the model) out of the collector's sight until exit; objects made
inside are collected as usual, and what is frozen is looked at again after exit.
Measured in bench/RESULTS.md ("startup").
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """`gc.freeze()` on entry, `gc.unfreeze()` on exit; nothing where objects are
    frozen already (the caller manages the collector, e.g. a pre-forking server).

    Cyclic garbage that exists on entry (say, a model dropped just before) is freed after
    exit instead of during: no collection runs on entry, which would cost a full pass."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
