"""Scene-graph records (objects with gravity-aligned boxes, relations, the graph) shared by every layer.

The world frame is z-up (ROS REP 103) in metres. Boxes are gravity-aligned: a centre, a size along the box's
own axes and a yaw about +z. These plain dataclasses are what the object map produces, the synthetic ground
truth stores, the model consumes and g2vlm_ros.conversions turns into messages.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.spatial import ConvexHull, QhullError


@dataclass
class Box3D:
    """Gravity-aligned 3D box: centre (3,) m, size (3,) m along the box's x/y/z axes, yaw (rad) about +z."""

    center: np.ndarray
    size: np.ndarray
    yaw: float = 0.0

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3)
        self.size = np.asarray(self.size, dtype=np.float64).reshape(3)
        self.yaw = float(self.yaw)

    @classmethod
    def from_points(cls, points: np.ndarray) -> "Box3D":
        """Axis-aligned (yaw 0) box around points (N, 3)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        lo, hi = p.min(axis=0), p.max(axis=0)
        return cls((lo + hi) / 2.0, hi - lo, 0.0)

    @property
    def rotation(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def corners(self) -> np.ndarray:
        """(8, 3) corners in the world frame."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        return self.center + (signs * self.size / 2.0) @ self.rotation.T

    def aabb(self) -> tuple[np.ndarray, np.ndarray]:
        """World axis-aligned bounds (min (3,), max (3,)) enclosing the box."""
        c = self.corners()
        return c.min(axis=0), c.max(axis=0)

    @property
    def volume(self) -> float:
        return float(np.prod(np.maximum(self.size, 0.0)))

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Boolean (N,) mask of points (N, 3) inside the box grown by ``margin`` metres."""
        local = (np.asarray(points, dtype=np.float64).reshape(-1, 3) - self.center) @ self.rotation
        return np.all(np.abs(local) <= self.size / 2.0 + margin, axis=1)

    def grown(self, faces: np.ndarray, min_size: float = 0.01) -> "Box3D":
        """This box with its faces moved ``faces`` (6,) metres outward (order -x, -y, -z, +x, +y, +z in the box's
        own axes; negative = inward), same yaw; sizes at least ``min_size``."""
        f = np.asarray(faces, dtype=np.float64).reshape(6)
        lo, hi = -self.size / 2 - f[:3], self.size / 2 + f[3:]
        return Box3D(self.center + self.rotation @ ((lo + hi) / 2), np.maximum(hi - lo, min_size), self.yaw)

    def to_dict(self) -> dict:
        return {"center": self.center.tolist(), "size": self.size.tolist(), "yaw": self.yaw}

    @classmethod
    def from_dict(cls, d: dict) -> "Box3D":
        return cls(d["center"], d["size"], d.get("yaw", 0.0))


def gravity_box(points: np.ndarray, yaw_about_z: bool = True, axis_aligned_tolerance: float = 0.0) -> Box3D:
    """Box around points (N, 3): z extent from the points, yaw from the minimal-area rectangle of the xy
    footprint (rotating calipers over the convex hull edges), yaw normalised to [-pi/4, pi/4).
    ``axis_aligned_tolerance``: the axis-aligned box (yaw 0) is kept when its footprint is at most this fraction
    larger than the minimal one (partial, noisy views of furniture standing square to the room otherwise get
    boxes turned by tens of degrees).

    Written by hand: neither scipy nor Open3D has a 2D minimal-area rectangle (Open3D's oriented box is 3D and
    not gravity-aligned). With ``yaw_about_z`` False, or a degenerate footprint, the box is axis-aligned.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if not yaw_about_z or len(p) < 3:
        return Box3D.from_points(p)
    xy = p[:, :2]
    try:
        hull = xy[ConvexHull(xy).vertices]  # (H, 2), counter-clockwise
    except (QhullError, ValueError):
        return Box3D.from_points(p)  # collinear or coincident footprint
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2.0))  # (E,) in [0, pi/2)
    c, s = np.cos(angles), np.sin(angles)
    # Hull points in each candidate frame (rotated by -angle): (E, H)
    u = hull[None, :, 0] * c[:, None] + hull[None, :, 1] * s[:, None]
    v = -hull[None, :, 0] * s[:, None] + hull[None, :, 1] * c[:, None]
    area = (u.max(1) - u.min(1)) * (v.max(1) - v.min(1))
    best = int(np.argmin(area))
    if axis_aligned_tolerance > 0:
        aa = float(np.prod(xy.max(axis=0) - xy.min(axis=0)))
        if aa <= (1.0 + axis_aligned_tolerance) * area[best]:
            return Box3D.from_points(p)
    yaw = float(angles[best])
    umin, umax, vmin, vmax = u[best].min(), u[best].max(), v[best].min(), v[best].max()
    su, sv = umax - umin, vmax - vmin
    cu, cv = (umin + umax) / 2.0, (vmin + vmax) / 2.0
    if yaw >= np.pi / 4.0:
        # Same rectangle described with its axes swapped, so that yaw stays in [-pi/4, pi/4).
        yaw -= np.pi / 2.0
        su, sv = sv, su
    centre_xy = np.array([np.cos(angles[best]) * cu - np.sin(angles[best]) * cv,
                          np.sin(angles[best]) * cu + np.cos(angles[best]) * cv])
    zmin, zmax = p[:, 2].min(), p[:, 2].max()
    return Box3D(np.array([centre_xy[0], centre_xy[1], (zmin + zmax) / 2.0]), np.array([su, sv, zmax - zmin]), yaw)


