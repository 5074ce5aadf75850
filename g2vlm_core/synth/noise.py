"""Depth and colour sensor-noise models: Kinect-v1-like structured light and RealSense-D4xx-like active stereo.

Kinect (Khoshelham & Elberink 2012; Nguyen et al. 2012): disparity measured in 1/8 pixel steps with a
focal length of 580 px and a 7.5 cm baseline, so depth error grows with z^2 (~1.4 mm * z^2 here) and depth
is quantised in disparity; valid range 0.5-4.5 m; holes at depth discontinuities (projector shadow), on
grazing surfaces and on dark (IR-absorbing) surfaces.
RealSense D4xx (Intel's depth-error formula z^2 * subpixel / (f * baseline)): 0.08 px subpixel, f 385 px,
5 cm baseline (~4 mm * z^2), a low-frequency correlated error component, 1 mm quantisation, 0.2-6 m range,
flying pixels and holes at edges, fewer dark-surface holes (the IR projector helps).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .render import RenderOutput


@dataclass(frozen=True)
class DepthNoiseModel:
    """Parameters of one sensor's depth noise (see the module docstring for where the numbers come from)."""

    min_m: float  # closer than this: no measurement
    max_m: float  # farther than this: no measurement
    sigma_k: float  # gaussian z-noise sigma = sigma_k * z^2 (metres)
    correlated_frac: float  # share of the noise variance that is spatially smooth (low frequency)
    disparity_fb: float  # focal (px) * baseline (m) for disparity quantisation; 0 = quantise depth instead
    disparity_step: float  # disparity quantisation step (px)
    depth_step_m: float  # depth quantisation when disparity_fb == 0
    edge_rel: float  # a neighbour depth jump above edge_rel * z is a discontinuity
    edge_drop_p: float  # probability that an edge pixel is a hole
    flying_p: float  # probability that an edge pixel mixes foreground and background depth
    grazing_cos: float  # |cos incidence| below this: hole
    dark_lum: float  # albedo luminance below this: hole with probability dark_drop_p
    dark_drop_p: float
    speckle_p: float  # random isolated dropouts
    color_sigma: float  # per-pixel colour noise (in [0, 1] units)
    color_gain_sigma: float  # per-frame exposure gain jitter


NOISE_MODELS = {
    "kinect": DepthNoiseModel(0.5, 4.5, 1.4e-3, 0.0, 580.0 * 0.075, 1.0 / 8.0, 0.0, 0.04, 0.7, 0.0, 0.2, 0.08,
                              0.6, 0.002, 3.0 / 255, 0.03),
    "realsense": DepthNoiseModel(0.2, 6.0, 4.2e-3, 0.5, 0.0, 0.0, 0.001, 0.04, 0.5, 0.3, 0.15, 0.05, 0.3,
                                 0.003, 2.0 / 255, 0.02),
}


def _edges(depth: np.ndarray, rel: float) -> np.ndarray:
    """Pixels on either side of a depth jump larger than ``rel`` times the local depth (misses count as jumps)."""
    e = np.zeros(depth.shape, bool)
    dx = np.abs(np.diff(depth, axis=1)) > rel * np.maximum(depth[:, 1:], depth[:, :-1])
    dy = np.abs(np.diff(depth, axis=0)) > rel * np.maximum(depth[1:, :], depth[:-1, :])
    e[:, 1:] |= dx
    e[:, :-1] |= dx
    e[1:, :] |= dy
    e[:-1, :] |= dy
    return e


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int = 8) -> np.ndarray:
    """Unit-variance-ish smooth random field: a coarse gaussian grid, bilinearly upsampled."""
    H, W = shape
    g = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    y = np.linspace(0, cells, H, dtype=np.float32)
    x = np.linspace(0, cells, W, dtype=np.float32)
    y0, x0 = np.minimum(y.astype(int), cells - 1), np.minimum(x.astype(int), cells - 1)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    return ((1 - fy) * (1 - fx) * g[y0][:, x0] + (1 - fy) * fx * g[y0][:, x0 + 1]
            + fy * (1 - fx) * g[y0 + 1][:, x0] + fy * fx * g[y0 + 1][:, x0 + 1]) * 1.6


