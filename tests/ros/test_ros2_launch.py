"""The user's own commands, for real: `ros2 launch g2vlm_ros perception.launch.py` with arguments as a process group,
found and queried with the ros2 CLI and rclpy, fed synthetic frames, stopped with Ctrl-C (SIGINT to the group), its
map saved; `ros2 run` from the activated venv; and shutdown that no burst of SIGINT / SIGTERM can interrupt."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from g2vlm_core.pipeline import PerceptionPipeline
from g2vlm_core.synth.config import SynthConfig
from g2vlm_core.synth.generator import SceneGenerator
from g2vlm_ros import conversions as cv
from g2vlm_ros.msg import SceneGraph as SceneGraphMsg
from g2vlm_ros.perception_node import OUTPUT_TOPICS, SERVICES
from g2vlm_ros.qos import LATCHED, RELIABLE

from .conftest import NodeProcess, require_ros2_tool, spin_until, user_environment

NS = "g2vlm_launch_test"
NODE = "g2vlm_perception"
# Camera topics remapped by the launch arguments (the node's defaults are color/image_raw, ...).
CAMERA = {"rgb_topic": "/launch_test_cam/rgb", "depth_topic": "/launch_test_cam/depth",
          "camera_info_topic": "/launch_test_cam/info", "pose_topic": "/launch_test_cam/pose"}
FRAMES = 6
# Node start-up imports torch and Open3D: seconds, many more on a loaded 2-core machine.
START_TIMEOUT_S = 180.0
# ros2 CLI graph queries: no daemon (nothing left running after the tests), and time to discover on a busy machine.
DISCOVERY = ("--no-daemon", "--spin-time", "5")


def _ros2(env: dict, *args: str, timeout_s: float = 120.0) -> str:
    """One ros2 CLI command in ``env``: its output, or a test failure naming the command."""
    r = subprocess.run(["ros2", *args], env=env, capture_output=True, text=True, timeout=timeout_s)
    assert r.returncode == 0, f"ros2 {' '.join(args)} -> exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _scene_frames(n: int):
    scene = SceneGenerator(SynthConfig(num_scenes=1, frames_per_scene=n, width=160, height=120, seed=9)).scene(9)
    return [scene.render_frame(i) for i in range(n)]


def _publish_frames(node, ex, frames, processed_topic: str) -> list[Header]:
    """The frames on the remapped camera topics, each waited for on the node's `processed` topic (returned)."""
    processed: list[Header] = []
    sub = node.create_subscription(Header, processed_topic, processed.append, RELIABLE)
    pubs = {k: node.create_publisher(t, CAMERA[k], RELIABLE) for k, t in
            (("rgb_topic", Image), ("depth_topic", Image), ("camera_info_topic", CameraInfo),
             ("pose_topic", PoseStamped))}
    assert spin_until(ex, lambda: all(p.get_subscription_count() > 0 for p in pubs.values())
                      and sub.get_publisher_count() > 0, 60.0), \
        "the node does not subscribe to the remapped camera topics or publish `processed`"
    for f in frames:
        h = Header(frame_id="camera_color_optical_frame", stamp=cv.sec_to_stamp(f.stamp_s))
        n = len(processed)
        pubs["pose_topic"].publish(PoseStamped(header=Header(frame_id="map", stamp=h.stamp),
                                               pose=cv.matrix_to_pose(f.T_world_cam)))
        pubs["camera_info_topic"].publish(cv.intrinsics_to_camera_info(f.intrinsics, h))
        pubs["rgb_topic"].publish(cv.numpy_to_image(f.rgb, "rgb8", h))
        pubs["depth_topic"].publish(cv.depth_to_image(f.depth_m, "16UC1", h))
        assert spin_until(ex, lambda: len(processed) > n, 60.0), f"no `processed` for the frame at {f.stamp_s}"
    return processed


