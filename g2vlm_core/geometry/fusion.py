"""Incremental coloured TSDF fusion on Open3D's hashed VoxelBlockGrid (CPU or CUDA), with input validation."""
from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open3d as o3d
import open3d.core as o3c

from .camera import CameraIntrinsics, GeometryError, check_rigid, invert_transform, pixel_rays
from ..frame import RGBDFrame
from .ops import from_o3d_pointcloud, intrinsics_tensor, mesh_arrays, resolve_device

log = logging.getLogger(__name__)

# (name, dtype, channels, bytes per voxel); float32 everywhere because Open3D's TSDF kernels take float32
# depth only together with float32 colour (the other supported pair is uint16 depth + uint8 colour).
_ATTRS = (("tsdf", o3c.float32, 1, 4), ("weight", o3c.float32, 1, 4), ("color", o3c.float32, 3, 12))


@dataclass(frozen=True)
class FusionConfig:
    voxel_size_m: float = 0.05  # voxel edge; 5 cm is the navigation-scale default of nvblox
    trunc_voxel_multiplier: float = 4.0  # truncation band = this x voxel_size_m on each side of the surface
    depth_min_m: float = 0.1  # depths below this are treated as missing (sensor near limit, robot body)
    depth_max_m: float = 4.0  # depths beyond this are treated as missing (structured-light noise grows as z^2)
    block_resolution: int = 8  # voxels per block edge; one hash entry holds block_resolution^3 voxels
    block_count: int = 1000  # initial hash capacity in blocks; Open3D doubles it when the surface outgrows it
    device: str = "auto"  # "auto" (CUDA:0 when Open3D sees one, else CPU:0), "CPU:0" or "CUDA:0"
    weight_threshold: float = 0.5  # extract voxels whose weight (+1 per observing frame) exceeds this: 0.5 = seen once
    min_valid_pixels: int = 100  # frames with fewer usable depth pixels are skipped as "too_few_valid_depth"
    integrate_color: bool = True  # fuse colour (extraction then returns colours; else grey)
    local_radius_m: float | None = None  # local window: drop blocks whose centre is farther from the camera
    prune_every: int = 10  # integrated frames between two local-window prunes (pruning scans all blocks)
    raise_on_invalid: bool = True  # malformed frames raise GeometryError; False: log, count and skip them

    def __post_init__(self) -> None:
        if not (self.voxel_size_m > 0 and self.trunc_voxel_multiplier > 0):
            raise GeometryError("voxel_size_m and trunc_voxel_multiplier must be positive")
        if not (0 <= self.depth_min_m < self.depth_max_m):
            raise GeometryError(f"need 0 <= depth_min_m < depth_max_m, got {self.depth_min_m}, {self.depth_max_m}")
        if self.block_resolution < 2 or self.block_count < 1:
            raise GeometryError("block_resolution must be >= 2 and block_count >= 1")
        if self.local_radius_m is not None and self.local_radius_m <= 0:
            raise GeometryError("local_radius_m must be positive or None")


@dataclass(frozen=True)
class FusionStats:
    """Size of the map: the hash grows with the observed surface, so memory follows what was seen."""

    frames_integrated: int
    frames_skipped: int
    active_blocks: int
    capacity_blocks: int
    active_bytes: int  # voxel payload of the active blocks
    allocated_bytes: int  # voxel payload allocated by the hash (capacity), what the process actually holds
    blocks_pruned: int

    @property
    def active_mb(self) -> float:
        return self.active_bytes / 2**20


