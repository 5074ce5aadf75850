"""Evaluation metrics: Chamfer / precision-recall-F, occupancy and mesh IoU, trajectory ATE, rotated 3D box IoU."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import open3d.core as o3c
from scipy.spatial import cKDTree

from .camera import rotation_angle_deg
from .ops import mesh_arrays
from ..scene_graph import Box3D

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# point clouds and surfaces
# ---------------------------------------------------------------------------------------------------------------

def nn_distances(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(N,) Euclidean distance from each query point (N, 3) to its nearest reference point (M, 3); inf if M = 0."""
    q = np.asarray(query, np.float64).reshape(-1, 3)
    r = np.asarray(reference, np.float64).reshape(-1, 3)
    if len(r) == 0:
        return np.full(len(q), np.inf)
    if len(q) == 0:
        return np.zeros(0)
    return cKDTree(r).query(q, k=1, workers=-1)[0]


@dataclass(frozen=True)
class SurfaceMetrics:
    """Reconstruction quality of ``pred`` against ``gt`` (distances in metres).

    accuracy: mean distance pred -> gt; completeness: mean distance gt -> pred; chamfer: their mean (the L1
    Chamfer distance); precision / recall: fraction of pred / gt points within ``threshold_m`` of the other
    cloud; fscore: their harmonic mean (Knapitsch et al., Tanks and Temples 2017).
    """

    accuracy: float
    completeness: float
    chamfer: float
    precision: float
    recall: float
    fscore: float
    threshold_m: float


def chamfer_distance(a: np.ndarray, b: np.ndarray, squared: bool = False) -> float:
    """Symmetric Chamfer distance: mean over a of d(a, b) plus mean over b of d(b, a), halved (L1, metres);
    ``squared=True`` averages squared distances instead (the L2 form used by many learning papers)."""
    da, db = nn_distances(a, b), nn_distances(b, a)
    if squared:
        da, db = da ** 2, db ** 2
    return 0.5 * (float(da.mean()) + float(db.mean())) if len(da) and len(db) else float("inf")


def precision_recall_fscore(pred: np.ndarray, gt: np.ndarray, threshold_m: float) -> tuple[float, float, float]:
    """(precision, recall, F-score) at a distance threshold between two point clouds."""
    dp, dg = nn_distances(pred, gt), nn_distances(gt, pred)
    p = float((dp < threshold_m).mean()) if len(dp) else 0.0
    r = float((dg < threshold_m).mean()) if len(dg) else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


def surface_metrics(pred: np.ndarray, gt: np.ndarray, threshold_m: float = 0.05) -> SurfaceMetrics:
    """All point-cloud surface metrics in one pass of two KD-tree queries."""
    dp, dg = nn_distances(pred, gt), nn_distances(gt, pred)
    acc = float(dp.mean()) if len(dp) else float("inf")
    comp = float(dg.mean()) if len(dg) else float("inf")
    p = float((dp < threshold_m).mean()) if len(dp) else 0.0
    r = float((dg < threshold_m).mean()) if len(dg) else 0.0
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return SurfaceMetrics(acc, comp, 0.5 * (acc + comp), p, r, f, threshold_m)


def points_to_mesh_distance(points: np.ndarray, mesh) -> np.ndarray:
    """(N,) unsigned distance of points (N, 3) to the closest point on a (legacy or tensor) triangle mesh."""
    verts, tris = mesh_arrays(mesh)
    if len(tris) == 0:
        return np.full(len(points), np.inf)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3c.Tensor(verts.astype(np.float32)), o3c.Tensor(tris.astype(np.uint32)))
    q = o3c.Tensor(np.ascontiguousarray(np.asarray(points, np.float32).reshape(-1, 3)))
    return scene.compute_distance(q).numpy().astype(np.float64)


# ---------------------------------------------------------------------------------------------------------------
# occupancy
# ---------------------------------------------------------------------------------------------------------------