def visible_box(points: np.ndarray, trim: float = 0.02) -> Box3D:
    """gravity_box of the points left after dropping those outside the ``trim`` .. 1 - ``trim`` quantiles of any
    world axis (flying pixels at depth edges); the box of what a view shows of an object, which the model's amodal
    box head completes. At least 3 points (N, 3)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(p) >= 10 and trim > 0:
        lo, hi = np.quantile(p, trim, axis=0), np.quantile(p, 1.0 - trim, axis=0)
        keep = np.all((p >= lo) & (p <= hi), axis=1)
        if keep.sum() >= 3:
            p = p[keep]
    return gravity_box(p)


@dataclass
class SceneObject:
    """One object of the map, with a stable id across updates."""

    id: int
    label: str
    box: Box3D
    label_confidence: float = 1.0
    label_candidates: list[tuple[str, float]] = field(default_factory=list)  # (label, score), best first
    attributes: dict[str, str] = field(default_factory=dict)  # e.g. {"color": "red", "size": "small"}
    centroid: np.ndarray | None = None  # (3,) mean of the object's points, world frame
    mean_color: np.ndarray | None = None  # (3,) RGB in [0, 1]
    point_count: int = 0
    observation_count: int = 0
    first_seen_s: float = 0.0
    last_seen_s: float = 0.0
    embedding: np.ndarray | None = None  # language-aligned feature (D,), optional
    kind: str = "object"  # "object", or "structure" (floor, wall, ceiling, counter: anchors, never query answers)

    def to_dict(self) -> dict:
        d = {
            "id": int(self.id), "kind": self.kind, "label": self.label, "label_confidence": float(self.label_confidence),
            "label_candidates": [[str(lab), float(s)] for lab, s in self.label_candidates],
            "attributes": dict(self.attributes), "box": self.box.to_dict(),
            "point_count": int(self.point_count), "observation_count": int(self.observation_count),
            "first_seen_s": float(self.first_seen_s), "last_seen_s": float(self.last_seen_s),
        }
        for name in ("centroid", "mean_color", "embedding"):
            v = getattr(self, name)
            d[name] = None if v is None else np.asarray(v, dtype=np.float64).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SceneObject":
        arr = {k: (None if d.get(k) is None else np.asarray(d[k], dtype=np.float64))
               for k in ("centroid", "mean_color", "embedding")}
        return cls(id=int(d["id"]), label=d["label"], box=Box3D.from_dict(d["box"]), kind=str(d.get("kind", "object")),
                   label_confidence=float(d.get("label_confidence", 1.0)),
                   label_candidates=[(str(a), float(b)) for a, b in d.get("label_candidates", [])],
                   attributes=dict(d.get("attributes", {})), point_count=int(d.get("point_count", 0)),
                   observation_count=int(d.get("observation_count", 0)),
                   first_seen_s=float(d.get("first_seen_s", 0.0)), last_seen_s=float(d.get("last_seen_s", 0.0)),
                   **arr)


@dataclass
class SpatialRelation:
    """``subject <predicate> object`` with a confidence in [0, 1]; view-dependent ones name their reference frame."""

    subject_id: int
    predicate: str
    object_id: int
    confidence: float = 1.0
    reference_frame: str = ""  # frame whose viewpoint defines left/right/front/behind; "" if view-independent

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SpatialRelation":
        return cls(**d)


@dataclass
class SceneGraph:
    """A snapshot of the map: objects, relations, and ids deleted since the previous snapshot."""

    objects: list[SceneObject] = field(default_factory=list)
    relations: list[SpatialRelation] = field(default_factory=list)
    frame_id: str = "map"
    stamp_s: float = 0.0
    sequence: int = 0
    deleted_ids: list[int] = field(default_factory=list)

    def object_by_id(self, object_id: int) -> SceneObject | None:
        for o in self.objects:
            if o.id == object_id:
                return o
        return None

    def to_dict(self) -> dict:
        return {"frame_id": self.frame_id, "stamp_s": float(self.stamp_s), "sequence": int(self.sequence),
                "deleted_ids": [int(i) for i in self.deleted_ids],
                "objects": [o.to_dict() for o in self.objects],
                "relations": [r.to_dict() for r in self.relations]}

    @classmethod
    def from_dict(cls, d: dict) -> "SceneGraph":
        return cls(objects=[SceneObject.from_dict(o) for o in d.get("objects", [])],
                   relations=[SpatialRelation.from_dict(r) for r in d.get("relations", [])],
                   frame_id=d.get("frame_id", "map"), stamp_s=float(d.get("stamp_s", 0.0)),
                   sequence=int(d.get("sequence", 0)), deleted_ids=[int(i) for i in d.get("deleted_ids", [])])