class TSDFFusion:
    """Fuse posed RGB-D frames into a TSDF; extract a coloured cloud or mesh; optionally keep a local window.

    Poses come from the caller (``frame.T_world_cam``: TF, an odometry topic or ``odometry.RGBDTracker``).
    Malformed frames (wrong dtype, rgb/depth size mismatch, intrinsics mismatch, missing or non-rigid pose)
    raise GeometryError, or with ``raise_on_invalid=False`` are skipped; frames whose depth is unusable
    (NaN/inf/negative/zero everywhere) are skipped. Every skip is counted in ``skipped`` by reason and a
    skipped frame never touches the map. Methods are thread-safe (one lock) so a publisher may extract while
    a worker integrates.

    Local window (``local_radius_m``): every ``prune_every`` frames, blocks whose centre is farther than the
    radius from the current camera centre are erased from the hash (their buffers zeroed first, since Open3D
    re-uses freed buffers without clearing them). This bounds memory for long runs; leaving the area and
    coming back starts that region afresh.
    """

    def __init__(self, config: FusionConfig | None = None) -> None:
        self.config = config or FusionConfig()
        self.device = resolve_device(self.config.device)
        self.skipped: collections.Counter[str] = collections.Counter()
        self.last_skip_detail = ""  # why the latest skipped frame was skipped
        self.frames_integrated = 0
        self.blocks_pruned = 0
        self._lock = threading.RLock()
        self._K_cache: tuple[CameraIntrinsics, o3c.Tensor] | None = None
        self._buffers: dict[str, np.ndarray] = {}
        self._images: dict[str, o3d.t.geometry.Image] = {}
        self._bytes_per_block = self.config.block_resolution ** 3 * sum(a[3] for a in _ATTRS)
        self._version = 0  # bumped on every map change; keys the cached ray-casting scene
        self._scene_cache: tuple | None = None
        self._new_grid()
        log.info("TSDF fusion on %s, voxel %.3f m, block %d^3", self.device, self.config.voxel_size_m,
                 self.config.block_resolution)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _new_grid(self) -> None:
        c = self.config
        self.vbg = o3d.t.geometry.VoxelBlockGrid(
            [a[0] for a in _ATTRS], [a[1] for a in _ATTRS], [a[2] for a in _ATTRS],
            c.voxel_size_m, c.block_resolution, c.block_count, self.device)

    def reset(self) -> None:
        """Forget the map and the counters (keeps the buffers)."""
        with self._lock:
            self._new_grid()
            self._version += 1
            self.skipped.clear()
            self.frames_integrated = 0
            self.blocks_pruned = 0

    # -- integration ----------------------------------------------------------------------------------------
    def _skip(self, reason: str, message: str, structural: bool) -> bool:
        self.skipped[reason] += 1
        self.last_skip_detail = message
        if structural and self.config.raise_on_invalid:
            raise GeometryError(message)
        log.warning("fusion skipped a frame (%s): %s", reason, message)
        return False

    def _K(self, intr: CameraIntrinsics) -> o3c.Tensor:
        if self._K_cache is None or self._K_cache[0] != intr:
            self._K_cache = (intr, intrinsics_tensor(intr))
        return self._K_cache[1]

    def _image(self, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, o3d.t.geometry.Image]:
        """A reusable float32 host buffer and the Open3D image viewing it (no per-frame allocation on CPU)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape:
            buf = np.zeros(shape, np.float32)
            self._buffers[name] = buf
            self._images[name] = o3d.t.geometry.Image(o3c.Tensor.from_numpy(buf))
        return buf, self._images[name]

    def _to_device(self, img: o3d.t.geometry.Image) -> o3d.t.geometry.Image:
        return img if self.device.get_type() == o3c.Device.DeviceType.CPU else img.to(self.device)

    def integrate(self, frame: RGBDFrame, T_world_cam: np.ndarray | None = None) -> bool:
        """Fuse one frame at ``T_world_cam`` (default ``frame.T_world_cam``). True if integrated, False if skipped."""
        c = self.config
        with self._lock:
            try:
                frame.validate()
            except GeometryError as e:
                return self._skip("malformed_frame", str(e), True)
            T = frame.T_world_cam if T_world_cam is None else T_world_cam
            if T is None:
                return self._skip("missing_pose", "frame has no T_world_cam and none was given", True)
            try:
                T = check_rigid(T, "T_world_cam")
            except GeometryError as e:
                return self._skip("non_rigid_pose", str(e), True)
            depth = frame.depth_m
            if depth.size == 0:
                return self._skip("empty_frame", "frame has no pixels", True)

            # NaN/inf/negative/out-of-range depths become 0, which Open3D's kernels treat as missing;
            # comparisons with NaN are False, so one mask covers every bad value
            dbuf, dimg = self._image("depth", depth.shape)
            with np.errstate(invalid="ignore"):
                usable = (depth >= c.depth_min_m) & (depth <= c.depth_max_m)
            n_valid = int(np.count_nonzero(usable))
            if n_valid < c.min_valid_pixels:
                reason = "no_valid_depth" if n_valid == 0 else "too_few_valid_depth"
                return self._skip(reason, depth_problem(depth, c.depth_min_m, c.depth_max_m, n_valid,
                                                        c.min_valid_pixels), False)
            dbuf.fill(0.0)
            np.copyto(dbuf, depth, where=usable)
            cbuf, cimg = self._image("color", frame.rgb.shape)
            if c.integrate_color:
                np.multiply(frame.rgb, np.float32(1.0 / 255.0), out=cbuf)
            else:
                cbuf.fill(0.5)

            K = self._K(frame.intrinsics)
            extrinsic = o3c.Tensor(invert_transform(T))  # Open3D wants T_cam_world
            d_dev, c_dev = self._to_device(dimg), self._to_device(cimg)
            blocks = self.vbg.compute_unique_block_coordinates(d_dev, K, extrinsic, 1.0, c.depth_max_m,
                                                               c.trunc_voxel_multiplier)
            self.vbg.integrate(blocks, d_dev, c_dev, K, K, extrinsic, 1.0, c.depth_max_m, c.trunc_voxel_multiplier)
            self.frames_integrated += 1
            self._version += 1
            if c.local_radius_m is not None and self.frames_integrated % c.prune_every == 0:
                self.prune_far_blocks(T[:3, 3], c.local_radius_m)
            return True

    # -- local window ---------------------------------------------------------------------------------------
    def active_block_coords(self) -> np.ndarray:
        """(B, 3) int32 integer coordinates of the allocated blocks (block edge = voxel x resolution)."""
        with self._lock:
            h = self.vbg.hashmap()
            idx = h.active_buf_indices().to(o3c.int64)
            return h.key_tensor()[idx].cpu().numpy().reshape(-1, 3)

    def prune_far_blocks(self, center_world: np.ndarray, radius_m: float) -> int:
        """Erase blocks whose centre is farther than ``radius_m`` from ``center_world`` (3,); returns how many."""
        with self._lock:
            h = self.vbg.hashmap()
            idx = h.active_buf_indices().to(o3c.int64)
            if idx.shape[0] == 0:
                return 0
            keys = h.key_tensor()[idx]
            block_m = self.config.voxel_size_m * self.config.block_resolution
            centres = (keys.cpu().numpy().astype(np.float64) + 0.5) * block_m  # (B, 3)
            far = np.linalg.norm(centres - np.asarray(center_world, np.float64).reshape(3), axis=1) > radius_m
            n = int(far.sum())
            if n == 0:
                return 0
            far_t = o3c.Tensor(np.flatnonzero(far).astype(np.int64), device=idx.device)
            far_buf = idx[far_t]
            for i in range(len(_ATTRS)):
                # freed buffers are handed back on the next activation without clearing: zero them now so a
                # block re-created later starts from weight 0 instead of stale TSDF values
                h.value_tensor(i)[far_buf] = 0.0
            h.erase(keys[far_t])
            self._version += 1
            self.blocks_pruned += n
            log.debug("pruned %d blocks farther than %.2f m", n, radius_m)
            return n

    # -- outputs --------------------------------------------------------------------------------------------
    def stats(self) -> FusionStats:
        with self._lock:
            h = self.vbg.hashmap()
            active, cap = int(h.size()), int(h.capacity())
            return FusionStats(self.frames_integrated, sum(self.skipped.values()), active, cap,
                               active * self._bytes_per_block, cap * self._bytes_per_block, self.blocks_pruned)

    def extract_point_cloud(self, weight_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Surface points (N, 3) float32 (world frame) and colours (N, 3) float32 in [0, 1]."""
        wt = self.config.weight_threshold if weight_threshold is None else weight_threshold
        with self._lock:
            if self.vbg.hashmap().size() == 0:
                return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
            pcd = self.vbg.extract_point_cloud(float(wt))
        pts, cols = from_o3d_pointcloud(pcd)
        if cols is None:
            cols = np.full_like(pts, 0.5)
        return pts, cols

    def extract_mesh(self, weight_threshold: float | None = None) -> o3d.t.geometry.TriangleMesh:
        """Marching-cubes mesh (tensor TriangleMesh on CPU, vertex colours in [0, 1]); ``.to_legacy()`` for the
        classic API. Empty mesh when nothing is fused."""
        wt = self.config.weight_threshold if weight_threshold is None else weight_threshold
        with self._lock:
            if self.vbg.hashmap().size() == 0:
                return o3d.t.geometry.TriangleMesh()
            mesh = self.vbg.extract_triangle_mesh(float(wt)).cpu()
        if "colors" in mesh.vertex:
            mesh.vertex.colors = mesh.vertex.colors.clip(0.0, 1.0)
        return mesh

    def raycast(self, T_world_cam: np.ndarray, intr: CameraIntrinsics, weight_threshold: float | None = None,
                method: str = "mesh") -> dict[str, np.ndarray]:
        """Render the map from a pose: {"depth": (H, W) float32 m (0 = no surface), "normal": (H, W, 3) unit
        normals in the camera frame, "color": (H, W, 3) float32 in [0, 1]}. Used by frame-to-model odometry
        and reprojection checks.

        method "mesh" (default) ray-casts the marching-cubes mesh with Open3D's RaycastingScene (cached until
        the map changes). method "tsdf" uses VoxelBlockGrid.ray_cast directly; it is faster on CUDA but on
        Open3D 0.20 its depth is biased along the ray by up to one voxel depending on the viewing direction
        (measured on rendered scenes: +0.95 voxel looking along +x, +0.02 looking along -x) and it leaves
        block-shaped holes (isl-org/Open3D#5344), so it is not the default.
        """
        wt = self.config.weight_threshold if weight_threshold is None else weight_threshold
        T = check_rigid(T_world_cam, "T_world_cam")
        if method == "tsdf":
            return self._raycast_tsdf(T, intr, wt)
        if method != "mesh":
            raise ValueError(f"method must be 'mesh' or 'tsdf', got {method!r}")
        with self._lock:
            key = (self._version, float(wt))
            if self._scene_cache is None or self._scene_cache[0] != key:
                mesh = self.extract_mesh(wt)
                verts, tris = mesh_arrays(mesh)
                scene = o3d.t.geometry.RaycastingScene()
                if len(tris):
                    scene.add_triangles(o3c.Tensor(verts.astype(np.float32)), o3c.Tensor(tris.astype(np.uint32)))
                cols = (mesh.vertex.colors.numpy() if len(tris) and "colors" in mesh.vertex
                        else np.full((len(verts), 3), 0.5, np.float32))
                self._scene_cache = (key, scene, tris, cols, len(tris))
            _, scene, tris, cols, n_tris = self._scene_cache
        H, W = intr.shape
        if n_tris == 0:
            return {"depth": np.zeros((H, W), np.float32), "normal": np.zeros((H, W, 3), np.float32),
                    "color": np.zeros((H, W, 3), np.float32)}
        R = T[:3, :3].astype(np.float32)
        dirs = pixel_rays(intr).reshape(-1, 3) @ R.T  # (HW, 3) world directions with unit camera-z
        rays = np.empty((dirs.shape[0], 6), np.float32)
        rays[:, :3] = T[:3, 3]
        rays[:, 3:] = dirs
        hit = scene.cast_rays(o3c.Tensor.from_numpy(rays))
        t = hit["t_hit"].numpy()
        ok = np.isfinite(t) & (t >= self.config.depth_min_m) & (t <= self.config.depth_max_m)
        depth = np.where(ok, t, 0.0).astype(np.float32)  # t is the depth: directions have unit camera-z
        normal = np.zeros((H * W, 3), np.float32)
        color = np.zeros((H * W, 3), np.float32)
        if ok.any():
            n_w = hit["primitive_normals"].numpy()[ok]
            n_c = n_w @ R  # world -> camera
            n_c *= -np.sign(np.sum(n_c * (dirs[ok] @ R), axis=1, keepdims=True) + 1e-12)  # face the camera
            normal[ok] = n_c
            tri = tris[hit["primitive_ids"].numpy()[ok].astype(np.int64)]  # (M, 3) vertex ids
            uv = hit["primitive_uvs"].numpy()[ok]
            w = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)[..., None]  # barycentric
            color[ok] = np.clip((cols[tri] * w).sum(axis=1), 0.0, 1.0)
        return {"depth": depth.reshape(H, W), "normal": normal.reshape(H, W, 3), "color": color.reshape(H, W, 3)}

    def _raycast_tsdf(self, T: np.ndarray, intr: CameraIntrinsics, wt: float) -> dict[str, np.ndarray]:
        c = self.config
        with self._lock:
            h = self.vbg.hashmap()
            if h.size() == 0:
                z = np.zeros(intr.shape, np.float32)
                return {"depth": z, "normal": np.zeros(intr.shape + (3,), np.float32),
                        "color": np.zeros(intr.shape + (3,), np.float32)}
            blocks = h.key_tensor()[h.active_buf_indices().to(o3c.int64)]
            # Open3D warns on stdout each time its range-map buffer grows; that is routine, keep it quiet
            with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
                out = self.vbg.ray_cast(blocks, self._K(intr), o3c.Tensor(invert_transform(T)), intr.width,
                                        intr.height, ["depth", "normal", "color"], 1.0, c.depth_min_m,
                                        c.depth_max_m, float(wt), c.trunc_voxel_multiplier, 8)
            depth = out["depth"].cpu().numpy().reshape(intr.shape).astype(np.float32)
            normal_w = out["normal"].cpu().numpy().reshape(intr.shape + (3,)).astype(np.float32)
            color = out["color"].cpu().numpy().reshape(intr.shape + (3,)).astype(np.float32)
        depth[~np.isfinite(depth)] = 0.0
        normal_c = normal_w @ T[:3, :3].astype(np.float32)  # world -> camera: R^T n, row-vector form
        return {"depth": depth, "normal": normal_c, "color": np.clip(color, 0.0, 1.0)}

    # -- persistence ----------------------------------------------------------------------------------------
    def save_ply(self, path: str | Path, kind: str = "mesh") -> Path:
        """Write the mesh (``kind="mesh"``) or the point cloud (``"cloud"``) as PLY; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "mesh":
            ok = o3d.t.io.write_triangle_mesh(str(path), self.extract_mesh())
        elif kind == "cloud":
            pts, cols = self.extract_point_cloud()
            pcd = o3d.t.geometry.PointCloud(o3c.Tensor(pts))
            # 8-bit colours: what PLY viewers expect (Open3D's legacy reader divides float colours by 255)
            pcd.point.colors = o3c.Tensor(np.clip(np.rint(cols * 255.0), 0, 255).astype(np.uint8))
            ok = o3d.t.io.write_point_cloud(str(path), pcd)
        else:
            raise ValueError(f"kind must be 'mesh' or 'cloud', got {kind!r}")
        if not ok:
            raise OSError(f"Open3D could not write {path}")
        return path

    def save_map(self, path: str | Path) -> Path:
        """Save the voxel grid itself (Open3D .npz) so ``load_map`` can resume fusing."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.vbg.save(str(path))
        return path

    def read_map(self, path: str | Path) -> o3d.t.geometry.VoxelBlockGrid:
        """A voxel grid saved by ``save_map``, checked with numpy before Open3D parses it (keys, dtypes, shapes,
        finite values), on this fusion's device; the current map is not touched. GeometryError names the problem."""
        blocks, voxel_size_m, resolution = check_grid_file(path)
        if blocks == 0:  # Open3D refuses to load a grid without blocks
            return o3d.t.geometry.VoxelBlockGrid(
                [a[0] for a in _ATTRS], [a[1] for a in _ATTRS], [a[2] for a in _ATTRS], voxel_size_m, resolution,
                self.config.block_count, self.device)
        try:
            return o3d.t.geometry.VoxelBlockGrid.load(str(path)).to(self.device)
        except RuntimeError as e:
            raise GeometryError(f"{path}: Open3D cannot read the voxel grid ({e})") from None

    def replace_grid(self, vbg: o3d.t.geometry.VoxelBlockGrid) -> None:
        """Swap in a grid from ``read_map`` (voxel size and layout come from it)."""
        with self._lock:
            self.vbg = vbg
            self._version += 1

    def load_map(self, path: str | Path) -> None:
        """Replace the map by one saved with ``save_map``; an invalid file leaves the current map as it was."""
        self.replace_grid(self.read_map(path))