def voxel_keys(points: np.ndarray, voxel_size_m: float, origin: np.ndarray | None = None) -> np.ndarray:
    """Unique integer voxel indices (K, 3) int64 of the voxels of size ``voxel_size_m`` that contain points."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    o = np.zeros(3) if origin is None else np.asarray(origin, np.float64)
    return np.unique(np.floor((p - o) / voxel_size_m).astype(np.int64), axis=0)


def grid_iou(occ_a: np.ndarray, occ_b: np.ndarray) -> float:
    """IoU of two boolean occupancy grids of equal shape (1.0 when both are empty)."""
    a, b = np.asarray(occ_a, bool), np.asarray(occ_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"grid shapes differ: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def occupancy_iou(points_a: np.ndarray, points_b: np.ndarray, voxel_size_m: float) -> float:
    """IoU of the sets of voxels occupied by two point clouds on a shared grid anchored at the origin."""
    ka, kb = voxel_keys(points_a, voxel_size_m), voxel_keys(points_b, voxel_size_m)
    if len(ka) == 0 and len(kb) == 0:
        return 1.0
    # view each (x, y, z) int64 row as one structured scalar so numpy's set routines work on rows
    row = np.dtype((np.void, 3 * 8))
    sa = np.ascontiguousarray(ka).view(row).ravel()
    sb = np.ascontiguousarray(kb).view(row).ravel()
    inter = len(np.intersect1d(sa, sb, assume_unique=True))
    return inter / (len(sa) + len(sb) - inter)


def mesh_iou(mesh_a, mesh_b, voxel_size_m: float, mode: str = "volume", max_voxels: int = 8_000_000) -> float:
    """Voxelised IoU of two meshes.

    mode "volume": solid IoU of watertight meshes; voxel centres on a grid covering both bounding boxes are
    classified inside/outside by Open3D's ray-parity occupancy test. mode "surface": IoU of the voxels the two
    surfaces pass through (sampled densely at a third of a voxel), for open meshes such as TSDF output.
    """
    if mode == "surface":
        pa, pb = _sample_surface(mesh_a, voxel_size_m / 3), _sample_surface(mesh_b, voxel_size_m / 3)
        return occupancy_iou(pa, pb, voxel_size_m)
    if mode != "volume":
        raise ValueError(f"mode must be 'volume' or 'surface', got {mode!r}")
    va, ta = mesh_arrays(mesh_a)
    vb, tb = mesh_arrays(mesh_b)
    if len(ta) == 0 and len(tb) == 0:
        return 1.0
    allv = np.concatenate([v for v, t in ((va, ta), (vb, tb)) if len(t)])
    lo, hi = allv.min(0) - voxel_size_m, allv.max(0) + voxel_size_m
    n = np.ceil((hi - lo) / voxel_size_m).astype(int)
    if int(np.prod(n)) > max_voxels:
        raise ValueError(f"{int(np.prod(n))} voxels exceed max_voxels={max_voxels}; use a coarser voxel_size_m")
    axes = [lo[i] + (np.arange(n[i]) + 0.5) * voxel_size_m for i in range(3)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)  # (V, 3)
    occ = []
    for v, t in ((va, ta), (vb, tb)):
        if len(t) == 0:
            occ.append(np.zeros(len(centres), bool))
            continue
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3c.Tensor(v.astype(np.float32)), o3c.Tensor(t.astype(np.uint32)))
        occ.append(scene.compute_occupancy(o3c.Tensor(centres)).numpy() > 0.5)
    return grid_iou(occ[0], occ[1])


def _sample_surface(mesh, spacing_m: float) -> np.ndarray:
    """Points on every triangle of a mesh on a barycentric lattice no coarser than ``spacing_m``."""
    v, t = mesh_arrays(mesh)
    if len(t) == 0:
        return np.zeros((0, 3))
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    longest = np.max(np.stack([np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1),
                               np.linalg.norm(a - c, axis=1)]), axis=0)
    out = [v]
    for k in np.unique(np.maximum(1, np.ceil(longest / spacing_m)).astype(int)):
        sel = np.ceil(np.maximum(longest / spacing_m, 1)).astype(int) == k
        i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing="ij")
        keep = (i + j) <= k
        w1, w2 = (i[keep] / k)[None, :, None], (j[keep] / k)[None, :, None]  # (1, S, 1)
        pts = a[sel][:, None] + w1 * (b[sel] - a[sel])[:, None] + w2 * (c[sel] - a[sel])[:, None]
        out.append(pts.reshape(-1, 3))
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------------------------
# trajectories
# ---------------------------------------------------------------------------------------------------------------

def umeyama_alignment(source: np.ndarray, target: np.ndarray, with_scale: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares (R, t, s) with target ~ s R source + t for corresponding points (N, 3) (Umeyama 1991;
    the reflection case is excluded so R is a rotation)."""
    x = np.asarray(source, np.float64).reshape(-1, 3)
    y = np.asarray(target, np.float64).reshape(-1, 3)
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"need >= 3 corresponding points, got {len(x)} and {len(y)}")
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    cov = yc.T @ xc / len(x)  # (3, 3)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    var_x = (xc ** 2).sum() / len(x)
    s = float(np.trace(np.diag(D) @ S) / var_x) if with_scale and var_x > 0 else 1.0
    t = my - s * R @ mx
    return R, t, s


