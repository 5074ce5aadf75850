"""The map's up axis: poses in a y-up world are rotated into z-up by up_axis, and poses that disagree with gravity
(the floor the camera sees is not horizontal in the map) are reported once, in the log and the check's status."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from g2vlm_core.frame import RGBDFrame
from g2vlm_core.geometry.gravity import GravityCheck, nearest_axis, zup_rotation
from g2vlm_core.pipeline import PerceptionPipeline, PipelineConfig

from ._render import two_box_orbit

Y_UP = zup_rotation("+y").T  # z-up world -> the same world with y up (what many SLAM systems and datasets use)


@pytest.fixture(scope="module")
def frames():
    return two_box_orbit(6)


def _run(frames, up_axis: str, world: np.ndarray) -> PerceptionPipeline:
    pipe = PerceptionPipeline(PipelineConfig(keyframe_every_n=1, up_axis=up_axis))
    for f in frames:
        assert pipe.process(RGBDFrame(f.rgb, f.depth_m, f.intrinsics, world @ f.T_world_cam, f.stamp_s, f.index)).fused
    return pipe


def test_zup_rotation_takes_each_axis_to_z():
    for axis, v in {"+x": [1, 0, 0], "-x": [-1, 0, 0], "+y": [0, 1, 0], "-y": [0, -1, 0], "-z": [0, 0, -1]}.items():
        R = zup_rotation(axis)
        np.testing.assert_allclose(R[:3, :3] @ v, [0, 0, 1], atol=1e-12)
        assert np.isclose(np.linalg.det(R[:3, :3]), 1.0) and nearest_axis(R[:3, :3].T @ [0, 0, 1]) == axis
    with pytest.raises(ValueError, match="up_axis"):
        zup_rotation("up")


def test_z_up_poses_pass_the_check_without_a_warning(frames, caplog):
    with caplog.at_level(logging.WARNING, logger="g2vlm_core.geometry.gravity"):
        pipe = _run(frames, "+z", np.eye(4))
    assert pipe.gravity.state == "ok" and pipe.gravity.angle_deg < 5.0
    assert not caplog.records


def test_y_up_poses_with_a_z_up_map_warn_once_and_name_the_axis(frames, caplog):
    with caplog.at_level(logging.WARNING, logger="g2vlm_core.geometry.gravity"):
        pipe = _run(frames, "+z", Y_UP)
        for f in frames[:3]:  # more keyframes: still one warning
            pipe.process(RGBDFrame(f.rgb, f.depth_m, f.intrinsics, Y_UP @ f.T_world_cam, f.stamp_s + 1.0))
    assert pipe.gravity.state == "mismatch" and pipe.gravity.angle_deg > 80.0
    assert len(caplog.records) == 1 and "+y" in caplog.records[0].getMessage()
    assert "up_axis" in pipe.gravity.message


def test_up_axis_rotates_y_up_poses_into_the_same_z_up_map(frames):
    ref = _run(frames, "+z", np.eye(4))
    pipe = _run(frames, "+y", Y_UP)
    assert pipe.gravity.state == "ok"
    a = sorted(np.round(o.box.center, 2).tolist() for o in ref.snapshot().objects)
    b = sorted(np.round(o.box.center, 2).tolist() for o in pipe.snapshot().objects)
    assert a == b and len(a) >= 2  # the same objects, gravity-aligned boxes in the same z-up frame


def test_a_view_of_a_wall_leaves_the_check_undecided(frames):
    check = GravityCheck()
    f = frames[0]
    wall = RGBDFrame(f.rgb, np.full_like(f.depth_m, 2.0), f.intrinsics)  # its normal 90 deg from image-up
    for _ in range(6):
        check.observe(wall, f.T_world_cam)
    assert check.state == "unknown"
