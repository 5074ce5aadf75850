"""Smooth camera trajectories around a room (robot 0.5-1.2 m or handheld 1.3-1.7 m), looking at its centre."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UP = np.array([0.0, 0.0, 1.0])
HEIGHT_RANGE_M = {"robot": (0.5, 1.2), "handheld": (1.3, 1.7)}  # camera heights above the floor
HEIGHT_WOBBLE_M = {"robot": 0.015, "handheld": 0.04}  # smooth vertical sway (a hand bobs more than a robot)


def look_at(position: np.ndarray, target: np.ndarray, roll_rad: float = 0.0) -> np.ndarray:
    """(4, 4) T_world_cam of an optical-frame camera (x right, y down, z forward) at ``position`` facing ``target``."""
    f = np.asarray(target, float) - np.asarray(position, float)
    f /= np.linalg.norm(f)
    r = np.cross(f, UP)
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    if roll_rad:
        c, s = np.cos(roll_rad), np.sin(roll_rad)
        r, d = c * r + s * d, -s * r + c * d
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = r, d, f, position
    return T


class _SmoothNoise:
    """Deterministic smooth 1D noise: a sum of a few sinusoids with random frequencies and phases."""

    def __init__(self, rng: np.random.Generator, amplitude: float, n: int = 3, max_freq: float = 3.0) -> None:
        self.freq = rng.uniform(0.5, max_freq, n)
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.amp = amplitude / np.sqrt(n)

    def __call__(self, s: np.ndarray) -> np.ndarray:
        return self.amp * np.sin(2 * np.pi * self.freq * s[..., None] + self.phase).sum(axis=-1)


@dataclass
class OrbitTrajectory:
    """A closed-form smooth orbit: camera on a modulated ellipse around the room centre, eyes on a wandering target.

    ``s`` in [0, 1] parametrises the whole path, independent of the number of frames, so the layout
    (which keeps furniture clear of the path) does not depend on how many frames are rendered.
    """

    center_xy: np.ndarray
    semi_axes: np.ndarray  # (2,) ellipse semi-axes in metres
    theta0: float
    sweep_rad: float  # signed angle swept over the whole path
    height_m: float
    kind: str  # robot | handheld
    rng_seed: int

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.rng_seed)
        self._mod_phase = rng.uniform(0, 2 * np.pi)
        handheld = self.kind == "handheld"
        self._z = _SmoothNoise(rng, HEIGHT_WOBBLE_M[self.kind])
        self._pos_jitter = [_SmoothNoise(rng, 0.02 if handheld else 0.008, max_freq=6.0) for _ in range(2)]
        self._target = [_SmoothNoise(rng, 0.3, n=2, max_freq=1.5) for _ in range(2)]
        self._target_z = float(rng.uniform(0.5, 0.9))
        self._roll = _SmoothNoise(rng, np.deg2rad(1.5 if handheld else 0.3), max_freq=6.0)

    def xy(self, s: np.ndarray) -> np.ndarray:
        """(N, 2) horizontal camera positions along the path (without jitter, used for clearance checks)."""
        s = np.asarray(s, dtype=np.float64)
        th = self.theta0 + self.sweep_rad * s
        r = 1.0 + 0.06 * np.sin(2 * th + self._mod_phase)
        ellipse = np.stack([self.semi_axes[0] * np.cos(th), self.semi_axes[1] * np.sin(th)], -1)
        return self.center_xy + ellipse * r[:, None]

    def poses(self, n: int) -> np.ndarray:
        """(n, 4, 4) T_world_cam at n evenly spaced path parameters."""
        s = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
        xy = self.xy(s) + np.stack([j(s) for j in self._pos_jitter], -1)
        z = self.height_m + self._z(s)
        targets = np.concatenate([self.center_xy + np.stack([t(s) for t in self._target], -1),
                                  np.full((len(s), 1), self._target_z)], axis=1)
        roll = self._roll(s)
        return np.stack([look_at(np.array([xy[i, 0], xy[i, 1], z[i]]), targets[i], roll[i]) for i in range(len(s))])


def make_trajectory(rng: np.random.Generator, room_size: np.ndarray, kind: str) -> OrbitTrajectory:
    """Sample an orbit that keeps ~0.8 m or more from the walls in a W x D room (interior [0, W] x [0, D])."""
    W, D = float(room_size[0]), float(room_size[1])
    f = rng.uniform(0.45, 0.6)
    semi = np.array([max(0.3, min(W / 2 * f, W / 2 - 0.8)), max(0.3, min(D / 2 * f, D / 2 - 0.8))])
    # Keep base height + wobble (at most amplitude * sqrt(3) for 3 sinusoids) inside the documented range.
    lo, hi = HEIGHT_RANGE_M[kind]
    margin = HEIGHT_WOBBLE_M[kind] * np.sqrt(3.0)
    height = rng.uniform(lo + margin, hi - margin)
    sweep = rng.uniform(0.5 * np.pi, 2.0 * np.pi) * (1 if rng.random() < 0.5 else -1)
    return OrbitTrajectory(np.array([W / 2, D / 2]), semi, float(rng.uniform(0, 2 * np.pi)), float(sweep),
                           float(height), kind, int(rng.integers(2**31)))