@dataclass(frozen=True)
class ATEResult:
    """Absolute trajectory error of camera positions after alignment (metres)."""

    rmse: float
    mean: float
    median: float
    max: float
    errors: np.ndarray  # (N,) per-pose position error after alignment
    R: np.ndarray  # (3, 3) alignment applied to the estimate
    t: np.ndarray  # (3,)
    scale: float


def absolute_trajectory_error(estimate: np.ndarray, ground_truth: np.ndarray, align: str = "se3") -> ATEResult:
    """ATE (Sturm et al., TUM RGB-D 2012) between corresponding poses (N, 4, 4) or positions (N, 3).

    align "se3": rigid Horn/Umeyama alignment of the estimate onto the ground truth; "sim3": with scale (for
    monocular or unscaled estimates); "none": compare in place. Pairs where either side is non-finite are
    dropped.
    """
    e, g = np.asarray(estimate, np.float64), np.asarray(ground_truth, np.float64)
    pe = e[:, :3, 3] if e.ndim == 3 else e.reshape(-1, 3)
    pg = g[:, :3, 3] if g.ndim == 3 else g.reshape(-1, 3)
    if len(pe) != len(pg):
        raise ValueError(f"{len(pe)} estimated vs {len(pg)} ground-truth poses")
    ok = np.all(np.isfinite(pe), axis=1) & np.all(np.isfinite(pg), axis=1)
    pe, pg = pe[ok], pg[ok]
    if align == "none" or len(pe) < 3:
        if align != "none":
            log.warning("ATE: fewer than 3 poses, comparing without alignment")
        R, t, s = np.eye(3), np.zeros(3), 1.0
    elif align in ("se3", "sim3"):
        R, t, s = umeyama_alignment(pe, pg, with_scale=align == "sim3")
    else:
        raise ValueError(f"align must be 'se3', 'sim3' or 'none', got {align!r}")
    err = np.linalg.norm(s * pe @ R.T + t - pg, axis=1)
    if len(err) == 0:
        nan = float("nan")
        return ATEResult(nan, nan, nan, nan, err, R, t, s)
    return ATEResult(float(np.sqrt(np.mean(err ** 2))), float(err.mean()), float(np.median(err)), float(err.max()),
                     err, R, t, s)


def relative_pose_error(estimate: np.ndarray, ground_truth: np.ndarray, delta: int = 1) -> tuple[float, float]:
    """RMS translational (m) and rotational (deg) drift over ``delta`` frames (TUM RPE) for poses (N, 4, 4)."""
    e, g = np.asarray(estimate, np.float64), np.asarray(ground_truth, np.float64)
    dt, dr = [], []
    for i in range(len(e) - delta):
        Ee = np.linalg.inv(e[i]) @ e[i + delta]
        Eg = np.linalg.inv(g[i]) @ g[i + delta]
        D = np.linalg.inv(Eg) @ Ee
        dt.append(np.linalg.norm(D[:3, 3]))
        dr.append(rotation_angle_deg(D))
    if not dt:
        return float("nan"), float("nan")
    return float(np.sqrt(np.mean(np.square(dt)))), float(np.sqrt(np.mean(np.square(dr))))