def depth_problem(depth: np.ndarray, min_m: float, max_m: float, n_valid: int, needed: int) -> str:
    """What is wrong with a depth image too few of whose pixels are usable: which invalid values it holds."""
    with np.errstate(invalid="ignore"):
        groups = (("NaN", np.isnan(depth)), ("infinite", np.isinf(depth)), ("zero or negative", depth <= 0),
                  (f"nearer than depth_min_m {min_m} m", (depth > 0) & (depth < min_m)),
                  (f"farther than depth_max_m {max_m} m", np.isfinite(depth) & (depth > max_m)))
        counts = [(name, int(np.count_nonzero(mask))) for name, mask in groups]
    for name, n in counts:
        if n == depth.size:
            return f"all {depth.size} depth pixels are {name}"
    return (f"{n_valid} of {depth.size} depth pixels usable, {needed} needed; "
            + ", ".join(f"{n} {name}" for name, n in counts if n))


def check_grid_file(path: str | Path) -> tuple[int, float, int]:
    """(blocks, voxel size in m, block resolution) of a grid file; GeometryError unless ``path`` is a VoxelBlockGrid .npz of this module's layout with finite values.

    Open3D's loader trusts the file (a truncated or hand-edited grid can abort the process), so the arrays are read
    and checked here first, without unpickling anything."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile, zlib and numpy raise several unrelated types for a damaged file
        raise GeometryError(f"{path.name} is not a readable voxel grid ({type(e).__name__}: {e})") from None
    names = [a[0] for a in _ATTRS]
    expected = {"key", "block_resolution", "voxel_size"} | {f"attr_name_{n}" for n in names} | \
        {f"value_{i:03d}" for i in range(len(names))}
    devices = {k for k in arrays if k not in expected}
    missing = expected - set(arrays)
    if missing or len(devices) > 1:
        raise GeometryError(f"{path.name}: not a voxel grid of this layout (missing {sorted(missing)}, "
                            f"unexpected {sorted(devices)})")
    res = arrays["block_resolution"].reshape(-1)
    voxel = arrays["voxel_size"].reshape(-1)
    if res.size != 1 or not 2 <= int(res[0]) <= 64 or voxel.size != 1 or not (np.isfinite(voxel[0]) and voxel[0] > 0):
        raise GeometryError(f"{path.name}: invalid block_resolution {res.tolist()} or voxel_size {voxel.tolist()}")
    r = int(res[0])
    keys = arrays["key"]
    if keys.dtype != np.int32 or keys.ndim != 2 or keys.shape[1] != 3:
        raise GeometryError(f"{path.name}: 'key' must be (B, 3) int32, got {keys.shape} {keys.dtype}")
    if len(np.unique(keys, axis=0)) != len(keys):
        raise GeometryError(f"{path.name}: block keys are not unique")
    for i, (name, _, channels, _) in enumerate(_ATTRS):
        index = arrays[f"attr_name_{name}"].reshape(-1)
        if index.size != 1 or int(index[0]) != i:
            raise GeometryError(f"{path.name}: attribute {name} is stored as {index.tolist()}, expected {i}")
        v = arrays[f"value_{i:03d}"]
        if v.dtype != np.float32 or v.shape != (len(keys), r, r, r, channels):
            raise GeometryError(f"{path.name}: {name} must be {(len(keys), r, r, r, channels)} float32, "
                                f"got {v.shape} {v.dtype}")
        if not np.isfinite(v).all():
            raise GeometryError(f"{path.name}: {name} holds NaN or infinite values")
    return len(keys), float(voxel[0]), r