def apply_depth_noise(render: RenderOutput, model: str, rng: np.random.Generator) -> np.ndarray:
    """Noisy (H, W) float32 depth in metres (0 = no measurement) from a clean render."""
    depth = render.depth_m
    if model == "none":
        return depth.copy()
    m = NOISE_MODELS[model]
    z = depth.astype(np.float32)
    valid = z > 0
    sigma = m.sigma_k * z * z
    white = rng.standard_normal(z.shape, dtype=np.float32)
    if m.correlated_frac > 0:
        white = np.sqrt(1 - m.correlated_frac) * white + np.sqrt(m.correlated_frac) * _smooth_field(rng, z.shape)
    noisy = z + sigma * white
    if m.disparity_fb > 0:
        with np.errstate(divide="ignore"):
            disp = np.where(valid, m.disparity_fb / np.maximum(noisy, 1e-3), 0.0)
        disp = np.round(disp / m.disparity_step) * m.disparity_step
        with np.errstate(divide="ignore"):
            noisy = np.where(disp > 0, m.disparity_fb / np.maximum(disp, 1e-9), 0.0).astype(np.float32)
    else:
        noisy = np.round(noisy / m.depth_step_m) * m.depth_step_m
    u = rng.random(z.shape, dtype=np.float32)
    edges = _edges(z, m.edge_rel) & valid
    if m.flying_p > 0:  # a flying pixel lies between the two sides of a discontinuity
        fly = edges & (u < m.flying_p)
        right = np.concatenate([z[:, 1:], z[:, -1:]], axis=1)
        noisy = np.where(fly & (right > 0), 0.5 * (noisy + right), noisy)
    holes = ~valid | (z < m.min_m) | (z > m.max_m)
    holes |= edges & (u > 1.0 - m.edge_drop_p)
    holes |= render.cos_incidence < m.grazing_cos
    u2 = rng.random(z.shape, dtype=np.float32)
    holes |= (render.albedo_lum < m.dark_lum) & (u2 < m.dark_drop_p)
    holes |= u2 > 1.0 - m.speckle_p
    noisy = noisy.astype(np.float32)
    noisy[holes] = 0.0
    return noisy


BANK_PAD = 48  # a frame's colour noise is a random (BANK_PAD + 1)^2-offset window of a fixed noise bank


@lru_cache(maxsize=4)
def _color_noise_bank(height: int, width: int) -> np.ndarray:
    """A fixed (H + pad, W + pad, 3) standard-normal field: slicing it is ~10x cheaper than sampling per frame."""
    return np.random.default_rng(0xC0FFEE).standard_normal((height + BANK_PAD, width + BANK_PAD, 3),
                                                             dtype=np.float32)


def apply_color_noise(rgb01: np.ndarray, model: str, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 colour with per-frame gain jitter and per-pixel gaussian noise (none: just quantised)."""
    if model == "none":
        return np.round(np.clip(rgb01, 0.0, 1.0) * 255.0).astype(np.uint8)
    m = NOISE_MODELS[model]
    gain = np.float32(1.0 + m.color_gain_sigma * rng.standard_normal())
    H, W = rgb01.shape[:2]
    oy, ox = (int(v) for v in rng.integers(0, BANK_PAD + 1, 2))
    sign = np.float32(m.color_sigma if rng.random() < 0.5 else -m.color_sigma)
    # Rolling the channels as well gives 2 * 3 * (BANK_PAD + 1)^2 distinct noise images.
    noise = np.roll(_color_noise_bank(H, W)[oy:oy + H, ox:ox + W], int(rng.integers(3)), axis=2)
    out = rgb01 * gain + sign * noise
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
