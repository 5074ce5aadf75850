"""ApproxSync and LatestSlot: pairing by nearest stamps within the slop, never back in time, drop-oldest slot."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from g2vlm_ros.sync import ApproxSync, LatestSlot


def _msg(t: float, name: str):
    return SimpleNamespace(t=t, name=name)


def _sync(slop=0.02):
    pairs, stale = [], []
    s = ApproxSync(slop, lambda a, b: pairs.append((a.name, b.name)), stamp=lambda m: m.t,
                   on_stale=lambda i, m: stale.append((i, m.name)))
    return s, pairs, stale


def test_pairs_nearest_within_slop_in_any_arrival_order():
    s, pairs, _ = _sync()
    s.add(1, _msg(1.000, "d1"))
    s.add(0, _msg(1.010, "c1"))
    s.add(0, _msg(1.100, "c2"))
    s.add(1, _msg(1.104, "d2"))
    assert pairs == [("c1", "d1"), ("c2", "d2")]


def test_no_pair_outside_slop_and_older_messages_are_stale():
    s, pairs, stale = _sync(slop=0.005)
    s.add(0, _msg(2.0, "c"))
    s.add(1, _msg(2.01, "d"))
    assert pairs == []
    s.add(1, _msg(2.0, "d_ok"))
    assert pairs == [("c", "d_ok")]
    s.add(1, _msg(1.5, "d_old"))  # stamps going backwards
    s.add(0, _msg(2.0, "c_dup"))  # same stamp as the emitted pair
    assert stale == [(1, "d_old"), (0, "c_dup")] and s.dropped_stale == 2
    assert pairs == [("c", "d_ok")]


def test_best_gap_wins_among_queued():
    s, pairs, _ = _sync(slop=0.05)
    s.add(0, _msg(3.00, "c1"))
    s.add(0, _msg(3.03, "c2"))
    s.add(1, _msg(3.031, "d"))
    assert pairs == [("c2", "d")]


def test_latest_slot_drops_oldest_and_wakes_the_worker():
    slot = LatestSlot()
    assert slot.get(timeout=0.01) is None
    assert slot.put(1) is False and slot.put(2) is True  # 1 was never taken: dropped
    assert slot.full() and slot.get() == 2 and not slot.full()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.get(timeout=5.0)))
    t.start()
    slot.put("frame")
    t.join(5.0)
    assert got == ["frame"]
