"""RGB-D odometry with failure reporting: Open3D frame-to-frame, and frame-to-TSDF-model tracking (ModelTracker)."""
from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import open3d as o3d
import open3d.core as o3c

from .camera import (CameraIntrinsics, GeometryError, check_rigid, invert_transform, rotation_angle_deg,
                     valid_depth_mask)
from ..frame import RGBDFrame
from .ops import intrinsics_tensor, resolve_device

log = logging.getLogger(__name__)
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601 luma weights
_EDGE_M, _EDGE_FRAC = 0.03, 0.02  # a 3x3 depth spread above 3 cm + 2 % of the depth is an edge, not a slope

_METHODS = {"point_to_plane": o3d.t.pipelines.odometry.Method.PointToPlane,
            "intensity": o3d.t.pipelines.odometry.Method.Intensity,
            "hybrid": o3d.t.pipelines.odometry.Method.Hybrid}


@dataclass(frozen=True)
class OdometryConfig:
    method: str = "hybrid"  # "point_to_plane" (depth only), "intensity" or "hybrid" (depth + intensity)
    depth_min_m: float = 0.1  # depths outside [min, max] are ignored
    depth_max_m: float = 4.0  # far structured-light depth is too noisy to align on
    iterations: tuple[int, ...] = (10, 5, 3)  # Gauss-Newton iterations per pyramid level, coarsest level first
    depth_outlier_trunc_m: float = 0.07  # Open3D drops correspondences farther apart than this in depth
    depth_huber_delta_m: float = 0.05  # Huber width of the depth residual
    intensity_huber_delta: float = 0.1  # Huber width of the intensity residual (intensity in [0, 1])
    check_stride: int = 4  # pixel stride of the independent post-hoc consistency check
    inlier_dist_m: float = 0.05  # check: a reprojected source point agrees if |z_target - z_pred| < this
    min_valid_fraction: float = 0.05  # frames with fewer valid depth pixels are not tracked
    min_overlap: float = 0.3  # check: fraction of valid source pixels landing on valid target depth
    min_inlier_ratio: float = 0.6  # check: fraction of overlapping pixels that agree within inlier_dist_m
    max_translation_m: float = 0.5  # larger per-step motion is implausible at camera rates -> failure
    max_rotation_deg: float = 45.0  # likewise for rotation
    device: str = "CPU:0"  # "auto", "CPU:0" or "CUDA:0"

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {sorted(_METHODS)}, got {self.method!r}")


@dataclass
class OdometryResult:
    """Relative motion estimate plus the evidence for trusting it.

    T_target_source: (4, 4) maps source-camera points into the target camera (source = current frame,
                     target = reference frame or model view), i.e. T_ref_cur.
    fitness:         Open3D's inlier fraction at the finest level (inliers / pixels).
    inlier_rmse:     m, RMS depth residual of the agreeing points in our own check (below).
    inlier_ratio:    fraction of overlapping source pixels whose depth agrees with the target after motion.
    overlap:         fraction of valid source pixels that project onto valid target depth.
    success:         False when any check failed; ``failure_reason`` names the first that did ("reason: detail").
                     A failed result's T_target_source is the rejected estimate (or identity): never use it.
    """

    T_target_source: np.ndarray
    fitness: float = 0.0
    inlier_rmse: float = float("nan")
    inlier_ratio: float = 0.0
    overlap: float = 0.0
    success: bool = False
    failure_reason: str = ""
    intensity_error: float = float("nan")  # ModelTracker's check: median |intensity difference| where they overlap


def _failed(reason: str) -> OdometryResult:
    return OdometryResult(np.eye(4), success=False, failure_reason=reason)


