"""Pure attribute rules shared by the object map and the synthetic generator: basic colour names and size classes.

Colour rule (HSV of an sRGB colour in [0, 1]; hue h in degrees [0, 360), saturation s, value v), first match wins:

1. ``v < 0.2``                                   -> black  (too dark for hue to mean anything)
2. ``s < 0.2``: ``v >= 0.8`` -> white, else        -> gray   (achromatic)
3. hue band ``[15, 45)`` and ``v < 0.65``            -> brown  (dark orange is what people call brown)
4. red band (``h >= 345`` or ``h < 15``), ``s < 0.5`` and ``v >= 0.6`` -> pink (a light, pale red)
5. hue bands: red ``[345, 15)``, orange ``[15, 45)``, yellow ``[45, 70)``, green ``[70, 165)``,
   blue ``[165, 260)`` (cyan counts as blue), purple ``[260, 310)``, pink ``[310, 345)``.

A colour's hue family (``hue_family``) is what the hue says whatever the light: rules 3-5 without their lightness
conditions, so a shaded orange (named brown) and a lit one share the family {orange, brown}; black and achromatic
colours have none. The query language falls back on it when no candidate has the colour asked (a map sees shaded
surfaces, people name the paint).

Size rule on the largest box extent (metres): ``< 0.3`` small (mug, book), ``< 1.0`` medium (chair, monitor),
else large (table, sofa, bed).
"""
from __future__ import annotations

import colorsys

import numpy as np

from .scene_graph import Box3D

COLOR_NAMES = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white", "gray")
SIZE_CLASSES = ("small", "medium", "large")

BLACK_MAX_V = 0.2  # below this value every colour reads as black
ACHROMATIC_MAX_S = 0.2  # below this saturation a colour is white/gray
WHITE_MIN_V = 0.8  # achromatic and at least this bright -> white
BROWN_MAX_V = 0.65  # orange-hued and darker than this -> brown
PINK_MAX_S, PINK_MIN_V = 0.5, 0.6  # pale and bright red -> pink
# Upper hue bound (degrees, exclusive) of each band, in order; the red band wraps around 360.
HUE_BANDS = ((15.0, "red"), (45.0, "orange"), (70.0, "yellow"), (165.0, "green"), (260.0, "blue"),
             (310.0, "purple"), (345.0, "pink"), (360.0, "red"))

SMALL_MAX_M = 0.3  # largest extent below this -> small
MEDIUM_MAX_M = 1.0  # largest extent below this -> medium, else large


def color_name(rgb01) -> str:
    """Basic colour name (one of COLOR_NAMES) of an RGB triple in [0, 1] (values outside are clipped).

    Raises ValueError for anything that is not 3 finite numbers.
    """
    rgb = np.asarray(rgb01, dtype=np.float64).reshape(-1)
    if rgb.shape != (3,) or not np.all(np.isfinite(rgb)):
        raise ValueError(f"color_name needs 3 finite RGB values in [0, 1], got {rgb01!r}")
    r, g, b = np.clip(rgb, 0.0, 1.0)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    h *= 360.0
    if v < BLACK_MAX_V:
        return "black"
    if s < ACHROMATIC_MAX_S:
        return "white" if v >= WHITE_MIN_V else "gray"
    if 15.0 <= h < 45.0 and v < BROWN_MAX_V:
        return "brown"
    red_band = h >= 345.0 or h < 15.0
    if red_band and s < PINK_MAX_S and v >= PINK_MIN_V:
        return "pink"
    for upper, name in HUE_BANDS:
        if h < upper:
            return name
    return "red"  # h == 360 only through rounding


def hue_family(rgb01) -> frozenset[str]:
    """The colour names an RGB triple's hue allows whatever its lightness (see the module docstring): empty for
    black (v below BLACK_MAX_V) and achromatic colours; orange and brown together; red and pink together."""
    rgb = np.asarray(rgb01, dtype=np.float64).reshape(-1)
    if rgb.shape != (3,) or not np.all(np.isfinite(rgb)):
        raise ValueError(f"hue_family needs 3 finite RGB values in [0, 1], got {rgb01!r}")
    h, s, v = colorsys.rgb_to_hsv(*np.clip(rgb, 0.0, 1.0))
    if v < BLACK_MAX_V or s < ACHROMATIC_MAX_S:
        return frozenset()
    name = next(n for upper, n in HUE_BANDS if h * 360.0 < upper) if h * 360.0 < 360.0 else "red"
    return frozenset({"orange": ("orange", "brown"), "red": ("red", "pink")}.get(name, (name,)))


def size_class(box: Box3D | np.ndarray) -> str:
    """'small' | 'medium' | 'large' from the largest extent of a Box3D (or a (3,) size in metres)."""
    size = box.size if isinstance(box, Box3D) else np.asarray(box, dtype=np.float64).reshape(-1)
    if size.shape != (3,) or not np.all(np.isfinite(size)):
        raise ValueError(f"size_class needs a Box3D or 3 finite sizes, got {box!r}")
    extent = float(np.max(size))
    if extent < SMALL_MAX_M:
        return "small"
    if extent < MEDIUM_MAX_M:
        return "medium"
    return "large"
