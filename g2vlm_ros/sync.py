"""rgb + depth pairing by approximate stamps, with the node's time guards, and the size-1 slot the worker reads.

Pairing is message_filters' ApproximateTimeSynchronizer where that package is importable (a ROS distro, or the
upstream wheel) and the same rule in pure Python otherwise (``_OwnMatcher``), so the node behaves the same with and
without it (tests/ros/test_sync.py feeds both the same stamp patterns). The rule, for two streams: each keeps its
newest ``queue_size`` messages by stamp (a repeated stamp replaces the message); an arriving message is paired with
the queued message of the other stream nearest in stamp if the gap is below the slop, and both leave the queues.

``FrameSync`` wraps either with what the synchroniser itself does not do:
- messages stamped more than ``max_ahead_s`` ahead of ``now()`` are dropped before they reach it ("stamp_future"),
  so one bad stamp moves no time state;
- a stamp more than ``jump_back_s`` before the newest of its stream means the source clock jumped back (a looping
  bag, a restarted driver): the queues of the old recording are dropped and pairing goes on;
- messages are handed to the synchroniser in stamp order, each once no nearer partner can still arrive (see
  ``_ready``), so a lost image does not make its neighbour pair with the wrong partner;
- every message that will not be paired is reported once ("unpaired"): when the other stream has moved past it by
  more than the slop, when it is pushed out of its queue or replaced, when it waited ``unpaired_after_s``, on a
  clock jump or on ``reset()``.
"""
from __future__ import annotations

import bisect
import threading
import time
from typing import Any, Callable

BACKENDS = ("auto", "message_filters", "own")