class Launched:
    """`ros2 launch g2vlm_ros perception.launch.py` with a namespace, remaps, a params_file and device:=cpu, in its
    own process group as a terminal runs it, with save_on_shutdown and a map_dir under tmp."""

    def __init__(self, tmp: Path):
        self.env = user_environment()
        self.map_dir = tmp / "map"
        self.log = tmp / "launch.log"
        self.fed = False  # frames sent (the map has something to save)
        params = tmp / "params.yaml"
        params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
            "model_checkpoint": "none", "save_on_shutdown": True, "map_dir": str(self.map_dir), "cloud_period_s": 0.5,
            "keyframe_every_n": 2, "sensor_reliable": True}}}))
        args = [f"namespace:={NS}", f"params_file:={params}", "device:=cpu", "recognizer:=none",
                *(f"{k}:={v}" for k, v in CAMERA.items())]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(["ros2", "launch", "g2vlm_ros", "perception.launch.py", *args], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for_node(self, node, ex) -> None:
        def up() -> bool:
            assert self.proc.poll() is None, f"ros2 launch exited with {self.proc.returncode}:\n{self.log.read_text()}"
            return (NODE, f"/{NS}") in node.get_node_names_and_namespaces()
        assert spin_until(ex, up, START_TIMEOUT_S), f"node /{NS}/{NODE} not found:\n{self.log.read_text()}"

    def feed(self, node, ex) -> list[Header]:
        processed = _publish_frames(node, ex, _scene_frames(FRAMES), f"/{NS}/processed")
        self.fed = True
        return processed


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    require_ros2_tool("launch_ros")
    require_ros2_tool("ros2launch")
    run = Launched(tmp_path_factory.mktemp("launch"))
    yield run
    if run.proc.poll() is None:
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait()


def test_launched_node_has_its_namespace_remaps_params_topics_and_services(launched, ros_node):
    node, ex = ros_node
    launched.wait_for_node(node, ex)
    want_pubs = {t if t.startswith("/") else f"/{NS}/{t}" for t in OUTPUT_TOPICS}
    want_srvs = {f"/{NS}/{s}" for s in SERVICES}

    def endpoints():
        return ({n for n, _ in node.get_publisher_names_and_types_by_node(NODE, f"/{NS}")},
                {n for n, _ in node.get_subscriber_names_and_types_by_node(NODE, f"/{NS}")},
                {n for n, _ in node.get_service_names_and_types_by_node(NODE, f"/{NS}")})

    def complete() -> bool:  # discovery of every endpoint may lag the node's name
        pubs, subs, srvs = endpoints()
        return want_pubs <= pubs and set(CAMERA.values()) <= subs and want_srvs <= srvs
    assert spin_until(ex, complete, 30.0), endpoints()
    # the same through the user's CLI, and the params_file's values in force under the namespace
    services = set(_ros2(launched.env, "service", "list", *DISCOVERY).split())
    assert want_srvs <= services, services
    for name, value in (("map_dir", str(launched.map_dir)), ("model_checkpoint", "none"), ("device", "cpu")):
        out = _ros2(launched.env, "param", "get", *DISCOVERY, "--timeout", "30", f"/{NS}/{NODE}", name)
        assert value in out, (name, out)


def test_launched_node_maps_frames_answers_a_cli_query_and_its_cloud_agrees_with_sensor_msgs_py(launched, ros_node):
    require_ros2_tool("sensor_msgs_py")
    from sensor_msgs_py import point_cloud2 as pc2

    node, ex = ros_node
    launched.wait_for_node(node, ex)
    graphs: list[SceneGraphMsg] = []
    clouds: list[PointCloud2] = []
    node.create_subscription(SceneGraphMsg, f"/{NS}/scene_graph", graphs.append, LATCHED)
    node.create_subscription(PointCloud2, f"/{NS}/cloud", clouds.append, RELIABLE)
    outcomes = [p.frame_id for p in launched.feed(node, ex)]
    assert outcomes.count("fused") + outcomes.count("keyframe") == FRAMES, outcomes
    assert spin_until(ex, lambda: graphs and graphs[-1].objects and clouds, 60.0), \
        f"graphs {len(graphs)}, clouds {len(clouds)}:\n{launched.log.read_text()[-3000:]}"
    n = len(graphs)  # the keyframe thread may still publish: query the map once it has settled
    while spin_until(ex, lambda: len(graphs) > n, 2.0):
        n = len(graphs)

    answer = _ros2(launched.env, "service", "call", f"/{NS}/spatial_query", "g2vlm_ros/srv/SpatialQuery",
                   "{query: 'how many objects are there'}")
    assert "success=True" in answer and "query_achievable=True" in answer, answer
    ids = {int(i) for i in re.findall(r"\d+", re.search(r"object_ids=(?:array\('\w', )?\[([^\]]*)\]", answer).group(1))}
    count = float(re.search(r"numeric_answer=([0-9.]+)", answer).group(1))
    assert ids and count == len(ids), answer
    assert ids <= {o.id for o in graphs[-1].objects}, answer

    # the node's real cloud, read by the upstream reader and by ours
    cloud = clouds[-1]
    pts, cols = cv.pointcloud2_to_xyz(cloud)
    assert len(pts) > 100 and cols is not None
    assert np.array_equal(pc2.read_points_numpy(cloud, field_names=("x", "y", "z")), pts)
    rgb = pc2.read_points(cloud, field_names=("rgb",))["rgb"].astype(np.float32).view(np.uint32)
    assert np.array_equal(np.stack([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], axis=1), cols)


def test_ctrl_c_twice_to_the_launch_process_group_exits_cleanly_with_the_map_saved(launched, ros_node):
    node, ex = ros_node
    launched.wait_for_node(node, ex)
    if not launched.fed:  # run on its own (-k): the map needs frames first
        launched.feed(node, ex)
    # Ctrl-C pressed twice in a terminal: SIGINT to every process of the foreground group (launch and the node), the
    # second one while the node shuts down (launch leaves that SIGINT to the terminal and ignores its own second one)
    os.killpg(launched.proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(launched.proc.pid, signal.SIGINT)
    try:
        rc = launched.proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ros2 launch still running 90 s after SIGINT:\n{launched.log.read_text()}")
    text = launched.log.read_text()
    assert rc == 0, text
    assert re.search(r"\[perception_node-1\]: process has finished cleanly", text), text
    assert "map saved on shutdown" in text, text
    saved = _loaded(launched.map_dir)
    assert saved.snapshot().objects, "the saved map has no object"
    assert len(saved.point_cloud()[0]) > 100


def _loaded(map_dir: Path) -> PerceptionPipeline:
    """A pipeline holding the map saved in map_dir (its public load: fails on an unreadable map)."""
    p = PerceptionPipeline()
    p.load(map_dir)
    return p


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_during_shutdown_never_stop_the_save(first, ros_node, tmp_path):
    """One stop signal, then SIGINT and SIGTERM every 10 ms while the node shuts down: exit 0 and the map saved."""
    map_dir = tmp_path / "map"
    params = {"recognizer": "none", "save_on_shutdown": "true", "sensor_reliable": "true", "map_dir": map_dir, **CAMERA}
    proc = NodeProcess("g2vlm_ros.perception_node", [a for k, v in params.items() for a in ("-p", f"{k}:={v}")])
    try:
        node, ex = ros_node
        processed = _publish_frames(node, ex, _scene_frames(3), "/processed")
        assert all(p.frame_id in ("fused", "keyframe") for p in processed), [p.frame_id for p in processed]
        proc.proc.send_signal(first)
        end = time.monotonic() + 5.0
        burst = 0
        while proc.alive() and time.monotonic() < end:
            proc.proc.send_signal(signal.SIGINT if burst % 2 else signal.SIGTERM)
            burst += 1
            time.sleep(0.01)
    finally:
        rc, out = proc.stop(timeout_s=60.0)
    assert burst > 3, "the node exited before the burst: nothing was tested"
    assert rc == 0, out
    assert "map saved on shutdown" in out, out
    assert len(_loaded(map_dir).point_cloud()[0]) > 100


def test_ros2_run_from_the_activated_venv(user_env):
    """The activate hook puts the venv on AMENT_PREFIX_PATH: ros2 finds the package, its executables, and runs one
    (device:=cuda on a machine without CUDA: refused at once, naming what lacks it)."""
    require_ros2_tool("ros2run")
    if sys.prefix == sys.base_prefix:
        pytest.skip("not in a venv: a sourced ROS distro environment is used as it is")
    assert _ros2(user_env, "pkg", "prefix", "g2vlm_ros").strip() == str(Path(sys.prefix))
    exes = set(_ros2(user_env, "pkg", "executables", "g2vlm_ros").split())
    scripts = {p.name for p in (Path(__file__).resolve().parents[2] / "scripts").iterdir() if "." not in p.name}
    assert scripts and scripts <= exes, (scripts, exes)
    import open3d.core as o3c

    if o3c.cuda.is_available():
        pytest.skip("this machine has CUDA: device:=cuda is not refused here")
    r = subprocess.run(["ros2", "run", "g2vlm_ros", "perception_node", "--ros-args", "-p", "device:=cuda"],
                       env=user_env, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "device='cuda' cannot be met" in r.stderr + r.stdout and "Traceback" not in r.stderr + r.stdout
