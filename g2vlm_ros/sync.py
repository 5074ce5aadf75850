"""Approximate time synchroniser for rgb + depth (+ the latest camera_info), pure Python, no rclpy.

message_filters is not pip-installable, and one tested code path beats two, so the node always uses this.
Policy: keep the newest few messages of each stream; emit the (rgb, depth) pair with the smallest stamp gap
once it is within ``slop_s``, then drop everything up to it. Pairs never go back in time.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Callable


class ApproxSync:
    def __init__(self, slop_s: float, callback: Callable[[Any, Any], None], queue_size: int = 5,
                 stamp: Callable[[Any], float] = lambda m: m.header.stamp.sec + m.header.stamp.nanosec * 1e-9,
                 on_stale: Callable[[int, Any], None] | None = None):
        if slop_s < 0:
            raise ValueError(f"slop_s must be >= 0, got {slop_s}")
        self.slop_s, self._cb, self._stamp, self._on_stale = slop_s, callback, stamp, on_stale
        self._q = (collections.deque(maxlen=queue_size), collections.deque(maxlen=queue_size))
        self._lock = threading.Lock()
        self._last_emitted = float("-inf")
        self.dropped_stale = 0  # messages older than the last emitted pair

    def add(self, index: int, msg) -> None:
        """Add a message of stream 0 (rgb) or 1 (depth); may call the callback with a matched pair."""
        pair = None
        with self._lock:
            t = self._stamp(msg)
            stale = t <= self._last_emitted  # older than a frame already emitted: stamps went back, or too late
            if stale:
                self.dropped_stale += 1
            else:
                self._q[index].append((t, msg))
                pair = self._match()
        if stale and self._on_stale is not None:
            self._on_stale(index, msg)
        elif pair is not None:
            self._cb(*pair)

    def _match(self):
        best = None
        for ta, a in self._q[0]:
            for tb, b in self._q[1]:
                gap = abs(ta - tb)
                if gap <= self.slop_s and (best is None or gap < best[0]):
                    best = (gap, ta, tb, a, b)
        if best is None:
            return None
        _, ta, tb, a, b = best
        self._last_emitted = max(ta, tb)
        for q in self._q:
            while q and q[0][0] <= self._last_emitted:
                q.popleft()
        return a, b


class LatestSlot:
    """A size-1 drop-oldest queue: the callback thread puts the newest frame, the worker takes it.

    Sensor callbacks never block on the worker, and the worker always gets the newest data, not a backlog.
    """

    def __init__(self):
        self._item = None
        self._cond = threading.Condition()

    def put(self, item) -> bool:
        """Store ``item``; returns True if it replaced one the worker had not taken (a dropped frame)."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
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
