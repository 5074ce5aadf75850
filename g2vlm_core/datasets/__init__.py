"""RGB-D dataset loaders (TUM, 7-Scenes/3DMatch, Redwood/ICL-NUIM, ScanNet) yielding RGBDFrame, and open_dataset."""
from __future__ import annotations

from pathlib import Path

from ..geometry.camera import GeometryError
from .base import RGBDSequence, read_depth, read_rgb
from .redwood import RedwoodSequence, read_camera_json, read_log_trajectory
from .scannet import ScanNetSequence
from .threedmatch import ThreeDMatchSequence
from .tum import TUMSequence, associate, interpolate_poses, read_groundtruth

__all__ = ["RGBDSequence", "TUMSequence", "ThreeDMatchSequence", "RedwoodSequence", "ScanNetSequence",
           "open_dataset", "detect_layout", "read_depth", "read_rgb", "read_log_trajectory", "read_camera_json",
           "associate", "interpolate_poses", "read_groundtruth"]

LAYOUTS = {"tum": TUMSequence, "3dmatch": ThreeDMatchSequence, "redwood": RedwoodSequence,
           "scannet": ScanNetSequence}


def detect_layout(path: str | Path) -> str:
    """Name of the layout of a dataset folder: "tum", "3dmatch", "redwood" or "scannet"."""
    p = Path(path)
    if not p.is_dir():
        raise GeometryError(f"{p} is not a directory")
    if (p / "intrinsic" / "intrinsic_depth.txt").is_file() and (p / "depth").is_dir():
        return "scannet"
    if (p / "depth.txt").is_file() or (p / "associations.txt").is_file():
        return "tum"
    if any(p.glob("frame-*.depth.png")) or any(p.glob("seq-*/frame-*.depth.png")):
        return "3dmatch"
    if (p / "depth").is_dir() and any((p / n).is_dir() for n in ("color", "image", "rgb")):
        return "redwood"
    raise GeometryError(f"{p}: unknown RGB-D dataset layout (expected TUM, 7-Scenes/3DMatch, Redwood/ICL-NUIM "
                        "or ScanNet export)")


def open_dataset(path: str | Path, layout: str | None = None, **kwargs) -> RGBDSequence:
    """Open a dataset folder, detecting its layout unless given; kwargs go to the loader."""
    layout = layout or detect_layout(path)
    if layout not in LAYOUTS:
        raise GeometryError(f"unknown layout {layout!r}; one of {sorted(LAYOUTS)}")
    return LAYOUTS[layout](path, **kwargs)
