"""The start-up heap is settled once the data plane listens (``settle_heap``): frozen out of the
collector's sight, with young collections spaced out, once per process."""

from __future__ import annotations

import gc

from corral.edge.server import GC_YOUNG, settle_heap


def test_the_start_up_objects_are_frozen_once_and_young_collections_spaced_out() -> None:
    threshold = gc.get_threshold()
    already = gc.get_freeze_count()
    try:
        gc.unfreeze()
        gc.set_threshold(700, threshold[1], threshold[2])
        marker = [object()]  # a container made at start-up
        settle_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 0 and gc.get_threshold() == (GC_YOUNG, threshold[1], threshold[2])
        assert not any(o is marker for o in gc.get_objects())  # out of the collector's sight
        gc.set_threshold(*threshold)
        settle_heap()  # a second server in the same process changes nothing
        assert gc.get_freeze_count() == frozen and gc.get_threshold() == threshold
    finally:
        gc.set_threshold(*threshold)
        if not already:
            gc.unfreeze()
