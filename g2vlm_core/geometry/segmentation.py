"""Class-agnostic 3D segmentation of posed RGB-D frames (support planes + clustering) and of model instance masks."""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import open3d as o3d
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .camera import CameraIntrinsics, GeometryError, check_rigid, pixel_rays
from .ops import fit_plane, ransac_plane
from ..frame import RGBDFrame
from ..scene_graph import Box3D

log = logging.getLogger(__name__)

SEGMENT_KINDS = ("object", "support", "floor", "wall", "plane", "structure")
_AXES = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}


def up_vector(up_axis: str | None) -> np.ndarray | None:
    """World up direction (3,) for a config string '+z', '-y', ...; None when the up axis is unknown."""
    if up_axis is None:
        return None
    if up_axis not in _AXES:
        raise ValueError(f"up_axis must be one of {sorted(_AXES)} or None, got {up_axis!r}")
    return np.asarray(_AXES[up_axis], dtype=np.float64)


@dataclass
class Segment:
    """One 3D segment in the world frame: an object candidate or a removed plane.

    points_world: (N, 3) float32 metres, world frame.
    colors:       (N, 3) float32 RGB in [0, 1].
    kind:         'object' (a candidate object), 'support' (horizontal non-floor plane, e.g. a table top),
                  'floor', 'wall' (vertical plane with nothing seen behind it), 'plane' (a removed plane when
                  the up axis is unknown; with a known up axis other planes stay in their objects) or 'structure'
                  (room structure for the map, its label saying which: floor, wall, ceiling, counter).
    plane:        (4,) [a, b, c, d] with unit normal, a*x + b*y + c*z + d = 0, for plane kinds; else None.
    """

    points_world: np.ndarray
    colors: np.ndarray
    label: str | None = None  # class name from a model, None when class-agnostic
    label_score: float = 0.0  # the model's confidence in ``label``, [0, 1]
    embedding: np.ndarray | None = None  # (D,) language-aligned feature from a model, optional
    source: str = "geometry"  # producer: 'geometry' (planes + clustering) or 'mask' (model instance masks)
    kind: str = "object"
    plane: np.ndarray | None = None
    instance_id: int = -1  # the producer's id within its frame (mask id, cluster index); -1 if none
    amodal_box: Box3D | None = None  # a model's estimate of the whole object's world box (its unseen parts too)
    label_scores: dict[str, float] | None = None  # the recognizer's label distribution ({label: p}, best entries);
    # None: only ``label`` with ``label_score``

    def __post_init__(self) -> None:
        self.points_world = np.asarray(self.points_world, dtype=np.float32).reshape(-1, 3)
        self.colors = np.asarray(self.colors, dtype=np.float32).reshape(-1, 3)
        if len(self.colors) != len(self.points_world):
            raise GeometryError(f"segment has {len(self.points_world)} points but {len(self.colors)} colours")
        if self.kind not in SEGMENT_KINDS:
            raise ValueError(f"segment kind must be one of {SEGMENT_KINDS}, got {self.kind!r}")
        if self.embedding is not None:
            self.embedding = np.asarray(self.embedding, dtype=np.float32).reshape(-1)
        if self.plane is not None:
            self.plane = np.asarray(self.plane, dtype=np.float64).reshape(4)

    def __len__(self) -> int:
        return len(self.points_world)

    @property
    def centroid(self) -> np.ndarray:
        """(3,) float64 mean of the points."""
        return self.points_world.astype(np.float64).mean(axis=0)


