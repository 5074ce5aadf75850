"""The project's one definition of the spatial predicates between objects (ground truth, scene graph, queries).

All predicates are computed from gravity-aligned boxes in a z-up world frame, vectorised over every ordered
pair ``(subject a, object b)``; ``conf[p][a, b]`` is the confidence in [0, 1] that "a <p> b" holds, and the
predicate *holds* when the confidence is at least 0.5. Each confidence is a logistic of a signed margin
(metres or a fraction), so the 0.5 boundary is exactly the documented rule below:

- ``left_of`` / ``right_of`` (view-dependent): a's centre lies at least ``lr_margin_m`` left / right of b's
  centre along the viewer's horizontal right axis (``right = forward_h x up``).
- ``in_front_of`` / ``behind`` (view-dependent): a's centre is at least ``fb_margin_m`` closer to / farther
  from the viewer than b's centre along the viewer's horizontal forward axis.
- ``above`` / ``below``: a's bottom is no lower than b's top minus ``contact_m`` (above), or a's top no higher
  than b's bottom plus ``contact_m`` (below), and their horizontal footprints overlap by at least
  ``overlap_frac`` of the smaller footprint.
- ``on``: support contact: |a's bottom - b's top| <= ``contact_m`` and a's footprint centre lies inside b's
  footprint. ``under`` is its converse: "a under b" iff "b on a" (a table under a mug). A box on the floor
  beneath a table is ``below`` the table, not ``under`` it in this contact sense.
- ``near``: the gap between the two axis-aligned boxes is at most ``near_m``.
- ``inside``: at least ``inside_frac`` of a's box volume lies within b's box and a is smaller than b.
- ``between`` (ternary, ``between_confidences``): seen from above, the segment joining b's and c's centres passes
  within ``max(between_m, between_frac x its length)`` of a's footprint, and a's centre projects onto it beyond
  both anchors' footprints (a thing on or beside an anchor is not between it and another).

View-dependent predicates need a ``Viewpoint`` (position and viewing direction, world frame); without one
they are omitted. No predicate relates an object to itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene_graph import Box3D, SpatialRelation

VIEW_DEPENDENT = ("left_of", "right_of", "in_front_of", "behind")
VIEW_INDEPENDENT = ("above", "below", "on", "under", "near", "inside")
PREDICATES = VIEW_DEPENDENT + VIEW_INDEPENDENT
CONVERSE = {"left_of": "right_of", "right_of": "left_of", "in_front_of": "behind", "behind": "in_front_of",
            "above": "below", "below": "above", "on": "under", "under": "on", "near": "near"}
UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class PredicateConfig:
    lr_margin_m: float = 0.05  # minimal left/right offset of centres
    fb_margin_m: float = 0.05  # minimal front/behind offset of centres
    contact_m: float = 0.04  # vertical tolerance for support contact and stacking
    overlap_frac: float = 0.1  # minimal footprint overlap (fraction of the smaller footprint) for above/below
    near_m: float = 0.4  # maximal box-to-box gap for "near"
    inside_frac: float = 0.8  # fraction of a's volume inside b for "inside"
    between_m: float = 0.25  # "between": maximal gap from the footprint to the segment joining the anchors ...
    between_frac: float = 0.25  # ... or this fraction of the segment's length when larger (far-apart anchors)
    softness_m: float = 0.02  # logistic width for metric margins (confidence 0.73 at one softness past the rule)
    softness_frac: float = 0.05  # logistic width for fractional margins


@dataclass(frozen=True)
class Viewpoint:
    """Viewer position (3,) and viewing direction (3,) in the world frame, e.g. a camera centre and its optical axis."""

    position: np.ndarray
    forward: np.ndarray
    frame_id: str = "camera"

    @classmethod
    def from_pose(cls, T_world_cam: np.ndarray, frame_id: str = "camera") -> "Viewpoint":
        """Viewpoint of an optical-frame camera (z forward) with pose ``T_world_cam``."""
        T = np.asarray(T_world_cam, dtype=np.float64)
        return cls(T[:3, 3].copy(), T[:3, 2].copy(), frame_id)

    def pose(self) -> np.ndarray:
        """(4, 4) pose of an optical-frame camera (z forward, x right, y down) at this viewpoint, level (no roll);
        the inverse of ``from_pose`` up to roll. Raises ValueError when looking straight up or down."""
        z = np.asarray(self.forward, dtype=np.float64)
        z = z / max(np.linalg.norm(z), 1e-12)
        x = np.cross(z, UP)
        if np.linalg.norm(x) < 1e-6:
            raise ValueError("viewpoint looks straight up or down: its camera pose is undefined")
        x /= np.linalg.norm(x)
        T = np.eye(4)
        T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, np.cross(z, x), z, self.position
        return T

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Horizontal unit (forward, right) axes; raises ValueError when looking straight up or down."""
        f = np.asarray(self.forward, dtype=np.float64).copy()
        f[2] = 0.0
        n = np.linalg.norm(f)
        if n < 1e-6:
            raise ValueError("viewpoint looks straight up or down: left/right are undefined")
        f /= n
        return f, np.cross(f, UP)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def box_extents(boxes: list[Box3D]) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 3) and world axis-aligned half extents (N, 3) of gravity-aligned boxes (|R(yaw)| @ size / 2,
    vectorised: the query service evaluates it over hundreds of boxes per query)."""
    centers = np.array([b.center for b in boxes], dtype=np.float64).reshape(-1, 3)
    h = np.array([b.size for b in boxes], dtype=np.float64).reshape(-1, 3) / 2.0
    yaw = np.array([b.yaw for b in boxes], dtype=np.float64)
    c, s = np.abs(np.cos(yaw)), np.abs(np.sin(yaw))
    half = np.stack([c * h[:, 0] + s * h[:, 1], s * h[:, 0] + c * h[:, 1], h[:, 2]], axis=1)
    return centers, half


def pairwise_confidences(boxes: list[Box3D], viewpoint: Viewpoint | None = None,
                         cfg: PredicateConfig = PredicateConfig(), predicates: tuple[str, ...] | None = None,
                         rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Confidence matrices ``{predicate: (R, C)}`` with ``[i, j]`` = conf("boxes[rows[i]] pred boxes[cols[j]]").

    ``rows`` / ``cols`` (index arrays, default all boxes) restrict the work to a block of pairs, and
    ``predicates`` (default all; view-dependent ones only with a viewpoint) to the ones needed. A box is never
    related to itself (those entries are 0).
    """
    n = len(boxes)
    ri = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    ci = np.arange(n) if cols is None else np.asarray(cols, dtype=np.int64).reshape(-1)
    wanted = set(PREDICATES if predicates is None else predicates)
    unknown = wanted - set(PREDICATES)
    if unknown:
        raise ValueError(f"unknown predicates {sorted(unknown)}; known: {', '.join(PREDICATES)}")
    if viewpoint is None:
        wanted -= set(VIEW_DEPENDENT)
    ca, ha = box_extents([boxes[i] for i in ri])  # subjects (R, 3)
    cb, hb = (ca, ha) if rows is None and cols is None else box_extents([boxes[i] for i in ci])  # objects (C, 3)
    loa, hia, lob, hib = ca - ha, ca + ha, cb - hb, cb + hb
    sm, sf = cfg.softness_m, cfg.softness_frac
    out: dict[str, np.ndarray] = {}

    if wanted & set(VIEW_DEPENDENT):
        f, r = viewpoint.axes()
        # d[a, b] = (c_b - c_a) . axis: positive when a is left of / in front of b.
        dr = (cb @ r)[None, :] - (ca @ r)[:, None]
        df = (cb @ f)[None, :] - (ca @ f)[:, None]
        out["left_of"] = _sigmoid((dr - cfg.lr_margin_m) / sm)
        out["right_of"] = _sigmoid((-dr - cfg.lr_margin_m) / sm)
        out["in_front_of"] = _sigmoid((df - cfg.fb_margin_m) / sm)
        out["behind"] = _sigmoid((-df - cfg.fb_margin_m) / sm)

    if wanted & {"above", "below"}:
        # Horizontal footprint overlap as a fraction of the smaller footprint.
        ov = np.ones((len(ri), len(ci)))
        for k in (0, 1):
            ov = ov * np.clip(np.minimum(hia[:, None, k], hib[None, :, k])
                              - np.maximum(loa[:, None, k], lob[None, :, k]), 0.0, None)
        area_a, area_b = 4 * ha[:, 0] * ha[:, 1], 4 * hb[:, 0] * hb[:, 1]
        s_overlap = _sigmoid((ov / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-12)
                              - cfg.overlap_frac) / sf)
        # above: a's bottom not lower than b's top; below: a's top not higher than b's bottom (contact tolerance)
        out["above"] = np.minimum(_sigmoid((loa[:, None, 2] - hib[None, :, 2] + cfg.contact_m) / sm), s_overlap)
        out["below"] = np.minimum(_sigmoid((lob[None, :, 2] - hia[:, None, 2] + cfg.contact_m) / sm), s_overlap)

    def supported(c_top, h_top, lo_top, c_sup, h_sup, hi_sup):  # (T, S): conf "top on sup"
        gap = np.abs(lo_top[:, None, 2] - hi_sup[None, :, 2])
        # signed distance of the top box's footprint centre inside the support's footprint (positive inside)
        inside_xy = np.min(h_sup[None, :, :2] - np.abs(c_top[:, None, :2] - c_sup[None, :, :2]), axis=2)
        return np.minimum(_sigmoid((cfg.contact_m - gap) / sm), _sigmoid(inside_xy / sm))

    if "on" in wanted:
        out["on"] = supported(ca, ha, loa, cb, hb, hib)
    if "under" in wanted:
        out["under"] = supported(cb, hb, lob, ca, ha, hia).T

    if "near" in wanted:
        sep = np.clip(np.maximum(loa[:, None, :] - hib[None, :, :], lob[None, :, :] - hia[:, None, :]), 0.0, None)
        out["near"] = _sigmoid((cfg.near_m - np.linalg.norm(sep, axis=2)) / sm)

    if "inside" in wanted:
        inter3 = np.ones((len(ri), len(ci)))
        for k in range(3):
            inter3 = inter3 * np.clip(np.minimum(hia[:, None, k], hib[None, :, k])
                                      - np.maximum(loa[:, None, k], lob[None, :, k]), 0.0, None)
        vol_a, vol_b = np.prod(2 * ha, axis=1), np.prod(2 * hb, axis=1)
        frac = inter3 / np.maximum(vol_a[:, None], 1e-12)
        smaller = _sigmoid((vol_b[None, :] - vol_a[:, None]) / np.maximum(vol_b[None, :], 1e-12) / sf)
        out["inside"] = np.minimum(_sigmoid((frac - cfg.inside_frac) / sf), smaller)

    same = ri[:, None] == ci[None, :]
    for k in list(out):
        if k not in wanted:
            del out[k]
        else:
            out[k][same] = 0.0
    return out


