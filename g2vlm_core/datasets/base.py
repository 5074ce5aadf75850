"""Shared pieces of the RGB-D dataset loaders: the sequence interface and image/pose readers."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ..geometry.camera import CameraIntrinsics, GeometryError, check_rigid
from ..frame import RGBDFrame

log = logging.getLogger(__name__)


class RGBDSequence:
    """A random-access sequence of RGBDFrame (``len``, ``[i]``, iteration); subclasses fill the lists below.

    rgb_paths / depth_paths: one per frame; poses: (4, 4) T_world_cam per frame or None where unknown;
    stamps: seconds per frame; depth_scale: raw depth units per metre (1000 for mm, 5000 for TUM).
    """

    name = "rgbd"

    def __init__(self, root: str | Path, intrinsics: CameraIntrinsics, rgb_paths: list[Path],
                 depth_paths: list[Path], poses: list[np.ndarray | None], stamps: list[float],
                 depth_scale: float, invalid_raw: tuple[int, ...] = (0, 65535)) -> None:
        if not (len(rgb_paths) == len(depth_paths) == len(poses) == len(stamps)):
            raise GeometryError(f"{root}: {len(rgb_paths)} rgb, {len(depth_paths)} depth, {len(poses)} poses, "
                                f"{len(stamps)} stamps; they must match")
        self.root = Path(root)
        self.intrinsics = intrinsics
        self.rgb_paths, self.depth_paths = rgb_paths, depth_paths
        self.poses, self.stamps = poses, stamps
        self.depth_scale = float(depth_scale)
        self.invalid_raw = invalid_raw

    def __len__(self) -> int:
        return len(self.depth_paths)

    def __iter__(self) -> Iterator[RGBDFrame]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, i: int) -> RGBDFrame:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range for {len(self)} frames")
        depth = read_depth(self.depth_paths[i], self.depth_scale, self.invalid_raw)
        rgb = read_rgb(self.rgb_paths[i], size=(depth.shape[1], depth.shape[0]))
        pose = self.poses[i]
        return RGBDFrame(rgb, depth, self.intrinsics, None if pose is None else pose.copy(), float(self.stamps[i]),
                         i, {"dataset": self.name, "rgb_path": str(self.rgb_paths[i]),
                             "depth_path": str(self.depth_paths[i])}).validate()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, {len(self)} frames)"

    def gt_poses(self) -> np.ndarray:
        """(N, 4, 4) ground-truth poses; NaN where a frame has none."""
        if not self.poses:
            return np.zeros((0, 4, 4))
        return np.stack([np.full((4, 4), np.nan) if p is None else p for p in self.poses])


def read_depth(path: Path, scale: float, invalid_raw: tuple[int, ...] = (0, 65535)) -> np.ndarray:
    """16-bit depth PNG -> (H, W) float32 metres; ``invalid_raw`` codes (0, and 65535 used by some sensors) -> 0."""
    raw = np.asarray(Image.open(path))
    if raw.ndim != 2:
        raise GeometryError(f"{path}: depth must be single-channel, got shape {raw.shape}")
    depth = raw.astype(np.float32) / np.float32(scale)
    if invalid_raw and np.issubdtype(raw.dtype, np.integer):
        depth[np.isin(raw, invalid_raw)] = 0.0
    return depth


def read_rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Colour image -> (H, W, 3) uint8 RGB, bilinearly resized to ``size`` (width, height) when it differs
    (ScanNet's colour is 1296x968 against 640x480 depth; the pinhole model scales with the image)."""
    img = Image.open(path).convert("RGB")
    if size is not None and img.size != tuple(size):
        img = img.resize(tuple(size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def read_matrix(path: Path, shape: tuple[int, int] = (4, 4)) -> np.ndarray | None:
    """Whitespace text matrix -> float64 array, or None if it holds non-finite values (ScanNet marks lost
    tracking with -inf poses)."""
    m = np.loadtxt(path, dtype=np.float64)
    m = m.reshape(-1)[: shape[0] * shape[1]].reshape(shape)
    return m if np.all(np.isfinite(m)) else None


def checked_pose(T: np.ndarray | None, where: str) -> np.ndarray | None:
    """A ground-truth pose, or None (logged) when it is missing or not rigid."""
    if T is None:
        return None
    try:
        return check_rigid(T, where, tol=1e-2)
    except GeometryError as e:
        log.warning("dropping pose: %s", e)
        return None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding it."""
    with Image.open(path) as img:
        return img.size
