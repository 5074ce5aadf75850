"""Dense geometry helpers: normals from depth, RGB-D frame -> point clouds, voxel downsampling, numpy <-> Open3D."""
from __future__ import annotations

import logging

import numpy as np
import open3d as o3d
import open3d.core as o3c

from .camera import (CameraIntrinsics, GeometryError, backproject, check_rigid, invert_transform, pixel_rays,
                     transform_points, valid_depth_mask)
from ..frame import RGBDFrame

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# devices and conversions
# ---------------------------------------------------------------------------------------------------------------

def resolve_device(device: str = "auto") -> o3c.Device:
    """"auto" -> CUDA:0 when Open3D was built with CUDA and a GPU is visible, else CPU:0; otherwise parse the name."""
    if device == "auto":
        return o3c.Device("CUDA:0" if o3c.cuda.is_available() else "CPU:0")
    dev = o3c.Device(device)
    if dev.get_type() == o3c.Device.DeviceType.CUDA and not o3c.cuda.is_available():
        raise GeometryError(f"device {device} requested but Open3D has no CUDA device here")
    return dev


def intrinsics_tensor(intr: CameraIntrinsics) -> o3c.Tensor:
    """(3, 3) float64 Open3D tensor of K (Open3D's kernels take K as a CPU float64 tensor)."""
    return o3c.Tensor(intr.K, dtype=o3c.float64)


def to_o3d_pointcloud(points: np.ndarray, colors: np.ndarray | None = None, normals: np.ndarray | None = None,
                      device: o3c.Device | str = "CPU:0") -> o3d.t.geometry.PointCloud:
    """points (N, 3), optional colors (N, 3) in [0, 1] and normals (N, 3) -> tensor PointCloud (float32)."""
    dev = device if isinstance(device, o3c.Device) else o3c.Device(device)
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(-1, 3))
    pcd = o3d.t.geometry.PointCloud(o3c.Tensor.from_numpy(pts).to(dev))
    for name, arr in (("colors", colors), ("normals", normals)):
        if arr is not None:
            a = np.ascontiguousarray(np.asarray(arr, dtype=np.float32).reshape(-1, 3))
            if len(a) != len(pts):
                raise GeometryError(f"{name} has {len(a)} rows but points has {len(pts)}")
            pcd.point[name] = o3c.Tensor.from_numpy(a).to(dev)
    return pcd


def from_o3d_pointcloud(pcd) -> tuple[np.ndarray, np.ndarray | None]:
    """Tensor or legacy Open3D point cloud -> (points (N, 3) float32, colors (N, 3) float32 in [0, 1] or None)."""
    if isinstance(pcd, o3d.geometry.PointCloud):
        pts = np.asarray(pcd.points, dtype=np.float32)
        cols = np.asarray(pcd.colors, dtype=np.float32) if pcd.has_colors() else None
        return pts, cols
    if "positions" not in pcd.point or pcd.point.positions.shape[0] == 0:
        return np.zeros((0, 3), np.float32), (np.zeros((0, 3), np.float32) if "colors" in pcd.point else None)
    pts = pcd.point.positions.cpu().numpy().astype(np.float32, copy=False)
    cols = None
    if "colors" in pcd.point:
        cols = np.clip(pcd.point.colors.cpu().numpy().astype(np.float32, copy=False), 0.0, 1.0)
    return pts, cols


def to_legacy_mesh(vertices: np.ndarray, triangles: np.ndarray,
                   vertex_colors: np.ndarray | None = None) -> o3d.geometry.TriangleMesh:
    """vertices (V, 3), triangles (F, 3) int, optional colours (V, 3) in [0, 1] -> legacy TriangleMesh."""
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(vertices, np.float64).reshape(-1, 3)),
                                     o3d.utility.Vector3iVector(np.asarray(triangles, np.int32).reshape(-1, 3)))
    if vertex_colors is not None:
        mesh.vertex_colors = o3d.utility.Vector3dVector(np.asarray(vertex_colors, np.float64).reshape(-1, 3))
    return mesh


def mesh_arrays(mesh) -> tuple[np.ndarray, np.ndarray]:
    """Tensor or legacy TriangleMesh -> (vertices (V, 3) float64, triangles (F, 3) int32)."""
    if isinstance(mesh, o3d.geometry.TriangleMesh):
        return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.triangles, np.int32)
    if "positions" not in mesh.vertex or "indices" not in mesh.triangle:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int32)
    return (mesh.vertex.positions.cpu().numpy().astype(np.float64),
            mesh.triangle.indices.cpu().numpy().astype(np.int32))


# ---------------------------------------------------------------------------------------------------------------
# normals and point clouds
# ---------------------------------------------------------------------------------------------------------------

