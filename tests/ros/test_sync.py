"""FrameSync with both matchers (message_filters' ApproximateTimeSynchronizer and the project's own) on the same stamp
patterns: pairing, unpaired messages reported once, future stamps, clock jumps back, reset; and LatestSlot."""
from __future__ import annotations

import random
import threading
import time
from types import SimpleNamespace

import pytest
from std_msgs.msg import Header

from g2vlm_ros import conversions as cv
from g2vlm_ros.sync import FrameSync, LatestSlot, message_filters_available

BACKENDS = ["own", pytest.param("message_filters", marks=pytest.mark.skipif(
    not message_filters_available(), reason="message_filters is not installed (a ROS distro or ../shared wheels)"))]


def _msg(t: float, name: str):
    return SimpleNamespace(header=Header(stamp=cv.sec_to_stamp(t)), name=name)


class Recorder:
    def __init__(self, backend: str, slop: float = 0.02, **kw):
        self.pairs: list[tuple[str, str]] = []
        self.drops: list[tuple[str, str]] = []
        self.sync = FrameSync(slop, lambda a, b: self.pairs.append((a.name, b.name)), backend=backend,
                              on_drop=lambda i, m, reason, detail: self.drops.append((m.name, reason)), **kw)

    def feed(self, *items: tuple[int, float, str]) -> "Recorder":
        for index, t, name in items:
            self.sync.add(index, _msg(t, name))
        return self

    def warm(self, before: float) -> "Recorder":
        """Four exact pairs at 30 Hz ending 50 ms before ``before``: the streams' periods are known afterwards."""
        for k in range(4):
            t = before - 0.05 - (3 - k) / 30
            self.feed((0, t, f"warm_c{k}"), (1, t, f"warm_d{k}"))
        assert len(self.pairs) == 4 and not self.drops
        del self.pairs[:]
        return self


