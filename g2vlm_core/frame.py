"""The one RGB-D frame record that loaders, the synthetic generator, fusion, the model and the node exchange."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .geometry.camera import CameraIntrinsics, GeometryError


@dataclass
class RGBDFrame:
    """One RGB-D observation.

    rgb:          (H, W, 3) uint8, RGB order.
    depth_m:      (H, W) float32 metres; 0 or non-finite marks a missing measurement.
    intrinsics:   the depth camera's pinhole model (rgb is registered to depth).
    T_world_cam:  (4, 4) camera-to-world pose, or None when unknown (odometry fills it in).
    stamp_s:      acquisition time in seconds.
    index:        frame number within its sequence.
    extras:       optional per-frame ground truth or metadata (e.g. "instance_ids", "semantic_ids", "normals").
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    intrinsics: CameraIntrinsics
    T_world_cam: np.ndarray | None = None
    stamp_s: float = 0.0
    index: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "RGBDFrame":
        """Raise GeometryError naming the field if shapes or dtypes are unusable; returns self."""
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise GeometryError(f"rgb must be (H, W, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        if self.depth_m.ndim != 2 or not np.issubdtype(self.depth_m.dtype, np.floating):
            raise GeometryError(f"depth_m must be (H, W) float, got {self.depth_m.shape} {self.depth_m.dtype}")
        if self.rgb.shape[:2] != self.depth_m.shape:
            raise GeometryError(f"rgb is {self.rgb.shape[1]}x{self.rgb.shape[0]} but depth is "
                                f"{self.depth_m.shape[1]}x{self.depth_m.shape[0]}")
        self.intrinsics.check_image(self.depth_m, "depth_m")
        return self