def normals_from_depth(depth_m: np.ndarray, intr: CameraIntrinsics, max_rel_jump: float = 0.05) -> np.ndarray:
    """Per-pixel unit normals ``(H, W, 3)`` float32 in the camera frame, facing the camera; 0 where undefined.

    Central differences of the back-projected points; a pixel gets a normal only if it and its four
    neighbours are valid and no neighbour's depth differs by more than ``max_rel_jump`` x depth (so normals
    are not smeared across occlusion boundaries). Border pixels have no normal.
    """
    intr.check_image(depth_m, "depth")
    d = np.asarray(depth_m, dtype=np.float32)
    valid = valid_depth_mask(d)
    pts = backproject(np.where(valid, d, 0.0).astype(np.float32), intr)  # (H, W, 3)
    normals = np.zeros_like(pts)
    if d.shape[0] < 3 or d.shape[1] < 3:
        return normals
    du = pts[1:-1, 2:] - pts[1:-1, :-2]  # (H-2, W-2, 3) derivative along +u
    dv = pts[2:, 1:-1] - pts[:-2, 1:-1]  # (H-2, W-2, 3) derivative along +v
    n = np.cross(du, dv)
    c = d[1:-1, 1:-1]
    ok = valid[1:-1, 1:-1] & valid[1:-1, 2:] & valid[1:-1, :-2] & valid[2:, 1:-1] & valid[:-2, 1:-1]
    with np.errstate(invalid="ignore"):
        thr = max_rel_jump * c
        for nb in (d[1:-1, 2:], d[1:-1, :-2], d[2:, 1:-1], d[:-2, 1:-1]):
            ok &= np.abs(nb - c) <= thr
    norm = np.linalg.norm(n, axis=-1)
    ok &= norm > 0
    n = np.where(ok[..., None], n / np.where(ok, norm, 1.0)[..., None], 0.0)
    # the camera sits at the origin: a normal facing it has a negative dot product with the point
    flip = np.sum(n * pts[1:-1, 1:-1], axis=-1) > 0
    n[flip] *= -1.0
    normals[1:-1, 1:-1] = n
    return normals


