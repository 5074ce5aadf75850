"""Albedo palettes whose colours map robustly to one attributes.color_name, so rendered objects and GT agree."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..attributes import COLOR_NAMES, color_name

# Colour names each category is drawn in (what such objects plausibly look like).
CATEGORY_COLORS: dict[str, tuple[str, ...]] = {
    "table": ("brown", "white", "black", "gray"),
    "desk": ("brown", "white", "black", "gray"),
    "chair": ("red", "green", "blue", "brown", "black", "white", "gray", "yellow", "orange"),
    "sofa": ("red", "green", "blue", "gray", "brown", "purple", "yellow", "orange", "pink", "black", "white"),
    "bed": ("red", "green", "blue", "white", "gray", "purple", "pink", "yellow"),
    "shelf": ("brown", "white", "black", "gray", "blue"),
    "cabinet": ("brown", "white", "black", "gray", "green", "blue"),
    "lamp": ("white", "yellow", "red", "blue", "black", "orange", "green"),
    "plant": ("green",),
    "box": ("brown", "white", "red", "blue", "yellow", "green"),
    "monitor": ("black", "gray", "white"),
    "laptop": ("gray", "black", "white"),
    "mug": COLOR_NAMES,
    "bottle": ("green", "blue", "white", "red", "brown", "yellow", "orange", "purple"),
    "book": ("red", "green", "blue", "yellow", "orange", "purple", "pink", "black", "white", "brown"),
    "bowl": COLOR_NAMES,
    "vase": ("red", "green", "blue", "white", "yellow", "orange", "purple", "pink", "black"),
}
STRUCTURE_COLORS = {
    "floor": ("brown", "gray", "white"),
    "wall": ("white", "gray", "yellow", "pink", "blue", "green"),
    "ceiling": ("white",),
}
ROBUST_DELTA = 0.04  # a palette colour keeps its name under this much per-channel change (shading, noise)


MAX_PER_NAME = 48  # albedos kept per colour name: plenty of variety, and a fast (~0.3 s) palette build


@lru_cache(maxsize=1)
def palette() -> dict[str, np.ndarray]:
    """{colour name: (K, 3) float albedos in [0, 1]} whose +-ROBUST_DELTA neighbourhood keeps the name."""
    levels = np.linspace(0.05, 0.95, 19)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    offsets = np.array([[dx, dy, dz] for dx in (-1, 1) for dy in (-1, 1) for dz in (-1, 1)]) * ROBUST_DELTA
    by_name: dict[str, list[np.ndarray]] = {n: [] for n in COLOR_NAMES}
    for rgb in grid:
        by_name[color_name(rgb)].append(rgb)
    # A fixed permutation spreads the kept colours over each name's region instead of its grid corner.
    order = np.random.default_rng(0).permutation(len(grid))
    rank = np.empty(len(grid), int)
    rank[order] = np.arange(len(grid))
    index = {tuple(rgb): i for i, rgb in enumerate(grid)}
    out: dict[str, np.ndarray] = {}
    for name, cands in by_name.items():
        kept = []
        for rgb in sorted(cands, key=lambda c: rank[index[tuple(c)]]):
            if all(color_name(np.clip(rgb + o, 0.0, 1.0)) == name for o in offsets):
                kept.append(rgb)
                if len(kept) == MAX_PER_NAME:
                    break
        if not kept:  # would mean attributes.py changed its rules beyond what this grid covers
            raise RuntimeError(f"no robust albedo found for colour name {name!r}")
        out[name] = np.array(sorted(kept, key=tuple))
    return out


def sample_color(rng: np.random.Generator, names: tuple[str, ...]) -> tuple[str, np.ndarray]:
    """A (name, albedo (3,)) drawn uniformly over ``names`` then over that name's palette."""
    name = names[int(rng.integers(len(names)))]
    choices = palette()[name]
    return name, choices[int(rng.integers(len(choices)))].copy()