def predicate_confidence(predicate: str, a: Box3D, b: Box3D, viewpoint: Viewpoint | None = None,
                         cfg: PredicateConfig = PredicateConfig()) -> float:
    """Confidence that "a <predicate> b" holds (the same computation as ``pairwise_confidences``)."""
    if predicate not in PREDICATES:
        raise ValueError(f"unknown predicate {predicate!r}; known: {', '.join(PREDICATES)}")
    if predicate in VIEW_DEPENDENT and viewpoint is None:
        raise ValueError(f"{predicate} is view-dependent: pass a Viewpoint")
    return float(pairwise_confidences([a, b], viewpoint, cfg, (predicate,))[predicate][0, 1])


def holds(predicate: str, a: Box3D, b: Box3D, viewpoint: Viewpoint | None = None,
          cfg: PredicateConfig = PredicateConfig()) -> bool:
    return predicate_confidence(predicate, a, b, viewpoint, cfg) >= 0.5


def compute_relations(ids: list[int], boxes: list[Box3D], viewpoint: Viewpoint | None = None,
                      cfg: PredicateConfig = PredicateConfig(), min_confidence: float = 0.5,
                      predicates: tuple[str, ...] = PREDICATES) -> list[SpatialRelation]:
    """Every relation "ids[a] <p> ids[b]" whose confidence is at least ``min_confidence``."""
    if len(ids) != len(boxes):
        raise ValueError(f"{len(ids)} ids but {len(boxes)} boxes")
    conf = pairwise_confidences(boxes, viewpoint, cfg)
    rels: list[SpatialRelation] = []
    for p in predicates:
        if p not in conf:
            continue
        ref = viewpoint.frame_id if (p in VIEW_DEPENDENT and viewpoint is not None) else ""
        for a, b in zip(*np.nonzero(conf[p] >= min_confidence)):
            rels.append(SpatialRelation(int(ids[a]), p, int(ids[b]), float(conf[p][a, b]), ref))
    return rels