# ---------------------------------------------------------------------------------------------------------------
# 3D boxes
# ---------------------------------------------------------------------------------------------------------------
# Rotated-box IoU is written by hand: scipy has only generic half-space intersection (needs an interior
# point and a linear program per pair), Open3D's OrientedBoundingBox offers no intersection, and no
# polygon library (shapely) is installed. Gravity-aligned boxes reduce it to a convex-polygon clip in the
# xy-plane times a 1-D overlap in z, a few lines of Sutherland-Hodgman.

def box_footprint(box: Box3D) -> np.ndarray:
    """(4, 2) counter-clockwise xy corners of a gravity-aligned box's footprint."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    hx, hy = box.size[0] / 2.0, box.size[1] / 2.0
    local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    return local @ np.array([[c, s], [-s, c]]) + box.center[:2]


def polygon_area(poly: np.ndarray) -> float:
    """Signed shoelace area of a polygon (K, 2); positive when counter-clockwise."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def clip_convex_polygon(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection of two convex counter-clockwise polygons (K, 2), (M, 2) -> (L, 2) (Sutherland-Hodgman)."""
    out = [np.asarray(p, np.float64) for p in subject]
    m = len(clip)
    for i in range(m):
        if not out:
            break
        a, b = clip[i], clip[(i + 1) % m]
        edge = b - a

        def side(p):  # > 0: left of the edge, i.e. inside a CCW polygon
            return edge[0] * (p[1] - a[1]) - edge[1] * (p[0] - a[0])

        inp, out = out, []
        for j in range(len(inp)):
            p, q = inp[j], inp[(j + 1) % len(inp)]
            sp, sq = side(p), side(q)
            if sp >= 0:
                out.append(p)
            if (sp >= 0) != (sq >= 0):
                out.append(p + (q - p) * (sp / (sp - sq)))
    return np.array(out).reshape(-1, 2)


def box_iou_3d(a: Box3D, b: Box3D) -> float:
    """Volume IoU of two gravity-aligned yawed boxes: footprint-polygon intersection area x z-overlap."""
    za = (a.center[2] - a.size[2] / 2, a.center[2] + a.size[2] / 2)
    zb = (b.center[2] - b.size[2] / 2, b.center[2] + b.size[2] / 2)
    dz = min(za[1], zb[1]) - max(za[0], zb[0])
    if dz <= 0:
        return 0.0
    inter = abs(polygon_area(clip_convex_polygon(box_footprint(a), box_footprint(b)))) * dz
    union = a.volume + b.volume - inter
    return float(inter / union) if union > 0 else 0.0


def box_iou_bev(a: Box3D, b: Box3D) -> float:
    """Bird's-eye-view (footprint) IoU of two yawed boxes."""
    inter = abs(polygon_area(clip_convex_polygon(box_footprint(a), box_footprint(b))))
    union = a.size[0] * a.size[1] + b.size[0] * b.size[1] - inter
    return float(inter / union) if union > 0 else 0.0


def box_iou_matrix(boxes_a: list[Box3D], boxes_b: list[Box3D]) -> np.ndarray:
    """(A, B) pairwise 3D IoU; pairs whose world AABBs do not touch are skipped cheaply."""
    out = np.zeros((len(boxes_a), len(boxes_b)))
    ab = [x.aabb() for x in boxes_b]
    for i, a in enumerate(boxes_a):
        lo, hi = a.aabb()
        for j, b in enumerate(boxes_b):
            if np.all(lo <= ab[j][1]) and np.all(ab[j][0] <= hi):
                out[i, j] = box_iou_3d(a, b)
    return out