class _Prepared:
    """A frame's sanitised depth (0 = missing) and intensity-ready colour as Open3D images."""

    def __init__(self, depth_m: np.ndarray, rgb01: np.ndarray, intr: CameraIntrinsics, cfg: OdometryConfig,
                 device: o3c.Device) -> None:
        valid = valid_depth_mask(depth_m, cfg.depth_min_m, cfg.depth_max_m)
        self.depth = np.where(valid, depth_m, 0.0).astype(np.float32)  # (H, W)
        self.valid_fraction = float(valid.mean()) if valid.size else 0.0
        self.intr = intr
        color = np.ascontiguousarray(rgb01, dtype=np.float32)  # (H, W, 3) in [0, 1]
        self.rgb01 = color
        self.rgbd = o3d.t.geometry.RGBDImage(o3d.t.geometry.Image(o3c.Tensor.from_numpy(color)).to(device),
                                             o3d.t.geometry.Image(o3c.Tensor.from_numpy(self.depth)).to(device))
        self._cache: dict[str, np.ndarray] = {}  # shared with with_gain's copies

    def refine_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 4) [depth, d/du, d/dv, valid] and (H, W, 3) [intensity, d/du, d/dv], float32, for
        _refine_hybrid. Depth is smoothed by a 3x3 Gaussian over valid pixels only (a pixel with a missing
        neighbour keeps nothing: no blend with the hole), as Open3D's legacy odometry smooths before
        differentiating: Kinect depth comes in disparity steps whose raw gradient is noise. ``valid`` is 1 where
        the whole 3x3 neighbourhood has depth and no depth edge (a spread over _EDGE_M + _EDGE_FRAC x depth), so
        the Sobel gradient never spans a hole or an occlusion: there a bilinear sample blends two surfaces and its
        gradient is the jump's, which would dominate the normal equations (on the rendered room of the tests
        one step then leaves 4 mm of an 8 mm error instead of 0.06 mm)."""
        if "geo" not in self._cache:
            m = (self.depth > 0).astype(np.float32)
            num = cv2.GaussianBlur(self.depth * m, (3, 3), 0)
            den = cv2.GaussianBlur(m, (3, 3), 0)
            d = np.where((den > 0.999) & (m > 0), num / np.maximum(den, 1e-6), 0.0).astype(np.float32)
            k = np.ones((3, 3), np.uint8)
            spread = cv2.dilate(d, k) - (-cv2.dilate(-np.where(d > 0, d, np.inf).astype(np.float32), k))
            ok = cv2.erode(((d > 0) & (spread < _EDGE_M + _EDGE_FRAC * d)).astype(np.float32), k, borderValue=0)
            i = np.ascontiguousarray(self.rgb01 @ _GRAY)
            sobel = [cv2.Sobel(x, cv2.CV_32F, dx, 1 - dx, ksize=3) * np.float32(0.125) for x in (d, i) for dx in (1, 0)]
            self._cache["geo"] = np.dstack([d, sobel[0], sobel[1], ok])
            self._cache["pho"] = np.dstack([i, sobel[2], sobel[3]])
        return self._cache["geo"], self._cache["pho"]

    def refine_points(self, stride: int) -> tuple[np.ndarray, np.ndarray]:
        """Every stride-th pixel with (smoothed) depth: camera points (N, 3) and intensities (N,), float32, as
        _refine_hybrid's source (computed once a frame, the strides as subsets of stride 1)."""
        key = f"points{stride}"
        if key not in self._cache:
            geo, pho = self.refine_maps()
            v, u = np.nonzero(geo[::stride, ::stride, 0] > 0)
            v, u = v * stride, u * stride
            z = geo[v, u, 0]
            i = self.intr
            p = np.stack([(u - i.cx) * (z / i.fx), (v - i.cy) * (z / i.fy), z], axis=1).astype(np.float32)
            self._cache[key] = (p, pho[v, u, 0])
        return self._cache[key]

    def with_gain(self, gain: float) -> "_Prepared":
        """The same frame with the colour the solver sees scaled by ``gain`` (exposure matched to another image);
        the quality checks, which remove each image's median intensity themselves, still see ``rgb01``."""
        out = object.__new__(_Prepared)
        out.__dict__.update(self.__dict__)
        color = o3d.t.geometry.Image(o3c.Tensor.from_numpy(self.rgb01 * np.float32(gain)))
        out.rgbd = o3d.t.geometry.RGBDImage(color.to(self.rgbd.depth.device), self.rgbd.depth)
        return out

    @classmethod
    def from_frame(cls, frame: RGBDFrame, cfg: OdometryConfig, device: o3c.Device) -> "_Prepared":
        frame.validate()
        return cls(frame.depth_m, frame.rgb.astype(np.float32) / 255.0, frame.intrinsics, cfg, device)


def _project(src: _Prepared, tgt: _Prepared, T_tgt_src: np.ndarray, s: int):
    """Every s-th valid source pixel moved by T_tgt_src into the target image: source pixels (v, u) (strided
    indices), their points in the target frame q (N, 3), target pixels (vv, uu) and whether they fall inside."""
    intr = src.intr
    d = src.depth[::s, ::s]
    v, u = np.nonzero(d > 0)
    z = d[v, u].astype(np.float64)
    p = np.stack([(u * s - intr.cx) / intr.fx * z, (v * s - intr.cy) / intr.fy * z, z], axis=1)  # (N, 3)
    q = p @ T_tgt_src[:3, :3].T + T_tgt_src[:3, 3]
    ti = tgt.intr
    with np.errstate(divide="ignore", invalid="ignore"):
        uu = np.rint(q[:, 0] / q[:, 2] * ti.fx + ti.cx)
        vv = np.rint(q[:, 1] / q[:, 2] * ti.fy + ti.cy)
    inside = (q[:, 2] > 0) & (uu >= 0) & (uu < ti.width) & (vv >= 0) & (vv < ti.height)
    return v, u, q, np.where(inside, vv, 0).astype(int), np.where(inside, uu, 0).astype(int), inside


def _consistency(src: _Prepared, tgt: _Prepared, T_tgt_src: np.ndarray, cfg: OdometryConfig
                 ) -> tuple[float, float, float]:
    """Projective check independent of the solver: (overlap, inlier_ratio, inlier_rmse_m)."""
    _, _, q, vv, uu, inside = _project(src, tgt, T_tgt_src, cfg.check_stride)
    if len(q) == 0:
        return 0.0, 0.0, float("nan")
    zt = np.where(inside, tgt.depth[vv, uu], 0.0)
    over = inside & (zt > 0)
    n_over = int(over.sum())
    if n_over == 0:
        return 0.0, 0.0, float("nan")
    res = zt[over] - q[over, 2]
    inl = np.abs(res) < cfg.inlier_dist_m
    rmse = float(np.sqrt(np.mean(res[inl] ** 2))) if inl.any() else float("nan")
    return n_over / len(q), float(inl.mean()), rmse


