"""Pinhole camera model, depth back-projection and rigid-transform helpers (frame-explicit, no ROS).

Conventions used across the whole project:
- camera optical frame: x right, y down, z forward (as sensor_msgs/CameraInfo);
- ``T_a_b`` is a 4x4 homogeneous matrix mapping points expressed in frame b into frame a,
  so ``points_world = transform_points(T_world_cam, points_cam)``;
- depths are metres (float32); an invalid depth is 0 or non-finite.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


class GeometryError(ValueError):
    """Raised for geometric input that cannot be used (bad intrinsics, non-rigid pose, shape mismatch)."""


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels (focal lengths and centre in pixels)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "plumb_bob"  # as in sensor_msgs/CameraInfo; "" or "none" for no distortion
    distortion: tuple[float, ...] = field(default_factory=tuple)  # D coefficients, model-specific order

    def __post_init__(self) -> None:
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise GeometryError(f"width/height must be positive, got width={self.width} height={self.height}")
        for name in ("fx", "fy"):
            v = float(getattr(self, name))
            if not np.isfinite(v) or v <= 0.0:
                raise GeometryError(f"{name} must be a positive finite focal length in pixels, got {v}")
        for name in ("cx", "cy"):
            if not np.isfinite(float(getattr(self, name))):
                raise GeometryError(f"{name} must be finite, got {getattr(self, name)}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "distortion", tuple(float(d) for d in self.distortion))

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width), the numpy image shape."""
        return (self.height, self.width)

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int, **kwargs) -> "CameraIntrinsics":
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        return cls(width, height, K[0, 0], K[1, 1], K[0, 2], K[1, 2], **kwargs)

    def scaled(self, factor: float) -> "CameraIntrinsics":
        """Intrinsics of the same camera with the image resized by ``factor`` (pixel-centre convention)."""
        w, h = max(1, round(self.width * factor)), max(1, round(self.height * factor))
        sx, sy = w / self.width, h / self.height
        return CameraIntrinsics(w, h, self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                                (self.cy + 0.5) * sy - 0.5, self.distortion_model, self.distortion)

    def check_image(self, image: np.ndarray, name: str = "image") -> None:
        if image.shape[:2] != self.shape:
            raise GeometryError(f"{name} is {image.shape[1]}x{image.shape[0]} but the camera is "
                                f"{self.width}x{self.height}")


# sensor_msgs/distortion_models names OpenCV can invert (the fused model is the pinhole: every other model with
# non-zero coefficients is refused by the node)
UNDISTORT_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


