"""Gravity of posed RGB-D frames: the world's up direction from the cameras and the dominant horizontal plane, and
the rigid transform that makes such a world z-up with the floor at height 0 (the map frame the scene graph and
the predicates assume, ROS REP 103)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from ..frame import RGBDFrame
from .camera import backproject, transform_points


@dataclass
class GravityEstimate:
    up: np.ndarray  # (3,) unit up direction in the frames' world
    floor_height_m: float | None  # height of the floor along ``up`` (None: no large plane below the cameras)
    plane_support: int  # points on the plane that fixed ``up`` (0: up from the cameras alone)
    T_zup_world: np.ndarray  # (4, 4) rigid: world -> z-up world with the floor (when found) at z = 0

    def apply(self, T_world_cam: np.ndarray) -> np.ndarray:
        """A camera pose in the z-up world."""
        return self.T_zup_world @ np.asarray(T_world_cam, dtype=np.float64)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking unit vector a onto unit vector b (the shortest arc)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if c < -1.0 + 1e-9:  # opposite: half a turn about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def estimate_gravity(frames: list[RGBDFrame], max_tilt_deg: float = 25.0, stride: int = 8, voxel_m: float = 0.05,
                     max_planes: int = 6, min_floor_extent_m: float = 1.0, seed: int = 0) -> GravityEstimate:
    """Up direction of posed frames: first the mean of the cameras' image-up axes (-y of the optical frame: people
    and robots hold RGB-D cameras roughly upright), then refined to the normal of the horizontal plane with the
    most support among the largest planes of the frames' points (floor or table tops) within ``max_tilt_deg``
    of it. The floor is the lowest such plane at least ``min_floor_extent_m`` across, below every camera.
    Raises ValueError without a posed frame."""
    posed = [f for f in frames if f.T_world_cam is not None]
    if not posed:
        raise ValueError("gravity needs frames with poses")
    up0 = -np.mean([np.asarray(f.T_world_cam)[:3, 1] for f in posed], axis=0)
    up0 /= np.linalg.norm(up0)
    pts = []
    for f in posed:
        d = np.where(np.isfinite(f.depth_m) & (f.depth_m > 0.1) & (f.depth_m < 6.0), f.depth_m, 0.0)
        cam = backproject(d, f.intrinsics)[::stride, ::stride].reshape(-1, 3)
        pts.append(transform_points(f.T_world_cam, cam[cam[:, 2] > 0]))
    P = np.concatenate(pts)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(P)).voxel_down_sample(voxel_m)
    o3d.utility.random.seed(seed)
    cos_tol = np.cos(np.radians(max_tilt_deg))
    horizontal = []  # (support, normal oriented up, height along it, extent)
    rest = pcd
    for _ in range(max_planes):
        if len(rest.points) < 100:
            break
        model, inl = rest.segment_plane(0.03, 3, 200)
        if len(inl) < 50:
            break
        n = np.asarray(model[:3], dtype=np.float64)
        norm = np.linalg.norm(n)
        n, d = n / norm, model[3] / norm
        if abs(n @ up0) >= cos_tol:
            if n @ up0 < 0:
                n, d = -n, -d
            q = np.asarray(rest.points)[inl]
            flat = q - np.outer(q @ n, n)
            extent = float(np.max(np.ptp(flat, axis=0)))
            horizontal.append((len(inl), n, -d, extent))
        rest = rest.select_by_index(inl, invert=True)
    up, support = up0, 0
    if horizontal:
        best = max(horizontal, key=lambda h: h[0])
        up, support = best[1], best[0]
    cams = np.array([np.asarray(f.T_world_cam)[:3, 3] @ up for f in posed])
    floors = [h for h in horizontal if h[3] >= min_floor_extent_m and abs(h[1] @ up) >= np.cos(np.radians(5.0))
              and h[2] < cams.min() - 0.3]
    floor = min((h[2] for h in floors), default=None)
    T = np.eye(4)
    T[:3, :3] = rotation_between(up, np.array([0.0, 0.0, 1.0]))
    if floor is not None:
        T[2, 3] = -floor
    return GravityEstimate(up, floor, support, T)
