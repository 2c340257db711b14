"""`kseg.utils.heap.frozen_heap` and the collector around `import kseg`."""

import gc
import importlib
import weakref

import pytest

from kseg.utils.heap import frozen_heap


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


@pytest.fixture
def unfrozen():
    """The collector without conftest's frozen imports, frozen again afterwards."""
    gc.unfreeze()
    yield
    gc.collect()
    gc.freeze()


def test_frozen_heap_spares_what_existed_and_collects_what_is_new(unfrozen):
    old = Node()
    before = weakref.ref(old)
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        del old
        new = Node()
        during = weakref.ref(new)
        del new
        gc.collect()
        assert during() is None  # made inside: collected as usual
        assert before() is not None  # alive on entry: out of the collector's sight
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert before() is None  # looked at again after exit


def _frozen(obj) -> bool:
    """Whether `obj` is in the permanent generation: `gc.get_objects()` lists the three
    others only."""
    return not any(o is obj for o in gc.get_objects())


def test_frozen_heap_leaves_a_callers_frozen_objects_alone(unfrozen):
    # Checked on an object of the caller's rather than by the frozen count, which falls
    # whenever any frozen object is freed by its reference count (any thread's, e.g.
    # pytest-xdist's).
    mine = Node()
    gc.freeze()
    assert _frozen(mine)
    with frozen_heap():
        pass
    assert _frozen(mine)  # not unfrozen behind the caller's back


def test_import_kseg_leaves_the_collector_as_it_found_it():
    import kseg

    enabled = gc.isenabled()
    try:
        for state in (True, False):
            (gc.enable if state else gc.disable)()
            importlib.reload(kseg)
            assert gc.isenabled() is state
    finally:
        (gc.enable if enabled else gc.disable)()
