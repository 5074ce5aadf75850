"""ScanNet exported-sensor-data loader: color/*.jpg, depth/*.png (mm), pose/*.txt, intrinsic/intrinsic_depth.txt."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry.camera import CameraIntrinsics, GeometryError
from .base import RGBDSequence, checked_pose, image_size, read_matrix


class ScanNetSequence(RGBDSequence):
    """Output of ScanNet's SensReader export. Colour (1296x968) is resized to the depth size (640x480) and the
    depth intrinsics describe the frame; poses of lost frames (-inf in the file) become None."""

    name = "scannet"

    def __init__(self, root: str | Path, depth_scale: float = 1000.0) -> None:
        root = Path(root)
        depth = sorted((root / "depth").glob("*.png"), key=lambda p: int(p.stem) if p.stem.isdigit() else p.stem)
        if not depth:
            raise GeometryError(f"{root}: no depth/*.png")
        rgb = []
        for d in depth:
            cands = [root / "color" / (d.stem + e) for e in (".jpg", ".png")]
            c = next((p for p in cands if p.is_file()), None)
            if c is None:
                raise GeometryError(f"{root}: no colour image for frame {d.stem}")
            rgb.append(c)
        poses = [checked_pose(read_matrix(root / "pose" / f"{d.stem}.txt"), f"pose/{d.stem}.txt")
                 if (root / "pose" / f"{d.stem}.txt").is_file() else None for d in depth]
        K = np.loadtxt(root / "intrinsic" / "intrinsic_depth.txt").reshape(4, 4)[:3, :3]
        w, h = image_size(depth[0])
        stamps = [int(d.stem) / 30.0 if d.stem.isdigit() else float(i) for i, d in enumerate(depth)]
        super().__init__(root, CameraIntrinsics.from_K(K, w, h), rgb, depth, poses, stamps, depth_scale)
