"""7-Scenes / 3DMatch loader: seq-XX/frame-XXXXXX.{color,depth}.png + .pose.txt, depth in mm (0/65535 invalid)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..geometry.camera import CameraIntrinsics, GeometryError
from .base import RGBDSequence, checked_pose, image_size, read_matrix

log = logging.getLogger(__name__)

SEVEN_SCENES_K = (585.0, 585.0, 320.0, 240.0)  # 7-Scenes ships no intrinsics file; these are its published ones


def frame_files(folder: Path) -> list[Path]:
    """Sorted frame-*.depth.png of a sequence folder."""
    return sorted(folder.glob("frame-*.depth.png"))


class ThreeDMatchSequence(RGBDSequence):
    """A 3DMatch / 7-Scenes scene folder (with seq-* subfolders and camera-intrinsics.txt) or one seq folder.

    sequence: the seq folder name to load; default all seq-* folders in order (frame.extras["sequence"]
    tells them apart: poses of different 3DMatch sequences share the scene's world frame).
    """

    name = "3dmatch"

    def __init__(self, root: str | Path, sequence: str | None = None,
                 intrinsics: CameraIntrinsics | None = None, depth_scale: float = 1000.0) -> None:
        root = Path(root)
        if frame_files(root):
            scene, seqs = root.parent, [root]
        else:
            scene = root
            seqs = [root / sequence] if sequence else sorted(p for p in root.glob("seq-*") if p.is_dir())
        depth = [f for s in seqs for f in frame_files(s)]
        if not depth:
            raise GeometryError(f"{root}: no frame-*.depth.png found")
        stems = [str(f)[: -len(".depth.png")] for f in depth]
        rgb = []
        for s in stems:
            cands = [Path(s + ext) for ext in (".color.png", ".color.jpg")]
            found = [c for c in cands if c.is_file()]
            if not found:
                raise GeometryError(f"no colour image next to {s}.depth.png")
            rgb.append(found[0])
        poses = [checked_pose(read_matrix(Path(s + ".pose.txt")), s + ".pose.txt")
                 if Path(s + ".pose.txt").is_file() else None for s in stems]
        if intrinsics is None:
            w, h = image_size(depth[0])
            kfile = next((p for p in (root / "camera-intrinsics.txt", scene / "camera-intrinsics.txt")
                          if p.is_file()), None)
            if kfile is not None:
                intrinsics = CameraIntrinsics.from_K(np.loadtxt(kfile).reshape(3, 3), w, h)
            else:
                log.info("%s: no camera-intrinsics.txt, using the 7-Scenes calibration", root)
                intrinsics = CameraIntrinsics(w, h, *SEVEN_SCENES_K)
        stamps = [float(int(Path(s).name.split("-")[1])) / 30.0 for s in stems]  # Kinect v1 at 30 Hz
        super().__init__(root, intrinsics, rgb, depth, poses, stamps, depth_scale)
        self._sequence_of = [f.parent.name for f in depth]

    def __getitem__(self, i: int):
        frame = super().__getitem__(i)
        frame.extras["sequence"] = self._sequence_of[frame.index]
        return frame
