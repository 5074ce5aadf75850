"""Keyframe selection by what a frame adds: surface no recognised keyframe has seen (often enough) yet."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

from .frame import RGBDFrame


class SurfaceCoverage:
    """How many selected keyframes have seen each TSDF block (packed int64 keys, ``fusion.pack_block_keys``)."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.int64)  # sorted
        self.counts = np.zeros(0, np.int32)

    def counts_of(self, keys: np.ndarray) -> np.ndarray:
        """(N,) times each block was seen by a selected keyframe (0 for blocks never seen)."""
        if len(self.keys) == 0 or len(keys) == 0:
            return np.zeros(len(keys), np.int32)
        i = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[i] == keys, self.counts[i], 0)

    def novelty(self, keys: np.ndarray, confirm_views: int) -> float:
        """Share of the blocks ``keys`` that fewer than ``confirm_views`` selected keyframes have seen."""
        if len(keys) == 0:
            return 0.0
        return float(np.mean(self.counts_of(keys) < confirm_views))

    def add(self, keys: np.ndarray) -> None:
        keys = np.unique(keys)
        merged, inverse = np.unique(np.concatenate([self.keys, keys]), return_inverse=True)
        counts = np.zeros(len(merged), np.int32)
        np.add.at(counts, inverse[:len(self.keys)], self.counts)
        np.add.at(counts, inverse[len(self.keys):], 1)
        self.keys, self.counts = merged, counts

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Candidate:
    """A fused frame offered for keyframe work, with the TSDF blocks it observed."""

    frame: RGBDFrame
    T_world_cam: np.ndarray
    block_keys: np.ndarray
    t_received: float  # time.monotonic() when the frame arrived: recognition latency is measured from here
    novelty: float = 1.0


@dataclass
class KeyframeScheduler:
    """Chooses which candidates get keyframe work when it cannot keep up, by what they add, not by arrival.

    ``offer`` adds a candidate to a pool of at most ``pool`` (the least novel one is skipped when it overflows:
    "less_novel"). ``select`` (when the keyframe worker is free) rescores the pool against the surface the
    selected keyframes have covered, skips candidates whose novelty is below ``min_novelty`` ("recognised": their
    view is already recognised ``confirm_views`` times) unless ``refresh_s`` passed since the last selection (the
    newest is then selected, so a changing scene stays current), and returns the most novel one (ties: newest);
    the others stay for the next call. Not thread-safe: the pipeline holds its lock around every call.
    """

    min_novelty: float = 0.1
    confirm_views: int = 2
    pool: int = 4
    refresh_s: float = 5.0
    coverage: SurfaceCoverage = field(default_factory=SurfaceCoverage)
    pending: list[Candidate] = field(default_factory=list)
    skipped: collections.Counter = field(default_factory=collections.Counter)
    offered: int = 0
    selected: int = 0
    last_selected_stamp: float | None = None

    def _score(self) -> None:
        for c in self.pending:
            c.novelty = self.coverage.novelty(c.block_keys, self.confirm_views)

    def offer(self, cand: Candidate) -> None:
        self.offered += 1
        self.pending.append(cand)
        if len(self.pending) > self.pool:
            self._score()
            worst = min(range(len(self.pending)), key=lambda i: (self.pending[i].novelty, i))
            self.pending.pop(worst)
            self.skipped["less_novel"] += 1

    def select(self) -> Candidate | None:
        if not self.pending:
            return None
        self._score()
        newest = self.pending[-1]
        due = (self.last_selected_stamp is None
               or newest.frame.stamp_s - self.last_selected_stamp >= self.refresh_s)
        keep = [c for c in self.pending if c.novelty >= self.min_novelty]
        self.skipped["recognised"] += len(self.pending) - len(keep)
        if not keep:
            self.pending = []
            if not due:
                return None
            self.skipped["recognised"] -= 1  # the refresh takes the newest after all
            keep = [newest]
        best = max(range(len(keep)), key=lambda i: (keep[i].novelty, i))
        chosen = keep.pop(best)
        self.pending = keep
        self.mark_selected(chosen)
        return chosen

    def mark_selected(self, cand: Candidate) -> None:
        """Count ``cand`` as selected and its surface as covered (it is handed to the labeller now)."""
        self.selected += 1
        self.coverage.add(cand.block_keys)
        self.last_selected_stamp = cand.frame.stamp_s

    def clear(self) -> None:
        self.skipped["reset"] += len(self.pending)
        self.pending = []
