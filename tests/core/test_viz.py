"""Tests of g2vlm_core.viz: the map picture is written, and labels of objects close together do not overlap."""
from __future__ import annotations

import numpy as np

from g2vlm_core.scene_graph import Box3D, SceneGraph, SceneObject
from g2vlm_core.viz import _spread_labels, render_map_png


def _crowd() -> SceneGraph:
    # four small objects within 10 cm of each other: their labels start on top of one another
    return SceneGraph([SceneObject(i, label, Box3D([1.0 + 0.03 * i, 1.0, 0.5], [0.1, 0.1, 0.1]))
                       for i, label in enumerate(("mug", "bottle", "bowl", "book"))])


def test_the_map_picture_is_written(tmp_path):
    import matplotlib.image as mpimg

    pts = np.random.default_rng(0).uniform(0, 2, (500, 3))
    path = render_map_png(pts, np.full_like(pts, 0.5), _crowd(), tmp_path / "map.png", highlight_ids=(2,))
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
    assert img[..., :3].std() > 0.05  # something was drawn


def test_labels_of_objects_close_together_are_spread_apart():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.set_xlim(0, 2)
    ax.set_ylim(0, 2)
    texts = [ax.text(1.0 + 0.01 * k, 1.0, f"object #{k}", fontsize=7, ha="center", va="bottom") for k in range(4)]

    def overlaps():
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        boxes = [t.get_window_extent(r) for t in texts]
        return sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])

    assert overlaps() > 0
    _spread_labels([(ax, texts)])
    assert overlaps() == 0
    plt.close(fig)
