"""Test helper: render exact RGB-D frames of boxes on a floor with Open3D's RaycastingScene, and box IoU by sampling."""
from __future__ import annotations

import numpy as np
import open3d as o3d

from g2vlm_core.geometry.camera import CameraIntrinsics
from g2vlm_core.frame import RGBDFrame
from g2vlm_core.scene_graph import Box3D

INTR = CameraIntrinsics(640, 480, 525.0, 525.0, 319.5, 239.5)
FLOOR_COLOR = (0.55, 0.55, 0.55)


def box_mesh(box: Box3D) -> o3d.t.geometry.TriangleMesh:
    m = o3d.geometry.TriangleMesh.create_box(*box.size)
    m.translate(-np.asarray(box.size) / 2.0)
    m.rotate(box.rotation, center=np.zeros(3))
    m.translate(box.center)
    return o3d.t.geometry.TriangleMesh.from_legacy(m)


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """T_world_cam of an optical-frame camera (z forward, y down) at ``eye`` looking at ``target``, z-up world."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T


def orbit_poses(n: int, radius: float = 1.8, height: float = 1.3, target=(0.0, 0.0, 0.15),
                start_deg: float = -60.0, span_deg: float = 120.0) -> list[np.ndarray]:
    angles = np.radians(start_deg + span_deg * np.arange(n) / max(n - 1, 1))
    return [look_at([radius * np.cos(a), radius * np.sin(a), height], target) for a in angles]


def render(boxes: list[Box3D], colors: list[tuple], T_world_cam: np.ndarray, floor: bool = True,
           intr: CameraIntrinsics = INTR, noise_m: float = 0.0, seed: int = 0, stamp_s: float = 0.0,
           index: int = 0) -> RGBDFrame:
    """Exact depth (metres along the optical axis) and flat colours of boxes (and a 6x6 m floor at z=0).

    extras["instance_ids"] holds 1 + the box index per pixel (0 = floor or nothing).
    """
    scene = o3d.t.geometry.RaycastingScene()
    geom_ids = [scene.add_triangles(box_mesh(b)) for b in boxes]
    floor_id = scene.add_triangles(box_mesh(Box3D([0.0, 0.0, -0.05], [6.0, 6.0, 0.1]))) if floor else -1
    u, v = np.meshgrid(np.arange(intr.width), np.arange(intr.height))
    dirs_cam = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u, float)], -1)
    dirs = dirs_cam @ T_world_cam[:3, :3].T  # unnormalised: t_hit is then the optical-axis depth
    rays = np.concatenate([np.broadcast_to(T_world_cam[:3, 3], dirs.shape), dirs], -1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    depth = hit["t_hit"].numpy().astype(np.float32)
    gid = hit["geometry_ids"].numpy().astype(np.int64)
    depth[~np.isfinite(depth)] = 0.0
    if noise_m > 0:
        depth += np.random.default_rng(seed).normal(0.0, noise_m, depth.shape).astype(np.float32) * (depth > 0)
    rgb = np.zeros((intr.height, intr.width, 3), np.uint8)
    inst = np.zeros((intr.height, intr.width), np.int32)
    for k, (g, c) in enumerate(zip(geom_ids, colors)):
        rgb[gid == g] = np.round(np.asarray(c) * 255).astype(np.uint8)
        inst[gid == g] = k + 1
    if floor:
        rgb[gid == floor_id] = np.round(np.asarray(FLOOR_COLOR) * 255).astype(np.uint8)
    return RGBDFrame(rgb, depth, intr, T_world_cam, stamp_s, index, {"instance_ids": inst})


def box_iou(a: Box3D, b: Box3D, n: int = 60) -> float:
    """3D IoU of two yawed boxes by counting grid samples (independent of the code under test)."""
    lo = np.minimum(a.aabb()[0], b.aabb()[0])
    hi = np.maximum(a.aabb()[1], b.aabb()[1])
    axes = [np.linspace(lo[k], hi[k], n) for k in range(3)]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    ia, ib = a.contains(g), b.contains(g)
    union = np.count_nonzero(ia | ib)
    return np.count_nonzero(ia & ib) / union if union else 0.0


TWO_BOXES = [Box3D([0.0, -0.25, 0.1], [0.2, 0.2, 0.2]), Box3D([0.0, 0.3, 0.15], [0.25, 0.2, 0.3])]
TWO_COLORS = [(0.8, 0.1, 0.1), (0.1, 0.7, 0.2)]


def two_box_orbit(n: int = 6) -> list[RGBDFrame]:
    """Half-size (320x240) frames of a red and a green box on the floor along an orbit, stamped 0.1 s apart."""
    out = []
    for i, T in enumerate(orbit_poses(n)):
        f = render(TWO_BOXES, TWO_COLORS, T, stamp_s=0.1 * i, index=i)
        out.append(RGBDFrame(f.rgb[::2, ::2].copy(), f.depth_m[::2, ::2].copy(), f.intrinsics.scaled(0.5),
                             f.T_world_cam, f.stamp_s, i))
    return out