@dataclass(frozen=True)
class SegmenterConfig:
    stride: int = 0  # pixel step when back-projecting a frame, the main speed knob; 0 = auto: width // 160
    # (4 at 640x480, 2 at 320x240), i.e. about 160x120 rays whatever the camera
    depth_min_m: float = 0.1  # closer depths are sensor noise
    depth_max_m: float = 5.0  # farther depths are too noisy (Kinect-class sensors) to outline objects
    edge_rel_jump: float = 0.05  # drop pixels farther than a strided neighbour by this fraction of their depth
    # (flying pixels behind object edges); 0 disables. Grazing-angle floor at 3 m jumps ~0.02 per 4 px.
    voxel_m: float = 0.03  # downsampling voxel before plane fitting and clustering
    # Planes: height-histogram peaks for horizontal planes (up axis known), Open3D RANSAC for the others
    max_planes: int = 4  # at most this many RANSAC planes per frame (walls and, without up axis, all planes)
    max_horizontal_peaks: int = 6  # height-histogram peaks examined per frame (floor, table tops, shelves)
    plane_distance_m: float = 0.02  # plane inlier distance near the sensor and in fused clouds
    plane_noise_k: float = 0.003  # single frames: inlier distance max(plane_distance_m, k * range^2), since
    # Kinect-class depth error grows as z^2 (sigma ~1.4e-3 z^2 plus disparity steps of ~2.9e-3 z^2,
    # Khoshelham & Elberink 2012): 4.8 cm at 4 m
    plane_iterations: int = 200  # RANSAC iterations per plane (3-point samples; reliable for >= 20% inliers: with
    # 100 the seeded draw found fewer walls of the real 3DMatch sequence, and its map lost a chair, 11 -> 10 of 15)
    plane_sample_points: int = 1000  # RANSAC hypotheses are scored on a random subset of this size
    plane_min_fraction: float = 0.03  # a plane must hold at least this fraction of the downsampled points
    plane_min_points: int = 150  # ... and at least this many (0.13 m2 at 3 cm voxels)
    plane_min_piece_points: int = 50  # connected pieces of a plane smaller than this are never removed
    support_min_neighbours: int = 4  # table-top cells need this many occupied cells in their 3x3 neighbourhood
    # (strips where the plane cuts a wall have 3): see dense_cells
    plane_piece_cell_m: float = 0.15  # 2D grid cell that connects a plane's inliers into pieces: coarse because
    # a floor seen at a grazing angle is sampled every ~15 cm at 5 m (stride 4, f=525)
    plane_min_extent_m: float = 0.6  # a removed piece spans this much along its major axis ...
    plane_min_width_m: float = 0.2  # ... and this much across, so an object's face or the strip where a
    # plane cuts a wall stays with its object
    up_axis: str | None = "+z"  # world up; None: no gravity, planes are not classified (kind 'plane')
    horizontal_tol_deg: float = 15.0  # normal within this angle of up -> horizontal plane
    vertical_tol_deg: float = 15.0  # normal within this angle of the horizon -> vertical plane
    wall_max_behind_fraction: float = 0.1  # single frames: a vertical plane is a wall when at most this many
    # points (relative to its own) are seen behind it within its horizontal span, since nothing is seen through
    # a wall; otherwise it is an object's face (a sofa's front) and stays for clustering
    wall_min_extent_m: float = 1.0  # fused clouds (no sensor origin): walls are at least this wide ...
    wall_min_height_m: float = 0.6  # ... and at least this tall (seen part) ...
    wall_any_height_extent_m: float = 2.5  # ... or at least this wide
    floor_height_m: float | None = 0.0  # floor height along up (z-up map frames put it at 0); None: the lowest
    # large horizontal plane seen so far is the floor
    floor_tol_m: float = 0.1  # horizontal planes within this of the floor height are the floor
    floor_min_extent_m: float = 1.0  # with floor_height_m None, only planes this large can define the floor
    # Clustering
    cluster_method: str = "voxel_cc"  # 'voxel_cc' (26-connected voxels, measured ~1.5x faster) or 'dbscan'
    cluster_tolerance_m: float = 0.05  # voxel_cc voxel size / DBSCAN eps: objects closer than this merge
    dbscan_min_points: int = 5  # DBSCAN core-point neighbour count
    min_cluster_points: int = 15  # smaller clusters are noise (at voxel_m resolution)
    max_cluster_extent_m: float = 3.0  # larger clusters are room structure (sofa rows, counters), not objects
    # Instance masks
    mask_min_pixels: int = 4  # instances with fewer strided pixels are dropped
    mask_erode_boundary: bool = False  # drop pixels on instance boundaries, where depth mixes fore/background (off:
    # on masks upsampled from a model's smaller input it removed thin and small objects; the largest-component
    # rule already drops boundary bleed; matched objects on 20 validation scenes 0.65 with, 0.69 without)
    mask_largest_component: bool = True  # keep only the largest 3D component (mask bleed onto background)
    seed: int | None = 0  # seeds the plane search's RANSAC (ops.ransac_plane, single-threaded) so that identical
    # input gives identical planes and maps (evaluation rows do not move between runs); None: unseeded

    def __post_init__(self) -> None:
        if self.stride < 0:
            raise ValueError(f"stride must be >= 1, or 0 for auto, got {self.stride}")
        if self.voxel_m <= 0 or self.cluster_tolerance_m <= 0 or self.plane_distance_m <= 0:
            raise ValueError("voxel_m, cluster_tolerance_m and plane_distance_m must be positive")
        if self.cluster_method not in ("voxel_cc", "dbscan"):
            raise ValueError(f"cluster_method must be 'voxel_cc' or 'dbscan', got {self.cluster_method!r}")
        up_vector(self.up_axis)


@dataclass
class SegmentationStats:
    """What the last call did: counts and per-stage times in milliseconds."""

    input_points: int = 0
    downsampled_points: int = 0
    planes: int = 0
    clusters: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count of dropped clusters/instances
    timings_ms: dict[str, float] = field(default_factory=dict)


