"""RGB-D odometry (Open3D multi-scale, frame-to-frame or frame-to-TSDF-model) with explicit failure reporting."""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field

import numpy as np
import open3d as o3d
import open3d.core as o3c

from .camera import CameraIntrinsics, GeometryError, check_rigid, valid_depth_mask
from ..frame import RGBDFrame
from .ops import intrinsics_tensor, resolve_device

log = logging.getLogger(__name__)

_METHODS = {"point_to_plane": o3d.t.pipelines.odometry.Method.PointToPlane,
            "intensity": o3d.t.pipelines.odometry.Method.Intensity,
            "hybrid": o3d.t.pipelines.odometry.Method.Hybrid}


@dataclass(frozen=True)
class OdometryConfig:
    method: str = "hybrid"  # "point_to_plane" (depth only), "intensity" or "hybrid" (depth + intensity)
    depth_min_m: float = 0.1  # depths outside [min, max] are ignored
    depth_max_m: float = 4.0  # far structured-light depth is too noisy to align on
    iterations: tuple[int, ...] = (10, 5, 3)  # Gauss-Newton iterations per pyramid level, finest level first
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
        self.rgbd = o3d.t.geometry.RGBDImage(o3d.t.geometry.Image(o3c.Tensor.from_numpy(color)).to(device),
                                             o3d.t.geometry.Image(o3c.Tensor.from_numpy(self.depth)).to(device))

    @classmethod
    def from_frame(cls, frame: RGBDFrame, cfg: OdometryConfig, device: o3c.Device) -> "_Prepared":
        frame.validate()
        return cls(frame.depth_m, frame.rgb.astype(np.float32) / 255.0, frame.intrinsics, cfg, device)


def _consistency(src: _Prepared, tgt: _Prepared, T_tgt_src: np.ndarray, cfg: OdometryConfig
                 ) -> tuple[float, float, float]:
    """Projective check independent of the solver: (overlap, inlier_ratio, inlier_rmse_m)."""
    s = cfg.check_stride
    intr = src.intr
    d = src.depth[::s, ::s]
    v, u = np.nonzero(d > 0)
    if len(u) == 0:
        return 0.0, 0.0, float("nan")
    z = d[v, u].astype(np.float64)
    p = np.stack([(u * s - intr.cx) / intr.fx * z, (v * s - intr.cy) / intr.fy * z, z], axis=1)  # (N, 3)
    q = p @ T_tgt_src[:3, :3].T + T_tgt_src[:3, 3]
    ti = tgt.intr
    with np.errstate(divide="ignore", invalid="ignore"):
        uu = np.rint(q[:, 0] / q[:, 2] * ti.fx + ti.cx)
        vv = np.rint(q[:, 1] / q[:, 2] * ti.fy + ti.cy)
    inside = (q[:, 2] > 0) & (uu >= 0) & (uu < ti.width) & (vv >= 0) & (vv < ti.height)
    zt = np.zeros(len(q))
    zt[inside] = tgt.depth[vv[inside].astype(int), uu[inside].astype(int)]
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
    angle = np.degrees(np.arccos(np.clip((np.trace(T[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))
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