@pytest.mark.parametrize("backend", BACKENDS)
def test_nearest_within_slop_in_any_arrival_order(backend):
    r = Recorder(backend).warm(1.0).feed((1, 1.000, "d1"), (0, 1.010, "c1"), (0, 1.100, "c2"), (1, 1.104, "d2"))
    assert r.pairs == [("c1", "d1"), ("c2", "d2")] and r.drops == []
    r = Recorder(backend, slop=0.05).warm(3.0).feed((0, 3.00, "c1"), (0, 3.03, "c2"), (1, 3.031, "d"))
    assert r.pairs == [("c2", "d")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gap_must_be_below_the_slop(backend):
    r = Recorder(backend, slop=0.01).warm(2.0).feed((0, 2.0, "c"), (1, 2.01, "d_far"))
    assert r.pairs == []
    r.feed((1, 2.005, "d_ok"))
    assert r.pairs == [("c", "d_ok")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_unpaired_frames_are_reported_once(backend):
    # depth 50 ms late with a 20 ms slop: neither image has a partner
    r = Recorder(backend).warm(5.0).feed((0, 5.0, "c_alone"), (1, 5.05, "d_late"), (0, 5.1, "c"), (1, 5.1, "d"))
    assert r.drops == [("c_alone", "unpaired"), ("d_late", "unpaired")] and r.pairs == [("c", "d")]
    # rgb without depth: reported when the depth stream has moved past it
    r.feed((0, 5.2, "c_no_depth"), (0, 5.3, "c2"), (1, 5.3, "d2"))
    assert r.drops[-1] == ("c_no_depth", "unpaired") and r.pairs[-1] == ("c2", "d2")
    assert r.sync.dropped["unpaired"] == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_queue_overflow_and_repeated_stamps_are_reported(backend):
    # queue_size messages wait for a partner before the synchroniser, queue_size in it
    r = Recorder(backend, queue_size=3).feed(*[(0, 10.0 + i, f"c{i}") for i in range(8)])
    assert r.drops == [("c0", "unpaired"), ("c1", "unpaired")]
    r = Recorder(backend).feed((0, 9.0, "a"), (0, 9.0, "b"), (1, 9.0, "d"), (0, 9.1, "c"), (1, 9.1, "d2"))
    assert r.pairs == [("a", "d"), ("c", "d2")] and r.drops == [("b", "unpaired")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", ["rgb first", "depth first", "depth late"])
def test_a_lost_image_at_a_rate_above_the_slop_leaves_the_other_pairs_right(backend, order):
    """158 Hz stamps (6.3 ms apart, inside a 20 ms slop) and rgb 3 lost. Fed as they arrived, rgb 4 took depth 3
    before depth 4 came and every later frame was called stamp_backwards; now each rgb gets its own depth and the
    orphan depth is reported once."""
    frames = []
    for k in range(10):
        frame = [(0, 100.0 + k / 158, f"c{k}")] if k != 3 else []
        frame.append((1, 100.0 + k / 158, f"d{k}"))
        frames.append(frame[::-1] if order == "depth first" else frame)
    items = [m for f in frames for m in f]
    if order == "depth late":  # each depth image arrives after the next rgb
        items = sorted(items, key=lambda m: (int(m[2][1:]) + (1 if m[0] == 1 else 0), m[0]))
    r = Recorder(backend).feed(*items)
    assert r.pairs == [(f"c{k}", f"d{k}") for k in range(10) if k != 3], r.pairs
    assert r.drops == [("d3", "unpaired")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_offset_stamps_pair_without_waiting_for_the_next_frame(backend):
    """rgb stamped 10 ms after depth at 30 Hz: once the stream's period is known, each pair is emitted when its rgb
    arrives (the next depth, 23 ms away, could not be nearer)."""
    r = Recorder(backend)
    for k in range(8):
        r.feed((1, 5.0 + k / 30, f"d{k}"), (0, 5.01 + k / 30, f"c{k}"))
        if k >= 4:
            assert r.pairs[-1] == (f"c{k}", f"d{k}")
    assert r.pairs == [(f"c{k}", f"d{k}") for k in range(8)] and r.drops == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_future_stamps_are_dropped_without_touching_time_state(backend):
    r = Recorder(backend, max_ahead_s=10.0, now=lambda: 100.0)
    r.feed((0, 100.0 + 3.15e7, "c_year"), (1, 100.0 + 3.15e7, "d_year"), (0, 99.0, "c"), (1, 99.0, "d"))
    assert r.drops == [("c_year", "stamp_future"), ("d_year", "stamp_future")] and r.pairs == [("c", "d")]
    assert r.sync.jumps == 0
    # a clock at 0 (simulated time not started yet) does not reject anything
    r = Recorder(backend, max_ahead_s=10.0, now=lambda: 0.0).feed((0, 5e8, "c"), (1, 5e8, "d"))
    assert r.pairs == [("c", "d")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_clock_jump_back_starts_a_new_recording(backend):
    r = Recorder(backend).feed((0, 50.0, "c0"), (1, 50.0, "d0"), (1, 50.1, "d_lost_rgb"), (0, 20.0, "c_new"),
                               (1, 20.0, "d_new"), (0, 20.1, "c_next"), (1, 20.1, "d_next"))
    assert r.pairs == [("c0", "d0"), ("c_new", "d_new"), ("c_next", "d_next")]
    assert r.drops == [("d_lost_rgb", "unpaired")] and r.sync.jumps == 1
    # a small step back is not a jump: it pairs, and the pipeline decides (stamp_backwards)
    r.feed((0, 19.8, "c_late"), (1, 19.8, "d_late"))
    assert r.pairs[-1] == ("c_late", "d_late") and r.sync.jumps == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_forgets_queued_messages_and_stamps(backend):
    r = Recorder(backend).feed((0, 7.0, "c_old"))
    r.sync.reset()
    assert r.drops == [("c_old", "unpaired")]
    r.feed((1, 3.0, "d"), (0, 3.0, "c"))
    assert r.pairs == [("c", "d")] and r.sync.jumps == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stream_that_stops_is_flushed(backend):
    r = Recorder(backend, unpaired_after_s=0.05).feed((0, 8.0, "c"))
    r.sync.flush()
    assert r.drops == []
    time.sleep(0.1)
    r.sync.flush()
    r.sync.flush()
    assert r.drops == [("c", "unpaired")]


@pytest.mark.skipif(not message_filters_available(), reason="message_filters is not installed")
@pytest.mark.parametrize("seed", range(5))
def test_both_matchers_agree_on_random_streams(seed):
    """Jittered stamps, lost and reordered messages, repeated stamps and jumps back: identical pairs and drops."""
    rng = random.Random(seed)
    items, t = [], 1000.0
    for k in range(300):
        t += rng.choice([0.0333, 0.0333, 0.0333, 0.006, 0.05])
        if k in (80, 150):
            t -= {80: 0.5, 150: 30.0}[k]  # a late burst, then a restarted driver
        frame = []
        for index in (0, 1):
            if rng.random() < 0.1:
                continue  # lost
            jitter = rng.choice([0.0, 0.0, 0.004, -0.004, 0.015, 0.03])
            frame.append((index, round(max(t + jitter, 0.0), 6), f"{index}:{k}"))
        if rng.random() < 0.3:
            frame.reverse()
        items += frame
    own, mf = Recorder("own").feed(*items), Recorder("message_filters").feed(*items)
    assert len(own.pairs) > 150 and own.sync.jumps == 1 and own.drops
    assert own.pairs == mf.pairs and own.drops == mf.drops and mf.sync.jumps == 1


def test_latest_slot_drops_oldest_and_wakes_the_worker():
    slot = LatestSlot()
    assert slot.get(timeout=0.01) is None
    assert slot.put(1) is None and slot.put(2) == 1  # 1 was never taken: dropped, and handed back to be reported
    assert slot.full() and slot.get() == 2 and not slot.full()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.get(timeout=5.0)))
    t.start()
    slot.put("frame")
    t.join(5.0)
    assert got == ["frame"]