# Packed voxel keys: 21 bits per axis (+-1M voxels, +-10 km at 1 cm) in one int64, so sets of voxels are sorted
# int64 arrays and set operations are numpy searchsorted/unique.
_KEY_BIAS = 1 << 20
_KEY_MASK = (1 << 21) - 1
_NEIGHBOURS_HALF = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                             if (i, j, k) > (0, 0, 0)], dtype=np.int64)  # (13, 3): each undirected edge once


def pack_keys(ijk: np.ndarray) -> np.ndarray:
    """Integer voxel coordinates (N, 3) -> packed int64 keys (N,)."""
    ijk = np.asarray(ijk, dtype=np.int64)
    return ((ijk[:, 0] + _KEY_BIAS) << 42) | ((ijk[:, 1] + _KEY_BIAS) << 21) | (ijk[:, 2] + _KEY_BIAS)


def unpack_keys(keys: np.ndarray) -> np.ndarray:
    """Packed int64 keys (N,) -> integer voxel coordinates (N, 3)."""
    keys = np.asarray(keys, dtype=np.int64)
    return np.stack([(keys >> 42) - _KEY_BIAS, ((keys >> 21) & _KEY_MASK) - _KEY_BIAS,
                     (keys & _KEY_MASK) - _KEY_BIAS], axis=1)


def voxel_keys(points: np.ndarray, voxel_m: float) -> np.ndarray:
    """Packed voxel keys (N,) of points (N, 3) for a voxel edge of ``voxel_m`` metres."""
    return pack_keys(np.floor(np.asarray(points, dtype=np.float64) / voxel_m).astype(np.int64))


def voxel_connected_components(points: np.ndarray, voxel_m: float) -> tuple[np.ndarray, int]:
    """Labels (N,) int64 and count of 26-connected components of the voxels occupied by points (N, 3).

    Written by hand because neither Open3D nor scipy label a sparse voxel set: a dense scipy.ndimage grid of a
    room costs more than this (measured 27 ms vs 5 ms on a 3DMatch frame).
    """
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64), 0
    keys = voxel_keys(points, voxel_m)
    uniq, inv = np.unique(keys, return_inverse=True)
    ijk = unpack_keys(uniq)
    rows, cols = [np.arange(len(uniq))], [np.arange(len(uniq))]
    for off in _NEIGHBOURS_HALF:
        q = pack_keys(ijk + off)
        idx = np.minimum(np.searchsorted(uniq, q), len(uniq) - 1)
        hit = uniq[idx] == q
        rows.append(np.nonzero(hit)[0])
        cols.append(idx[hit])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(len(uniq), len(uniq)))
    n, lab = connected_components(graph, directed=False)
    return lab[inv.reshape(-1)].astype(np.int64), int(n)


def grid_connected_components_2d(uv: np.ndarray, cell_m: float, max_cells: int = 4_000_000
                                 ) -> tuple[np.ndarray, int]:
    """Labels (K,) and count of 8-connected components of the grid cells occupied by 2D points (K, 2).

    A dense scipy.ndimage grid: a plane's footprint is at most a room (e.g. 40 x 30 cells at 15 cm), where this
    beats the sparse 3D version (measured: plane stage 65 -> 19 ms per frame); absurdly large footprints fall
    back to the sparse one.
    """
    if len(uv) == 0:
        return np.zeros(0, dtype=np.int64), 0
    ij = np.floor(uv / cell_m).astype(np.int64)
    ij -= ij.min(axis=0)
    shape = tuple(int(x) for x in ij.max(axis=0) + 1)
    if shape[0] * shape[1] > max_cells:
        return voxel_connected_components(np.column_stack([uv, np.zeros(len(uv))]), cell_m)
    grid = np.zeros(shape, dtype=bool)
    grid[ij[:, 0], ij[:, 1]] = True
    lab, n = ndimage.label(grid, structure=np.ones((3, 3), dtype=bool))
    return lab[ij[:, 0], ij[:, 1]].astype(np.int64) - 1, int(n)


@dataclass
class _PlaneSearch:
    """Working state of one plane-removal pass over a downsampled cloud of N points."""

    pts: np.ndarray  # (N, 3) float64 world points
    cols: np.ndarray  # (N, 3) float32 colours
    thr: np.ndarray  # (N,) plane inlier distance per point
    origin: np.ndarray | None  # (3,) sensor centre of a single frame, None for fused clouds
    keep: np.ndarray = field(init=False)  # (N,) bool: left for clustering
    searchable: np.ndarray = field(init=False)  # (N,) bool: left for plane search
    segments: list[Segment] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keep = np.ones(len(self.pts), dtype=bool)
        self.searchable = np.ones(len(self.pts), dtype=bool)


