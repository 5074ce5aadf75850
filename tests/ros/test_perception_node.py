"""The perception node in its own process over real DDS: frames in, pose/graph/processed out; bad input on live
topics is skipped with a counted reason and never stops the node; SIGTERM saves the map when configured."""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from g2vlm_core.geometry.camera import CameraIntrinsics
from g2vlm_ros import conversions as cv
from g2vlm_ros.msg import SceneGraph as SceneGraphMsg
from g2vlm_ros.qos import LATCHED, RELIABLE
from g2vlm_ros.srv import SpatialQuery

from .conftest import NodeProcess, call, spin_until

W, H = 96, 72
# Camera 1 m above the floor looking along +x of the z-up map: optical x = -y, y = -z, z = +x.
T_LEVEL = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
INTR = CameraIntrinsics(W, H, 80.0, 80.0, (W - 1) / 2, (H - 1) / 2)


def _box_scene_depth() -> tuple[np.ndarray, np.ndarray]:
    """A wall 2 m ahead with a box 1.4 m ahead in the middle (camera frame), and its colours."""
    depth = np.full((H, W), 2.0, np.float32)
    depth[H // 3: 2 * H // 3, W // 3: 2 * W // 3] = 1.4
    rgb = np.full((H, W, 3), 200, np.uint8)
    rgb[H // 3: 2 * H // 3, W // 3: 2 * W // 3] = (200, 30, 30)
    return depth, rgb


class Camera:
    """Publishes frames the way a driver does (rgb, depth, camera_info, pose), with knobs to break them."""

    def __init__(self, node):
        self.node = node
        self.pubs = {n: node.create_publisher(t, n, RELIABLE) for n, t in
                     (("color/image_raw", Image), ("depth/image_raw", Image), ("color/camera_info", CameraInfo),
                      ("camera_pose_in", PoseStamped))}
        self.t = 100.0

    def send(self, rgb_msg=None, depth_msg=None, info=True, stamp=None, pose=None, quat_scale=1.0,
             images=(True, True)):
        """One frame; ``info`` True (the test camera), False (none) or a CameraIntrinsics; ``images`` which of
        (rgb, depth) to publish."""
        if stamp is None:
            self.t += 0.1
        t = self.t if stamp is None else stamp  # an explicit stamp does not rewind the camera's clock
        h = Header(frame_id="camera", stamp=cv.sec_to_stamp(t))
        depth, rgb = _box_scene_depth()
        T = T_LEVEL if pose is None else pose
        p = cv.matrix_to_pose(T)
        for k in "xyzw":
            setattr(p.orientation, k, getattr(p.orientation, k) * quat_scale)
        self.pubs["camera_pose_in"].publish(PoseStamped(header=Header(frame_id="map", stamp=h.stamp), pose=p))
        if info:
            self.pubs["color/camera_info"].publish(cv.intrinsics_to_camera_info(INTR if info is True else info, h))
        r = rgb_msg if rgb_msg is not None else cv.numpy_to_image(rgb, "rgb8")
        d = depth_msg if depth_msg is not None else cv.depth_to_image(depth, "32FC1")
        r.header = d.header = h
        if images[0]:
            self.pubs["color/image_raw"].publish(r)
        if images[1]:
            self.pubs["depth/image_raw"].publish(d)
        return t


@pytest.fixture
def perception(ros_env, tmp_path):
    proc = NodeProcess("g2vlm_ros.perception_node", ["-p", "sensor_reliable:=true",
                        "-p", "keyframe_every_n:=1", "-p", "save_on_shutdown:=true",
                        "-p", f"map_dir:={tmp_path / 'map'}", "-p", "diagnostics_period_s:=0.2"], ros_env)
    yield proc
    proc.stop()


def _setup(node, ex):
    processed: list[Header] = []
    diags: list[DiagnosticArray] = []
    node.create_subscription(Header, "processed", processed.append, RELIABLE)
    node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, RELIABLE)
    cam = Camera(node)
    # the default recognizer (coco) and the G2VLM model load first: generous on a busy 2-core machine
    assert spin_until(ex, lambda: all(p.get_subscription_count() > 0 for p in cam.pubs.values()), 90.0), \
        "node did not start"
    return cam, processed, diags


def _send_and_wait(ex, cam, processed, **kw) -> str:
    n = len(processed)
    t = cam.send(**kw)
    assert spin_until(ex, lambda: any(abs(cv.stamp_to_sec(p.stamp) - t) < 1e-6 for p in processed[n:]), 20.0), \
        f"no `processed` for the frame at {t}"
    return next(p.frame_id for p in processed[n:] if abs(cv.stamp_to_sec(p.stamp) - t) < 1e-6)


def test_frames_in_graph_and_pose_out(perception, ros_node):
    node, ex = ros_node
    cam, processed, _ = _setup(node, ex)
    graphs: list[SceneGraphMsg] = []
    poses: list[PoseStamped] = []
    node.create_subscription(SceneGraphMsg, "scene_graph", graphs.append, LATCHED)
    node.create_subscription(PoseStamped, "camera_pose", poses.append, RELIABLE)
    outcomes = [_send_and_wait(ex, cam, processed) for _ in range(3)]
    assert outcomes[0] == "keyframe" and set(outcomes) <= {"fused", "keyframe"}, outcomes
    assert spin_until(ex, lambda: graphs and len(poses) >= 3, 10.0)
    np.testing.assert_allclose(cv.pose_to_matrix(poses[-1].pose), T_LEVEL, atol=1e-9)
    assert poses[-1].header.frame_id == "map"
    client = node.create_client(SpatialQuery, "spatial_query")
    assert client.wait_for_service(timeout_sec=10.0)
    resp = call(ex, client, SpatialQuery.Request(query="how many objects are there"))
    # structure (floor, walls) is not an object (the query contract): everything else counts, whatever its label
    objects = [o for o in graphs[-1].objects if o.kind == "object"]
    assert resp.success and resp.numeric_answer == len(objects)
    assert sorted(resp.object_ids) == sorted(o.id for o in objects)


def _bad_cases(cam):
    depth, rgb = _box_scene_depth()
    padded = cv.numpy_to_image(rgb, "rgb8")
    padded.data = bytes(len(padded.data) - 5)
    return [
        ("wrong encoding", dict(rgb_msg=cv.numpy_to_image(np.zeros((H, W), np.uint16), "16UC1")), "bad_message"),
        ("size disagrees with camera_info", dict(rgb_msg=cv.numpy_to_image(rgb[:, :-8].copy(), "rgb8"),
                                                 depth_msg=cv.depth_to_image(depth[:, :-8].copy())), "bad_message"),
        ("empty data", dict(rgb_msg=padded), "bad_message"),
        ("all-NaN depth", dict(depth_msg=cv.depth_to_image(np.full((H, W), np.nan, np.float32))), "no_valid_depth"),
        # half a second back: a late frame (a step back beyond clock_jump_s is a new recording, tests/ros/test_faults)
        ("stamp going backwards", dict(stamp=cam.t - 0.5), "stamp_backwards"),
    ]


def test_bad_input_is_skipped_counted_and_node_survives(perception, ros_node):
    node, ex = ros_node
    cam, processed, diags = _setup(node, ex)
    assert _send_and_wait(ex, cam, processed) == "keyframe"
    seen = set()
    for name, kw, reason in _bad_cases(cam):
        got = _send_and_wait(ex, cam, processed, **kw)
        assert got not in ("fused", "keyframe"), f"{name}: frame was fused"
        if reason is not None:
            assert got == reason, f"{name}: {got}"
        seen.add(got)
        assert perception.alive(), f"node died on {name}"
    assert _send_and_wait(ex, cam, processed) in ("fused", "keyframe")  # good frames still fuse afterwards
    # every reason is counted in diagnostics
    n = len(diags)
    assert spin_until(ex, lambda: len(diags) > n + 1, 10.0)
    kv = {v.key: v.value for v in diags[-1].status[0].values}
    for r in seen:
        assert int(kv[f"rejected_{r}"]) >= 1, (r, kv)
    assert diags[-1].status[0].level == diags[-1].status[0].WARN


def test_no_camera_info_yet_is_a_counted_skip(ros_env, ros_node):
    proc = NodeProcess("g2vlm_ros.perception_node", ["-p", "sensor_reliable:=true"], ros_env)
    try:
        node, ex = ros_node
        cam, processed, _ = _setup(node, ex)
        assert _send_and_wait(ex, cam, processed, info=False) == "no_camera_info"
        assert _send_and_wait(ex, cam, processed) in ("fused", "keyframe")
        assert proc.alive()
    finally:
        proc.stop()


def test_sigterm_saves_the_map(perception, ros_node, tmp_path):
    node, ex = ros_node
    cam, processed, _ = _setup(node, ex)
    for _ in range(2):
        assert _send_and_wait(ex, cam, processed) in ("fused", "keyframe")
    perception.proc.send_signal(signal.SIGTERM)
    rc, out = perception.stop()
    assert rc == 0, out
    assert (tmp_path / "map" / "map.ply").stat().st_size > 0
    assert (tmp_path / "map" / "scene_graph.json").is_file()
    assert "map saved on shutdown" in out


def test_keyframe_work_and_fusion_stages_are_reported(ros_env, ros_node):
    proc = NodeProcess("g2vlm_ros.perception_node", ["-p", "sensor_reliable:=true", "-p", "keyframe_every_n:=1",
                                                     "-p", "recognizer:=none", "-p", "diagnostics_period_s:=0.2"],
                       ros_env)
    try:
        _check_keyframe_diagnostics(*ros_node)
    finally:
        proc.stop()


def _check_keyframe_diagnostics(node, ex):
    cam, processed, diags = _setup(node, ex)
    for _ in range(4):
        _send_and_wait(ex, cam, processed)
    n = len(diags)

    def latest():
        return {v.key: v.value for v in diags[-1].status[0].values} if diags else {}

    # keyframe work is asynchronous: wait for a report in which every selected keyframe is done
    assert spin_until(ex, lambda: len(diags) > n and int(latest().get("keyframes", 0)) >= 1
                      and latest().get("keyframes") == latest().get("keyframes_selected"), 60.0), latest()
    kv = latest()
    offered, selected = int(kv["keyframes_offered"]), int(kv["keyframes_selected"])
    skipped = sum(int(v) for k, v in kv.items() if k.startswith("keyframes_skipped_"))
    assert offered == 4 and selected + skipped == offered  # every candidate is either recognised or skipped
    assert float(kv["recognition_latency_p50_ms"]) > 0.0
    stages = {k: float(v) for k, v in kv.items() if k.endswith("_ms_p50") and k != "keyframe_work_ms_p50"}
    assert {"convert_ms_p50", "fusion_open3d_ms_p50", "fusion_prepare_ms_p50", "publish_ms_p50",
            "fusion_path_ms_p50"} <= set(stages), stages
    assert stages["fusion_path_ms_p50"] >= stages["fusion_open3d_ms_p50"] > 0.0
    assert kv["gravity_check"] in ("unknown", "ok")  # level camera in a z-up map: never a mismatch


def test_up_axis_rotates_the_poses_into_a_z_up_output_frame(ros_env, ros_node):
    """Poses given in a y-up map come out in '<map_frame>_zup', turned so that y becomes z."""
    y_up = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    proc = NodeProcess("g2vlm_ros.perception_node", ["-p", "sensor_reliable:=true", "-p", "up_axis:=+y",
                                                     "-p", "recognizer:=none", "-p", "keyframe_every_n:=100"],
                       ros_env)
    try:
        node, ex = ros_node
        cam, processed, _ = _setup(node, ex)
        poses: list[PoseStamped] = []
        node.create_subscription(PoseStamped, "camera_pose", poses.append, RELIABLE)
        assert _send_and_wait(ex, cam, processed, pose=y_up @ T_LEVEL) in ("fused", "keyframe")
        assert spin_until(ex, lambda: poses, 10.0)
        assert poses[-1].header.frame_id == "map_zup"
        np.testing.assert_allclose(cv.pose_to_matrix(poses[-1].pose), T_LEVEL, atol=1e-9)
    finally:
        proc.stop()