def stamp_ns(msg) -> int:
    """Header stamp in integer nanoseconds (message_filters keys its queues by this)."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def message_filters_available() -> bool:
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


class _OwnMatcher:
    """message_filters.ApproximateTimeSynchronizer.add for two streams, in pure Python (no ROS distro needed)."""

    def __init__(self, queue_size: int, slop_ns: int, emit: Callable[[Any, Any], None]):
        self._queues: tuple[dict[int, Any], dict[int, Any]] = ({}, {})
        self._size, self._slop_ns, self._emit = queue_size, slop_ns, emit

    def add(self, index: int, ns: int, msg) -> None:
        mine, other = self._queues[index], self._queues[1 - index]
        mine[ns] = msg
        while len(mine) > self._size:
            del mine[min(mine)]
        # sorted() is stable: equal gaps keep the queue's insertion order, as in message_filters
        for gap, s in sorted(((abs(s - ns), s) for s in other if abs(s - ns) <= self._slop_ns), key=lambda c: c[0]):
            if gap < self._slop_ns and ns in mine and s in other:
                a, b = mine.pop(ns), other.pop(s)
                self._emit(*((a, b) if index == 0 else (b, a)))
                return


class _MessageFiltersMatcher:
    """message_filters.ApproximateTimeSynchronizer fed through two SimpleFilter inputs."""

    def __init__(self, queue_size: int, slop_ns: int, emit: Callable[[Any, Any], None]):
        import message_filters

        self._inputs = (message_filters.SimpleFilter(), message_filters.SimpleFilter())
        self._sync = message_filters.ApproximateTimeSynchronizer(self._inputs, queue_size, slop_ns * 1e-9)
        self._sync.registerCallback(emit)

    def add(self, index: int, ns: int, msg) -> None:
        self._inputs[index].signalMessage(msg)


class FrameSync:
    """Pairs stream 0 (rgb) with stream 1 (depth); ``callback(rgb, depth)`` per pair and
    ``on_drop(index, msg, reason, detail)`` per message dropped ("unpaired" or "stamp_future"); both are called
    after the internal lock is released. Thread-safe."""

    def __init__(self, slop_s: float, callback: Callable[[Any, Any], None], queue_size: int = 5,
                 on_drop: Callable[[int, Any, str, str], None] | None = None, jump_back_s: float = 1.0,
                 max_ahead_s: float = 0.0, now: Callable[[], float] | None = None, backend: str = "auto",
                 unpaired_after_s: float = 1.0):
        if slop_s < 0:
            raise ValueError(f"slop_s must be >= 0, got {slop_s}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "auto":
            backend = "message_filters" if message_filters_available() else "own"
        self.backend = backend
        self.slop_s, self.queue_size = slop_s, queue_size
        self._slop_ns = int(slop_s * 1e9)  # as rclpy.duration.Duration(seconds=slop_s), which message_filters uses
        self._jump_ns = int(jump_back_s * 1e9)
        self._max_ahead_s, self._now, self._unpaired_after_s = max_ahead_s, now, unpaired_after_s
        self._cb, self._on_drop = callback, on_drop
        self._lock = threading.RLock()
        self._events: list[tuple] = []
        self.pairs = 0
        self.jumps = 0
        self.dropped: dict[str, int] = {"unpaired": 0, "stamp_future": 0}
        self._new_recording()

    def _new_recording(self) -> None:
        matcher = _MessageFiltersMatcher if self.backend == "message_filters" else _OwnMatcher
        self._matcher = matcher(self.queue_size, self._slop_ns, self._matched)
        # what the matcher holds, mirrored: stamp -> [msg, arrival time, reported as unpaired]
        self._pending: tuple[dict[int, list], dict[int, list]] = ({}, {})
        # arrived, not yet given to the matcher: sorted [stamp, msg, arrival time]
        self._held: tuple[list[list], list[list]] = ([], [])
        self._newest: list[int | None] = [None, None]
        self._steps: tuple[list[int], list[int]] = ([], [])  # recent stamp steps of each stream (ns)

    # ------------------------------------------------------------------------------------------------ input
    def add(self, index: int, msg) -> None:
        """Add a message of stream 0 (rgb) or 1 (depth); may call the callback with a matched pair."""
        with self._lock:
            ns = stamp_ns(msg)
            now = self._now() if self._now is not None and self._max_ahead_s > 0 else 0.0
            ahead = ns * 1e-9 - now
            if now > 0 and ahead > self._max_ahead_s:  # now() is 0 until a simulated clock has started
                self._drop(index, msg, "stamp_future", f"stamped {ahead:.3f} s ahead of this node's clock "
                                                       f"(more than {self._max_ahead_s} s)")
            else:
                newest = self._newest[index]
                if newest is not None and ns < newest - self._jump_ns:
                    self.jumps += 1
                    self._clear(f"the stamps jumped back {(newest - ns) * 1e-9:.3f} s (a new recording)")
                    newest = None
                if newest is not None and ns > newest:
                    steps = self._steps[index]
                    steps.append(ns - newest)
                    del steps[:-8]
                self._newest[index] = ns if newest is None else max(newest, ns)
                held = self._held[index]
                held.insert(bisect.bisect([h[0] for h in held], ns), [ns, msg, time.monotonic()])
                self._release()
            events, self._events = self._events, []
        self._deliver(events)

    # Messages reach the matcher in stamp order, each once no message of the other stream can still arrive nearer
    # to it than the nearest one queued. Fed in arrival order, the matcher's nearest-at-arrival rule pairs wrongly
    # when the slop exceeds the frame period: with an rgb image lost at 158 Hz, the next rgb took the previous
    # depth (6 ms away, inside a 20 ms slop) before its own depth arrived, and pairs then went back in time.
    def _period(self, index: int) -> int | None:
        steps = sorted(self._steps[index])
        return steps[len(steps) // 2] if len(steps) >= 3 else None

    def _ready(self, index: int, ns: int) -> bool:
        other = 1 - index
        seen = self._newest[other]
        if seen is not None and seen >= ns:
            return True  # the other stream has passed this stamp: every nearer message of it has arrived
        period = self._period(other)
        if seen is None or period is None:
            return False
        next_gap = seen + period - ns  # the other stream's next message is expected about here
        best = min((abs(s - ns) for s in self._pending[other]), default=self._slop_ns)
        return next_gap > min(best, self._slop_ns) + period // 4  # it would not be nearer (a quarter period of jitter)

    def _release(self, force: bool = False) -> None:
        """Feed held messages to the matcher in stamp order (depth first on equal stamps) while one is ready;
        ``force``: all of them."""
        while True:
            fronts = [(h[0][0], 1 - i, i) for i, h in enumerate(self._held) if h and
                      (force or len(h) > self.queue_size or self._ready(i, h[0][0]))]
            if not fronts:
                return
            ns, _, index = min(fronts)
            _, msg, arrived = self._held[index].pop(0)
            self._track(index, ns, msg, arrived)
            self._matcher.add(index, ns, msg)

    def _track(self, index: int, ns: int, msg, arrived: float) -> None:
        """Mirror the matcher's queue change and report what can no longer be paired."""
        mine, other = self._pending[index], self._pending[1 - index]
        if ns in mine:
            self._unpaired(index, mine[ns], "replaced by another message with the same stamp")
        mine[ns] = [msg, arrived, False]
        while len(mine) > self.queue_size:
            self._unpaired(index, mine.pop(min(mine)), "pushed out of the synchroniser's queue")
        for s, entry in other.items():
            if s < ns - self._slop_ns:
                self._unpaired(1 - index, entry, f"no {('rgb', 'depth')[index]} within sync_slop_s={self.slop_s} s "
                                                 f"(the {('rgb', 'depth')[index]} stream is {(ns - s) * 1e-9:.3f} s "
                                                 "past it)")

    def _matched(self, rgb, depth) -> None:  # called by the matcher, inside add()
        for index, msg in ((0, rgb), (1, depth)):
            self._pending[index].pop(stamp_ns(msg), None)
        self.pairs += 1
        self._events.append(("pair", rgb, depth))

    def _unpaired(self, index: int, entry: list, why: str) -> None:
        if not entry[2]:  # report each message once
            entry[2] = True
            self._drop(index, entry[0], "unpaired", why)

    def _drop(self, index: int, msg, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        self._events.append(("drop", index, msg, reason, detail))

    def _clear(self, why: str) -> None:
        for index in (0, 1):
            for entry in [*self._pending[index].values(), *([h[1], h[2], False] for h in self._held[index])]:
                self._unpaired(index, entry, why)
        self._new_recording()

    def _deliver(self, events: list[tuple]) -> None:
        for e in events:
            if e[0] == "pair":
                self._cb(e[1], e[2])
            elif self._on_drop is not None:
                self._on_drop(*e[1:])

    # ------------------------------------------------------------------------------------------ maintenance
    def flush(self) -> None:
        """Report messages that have waited ``unpaired_after_s`` for a partner (a stream that stopped)."""
        with self._lock:
            old = time.monotonic() - self._unpaired_after_s
            if any(h and h[0][2] < old for h in self._held):
                self._release(force=True)
            for index in (0, 1):
                for entry in self._pending[index].values():
                    if entry[1] < old:
                        self._unpaired(index, entry, f"no partner within {self._unpaired_after_s} s")
            events, self._events = self._events, []
        self._deliver(events)

    def reset(self) -> None:
        """Forget every message and the stamps seen (queued messages are reported unpaired)."""
        with self._lock:
            self._clear("the synchroniser was reset")
            events, self._events = self._events, []
        self._deliver(events)


class LatestSlot:
    """A size-1 drop-oldest queue: the callback thread puts the newest frame, the worker takes it.

    Sensor callbacks never block on the worker, and the worker always gets the newest data, not a backlog.
    """

    def __init__(self):
        self._item = None
        self._cond = threading.Condition()

    def put(self, item):
        """Store ``item``; returns the item it replaced if the worker had not taken it (a dropped frame), else None."""
        with self._cond:
            dropped, self._item = self._item, item
            self._cond.notify()
        return dropped

    def get(self, timeout: float | None = None):
        """Take the item, waiting up to ``timeout`` seconds; None if there was none."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
        return item

    def full(self) -> bool:
        with self._cond:
            return self._item is not None
