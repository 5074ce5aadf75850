"""Gravity of posed RGB-D frames: the world's up direction from the cameras and the dominant horizontal plane, and
the rigid transform that makes such a world z-up with the floor at height 0 (the map frame the scene graph and
the predicates assume, ROS REP 103); the node's up_axis rotation and its online check of the poses."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import open3d as o3d

from ..frame import RGBDFrame
from .camera import backproject, transform_points

log = logging.getLogger(__name__)


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


# ------------------------------------------------------------------------------------- the map's up axis, online
UP_AXES = {"+x": (1.0, 0.0, 0.0), "-x": (-1.0, 0.0, 0.0), "+y": (0.0, 1.0, 0.0), "-y": (0.0, -1.0, 0.0),
           "+z": (0.0, 0.0, 1.0), "-z": (0.0, 0.0, -1.0)}


def zup_rotation(up_axis: str) -> np.ndarray:
    """(4, 4) rotation R taking a map whose up is ``up_axis`` to a z-up one (R @ up = +z): a quarter or half turn
    about x or y, so the other axes keep their names as far as possible (+y up: R = Rx(+90 deg), x stays x)."""
    if up_axis not in UP_AXES:
        raise ValueError(f"up_axis must be one of {sorted(UP_AXES)}, got {up_axis!r}")
    R = {"+z": np.eye(3),
         "-z": np.diag([1.0, -1.0, -1.0]),  # half turn about x
         "+y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),  # +90 deg about x: y -> z
         "-y": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),  # -90 deg about x: -y -> z
         "+x": np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),  # -90 deg about y: x -> z
         "-x": np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])}[up_axis]  # +90 deg about y
    T = np.eye(4)
    T[:3, :3] = R
    return T


def nearest_axis(v: np.ndarray) -> str:
    """The signed axis name ("+y", ...) closest to direction ``v`` (3,)."""
    i = int(np.argmax(np.abs(v)))
    return ("+" if v[i] >= 0 else "-") + "xyz"[i]


@dataclass
class GravityCheck:
    """Do the poses put the floor where the map's up axis says? Checked on the first keyframes, decided once.

    Keyframes (in the z-up map) are collected until ``keyframes`` of them are in; ``estimate_gravity`` then gives
    the up direction of the dominant horizontal plane the cameras see (floor or table tops). More than
    ``tolerance_deg`` between it and +z is a mismatch, warned once in the log and kept in ``state`` / ``message``,
    naming the axis of the input frame the floor points along (the likely ``up_axis``). With no horizontal plane
    in view the cameras alone are too weak a cue: the check stays "unknown" and tries the next keyframes.
    """

    to_input: np.ndarray = field(default_factory=lambda: np.eye(3))  # z-up map -> the frame the poses come in
    keyframes: int = 5
    tolerance_deg: float = 20.0
    max_tilt_deg: float = 50.0  # a camera looking down at a table is tilted ~35 deg; a wall ahead is then ~55 off
    frames: list[RGBDFrame] = field(default_factory=list)
    state: str = "unknown"  # unknown | ok | mismatch
    angle_deg: float = float("nan")
    message: str = "no horizontal plane seen yet"

    @property
    def decided(self) -> bool:
        return self.state != "unknown"

    def observe(self, frame: RGBDFrame, T_world_cam: np.ndarray) -> None:
        """Add one keyframe with its pose in the z-up map."""
        if self.decided:
            return
        self.frames.append(RGBDFrame(frame.rgb, frame.depth_m, frame.intrinsics, np.asarray(T_world_cam)))
        if len(self.frames) < self.keyframes:
            return
        est = estimate_gravity(self.frames, max_tilt_deg=self.max_tilt_deg)
        self.frames = []  # a later try starts from fresh keyframes
        if est.plane_support == 0:
            return
        self.angle_deg = float(np.degrees(np.arccos(np.clip(est.up[2], -1.0, 1.0))))
        if self.angle_deg <= self.tolerance_deg:
            self.state = "ok"
            self.message = f"the floor's normal is {self.angle_deg:.1f} deg from the map's up"
            return
        self.state = "mismatch"
        axis = nearest_axis(self.to_input @ est.up)
        self.message = (f"the poses do not match the map's up axis: the large horizontal plane the cameras see "
                        f"(floor or table) has its normal {self.angle_deg:.0f} deg from up, along {axis} of the "
                        f"input frame; set up_axis to {axis} if the poses are right, or fix the poses (scene-graph "
                        f"relations such as 'on' and 'above' assume gravity along -up)")
        log.warning("%s", self.message)
