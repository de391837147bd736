"""``paused_gc``: the cyclic collector paused while a plan or a simulation makes many objects.

A large batch is left in the oldest generation (no collection walks it on the way out); what
dies in a cycle is still collected; objects someone froze stay frozen.
"""

from __future__ import annotations

import gc
import itertools
import weakref

from notebook_pipelines.definition.plan import BATCH, paused_gc


class Node:
    """A gc-tracked object that can sit in a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _in_generation(obj: object, generation: int) -> bool:
    return any(o is obj for o in gc.get_objects(generation=generation))


def test_a_large_batch_made_while_paused_is_left_in_the_oldest_generation():
    gc.collect()
    with paused_gc():
        kept = [Node() for _ in range(BATCH + 1_000)]
    # before: left young, so the next allocation's collection walked all of them (into gen 1)
    assert _in_generation(kept[-1], 2)
    assert gc.isenabled()


def test_a_small_batch_is_left_to_the_young_generations():
    gc.collect()
    with paused_gc():
        kept = [Node() for _ in range(100)]
    assert not _in_generation(kept[-1], 2)


def test_cycles_that_die_after_a_large_batch_are_still_collected():
    with paused_gc():
        nodes = [Node() for _ in range(BATCH + 1_000)]
        for a, b in itertools.pairwise(nodes):
            a.other, b.other = b, a  # a chain of cycles
        probe = weakref.ref(nodes[0])
    del nodes, a, b
    gc.collect()
    assert probe() is None


def test_objects_frozen_before_stay_frozen():
    gc.collect()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with paused_gc():
            kept = [Node() for _ in range(BATCH + 1_000)]
        assert gc.get_freeze_count() >= frozen  # not released by the pause's own unfreeze
        assert not _in_generation(kept[-1], 2)  # left young: no freeze of the pause's own
    finally:
        gc.unfreeze()


def test_a_nested_pause_leaves_the_outer_one_in_charge():
    with paused_gc():
        with paused_gc():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