def _align(src: _Prepared, tgt: _Prepared, init: np.ndarray, cfg: OdometryConfig) -> OdometryResult:
    od = o3d.t.pipelines.odometry
    if src.valid_fraction < cfg.min_valid_fraction:
        return _failed(f"too_few_valid_depth: source has {src.valid_fraction:.1%} valid pixels")
    if tgt.valid_fraction < cfg.min_valid_fraction:
        return _failed(f"too_few_valid_depth: target has {tgt.valid_fraction:.1%} valid pixels")
    if src.intr.shape != tgt.intr.shape:
        return _failed("size_mismatch: source and target images differ in size")
    criteria = [od.OdometryConvergenceCriteria(int(n)) for n in cfg.iterations]
    params = od.OdometryLossParams(cfg.depth_outlier_trunc_m, cfg.depth_huber_delta_m, cfg.intensity_huber_delta)
    try:
        r = od.rgbd_odometry_multi_scale(src.rgbd, tgt.rgbd, intrinsics_tensor(src.intr), o3c.Tensor(init), 1.0,
                                         cfg.depth_max_m, criteria, _METHODS[cfg.method], params)
    except RuntimeError as e:  # Open3D raises on a singular system (no usable correspondences)
        return _failed(f"solver_error: {str(e).strip().splitlines()[-1][:200]}")
    T = r.transformation.cpu().numpy().astype(np.float64)
    out = OdometryResult(T, fitness=float(r.fitness))
    try:
        check_rigid(T, "odometry result", tol=1e-3)
    except GeometryError as e:
        out.failure_reason = f"non_rigid_result: {e}"
        return out
    out.overlap, out.inlier_ratio, out.inlier_rmse = _consistency(src, tgt, T, cfg)
    angle = rotation_angle_deg(T)
    shift = float(np.linalg.norm(T[:3, 3]))
    if shift > cfg.max_translation_m or angle > cfg.max_rotation_deg:
        out.failure_reason = f"implausible_motion: {shift:.3f} m, {angle:.1f} deg"
    elif out.overlap < cfg.min_overlap:
        out.failure_reason = f"low_overlap: {out.overlap:.2f} < {cfg.min_overlap}"
    elif out.inlier_ratio < cfg.min_inlier_ratio:
        out.failure_reason = f"low_inlier_ratio: {out.inlier_ratio:.2f} < {cfg.min_inlier_ratio}"
    else:
        out.success = True
    return out


def rgbd_odometry(source: RGBDFrame, target: RGBDFrame, init_T_target_source: np.ndarray | None = None,
                  config: OdometryConfig | None = None) -> OdometryResult:
    """Frame-to-frame: motion of ``source`` (current) relative to ``target`` (reference), T_target_source."""
    cfg = config or OdometryConfig()
    dev = resolve_device(cfg.device)
    init = np.eye(4) if init_T_target_source is None else check_rigid(init_T_target_source, "init")
    return _align(_Prepared.from_frame(source, cfg, dev), _Prepared.from_frame(target, cfg, dev), init, cfg)


def model_odometry(source: RGBDFrame, fusion, T_world_pred: np.ndarray,
                   config: OdometryConfig | None = None) -> tuple[OdometryResult, np.ndarray]:
    """Frame-to-model: ray-cast ``fusion`` (a TSDFFusion) at the predicted pose and align ``source`` to that view
    (KinectFusion-style; less drift than chaining frames). Returns (result, T_world_cam estimate)."""
    cfg = config or OdometryConfig()
    dev = resolve_device(cfg.device)
    T_pred = check_rigid(T_world_pred, "T_world_pred")
    view = fusion.raycast(T_pred, source.intrinsics)
    tgt = _Prepared(view["depth"], view["color"], source.intrinsics, cfg, dev)
    res = _align(_Prepared.from_frame(source, cfg, dev), tgt, np.eye(4), cfg)
    return res, T_pred @ res.T_target_source


@dataclass
class TrackingResult:
    """Outcome of one ``RGBDTracker.track`` call. On failure ``T_world_cam`` is the last good pose and ``lost``."""

    T_world_cam: np.ndarray
    success: bool
    failure_reason: str = ""
    lost: bool = False
    odometry: OdometryResult | None = None


@dataclass
class RGBDTracker:
    """Chain odometry into world poses; never hand out an unverified pose.

    mode "frame_to_frame" aligns each frame to the last successfully tracked frame; "frame_to_model" aligns
    it to a ray-cast of ``fusion`` at the last good pose (falling back to frame-to-frame while the model is
    empty). On failure the pose stays at the last good one, ``lost`` is set and the reason counted in
    ``failures``; the next frame is again aligned to the last good reference, so tracking recovers when the
    camera sees that place again. The caller integrates frames it wants in the model::

        tracker = RGBDTracker(mode="frame_to_model", fusion=fusion)
        for frame in sequence:
            r = tracker.track(frame)
            if r.success:
                fusion.integrate(frame, r.T_world_cam)
    """

    config: OdometryConfig = field(default_factory=OdometryConfig)
    mode: str = "frame_to_frame"  # or "frame_to_model"
    fusion: object | None = None  # a TSDFFusion for frame_to_model
    T_world_init: np.ndarray | None = None  # pose of the first frame; default its own T_world_cam, else identity

    def __post_init__(self) -> None:
        if self.mode not in ("frame_to_frame", "frame_to_model"):
            raise ValueError(f"mode must be frame_to_frame or frame_to_model, got {self.mode!r}")
        if self.mode == "frame_to_model" and self.fusion is None:
            raise ValueError("frame_to_model needs a fusion (TSDFFusion)")
        self._device = resolve_device(self.config.device)
        self.reset()

    def reset(self) -> None:
        self.pose: np.ndarray | None = None  # last good T_world_cam
        self.lost = False
        self.failures: collections.Counter[str] = collections.Counter()
        self.n_tracked = 0
        self._ref: _Prepared | None = None

    def track(self, frame: RGBDFrame) -> TrackingResult:
        prepared = _Prepared.from_frame(frame, self.config, self._device)
        if self._ref is None:
            if prepared.valid_fraction < self.config.min_valid_fraction:
                return self._fail("too_few_valid_depth: cannot start on this frame", None)
            if self.pose is None:
                init = self.T_world_init if self.T_world_init is not None else frame.T_world_cam
                self.pose = np.eye(4) if init is None else check_rigid(init, "initial pose").copy()
            self._ref = prepared
            self.n_tracked += 1
            self.lost = False
            return TrackingResult(self.pose.copy(), True)
        use_model = (self.mode == "frame_to_model" and self.fusion is not None
                     and self.fusion.stats().active_blocks > 0)
        if use_model:
            view = self.fusion.raycast(self.pose, frame.intrinsics)
            target = _Prepared(view["depth"], view["color"], frame.intrinsics, self.config, self._device)
        else:
            target = self._ref
        res = _align(prepared, target, np.eye(4), self.config)
        if not res.success:
            return self._fail(res.failure_reason, res)
        self.pose = self.pose @ res.T_target_source
        self._ref = prepared
        self.n_tracked += 1
        self.lost = False
        return TrackingResult(self.pose.copy(), True, odometry=res)

    def _fail(self, reason: str, res: OdometryResult | None) -> TrackingResult:
        self.failures[reason.split(":")[0]] += 1
        self.lost = True
        log.warning("tracking failed: %s", reason)
        pose = np.eye(4) if self.pose is None else self.pose.copy()
        return TrackingResult(pose, False, reason, True, res)


