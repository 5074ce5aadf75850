"""Pictures of a fused map: the coloured cloud from above and from the side, with object boxes and labels (PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .scene_graph import SceneGraph


def render_map_png(points: np.ndarray, colors: np.ndarray | None, graph: SceneGraph, path: str | Path,
                   title: str = "", max_points: int = 60000, highlight_ids: tuple[int, ...] = ()) -> Path:
    """Write a two-panel PNG: top view (x-y) and side view (x-z) of ``points`` (N, 3) with ``colors`` (N, 3) in
    [0, 1], each object's box outline and ``label #id`` (structure only when highlighted); ``highlight_ids`` are
    drawn thicker in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    cols = None if colors is None else np.clip(np.asarray(colors, dtype=np.float64).reshape(-1, 3), 0, 1)
    if len(pts) > max_points:  # a fixed stride keeps the picture deterministic
        step = int(np.ceil(len(pts) / max_points))
        pts = pts[::step]
        cols = None if cols is None else cols[::step]
    fig, axes = plt.subplots(1, 2, figsize=(14, 6.5), gridspec_kw={"width_ratios": [1.0, 1.0]})
    labels = []  # per panel: (axes, its label texts)
    for ax, (i, j), name in ((axes[0], (0, 1), "top view (x, y)"), (axes[1], (0, 2), "side view (x, z)")):
        texts = []
        if len(pts):
            order = np.argsort(pts[:, 3 - i - j])  # draw far-to-near along the hidden axis
            ax.scatter(pts[order, i], pts[order, j], s=2.5, c=None if cols is None else cols[order],
                       linewidths=0, rasterized=True)
        for o in graph.objects:
            corners = o.box.corners()
            hot = o.id in highlight_ids
            if o.kind == "structure" and not hot:
                continue  # floor, walls, ceiling: the cloud shows them; boxes and labels would hide the objects
            if (i, j) == (0, 1):
                ring = corners[[0, 2, 6, 4, 0]][:, [0, 1]]  # bottom face, in order around the footprint
            else:
                lo, hi = corners.min(axis=0), corners.max(axis=0)
                ring = np.array([[lo[0], lo[2]], [hi[0], lo[2]], [hi[0], hi[2]], [lo[0], hi[2]], [lo[0], lo[2]]])
            ax.plot(ring[:, 0], ring[:, 1], color="red" if hot else "black", lw=2.2 if hot else 0.8)
            texts.append(ax.text(ring[:, 0].mean(), ring[:, 1].max(), f"{o.label} #{o.id}", fontsize=7, ha="center",
                                 va="bottom", color="red" if hot else "black",
                                 bbox={"facecolor": "white", "alpha": 0.6, "pad": 0.5, "edgecolor": "none"}))
        labels.append((ax, texts))
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)" if j == 1 else "z (m)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"{len(graph.objects)} objects, {len(points)} points")
    fig.tight_layout()
    _spread_labels(labels)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _spread_labels(labels) -> None:
    """Move overlapping labels apart, each tied to its box by a thin line (adjustText; without it the labels stay at
    their boxes' tops, where objects close together print over each other)."""
    try:
        from adjustText import adjust_text
    except ImportError:
        return
    for ax, texts in labels:
        if len(texts) > 1:
            adjust_text(texts, ax=ax, expand=(1.05, 1.2), arrowprops={"arrowstyle": "-", "color": "0.35", "lw": 0.5})
