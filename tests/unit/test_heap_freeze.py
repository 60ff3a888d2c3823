"""The worker's heap freeze: what is alive at start leaves the collector's reach, and
garbage made before it is still freed (not kept for good)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from worker.celeryapp.lifecycle import freeze_loaded_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite runs with a normal collector


def test_live_objects_are_frozen_and_garbage_is_freed_first(unfrozen: None) -> None:
    kept = Node()
    dropped = Node()
    gone = weakref.ref(dropped)
    del dropped
    before = gc.get_freeze_count()
    freeze_loaded_heap()
    assert gone() is None, "garbage made before the freeze was kept"
    assert gc.get_freeze_count() > before
    # A full collection walks the generations, no longer the frozen objects.
    assert not any(o is kept for o in gc.get_objects())
    assert len(gc.get_objects()) < gc.get_freeze_count()