# ---------------------------------------------------------------------------------------------- frame-to-model
TRACKING_STATES = ("initialised", "tracking", "relocalised", "lost")
# Where a map with no other pose source starts: the camera at the origin, level, looking along +x, z up (its x
# right = world -y, y down = world -z). The map is z-up as far as the first frame was held level.
LEVEL_CAMERA = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class ModelTrackerConfig:
    scale: int = 2  # track at 1/scale of the input resolution (640x480 -> 320x240): 4x fewer pixels, and
    # measured on the synthetic Kinect-noise bench scene no less accurate than full resolution
    method: str = "hybrid"  # Open3D loss: "hybrid" (depth + intensity: textured walls pin sliding along planes)
    iterations: tuple[int, ...] = (4, 3, 1)  # Open3D's Gauss-Newton iterations per pyramid level, coarsest first (the
    # finest level gets one: _refine_hybrid's steps finish there)
    depth_min_m: float = 0.1
    depth_max_m: float = 5.0  # far depth is noisy (Kinect: 8 cm disparity steps at 4.5 m) but is often what pins
    # the camera when the near view is floor only
    depth_outlier_trunc_m: float = 0.07  # correspondences farther apart than this in depth are dropped
    depth_huber_delta_m: float = 0.05
    intensity_huber_delta: float = 0.1
    reference: str = "keyframe"  # what each frame is aligned to: "keyframe" (the last tracked frame, its own depth,
    # kept as the reference for several frames) or "model" (the map ray-cast at that frame's pose, KinectFusion's
    # reference). Measured on 300-frame Kinect-noise val sequences (benchmarks/eval_odometry.py's): the 2 cm TSDF's
    # ray cast is the less reliable reference (ATE 8.8 against 1.7 mm on seed 918, 1.7 against 2.7 mm on 1018),
    # coarser than a pixel at silhouettes and thin parts; stored model views still serve relocalisation
    reference_every_n: int = 10  # a fresh reference at least every n tracked frames ...
    reference_translation_m: float = 0.1  # ... or once the camera is this far from the reference's pose ...
    reference_rotation_deg: float = 10.0  # ... or has turned this much from it
    refine_strides: tuple[int, ...] = (2, 1)  # one Gauss-Newton step of _refine_hybrid after Open3D's
    # coarse-to-fine solve per entry, with the frame's points taken at this pixel stride (tracking resolution);
    # () for none
    refine_intensity_weight: float = 0.1  # share of the intensity term in them (the depth term has the rest)
    refine_depth_trunc_m: float = 0.03  # points whose depth disagrees more than this with the reference are out
    min_overlap: float = 0.3  # quality check: share of the frame's valid pixels that land on the model view
    min_inlier_ratio: float = 0.6  # quality check: share of those whose depth agrees within inlier_dist_m
    inlier_dist_m: float = 0.05
    max_intensity_error: float = 0.08  # quality check: median |intensity difference| (0-1, each image's median
    # removed: exposure) where the frame lands on the view. Depth alone cannot see a slide along a wall or floor;
    # the colour of the wall can (measured: wrong relocalisations on the synthetic bench scene 0.12-0.3, right
    # alignments below 0.05)
    check_stride: int = 2  # pixel stride of the quality check (at tracking resolution)
    max_translation_m: float = 0.15  # larger motion between two frames is implausible at camera rates: lost
    max_rotation_deg: float = 20.0
    min_valid_fraction: float = 0.05  # frames with fewer valid depth pixels are not tracked
    keyframes_kept: int = 30  # poses of past model views kept as relocalisation candidates
    relocalise_tries: int = 6  # candidate views tried per lost frame (nearest to the last good pose first)
    brief_loss_frames: int = 15  # lost for up to this many frames: relocalise only within the motion possible
    device: str = "CPU:0"

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {sorted(_METHODS)}, got {self.method!r}")
        if self.reference not in ("keyframe", "model"):
            raise ValueError(f"reference must be 'keyframe' or 'model', got {self.reference!r}")
        if self.scale < 1 or not self.iterations:
            raise ValueError("scale must be >= 1 and iterations non-empty")
        if any(int(s) < 1 for s in self.refine_strides) or not 0.0 <= self.refine_intensity_weight <= 1.0:
            raise ValueError("refine_strides must be >= 1 and refine_intensity_weight in [0, 1]")


@dataclass
class ModelTrackingResult:
    """One ``ModelTracker.track`` call: the pose, and the evidence for it.

    state: "initialised" (first frame: the map starts here), "tracking", "relocalised" (found again against a
    stored model view after being lost) or "lost" (no pose: ``T_world_cam`` is the last good pose; do not fuse).
    quality: inlier ratio of the final alignment against the model view (0 when lost).
    """

    T_world_cam: np.ndarray
    state: str
    success: bool
    quality: float = 0.0
    failure_reason: str = ""
    odometry: OdometryResult | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