class Undistorter:
    """Resamples the images of a distorted camera onto its pinhole model (same K and size) with OpenCV.

    Colour is interpolated bilinearly; depth takes the nearest pixel, because averaging depths across an object's
    edge would invent surfaces between it and the background. Pixels with no source become 0 (missing depth).
    The remap tables are cached for the latest intrinsics."""

    def __init__(self) -> None:
        self._cache: tuple[CameraIntrinsics, np.ndarray, np.ndarray] | None = None

    def __call__(self, rgb: np.ndarray, depth_m: np.ndarray,
                 intr: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray, CameraIntrinsics]:
        """(rgb, depth_m, pinhole intrinsics) of the undistorted images; GeometryError for another model."""
        import cv2

        if intr.distortion_model not in UNDISTORT_MODELS:
            raise GeometryError(f"distortion model {intr.distortion_model!r} cannot be undistorted; "
                                f"supported: {', '.join(UNDISTORT_MODELS)}")
        if self._cache is None or self._cache[0] != intr:
            D = np.asarray(intr.distortion, dtype=np.float64)
            size = (intr.width, intr.height)
            if intr.distortion_model == "equidistant":
                if D.size != 4:
                    raise GeometryError(f"equidistant distortion needs 4 coefficients, got {D.size}")
                maps = cv2.fisheye.initUndistortRectifyMap(intr.K, D, np.eye(3), intr.K, size, cv2.CV_32FC1)
            else:
                if D.size not in (4, 5, 8, 12, 14):
                    raise GeometryError(f"{intr.distortion_model} distortion needs 4, 5, 8, 12 or 14 coefficients, "
                                        f"got {D.size}")
                maps = cv2.initUndistortRectifyMap(intr.K, D, None, intr.K, size, cv2.CV_32FC1)
            self._cache = (intr, *maps)
        _, mx, my = self._cache
        rgb_u = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        depth_u = cv2.remap(depth_m, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return rgb_u, depth_u, replace(intr, distortion=())


def pixel_rays(intr: CameraIntrinsics) -> np.ndarray:
    """Unit-z ray directions ``(H, W, 3)`` float32 in the camera frame: point = ray * depth."""
    u = (np.arange(intr.width, dtype=np.float32) - intr.cx) / intr.fx
    v = (np.arange(intr.height, dtype=np.float32) - intr.cy) / intr.fy
    rays = np.empty((intr.height, intr.width, 3), dtype=np.float32)
    rays[..., 0] = u[None, :]
    rays[..., 1] = v[:, None]
    rays[..., 2] = 1.0
    return rays


def valid_depth_mask(depth_m: np.ndarray, min_m: float = 0.0, max_m: float = np.inf) -> np.ndarray:
    """Boolean mask of usable depths: finite and inside (min_m, max_m]."""
    return np.isfinite(depth_m) & (depth_m > max(min_m, 0.0)) & (depth_m <= max_m)


def backproject(depth_m: np.ndarray, intr: CameraIntrinsics) -> np.ndarray:
    """Depth image ``(H, W)`` in metres -> camera-frame points ``(H, W, 3)`` float32 (invalid pixels give 0 or NaN)."""
    intr.check_image(depth_m, "depth")
    return pixel_rays(intr) * depth_m.astype(np.float32, copy=False)[..., None]


def project(points_cam: np.ndarray, intr: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame points ``(N, 3)`` -> pixel coordinates ``(N, 2)`` (u, v) and depths ``(N,)``."""
    p = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([p[:, 0] / z * intr.fx + intr.cx, p[:, 1] / z * intr.fy + intr.cy], axis=1)
    return uv, z


def check_rigid(T: np.ndarray, name: str = "pose", tol: float = 1e-3) -> np.ndarray:
    """Return ``T`` as a (4, 4) float64 array, or raise GeometryError if it is not a finite rigid transform."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise GeometryError(f"{name} must be a 4x4 matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise GeometryError(f"{name} contains NaN or inf")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=tol):
        raise GeometryError(f"{name} last row must be [0 0 0 1], got {T[3].tolist()}")
    R = T[:3, :3]
    ortho_err = float(np.abs(R.T @ R - np.eye(3)).max())
    if ortho_err > tol or np.linalg.det(R) <= 0.0:
        raise GeometryError(f"{name} rotation is not orthonormal with det +1 (max |R^T R - I| = {ortho_err:.2e})")
    return T


def transform_points(T_a_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points ``(..., 3)``; returns points in frame a with the input's float dtype."""
    pts = np.asarray(points_b)
    dtype = pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float64
    T = np.asarray(T_a_b, dtype=np.float64)
    out = pts.reshape(-1, 3).astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    return out.reshape(pts.shape).astype(dtype, copy=False)


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (exact, without a general matrix inverse)."""
    T = np.asarray(T, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def rotation_angle_deg(T: np.ndarray) -> float:
    """Angle in degrees of the rotation of a 3x3 rotation or a 4x4 rigid transform: the one definition behind keyframe
    selection, odometry's motion checks and the RPE metric. Any matrix gets an answer (NaN for non-finite ones): written
    with the trace formula, not scipy's Rotation, which raises on non-finite or improper matrices (a failed tracker's
    pose in the RPE)."""
    R = np.asarray(T, dtype=np.float64)[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))
