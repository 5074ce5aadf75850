"""Tests of the colour-name and size-class rules."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from g2vlm_core.attributes import COLOR_NAMES, SIZE_CLASSES, color_name, hue_family, size_class
from g2vlm_core.scene_graph import Box3D


@pytest.mark.parametrize("rgb, name", [
    ((1.0, 0.0, 0.0), "red"), ((0.55, 0.0, 0.0), "red"), ((0.0, 0.6, 0.0), "green"), ((0.0, 0.0, 1.0), "blue"),
    ((0.0, 0.8, 0.8), "blue"), ((1.0, 1.0, 0.0), "yellow"), ((1.0, 0.55, 0.0), "orange"),
    ((0.5, 0.0, 0.5), "purple"), ((0.6, 0.2, 0.8), "purple"), ((1.0, 0.75, 0.8), "pink"),
    ((1.0, 0.41, 0.71), "pink"), ((0.55, 0.27, 0.07), "brown"), ((0.0, 0.0, 0.0), "black"),
    ((0.05, 0.1, 0.15), "black"), ((1.0, 1.0, 1.0), "white"), ((0.9, 0.92, 0.9), "white"),
    ((0.5, 0.5, 0.5), "gray"), ((0.3, 0.32, 0.3), "gray"),
])
def test_color_name_basic_colours(rgb, name):
    assert color_name(rgb) == name


def test_color_name_accepts_arrays_and_clips():
    assert color_name(np.array([1.2, -0.1, 0.0], dtype=np.float32)) == "red"


@pytest.mark.parametrize("bad", [(1.0, 0.0), (np.nan, 0.0, 0.0), "red", (np.inf, 1.0, 1.0)])
def test_color_name_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        color_name(bad)


@settings(max_examples=300, deadline=None)
@given(st.tuples(*[st.floats(0.0, 1.0)] * 3))
def test_color_name_total_and_consistent_with_hsv(rgb):
    name = color_name(rgb)
    assert name in COLOR_NAMES
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    if v < 0.2:
        assert name == "black"
    elif s < 0.2:
        assert name in ("white", "gray")
    else:
        assert name not in ("white", "gray", "black")


@pytest.mark.parametrize("size, cls", [((0.1, 0.1, 0.12), "small"), ((0.29, 0.05, 0.05), "small"),
                                       ((0.5, 0.5, 0.9), "medium"), ((0.3, 0.1, 0.1), "medium"),
                                       ((1.6, 0.8, 0.75), "large"), ((0.2, 0.2, 1.0), "large")])
def test_size_class(size, cls):
    assert size_class(Box3D(np.zeros(3), size, 0.7)) == cls
    assert size_class(np.asarray(size)) == cls
    assert cls in SIZE_CLASSES


def test_size_class_rejects_bad_input():
    with pytest.raises(ValueError):
        size_class(np.array([np.nan, 1.0, 1.0]))


@pytest.mark.parametrize("rgb, family", [
    ((1.0, 0.55, 0.0), {"orange", "brown"}), ((0.5, 0.33, 0.04), {"orange", "brown"}),  # lit and shaded orange
    ((0.55, 0.0, 0.0), {"red", "pink"}), ((0.0, 0.3, 0.0), {"green"}), ((0.1, 0.1, 0.1), set()),
    ((0.5, 0.5, 0.52), set()), ((0.2, 0.25, 0.5), {"blue"}),
])
def test_hue_family_ignores_lightness(rgb, family):
    assert hue_family(rgb) == family


@settings(max_examples=300, deadline=None)
@given(st.tuples(*[st.floats(0.0, 1.0)] * 3))
def test_a_chromatic_colour_name_is_in_its_hue_family(rgb):
    name, family = color_name(rgb), hue_family(rgb)
    assert family <= set(COLOR_NAMES)
    if name in ("black", "white", "gray"):
        assert not family
    elif name != "pink":  # pink is also a hue band of its own ([310, 345))
        assert name in family