def dense_cells(uv: np.ndarray, cell_m: float, min_occupied: int) -> np.ndarray:
    """(K,) mask of 2D points (K, 2) whose grid cell has at least ``min_occupied`` occupied cells in its 3x3
    neighbourhood (itself included): 3 for a one-cell-wide straight strip, 4 at a rectangle's corner, 9 inside."""
    ij = np.floor(uv / cell_m).astype(np.int64)
    ij -= ij.min(axis=0) - 1  # one empty cell of margin
    grid = np.zeros(tuple(int(x) for x in ij.max(axis=0) + 2), dtype=np.float32)
    grid[ij[:, 0], ij[:, 1]] = 1.0
    occupied = ndimage.uniform_filter(grid, size=3, mode="constant") * 9.0
    return occupied[ij[:, 0], ij[:, 1]] >= min_occupied - 0.5


def _to_o3d(points: np.ndarray, colors: np.ndarray | None = None) -> o3d.geometry.PointCloud:
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    if colors is not None:
        pcd.colors = o3d.utility.Vector3dVector(np.asarray(colors, dtype=np.float64))
    return pcd


def _cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross costs ~20x more on single vectors; it runs per plane piece)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _plane_basis(normal: np.ndarray) -> np.ndarray:
    """(2, 3) orthonormal in-plane directions for a unit normal."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = _cross3(normal, helper)
    u /= np.linalg.norm(u)
    return np.stack([u, _cross3(normal, u)])


class Segmenter:
    """Segments posed RGB-D frames or world point clouds into planes and object candidates.

    Holds only the floor-height estimate (when ``floor_height_m`` is None) and a cache of pixel rays; the
    segmentation of a frame does not depend on earlier frames otherwise.
    """

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig()
        self.up = up_vector(self.config.up_axis)
        self.floor_estimate_m: float | None = None  # lowest large horizontal plane, when floor_height_m is None
        self.last_stats = SegmentationStats()
        self._rays_key: CameraIntrinsics | None = None
        self._rays: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the floor estimate (a new map)."""
        self.floor_estimate_m = None

    # ---------------------------------------------------------------- frames
    def frame_points(self, frame: RGBDFrame, T_world_cam: np.ndarray | None = None, depth_max_m: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Strided valid pixels of a frame -> world points (N, 3) float32, colours (N, 3) float32, and the
        (H', W') boolean validity mask over the strided grid (N = mask.sum()). ``depth_max_m`` overrides the
        config's range (a recognizer outlines far objects that geometry alone could not)."""
        frame.validate()
        T = frame.T_world_cam if T_world_cam is None else T_world_cam
        if T is None:
            raise GeometryError("segmenting a frame needs T_world_cam (frame.T_world_cam is None)")
        T = check_rigid(T, "T_world_cam")
        cfg = self.config
        s = self.stride_for(frame.intrinsics)
        rays = self._strided_rays(frame.intrinsics)  # (H', W', 3)
        depth = frame.depth_m[::s, ::s]
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(depth) & (depth > cfg.depth_min_m) & (
                depth <= (cfg.depth_max_m if depth_max_m is None else depth_max_m))
        if cfg.edge_rel_jump > 0:
            valid &= ~self._behind_depth_edge(np.where(valid, depth, 0.0), valid)
        pts_cam = rays[valid] * depth[valid].astype(np.float32)[:, None]
        pts = (pts_cam @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32)).astype(np.float32)
        cols = frame.rgb[::s, ::s][valid].astype(np.float32) * np.float32(1.0 / 255.0)
        return pts, cols, valid

    def _behind_depth_edge(self, depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(H', W') mask of pixels farther than a 4-neighbour by more than ``edge_rel_jump`` x depth.

        Those are the far side of depth discontinuities, where sensors put "flying pixels" between an object and
        the background; dropping them keeps an object from connecting to the wall behind it in clustering,
        while the object's own boundary pixels (the near side) are kept.
        """
        thr = self.config.edge_rel_jump * depth
        behind = np.zeros(depth.shape, dtype=bool)
        both = valid[1:] & valid[:-1]  # vertical neighbour pairs
        d = depth[1:] - depth[:-1]  # positive where the lower pixel is farther
        behind[1:] |= both & (d > thr[1:])
        behind[:-1] |= both & (-d > thr[:-1])
        both = valid[:, 1:] & valid[:, :-1]  # horizontal neighbour pairs
        d = depth[:, 1:] - depth[:, :-1]
        behind[:, 1:] |= both & (d > thr[:, 1:])
        behind[:, :-1] |= both & (-d > thr[:, :-1])
        return behind

    def stride_for(self, intr: CameraIntrinsics) -> int:
        """The pixel step used for images of this camera."""
        return self.config.stride if self.config.stride > 0 else max(1, intr.width // 160)

    def _strided_rays(self, intr: CameraIntrinsics) -> np.ndarray:
        if self._rays_key != intr:
            s = self.stride_for(intr)
            self._rays = pixel_rays(intr)[::s, ::s].copy()
            self._rays_key = intr
        return self._rays

    def segment_frame(self, frame: RGBDFrame, T_world_cam: np.ndarray | None = None) -> list[Segment]:
        """Planes and object clusters of one posed frame (pose from ``T_world_cam`` or ``frame.T_world_cam``)."""
        t0 = time.perf_counter()
        pts, cols, _ = self.frame_points(frame, T_world_cam)
        t_bp = (time.perf_counter() - t0) * 1e3
        T = frame.T_world_cam if T_world_cam is None else T_world_cam
        segs = self.segment_points(pts, cols, sensor_origin=np.asarray(T, dtype=np.float64)[:3, 3])
        self.last_stats.timings_ms["backproject"] = t_bp
        self.last_stats.timings_ms["total"] = (time.perf_counter() - t0) * 1e3
        return segs

    # ---------------------------------------------------------------- point clouds
    def segment_points(self, points_world: np.ndarray, colors: np.ndarray | None = None,
                       sensor_origin: np.ndarray | None = None) -> list[Segment]:
        """Segment a world-frame cloud (N, 3) (one frame's points or a fused map) into planes and objects.

        sensor_origin: (3,) camera centre of a single-frame cloud; with it, plane inlier distances grow with
        range like depth noise (``plane_noise_k``); a fused cloud has no single origin and uses the fixed
        ``plane_distance_m``; it also tells walls from object faces (see ``wall_max_behind_fraction``).
        Non-finite points are dropped. Returns plane segments first (kinds floor/wall/support/plane), then
        object segments, each with points at ``voxel_m`` resolution.
        """
        cfg = self.config
        stats = SegmentationStats()
        self.last_stats = stats
        t0 = time.perf_counter()
        pts = np.asarray(points_world, dtype=np.float32).reshape(-1, 3)
        cols = (np.full_like(pts, 0.5) if colors is None
                else np.asarray(colors, dtype=np.float32).reshape(-1, 3))
        if len(cols) != len(pts):
            raise GeometryError(f"{len(pts)} points but {len(cols)} colours")
        finite = np.all(np.isfinite(pts), axis=1)
        if not finite.all():
            stats.rejected["non_finite_points"] = int((~finite).sum())
            pts, cols = pts[finite], cols[finite]
        stats.input_points = len(pts)
        if len(pts) == 0:
            return []
        pcd = _to_o3d(pts, np.clip(cols, 0.0, 1.0)).voxel_down_sample(cfg.voxel_m)
        pts = np.asarray(pcd.points, dtype=np.float32)
        cols = np.asarray(pcd.colors, dtype=np.float32)
        stats.downsampled_points = len(pts)
        t1 = time.perf_counter()
        stats.timings_ms["downsample"] = (t1 - t0) * 1e3

        thr = np.full(len(pts), cfg.plane_distance_m)  # (N,) per-point plane inlier distance
        if sensor_origin is not None:
            r2 = np.sum((pts.astype(np.float64) - np.asarray(sensor_origin, dtype=np.float64)) ** 2, axis=1)
            thr = np.maximum(thr, cfg.plane_noise_k * r2)
        origin = None if sensor_origin is None else np.asarray(sensor_origin, dtype=np.float64).reshape(3)
        segments, rest = self._remove_planes(_PlaneSearch(pts.astype(np.float64), cols, thr, origin), stats)
        t2 = time.perf_counter()
        stats.timings_ms["planes"] = (t2 - t1) * 1e3
        segments += self._cluster(pts[rest], cols[rest], stats)
        stats.timings_ms["cluster"] = (time.perf_counter() - t2) * 1e3
        return segments

    def _remove_planes(self, ps: "_PlaneSearch", stats: SegmentationStats) -> tuple[list[Segment], np.ndarray]:
        """Plane segments, and the indices (M,) of the points left for clustering.

        With a known up axis, horizontal planes (floor, table tops) come from peaks of the height histogram
        (a 1-point hypothesis: measured ~10x cheaper than RANSAC and it finds small table tops that RANSAC's
        100 3-point samples miss); walls and other planes then come from RANSAC. A plane's inliers are split
        into 2D connected pieces and only pieces at least ``plane_min_extent_m`` long and
        ``plane_min_width_m`` wide are removed, so the strip where an infinite plane cuts a wall or an object,
        or an object's own flat face, stays for clustering. With a known up axis, large planes that are neither
        floor, support nor wall (a sofa's front, a wardrobe side) also stay: they belong to objects.
        """
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        min_inliers = max(cfg.plane_min_points, int(cfg.plane_min_fraction * len(ps.pts)))
        if self.up is not None:
            self._horizontal_planes(ps, min_inliers)
        for _ in range(cfg.max_planes):
            rest = np.nonzero(ps.searchable)[0]
            if len(rest) < max(min_inliers, 3):
                break
            model = self._fit_plane(ps.pts[rest], rng)
            if model is None:
                break
            inl = rest[np.abs(ps.pts[rest] @ model[:3] + model[3]) < ps.thr[rest]]
            if len(inl) < min_inliers or not self._add_plane_pieces(ps, inl, model):
                break  # RANSAC returns the best-supported plane first: the others are smaller still
        if cfg.floor_height_m is None and self.up is not None:
            # The floor estimate may have dropped after a table top was classified in this same frame.
            for seg in ps.segments:
                if seg.kind in ("floor", "support"):
                    seg.kind = "floor" if self._is_floor_height(-float(seg.plane[3])) else "support"
                    seg.label = "floor" if seg.kind == "floor" else None
        stats.planes = len(ps.segments)
        return ps.segments, np.nonzero(ps.keep)[0]

    def _horizontal_planes(self, ps: "_PlaneSearch", min_inliers: int) -> None:
        cfg = self.config
        thr = cfg.plane_distance_m
        h = ps.pts @ self.up  # (N,) heights
        lo = h.min()
        nbins = int((h.max() - lo) / thr) + 2
        counts = np.bincount(((h - lo) / thr).astype(np.int64), minlength=nbins).astype(np.int64)
        window = counts[:-1] + counts[1:]  # points within one 2-bin (2 x thr) band, like the inlier band
        for _ in range(cfg.max_horizontal_peaks):
            b = int(np.argmax(window))
            if window[b] < min_inliers:
                break
            band = np.nonzero(ps.searchable & (h >= lo + b * thr) & (h < lo + (b + 2) * thr))[0]
            window[max(b - 1, 0):b + 2] = 0  # each peak is looked at once
            if len(band) < 3:
                continue
            height = float(np.median(h[band]))
            inl = np.nonzero(ps.searchable & (np.abs(h - height) < ps.thr))[0]
            self._add_plane_pieces(ps, inl, np.append(self.up, -height))

    def _add_plane_pieces(self, ps: "_PlaneSearch", inl: np.ndarray, model: np.ndarray) -> bool:
        """Turn the large 2D-connected pieces of a plane's inliers ``inl`` into plane segments (each refitted by
        least squares), clearing them from ``keep`` and ``searchable``; returns whether any piece was large.

        With a known up axis, pieces of kind 'plane' are only cleared from ``searchable``: they are object
        faces, left for clustering."""
        cfg = self.config
        uv = ps.pts[inl] @ _plane_basis(model[:3]).T  # (K, 2) in-plane coordinates
        labels, n = grid_connected_components_2d(uv, cfg.plane_piece_cell_m)
        sizes = np.bincount(labels, minlength=n)
        pieces: dict[str, list[np.ndarray]] = {}  # kind -> index arrays of its pieces
        for c in np.nonzero(sizes >= cfg.plane_min_piece_points)[0]:
            in_piece = labels == c
            major, minor = self._plane_extents(uv[in_piece])
            if major < cfg.plane_min_extent_m or minor < cfg.plane_min_width_m:
                continue
            idx = inl[in_piece]
            kind = "plane" if self.up is None else self._plane_kind(ps, fit_plane(ps.pts[idx], model[:3]), idx,
                                                                    (major, minor))
            if kind == "support":
                # A table top's inliers include the strip where its plane cuts the wall it stands against (and
                # other tall things): cells with few occupied neighbours are strips, not surface.
                idx = idx[dense_cells(uv[in_piece], cfg.plane_piece_cell_m, cfg.support_min_neighbours)]
                if len(idx) < cfg.plane_min_piece_points:
                    continue
            pieces.setdefault(kind, []).append(idx)
        for kind, groups in pieces.items():
            if kind == "plane" and self.up is not None:
                for idx in groups:
                    ps.searchable[idx] = False
                continue
            # Separate table tops are separate supports; the pieces of a floor or wall split by an occluder are
            # one structure.
            for idx in (groups if kind == "support" else [np.concatenate(groups)]):
                plane = self._oriented(fit_plane(ps.pts[idx], model[:3]))
                ps.segments.append(Segment(ps.pts[idx].astype(np.float32), ps.cols[idx],
                                           label=kind if kind in ("floor", "wall") else None, source="geometry",
                                           kind=kind, plane=plane, instance_id=len(ps.segments)))
                ps.keep[idx] = False
                ps.searchable[idx] = False
        return bool(pieces)

    def _fit_plane(self, pts64: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """Best plane (4,) [n, d] with unit normal, by RANSAC (geometry.ops.ransac_plane, seeded by ``rng``) on a
        random subsample of at most ``plane_sample_points`` points (the cost is iterations x points)."""
        cfg = self.config
        sample = pts64 if len(pts64) <= cfg.plane_sample_points else \
            pts64[rng.choice(len(pts64), cfg.plane_sample_points, replace=False)]
        model, inliers = ransac_plane(sample, cfg.plane_distance_m, cfg.plane_iterations, rng)
        return model if len(inliers) >= 3 else None

    @staticmethod
    def _plane_extents(uv: np.ndarray) -> tuple[float, float]:
        """(major, minor) extents of one connected piece of in-plane points (K, 2) along its principal axes.

        Principal axes, not the plane basis: a thin strip lying diagonally would otherwise look wide. Min/max
        suffice because stray points are not connected to the piece."""
        centred = uv - uv.mean(axis=0)
        _, vecs = np.linalg.eigh(centred.T @ centred)
        proj = centred @ vecs  # (K, 2), minor axis first
        ext = proj.max(axis=0) - proj.min(axis=0)
        return float(ext[1]), float(ext[0])

    def _oriented(self, model: np.ndarray) -> np.ndarray:
        """The plane with a horizontal plane's normal pointing up (so its height along up is -d)."""
        if self.up is not None and float(model[:3] @ self.up) < 0 and self._is_horizontal(model):
            return -model
        return model

    def _is_horizontal(self, model: np.ndarray) -> bool:
        return abs(float(model[:3] @ self.up)) >= np.cos(np.radians(self.config.horizontal_tol_deg))

    def _plane_kind(self, ps: "_PlaneSearch", model: np.ndarray, idx: np.ndarray,
                    extents: tuple[float, float]) -> str:
        """'floor' | 'support' | 'wall' | 'plane' for one plane piece (point indices idx, extents (major, minor))."""
        cfg = self.config
        if self.up is None:
            return "plane"
        if self._is_horizontal(model):
            height = -float(self._oriented(model)[3])
            if cfg.floor_height_m is None and extents[0] >= cfg.floor_min_extent_m:
                # Unknown floor height: the floor is the lowest large horizontal plane seen so far (kept as
                # state so that a later close-up of a table top does not call the table the floor).
                self.floor_estimate_m = height if self.floor_estimate_m is None else min(self.floor_estimate_m,
                                                                                         height)
            return "floor" if self._is_floor_height(height) else "support"
        if abs(float(model[:3] @ self.up)) > np.sin(np.radians(cfg.vertical_tol_deg)):
            return "plane"  # slanted
        if ps.origin is not None:
            # Nothing is seen through a wall: a large vertical plane with points behind it, within its
            # horizontal span (a sofa's back behind its front), is an object's face.
            n, d = (model[:3], model[3]) if model[:3] @ ps.origin + model[3] > 0 else (-model[:3], -model[3])
            along = _cross3(self.up, n)  # horizontal in-plane axis
            t_piece = ps.pts[idx] @ along
            t = ps.pts @ along
            behind = (ps.pts @ n + d < -2.0 * ps.thr) & (t >= t_piece.min()) & (t <= t_piece.max())
            return "wall" if behind.sum() <= cfg.wall_max_behind_fraction * len(idx) else "plane"
        h = ps.pts[idx] @ self.up
        tall = float(np.percentile(h, 98.0) - np.percentile(h, 2.0))
        if extents[0] < cfg.wall_min_extent_m:
            return "plane"
        return "wall" if tall >= cfg.wall_min_height_m or extents[0] >= cfg.wall_any_height_extent_m else "plane"

    def _is_floor_height(self, height: float) -> bool:
        floor = self.config.floor_height_m if self.config.floor_height_m is not None else self.floor_estimate_m
        return floor is not None and height <= floor + self.config.floor_tol_m

    def _cluster(self, pts: np.ndarray, cols: np.ndarray, stats: SegmentationStats) -> list[Segment]:
        cfg = self.config
        if len(pts) == 0:
            return []
        if cfg.cluster_method == "dbscan":
            labels = np.asarray(_to_o3d(pts).cluster_dbscan(cfg.cluster_tolerance_m, cfg.dbscan_min_points),
                                dtype=np.int64)
        else:
            labels, _ = voxel_connected_components(pts, cfg.cluster_tolerance_m)
        return self._segments_from_labels(pts, cols, labels, stats, source="geometry")

    def _segments_from_labels(self, pts: np.ndarray, cols: np.ndarray, labels: np.ndarray,
                              stats: SegmentationStats, source: str) -> list[Segment]:
        cfg = self.config
        keep = labels >= 0  # DBSCAN marks noise with -1
        if not keep.any():
            return []
        order = np.argsort(labels[keep], kind="stable")
        lab_sorted = labels[keep][order]
        p_sorted, c_sorted = pts[keep][order], cols[keep][order]
        ids, starts = np.unique(lab_sorted, return_index=True)
        ends = np.append(starts[1:], len(lab_sorted))
        out: list[Segment] = []
        for cid, a, b in zip(ids, starts, ends):
            if b - a < cfg.min_cluster_points:
                stats.rejected["too_few_points"] = stats.rejected.get("too_few_points", 0) + 1
                continue
            p = p_sorted[a:b]
            if float(np.max(p.max(axis=0) - p.min(axis=0))) > cfg.max_cluster_extent_m:
                stats.rejected["too_large"] = stats.rejected.get("too_large", 0) + 1
                continue
            out.append(Segment(p, c_sorted[a:b], source=source, kind="object", instance_id=int(cid)))
        stats.clusters = len(out)
        return out

    # ---------------------------------------------------------------- model instance masks
    def segments_from_instances(self, frame: RGBDFrame, instance_ids: np.ndarray,
                                labels: Mapping[int, str] | None = None, scores: Mapping[int, float] | None = None,
                                embeddings: Mapping[int, np.ndarray] | None = None,
                                T_world_cam: np.ndarray | None = None) -> list[Segment]:
        """Per-instance segments from a model's instance-id image.

        instance_ids: (H, W) integer ids registered to the depth image; ids <= 0 are background.
        labels / scores / embeddings: optional per-id class name, score in [0, 1] and (D,) feature.
        Points are taken on the same strided grid as ``segment_frame``; see SegmenterConfig.mask_* for the
        boundary and mask-bleed clean-up. Instances left with too few points are dropped and counted.
        """
        cfg = self.config
        ids_img = np.asarray(instance_ids)
        if ids_img.shape != frame.depth_m.shape or not np.issubdtype(ids_img.dtype, np.integer):
            raise GeometryError(f"instance_ids must be an integer image of shape {frame.depth_m.shape}, "
                                f"got {ids_img.shape} {ids_img.dtype}")
        stats = SegmentationStats()
        t0 = time.perf_counter()
        pts, cols, valid = self.frame_points(frame, T_world_cam)
        s = self.stride_for(frame.intrinsics)
        ids_s = ids_img[::s, ::s].astype(np.int64)
        if cfg.mask_erode_boundary:
            edge = np.zeros(ids_s.shape, dtype=bool)
            dv = ids_s[1:, :] != ids_s[:-1, :]
            dh = ids_s[:, 1:] != ids_s[:, :-1]
            edge[1:, :] |= dv
            edge[:-1, :] |= dv
            edge[:, 1:] |= dh
            edge[:, :-1] |= dh
            ids_s = np.where(edge, 0, ids_s)
        inst = ids_s[valid]  # (N,) aligned with pts
        stats.input_points = len(pts)
        fg = inst > 0
        out: list[Segment] = []
        if fg.any():
            order = np.argsort(inst[fg], kind="stable")
            inst_sorted, p_sorted, c_sorted = inst[fg][order], pts[fg][order], cols[fg][order]
            uid, starts = np.unique(inst_sorted, return_index=True)
            ends = np.append(starts[1:], len(inst_sorted))
            for iid, a, b in zip(uid, starts, ends):
                p, c = p_sorted[a:b], c_sorted[a:b]
                if cfg.mask_largest_component and len(p) >= cfg.mask_min_pixels:
                    lab, n = voxel_connected_components(p, cfg.cluster_tolerance_m)
                    if n > 1:
                        big = lab == np.argmax(np.bincount(lab))
                        p, c = p[big], c[big]
                if len(p) < cfg.mask_min_pixels:
                    stats.rejected["too_few_points"] = stats.rejected.get("too_few_points", 0) + 1
                    continue
                key = int(iid)
                out.append(Segment(p, c, label=None if labels is None else labels.get(key),
                                   label_score=0.0 if scores is None else float(scores.get(key, 0.0)),
                                   embedding=None if embeddings is None else embeddings.get(key),
                                   source="mask", kind="object", instance_id=key))
        stats.clusters = len(out)
        stats.timings_ms["total"] = (time.perf_counter() - t0) * 1e3
        self.last_stats = stats
        return out