def frame_points(frame: RGBDFrame, depth_min_m: float = 0.0, depth_max_m: float = np.inf, stride: int = 1,
                 in_world: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """RGB-D frame -> (points (N, 3) float32, colors (N, 3) float32 in [0, 1]) of the valid pixels.

    Points are in the world frame (needs ``frame.T_world_cam``) or, with ``in_world=False``, the camera
    frame. Valid = finite depth inside (depth_min_m, depth_max_m]. ``stride`` subsamples pixels.
    """
    frame.validate()
    d = frame.depth_m[::stride, ::stride]
    rays = pixel_rays(frame.intrinsics)[::stride, ::stride]
    mask = valid_depth_mask(d, depth_min_m, depth_max_m)
    pts = rays[mask] * d[mask].astype(np.float32)[:, None]
    cols = frame.rgb[::stride, ::stride][mask].astype(np.float32) / 255.0
    if in_world:
        if frame.T_world_cam is None:
            raise GeometryError("frame has no T_world_cam; pass in_world=False for camera-frame points")
        pts = transform_points(check_rigid(frame.T_world_cam, "T_world_cam"), pts)
    return pts.astype(np.float32, copy=False), cols


def voxel_downsample(points: np.ndarray, voxel_size_m: float,
                     colors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Average points (and colors) per voxel of ``voxel_size_m`` (Open3D); returns float32 arrays."""
    if voxel_size_m <= 0:
        raise GeometryError(f"voxel_size_m must be positive, got {voxel_size_m}")
    if len(points) == 0:
        return np.zeros((0, 3), np.float32), (None if colors is None else np.zeros((0, 3), np.float32))
    pcd = to_o3d_pointcloud(points, colors)
    return from_o3d_pointcloud(pcd.voxel_down_sample(float(voxel_size_m)))


def estimate_point_normals(points: np.ndarray, radius_m: float, max_nn: int = 30,
                           viewpoint: np.ndarray | None = None) -> np.ndarray:
    """Unit normals (N, 3) float32 of an unordered cloud by local PCA (Open3D hybrid search), optionally
    oriented toward ``viewpoint`` (3,)."""
    pcd = to_o3d_pointcloud(points).to_legacy()
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=float(radius_m), max_nn=int(max_nn)))
    if viewpoint is not None:
        pcd.orient_normals_towards_camera_location(np.asarray(viewpoint, np.float64).reshape(3))
    return np.asarray(pcd.normals, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------
# rendering (tests, synthetic data, evaluation)
# ---------------------------------------------------------------------------------------------------------------

def render_depth(mesh, intr: CameraIntrinsics, T_world_cam: np.ndarray) -> np.ndarray:
    """Ray-cast a mesh (legacy or tensor TriangleMesh, world frame) from a pinhole camera.

    Returns depth (H, W) float32 in metres along the optical axis, 0 where no surface is hit. Rays pass
    through pixel centres with the same convention as ``camera.pixel_rays`` so render and back-projection
    are exact inverses.
    """
    T = check_rigid(T_world_cam, "T_world_cam")
    verts, tris = mesh_arrays(mesh)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3c.Tensor(verts.astype(np.float32)), o3c.Tensor(tris.astype(np.uint32)))
    dirs = pixel_rays(intr).reshape(-1, 3) @ T[:3, :3].T.astype(np.float32)  # world-frame, unit z in camera
    rays = np.concatenate([np.broadcast_to(T[:3, 3].astype(np.float32), dirs.shape), dirs], axis=1)
    t_hit = scene.cast_rays(o3c.Tensor(np.ascontiguousarray(rays, dtype=np.float32)))["t_hit"].numpy()
    depth = np.where(np.isfinite(t_hit), t_hit, 0.0).astype(np.float32)  # t is depth since dir has unit z
    return depth.reshape(intr.height, intr.width)


def depth_to_world(depth_m: np.ndarray, intr: CameraIntrinsics, T_world_cam: np.ndarray,
                   depth_min_m: float = 0.0, depth_max_m: float = np.inf) -> np.ndarray:
    """Valid pixels of a depth image -> world points (N, 3) float32."""
    mask = valid_depth_mask(depth_m, depth_min_m, depth_max_m)
    pts = backproject(np.where(mask, depth_m, 0.0).astype(np.float32), intr)[mask]
    return transform_points(check_rigid(T_world_cam, "T_world_cam"), pts).astype(np.float32)


def camera_center(T_world_cam: np.ndarray) -> np.ndarray:
    """(3,) camera position in the world frame."""
    return np.asarray(T_world_cam, np.float64)[:3, 3].copy()


def world_to_camera(T_world_cam: np.ndarray) -> np.ndarray:
    """T_cam_world: Open3D's "extrinsic" convention (world -> camera)."""
    return invert_transform(check_rigid(T_world_cam, "T_world_cam"))


def fit_plane(points: np.ndarray, like: np.ndarray | None = None) -> np.ndarray | None:
    """Least-squares plane (4,) [unit normal n, d] with n.p + d = 0 of points (N, 3): the smallest-variance direction
    of the centred points (a 3x3 eigenproblem, cheaper than an SVD), its normal turned to agree with ``like`` (3,)
    when given; None below 3 points."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(p) < 3:
        return None
    centre = p.mean(axis=0)
    q = p - centre
    n = np.linalg.eigh(q.T @ q)[1][:, 0]
    if like is not None and n @ like < 0:
        n = -n
    return np.append(n, -n @ centre)


def ransac_plane(points: np.ndarray, distance_m: float, iterations: int,
                 rng: np.random.Generator) -> tuple[np.ndarray | None, np.ndarray]:
    """The plane (4,) [unit normal n, d] with n.p + d = 0 that most of ``points`` (N, 3) lie within ``distance_m``
    of, among ``iterations`` 3-point hypotheses drawn by ``rng``, and its inlier indices (K,); (None, empty) when
    no hypothesis is a plane.

    Written by hand (vectorised numpy): Open3D's segment_plane draws its hypotheses on several threads, so even
    with a seeded generator its planes differ between runs of the same input, and so did the maps built on them;
    this one is reproducible for a given ``rng`` and about as fast on the subsamples the segmenter scores.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    none = (None, np.zeros(0, dtype=np.int64))
    if len(p) < 3 or iterations < 1:
        return none
    idx = rng.integers(0, len(p), size=(iterations, 3))
    a = p[idx[:, 0]]
    normal = np.cross(p[idx[:, 1]] - a, p[idx[:, 2]] - a)  # (I, 3)
    norm = np.linalg.norm(normal, axis=1)
    ok = norm > 1e-12  # collinear or repeated samples are no plane
    if not ok.any():
        return none
    normal, a = normal[ok] / norm[ok, None], a[ok]
    d = -np.einsum("ij,ij->i", normal, a)
    inlier = np.abs(p @ normal.T + d) <= distance_m  # (N, I)
    best = int(np.argmax(inlier.sum(axis=0)))  # the first of equals: deterministic
    inl = np.nonzero(inlier[:, best])[0]
    # the least-squares plane of the inliers (as Open3D returns it), oriented like the hypothesis
    plane = fit_plane(p[inl], normal[best])
    return none if plane is None else (plane, inl)