def _block_mean_depth(depth: np.ndarray, s: int, max_spread_m: float = 0.05) -> np.ndarray:
    """(H, W) depth (0 = missing) -> (H//s, W//s): mean of the valid samples of each s x s block; a block
    spanning a depth edge (spread above max_spread_m + 2 % of the depth) or with fewer than half its samples
    valid is missing, so foreground and background never average into a phantom surface."""
    if s == 1:
        return depth
    h, w = depth.shape[0] // s, depth.shape[1] // s
    views = [depth[i:h * s:s, j:w * s:s] for i in range(s) for j in range(s)]  # the s*s samples of each block
    total = np.zeros((h, w), np.float32)
    n = np.zeros((h, w), np.float32)
    hi = np.zeros((h, w), np.float32)
    lo = np.full((h, w), np.inf, np.float32)
    for v in views:
        valid = v > 0
        total += v
        n += valid
        np.maximum(hi, v, out=hi)
        np.minimum(lo, np.where(valid, v, np.inf), out=lo)
    mean = total / np.maximum(n, 1.0)
    ok = (2.0 * n >= s * s) & (hi - lo <= max_spread_m + 0.02 * mean)
    return np.where(ok, mean, 0.0).astype(np.float32)


class ModelTracker:
    """RGB-D tracking against keyframes and the fused TSDF, the pose source when no TF or odometry topic exists.

    Each frame is aligned to a reference, starting from a constant-velocity prediction: Open3D's multi-scale
    hybrid odometry coarse to fine, then a few Gauss-Newton steps of ``_refine_hybrid`` (bilinear, edge-aware) at
    the finest level. The reference is kept for ``reference_every_n`` frames or until the camera moved or turned
    enough, so frames are not chained frame to frame: with ``reference="keyframe"`` (the default) it is the last
    tracked frame itself; with ``"model"`` a view of the map ray-cast from the TSDF at that frame's pose
    (``TSDFFusion.raycast(method="tsdf")``, KinectFusion's reference, with keyframe views instead of a ray cast
    per frame, which costs ~20 ms at 320x240 on a 2-core CPU). Every alignment is checked independently of the
    solver (overlap and depth agreement with the reference, colour agreement, plausible motion); a failed check
    marks the frame lost: no pose is handed out and the caller must not fuse it. While lost, each frame is aligned
    to views of the fused map ray-cast at stored poses (the predicted pose, the last good one, past reference
    poses nearest first); the first that passes the check relocalises.

    The caller fuses each successfully tracked frame at its pose (``fusion.integrate(frame, r.T_world_cam)``);
    the first frame starts the map at ``T_world_init`` (default: the frame's own pose, else ``LEVEL_CAMERA``).
    """

    def __init__(self, fusion, config: ModelTrackerConfig | None = None,
                 T_world_init: np.ndarray | None = None) -> None:
        self.fusion = fusion
        self.config = config or ModelTrackerConfig()
        self.T_world_init = None if T_world_init is None else check_rigid(T_world_init, "T_world_init")
        self._device = resolve_device(self.config.device)
        c = self.config
        self._odo_cfg = OdometryConfig(method=c.method, depth_min_m=c.depth_min_m, depth_max_m=c.depth_max_m,
                                       depth_outlier_trunc_m=c.depth_outlier_trunc_m,
                                       depth_huber_delta_m=c.depth_huber_delta_m,
                                       intensity_huber_delta=c.intensity_huber_delta, check_stride=c.check_stride,
                                       inlier_dist_m=c.inlier_dist_m, min_valid_fraction=c.min_valid_fraction,
                                       min_overlap=c.min_overlap, min_inlier_ratio=c.min_inlier_ratio,
                                       max_translation_m=np.inf, max_rotation_deg=np.inf, device=c.device)
        od = o3d.t.pipelines.odometry
        self._criteria = [od.OdometryConvergenceCriteria(int(n)) for n in c.iterations]
        self._loss = od.OdometryLossParams(c.depth_outlier_trunc_m, c.depth_huber_delta_m, c.intensity_huber_delta)
        self.reset()

    def reset(self) -> None:
        self.pose: np.ndarray | None = None  # last good T_world_cam
        self.lost = False
        self._velocity = np.eye(4)  # T_prev_cur of the last tracked step (constant-velocity prediction)
        self._ref: tuple[np.ndarray, _Prepared] | None = None  # (T_world_ref, the model view there)
        self._since_ref = 0
        self._lost_frames = 0
        self._last_src: _Prepared | None = None
        self._keyframes: collections.deque[np.ndarray] = collections.deque(maxlen=self.config.keyframes_kept)
        self.failures: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()  # frames by state
        self.last: ModelTrackingResult | None = None

    # -- inputs -----------------------------------------------------------------------------------------------
    def _prepare(self, frame: RGBDFrame) -> _Prepared:
        c = self.config
        intr = frame.intrinsics.scaled(1.0 / c.scale) if c.scale > 1 else frame.intrinsics
        with np.errstate(invalid="ignore"):
            usable = (frame.depth_m >= c.depth_min_m) & (frame.depth_m <= c.depth_max_m)
        depth = _block_mean_depth(np.where(usable, frame.depth_m, 0.0).astype(np.float32), c.scale)
        rgb = frame.rgb
        if c.scale > 1:  # area averaging, as the depth
            rgb = cv2.resize(rgb, (intr.width, intr.height), interpolation=cv2.INTER_AREA)
        return _Prepared(depth, rgb.astype(np.float32) * np.float32(1.0 / 255.0), intr, self._odo_cfg, self._device)

    def _view(self, T_world_ref: np.ndarray, intr: CameraIntrinsics, frame: _Prepared | None = None) -> _Prepared:
        """The reference for the frames that follow. With ``reference="keyframe"`` and ``frame`` (the frame tracked
        at T_world_ref): that frame. Otherwise depth ray-cast from the map at T_world_ref (where it has
        converged onto the TSDF's zero crossing; ``frame``'s own depth elsewhere, e.g. on surface the map has seen
        once at a grazing angle) and, with ``frame`` (the frame tracked at that pose), that frame's colour: the
        map's colour is blurred to the voxel size, the frame's is sharp and registered by the tracking."""
        if frame is not None and self.config.reference == "keyframe":
            return frame
        self.counts["model_views"] += 1
        v = self.fusion.raycast(T_world_ref, intr, method="tsdf")
        depth, color = v["depth"], v["color"]
        if frame is not None:
            depth = np.where(depth > 0, depth, frame.depth)
            color = frame.rgb01
        return _Prepared(depth, color, intr, self._odo_cfg, self._device)

    # -- tracking ---------------------------------------------------------------------------------------------
    def _align(self, src: _Prepared, ref: tuple[np.ndarray, _Prepared], T_world_pred: np.ndarray) -> OdometryResult:
        T_world_ref, view = ref
        init = invert_transform(T_world_ref) @ T_world_pred
        if view.valid_fraction < self.config.min_valid_fraction:
            return _failed(f"empty_model_view: {view.valid_fraction:.1%} of the view has map")
        gain = _exposure_gain(src, view, init, 2 * self.config.check_stride)
        if gain is not None:
            src = src.with_gain(gain)
        try:
            r = o3d.t.pipelines.odometry.rgbd_odometry_multi_scale(
                src.rgbd, view.rgbd, intrinsics_tensor(src.intr), o3c.Tensor(init), 1.0, self.config.depth_max_m,
                self._criteria, _METHODS[self.config.method], self._loss)
        except RuntimeError as e:  # a singular system: no usable correspondences
            return _failed(f"solver_error: {str(e).strip().splitlines()[-1][:200]}")
        T = r.transformation.cpu().numpy().astype(np.float64)
        c = self.config
        if c.refine_strides:
            T = _refine_hybrid(src, view, T, c, 1.0 if gain is None else gain)
        T = _orthonormalised(T)
        out = OdometryResult(T, fitness=float(r.fitness))
        out.overlap, out.inlier_ratio, out.inlier_rmse = _consistency(src, view, T, self._odo_cfg)
        if out.overlap < c.min_overlap:
            out.failure_reason = f"low_overlap: {out.overlap:.2f} < {c.min_overlap}"
        elif out.inlier_ratio < c.min_inlier_ratio:
            out.failure_reason = f"low_inlier_ratio: {out.inlier_ratio:.2f} < {c.min_inlier_ratio}"
        else:
            colour = _intensity_disagreement(src, view, T, c.check_stride)
            out.intensity_error = colour
            if colour > c.max_intensity_error:
                out.failure_reason = f"colour_mismatch: {colour:.3f} > {c.max_intensity_error}"
            else:
                out.success = True
        return out

    def _plausible(self, T_world_cam: np.ndarray) -> str:
        step = invert_transform(self.pose) @ T_world_cam
        shift, angle = float(np.linalg.norm(step[:3, 3])), rotation_angle_deg(step)
        c = self.config
        if shift > c.max_translation_m or angle > c.max_rotation_deg:
            return f"implausible_motion: {shift:.3f} m, {angle:.1f} deg in one frame"
        return ""

    def _needs_new_reference(self, T_world_pred: np.ndarray) -> bool:
        if self._ref is None or self._since_ref >= self.config.reference_every_n:
            return True
        rel = invert_transform(self._ref[0]) @ T_world_pred
        return bool(np.linalg.norm(rel[:3, 3]) > self.config.reference_translation_m
                    or rotation_angle_deg(rel) > self.config.reference_rotation_deg)

    def track(self, frame: RGBDFrame) -> ModelTrackingResult:
        t0 = time.perf_counter()
        src = self._prepare(frame)
        timings = {"prepare": (time.perf_counter() - t0) * 1e3}
        if src.valid_fraction < self.config.min_valid_fraction:
            return self._fail(f"too_few_valid_depth: {src.valid_fraction:.1%} valid pixels", None, timings)
        if self.pose is None or self.fusion.stats().active_blocks == 0:
            init = self.T_world_init if self.T_world_init is not None else frame.T_world_cam
            self.pose = LEVEL_CAMERA.copy() if init is None else check_rigid(init, "initial pose").copy()
            self._velocity = np.eye(4)
            self._last_src = src
            # The first reference is this frame itself: a map of one frame rendered from that frame's pose is that
            # frame's depth again (to the TSDF's smoothing), and a first ray cast costs ~10 frames' tracking
            # (block sampler, Open3D's ray-cast buffer growing: 185 ms against 13 ms measured at 320x240). The
            # map is rendered when the next reference is due, or at once if a frame fails against this one.
            self._ref, self._since_ref = (self.pose.copy(), src), 0
            self._keyframes.append(self.pose.copy())
            return self._done(ModelTrackingResult(self.pose.copy(), "initialised", True, 1.0), timings)
        if self.lost:
            return self._relocalise(src, timings)
        T_pred = self.pose @ self._velocity
        fresh = self._needs_new_reference(T_pred)
        if fresh:
            self._new_reference(src.intr)
        t1 = time.perf_counter()
        res = self._align(src, self._ref, T_pred)
        if not res.success and not fresh:  # the view may be stale (new surface since): once more on a fresh one
            self._new_reference(src.intr)
            res = self._align(src, self._ref, T_pred)
        timings["align"] = (time.perf_counter() - t1) * 1e3
        if not res.success:
            return self._fail(res.failure_reason, res, timings)
        T = self._ref[0] @ res.T_target_source
        why = self._plausible(T)
        if why and not np.allclose(self._velocity, np.eye(4)):  # the prediction may have misled the solver
            res = self._align(src, self._ref, self.pose)
            T = self._ref[0] @ res.T_target_source
            why = res.failure_reason or self._plausible(T)
        if why:
            return self._fail(why, res, timings)
        self._velocity = invert_transform(self.pose) @ T
        self.pose = T
        self._last_src = src
        self._since_ref += 1
        return self._done(ModelTrackingResult(T.copy(), "tracking", True, res.inlier_ratio, odometry=res), timings)

    def _new_reference(self, intr: CameraIntrinsics) -> None:
        """The new reference at the last good pose: the frame tracked there, or the map rendered there (the
        freshest surface is around it)."""
        t = time.perf_counter()
        self._ref = (self.pose.copy(), self._view(self.pose, intr, self._last_src))
        self._since_ref = 0
        self._keyframes.append(self.pose.copy())
        self.counts["references"] += 1
        self.render_ms = (time.perf_counter() - t) * 1e3

    def _relocalise(self, src: _Prepared, timings: dict[str, float]) -> ModelTrackingResult:
        """Align a frame that came while lost to stored model views: first where the camera should be if it kept
        its last motion, then the last good pose, then past reference poses nearest to it. Within
        ``brief_loss_frames`` of losing track, only a pose within the motion possible since then is accepted:
        a view of floor and one plain wall is satisfied by any slide along them, and a wrong relocalisation
        corrupts the map that every later frame is tracked against."""
        c = self.config
        t = time.perf_counter()
        steps = self._lost_frames + 1  # frames since the last good one
        predicted = self.pose @ np.linalg.matrix_power(self._velocity, steps)
        stored = sorted(self._keyframes, key=lambda K: float(np.linalg.norm(K[:3, 3] - self.pose[:3, 3])))
        candidates = [predicted, self.pose] + stored[:max(c.relocalise_tries - 2, 0)]
        brief = self._lost_frames <= c.brief_loss_frames
        reach = c.max_translation_m * steps
        last: OdometryResult | None = None
        reason = "no stored model view"
        for T_world_ref in candidates:
            ref = (T_world_ref, self._view(T_world_ref, src.intr))
            res = self._align(src, ref, T_world_ref)
            last, reason = res, res.failure_reason
            if not res.success:
                continue
            T = T_world_ref @ res.T_target_source
            if brief and np.linalg.norm(T[:3, 3] - predicted[:3, 3]) > reach:
                reason = (f"too_far: {np.linalg.norm(T[:3, 3] - predicted[:3, 3]):.2f} m from where the camera "
                          f"can be {steps} frames after its last good pose")
                continue
            self._ref, self._since_ref = ref, 0
            self._velocity = np.eye(4)
            self.pose = T
            self._last_src = src  # the next keyframe reference is this frame at this pose, not one from before
            self.lost = False
            self._lost_frames = 0
            timings["relocalise"] = (time.perf_counter() - t) * 1e3
            log.info("tracking relocalised against a stored model view (inlier ratio %.2f)", res.inlier_ratio)
            return self._done(ModelTrackingResult(T.copy(), "relocalised", True, res.inlier_ratio, odometry=res),
                              timings)
        timings["relocalise"] = (time.perf_counter() - t) * 1e3
        return self._fail(f"relocalisation_failed: {len(candidates)} views tried, last: {reason}", last, timings)

    def _done(self, r: ModelTrackingResult, timings: dict[str, float]) -> ModelTrackingResult:
        self.lost = False
        r.timings_ms = timings
        self.counts[r.state] += 1
        self.last = r
        return r

    def _fail(self, reason: str, res: OdometryResult | None, timings: dict[str, float]) -> ModelTrackingResult:
        if self.lost:
            self._lost_frames += 1
        else:
            log.warning("tracking lost: %s", reason)
            self._lost_frames = 1  # frames lost since the last good one
        self.lost = True
        self.failures[reason.split(":")[0]] += 1
        r = ModelTrackingResult(np.eye(4) if self.pose is None else self.pose.copy(), "lost", False, 0.0, reason, res,
                                timings)
        self.counts["lost"] += 1
        self.last = r
        return r