def between_confidences(boxes: list[Box3D], b: int, c: int, cfg: PredicateConfig = PredicateConfig()) -> np.ndarray:
    """(N,) confidence that each box lies between boxes ``b`` and ``c`` (the rule in the module docstring); the
    anchors themselves get 0. The confidence falls from 1 (the segment crosses the footprint) to 0.5 at the
    tolerance, so a box on the line ranks before one beside it."""
    centers, half = box_extents(boxes)
    p, q = centers[b, :2], centers[c, :2]
    seg = q - p
    length = float(np.linalg.norm(seg))
    out = np.zeros(len(boxes))
    if length < 1e-9:
        return out
    u = seg / length
    lo, hi = centers[:, :2] - half[:, :2], centers[:, :2] + half[:, :2]
    # gap between the segment and each footprint: 0 when it crosses it (Liang-Barsky clipping), else the least
    # of the ends' distances to the rectangle and the rectangle's corners' distances to the segment
    t0, t1 = np.zeros(len(boxes)), np.ones(len(boxes))
    for k in (0, 1):
        if abs(seg[k]) < 1e-12:
            outside = (p[k] < lo[:, k]) | (p[k] > hi[:, k])
            t0[outside], t1[outside] = 1.0, 0.0
            continue
        ta, tb = (lo[:, k] - p[k]) / seg[k], (hi[:, k] - p[k]) / seg[k]
        t0, t1 = np.maximum(t0, np.minimum(ta, tb)), np.minimum(t1, np.maximum(ta, tb))
    crosses = t0 <= t1
    ends = [np.linalg.norm(np.maximum(np.maximum(lo - e, e - hi), 0.0), axis=1) for e in (p, q)]
    corners = np.stack([np.stack([lo[:, 0], lo[:, 1]], 1), np.stack([lo[:, 0], hi[:, 1]], 1),
                        np.stack([hi[:, 0], lo[:, 1]], 1), np.stack([hi[:, 0], hi[:, 1]], 1)], 1)  # (N, 4, 2)
    t = np.clip((corners - p) @ u, 0.0, length)
    to_seg = np.linalg.norm(corners - (p + t[..., None] * u), axis=2).min(axis=1)
    gap = np.where(crosses, 0.0, np.minimum(np.minimum(*ends), to_seg))
    tol = max(cfg.between_m, cfg.between_frac * length)
    along = (centers[:, :2] - p) @ u
    reach = np.abs(u) @ half[[b, c], :2].T  # each anchor's footprint extent along the segment, (2,)
    conf = np.minimum(_sigmoid((tol - gap) / (0.25 * tol)),
                      np.minimum(_sigmoid((along - reach[0]) / cfg.softness_m),
                                 _sigmoid((length - along - reach[1]) / cfg.softness_m)))
    conf[[b, c]] = 0.0
    return conf
