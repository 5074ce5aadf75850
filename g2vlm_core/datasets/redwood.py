"""Redwood / ICL-NUIM loader (Open3D layout): color/ and depth/ folders, a .log trajectory, camera JSON intrinsics."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..geometry.camera import CameraIntrinsics, GeometryError
from .base import RGBDSequence, checked_pose, image_size

log = logging.getLogger(__name__)

IMAGE_EXT = (".png", ".jpg", ".jpeg")


def read_log_trajectory(path: Path) -> list[np.ndarray]:
    """Redwood .log: per frame a header line 'i j n' then a 4x4 camera-to-world matrix -> list of (4, 4)."""
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(rows) % 5:
        raise GeometryError(f"{path}: {len(rows)} non-empty lines, expected 5 per frame")
    return [np.array(rows[k + 1:k + 5], dtype=np.float64) for k in range(0, len(rows), 5)]


def read_camera_json(path: Path) -> CameraIntrinsics:
    """Open3D PinholeCameraIntrinsic JSON (width, height, column-major 'intrinsic_matrix') -> CameraIntrinsics."""
    d = json.loads(Path(path).read_text())
    K = np.asarray(d["intrinsic_matrix"], dtype=np.float64).reshape(3, 3).T  # stored column-major
    return CameraIntrinsics.from_K(K, int(d["width"]), int(d["height"]))


class RedwoodSequence(RGBDSequence):
    """Folder with color/ (or image/, rgb/) and depth/ images paired by sorted order, an optional trajectory
    (.log, default trajectory.log) and an optional camera JSON (default: any *.json with intrinsic_matrix,
    else the PrimeSense default fx=fy=525, c=(319.5, 239.5))."""

    name = "redwood"

    def __init__(self, root: str | Path, trajectory: str | None = "trajectory.log",
                 intrinsics: CameraIntrinsics | None = None, depth_scale: float = 1000.0) -> None:
        root = Path(root)
        cdir = next((root / n for n in ("color", "image", "rgb") if (root / n).is_dir()), None)
        if cdir is None or not (root / "depth").is_dir():
            raise GeometryError(f"{root}: needs color/ (or image/, rgb/) and depth/ folders")
        rgb = sorted(p for p in cdir.iterdir() if p.suffix.lower() in IMAGE_EXT)
        depth = sorted(p for p in (root / "depth").iterdir() if p.suffix.lower() == ".png")
        if len(rgb) != len(depth) or not depth:
            raise GeometryError(f"{root}: {len(rgb)} colour and {len(depth)} depth images")
        poses: list[np.ndarray | None] = [None] * len(depth)
        if trajectory and (root / trajectory).is_file():
            traj = read_log_trajectory(root / trajectory)
            if len(traj) < len(depth):
                log.warning("%s has %d poses for %d frames", trajectory, len(traj), len(depth))
            poses = [checked_pose(traj[i], f"{trajectory}[{i}]") if i < len(traj) else None
                     for i in range(len(depth))]
        if intrinsics is None:
            cams = [p for p in sorted(root.glob("*.json")) if "intrinsic_matrix" in p.read_text()]
            if cams:
                intrinsics = read_camera_json(cams[0])
            else:
                w, h = image_size(depth[0])
                intrinsics = CameraIntrinsics(w, h, 525.0, 525.0, (w - 1) / 2.0, (h - 1) / 2.0)
                log.info("%s: no camera JSON, using the PrimeSense default intrinsics", root)
        stamps = [i / 30.0 for i in range(len(depth))]
        super().__init__(root, intrinsics, rgb, depth, poses, stamps, depth_scale)