def _landed_intensities(src: _Prepared, tgt: _Prepared, T_tgt_src: np.ndarray,
                        stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Intensities (K,) of the source pixels (every ``stride``-th) that land on target pixels with depth under
    T_tgt_src, and of the target pixels they land on."""
    v, u, _, vv, uu, inside = _project(src, tgt, T_tgt_src, stride)
    hit = inside & (tgt.depth[vv, uu] > 0)
    return src.rgb01[v[hit] * stride, u[hit] * stride] @ _GRAY, tgt.rgb01[vv[hit], uu[hit]] @ _GRAY


def _exposure_gain(src: _Prepared, tgt: _Prepared, T_tgt_src: np.ndarray, stride: int) -> float | None:
    """Ratio of the target's to the source's mean intensity where the source lands on the target under
    T_tgt_src (None where too little lands). Open3D's tensor odometry compares raw intensities, so an exposure
    change between a frame and its reference (auto-exposure; 3 % gain jitter in the synthetic Kinect model) biases
    the whole intensity term; Open3D's legacy odometry rescales the source the same way (NormalizeIntensity)."""
    i_src, i_tgt = _landed_intensities(src, tgt, T_tgt_src, stride)
    if len(i_src) < 100:
        return None
    m_src = float(i_src.mean())
    return float(i_tgt.mean()) / m_src if m_src > 1e-3 else None


def _intensity_disagreement(src: _Prepared, tgt: _Prepared, T_tgt_src: np.ndarray, stride: int) -> float:
    """Median |intensity difference| (0-1) between source pixels and the target pixels they land on under
    T_tgt_src, each image's median intensity removed first (exposure changes); inf when nothing lands."""
    i_src, i_tgt = _landed_intensities(src, tgt, T_tgt_src, stride)
    if not len(i_src):
        return float("inf")
    return float(np.median(np.abs((i_src - np.median(i_src)) - (i_tgt - np.median(i_tgt)))))


def _refine_hybrid(src: _Prepared, ref: _Prepared, T: np.ndarray, cfg: "ModelTrackerConfig", gain: float) -> np.ndarray:
    """T_ref_src refined by Gauss-Newton on the hybrid (depth + intensity) residual with bilinear sampling of the
    reference. Written by hand because Open3D's tensor odometry samples the reference at the nearest pixel, from
    unsmoothed depth and across depth edges, which leaves 1-4 mm of error per frame at 320x240 (measured on the
    Kinect-noise sequences of benchmarks/eval_odometry.py), and its legacy odometry, as accurate, is 15x slower.
    One step per entry of ``refine_strides``: the frame's points (every stride-th pixel, smoothed depth) moved by
    T into the reference, which is sampled there (bilinear) for depth, intensity and their gradients; points
    whose reference neighbourhood has a hole or a depth edge, or whose depth disagrees by more than
    ``refine_depth_trunc_m``, are out; Huber-weighted residuals r_D = D_ref(uv) - z and r_I = I_ref(uv) -
    gain * I_src, their Jacobians for a twist (w, v) applied on the left (dq = w x q + v), one 6x6 solve."""
    geo_t, pho_t = ref.refine_maps()
    intr, ti = src.intr, ref.intr
    w_i = {"point_to_plane": 0.0, "intensity": 1.0}.get(cfg.method, cfg.refine_intensity_weight)  # the loss asked for
    T = T.copy()
    for s in cfg.refine_strides:
        p, i_src = src.refine_points(s)
        if len(p) < 100:
            break
        q = cv2.transform(p[:, None, :], T[:3].astype(np.float32))[:, 0]  # OpenCV, not BLAS: see the solve below
        with np.errstate(divide="ignore", invalid="ignore"):
            iz = np.float32(1.0) / q[:, 2]
            mu, mv = q[:, 0] * iz * ti.fx + ti.cx, q[:, 1] * iz * ti.fy + ti.cy
        front = q[:, 2] > 0.05
        mu, mv = np.where(front, mu, -10.0), np.where(front, mv, -10.0)
        g = _sample(geo_t, mu, mv)
        r_d = g[:, 0] - q[:, 2]
        keep = front & (g[:, 3] > 0.999) & (np.abs(r_d) < cfg.refine_depth_trunc_m)
        if keep.sum() < 100:
            break
        # points that are out keep their rows with weight 0 (cheaper than compacting six arrays)
        iz = np.where(keep, iz, 0.0).astype(np.float32)
        terms = [(np.where(keep, r_d, 0.0), g[:, 1], g[:, 2], 1.0, 1.0 - w_i, cfg.depth_huber_delta_m)]
        if w_i > 0:
            ph = _sample(pho_t, mu, mv)
            terms.append((np.where(keep, ph[:, 0] - i_src * np.float32(gain), 0.0), ph[:, 1], ph[:, 2], 0.0, w_i,
                          cfg.intensity_huber_delta))
        n = len(q)
        Jr = np.empty((n * len(terms), 7), np.float32)  # [J | r]
        x, y, zq = q[:, 0], q[:, 1], q[:, 2]
        for k, (res, gu, gv, dz, weight, delta) in enumerate(terms):
            # d res / d q for an image sampled at q's projection (minus dz * q_z), then d res / d (w, v) = (q x dq, dq),
            # each row scaled by the square root of its Huber weight (0 for points that are out)
            sw = np.sqrt(weight * np.minimum(1.0, delta / np.maximum(np.abs(res), 1e-12)), dtype=np.float32) * keep
            rows = Jr[k * n:(k + 1) * n]
            ku, kv = gu * (ti.fx * iz) * sw, gv * (ti.fy * iz) * sw
            kz = -(ku * x + kv * y) * iz - np.float32(dz) * sw
            np.subtract(y * kz, zq * kv, out=rows[:, 0])
            np.subtract(zq * ku, x * kz, out=rows[:, 1])
            np.subtract(x * kv, y * ku, out=rows[:, 2])
            rows[:, 3], rows[:, 4], rows[:, 5] = ku, kv, kz
            np.multiply(res, sw, out=rows[:, 6])
        # [J | r]^T [J | r] in float64 by OpenCV: numpy's BLAS would start its own threads, which keep spinning after
        # the call and slow Open3D's next solve and integration (5 ms a frame measured on 2 cores)
        A = cv2.mulTransposed(Jr, True, dtype=cv2.CV_64F)
        try:
            xi = -np.linalg.solve(A[:6, :6], A[:6, 6])
        except np.linalg.LinAlgError:
            break
        step = np.eye(4)
        step[:3, :3] = cv2.Rodrigues(xi[:3])[0]
        step[:3, 3] = xi[3:]
        T = step @ T
    return T


def _sample(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, C) bilinear samples of an (H, W, C) image at pixel coordinates (u, v), 0 outside. cv2.remap takes
    maps of fewer than 32767 rows and columns, so the N points are laid out as rows of 1024."""
    n, cols = len(u), 1024
    rows = -(-n // cols)
    maps = [np.pad(x.astype(np.float32), (0, rows * cols - n), constant_values=-10.0).reshape(rows, cols)
            for x in (u, v)]
    out = cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return out.reshape(rows * cols, image.shape[2])[:n]


def _orthonormalised(T: np.ndarray) -> np.ndarray:
    """Nearest rigid transform: Open3D solves in float32, and a chain of its results drifts off SO(3)."""
    U, _, Vt = np.linalg.svd(T[:3, :3])
    out = T.copy()
    out[:3, :3] = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    return out
