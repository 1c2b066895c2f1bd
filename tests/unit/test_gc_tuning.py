"""The services' collector settings."""

from __future__ import annotations

import gc

from shared.runtime import GC_GEN0_THRESHOLD, tune_gc


def test_services_collect_the_young_generation_less_often_and_skip_startup_objects() -> None:
    threshold = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
        assert gc.get_threshold()[1:] == threshold[1:]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
