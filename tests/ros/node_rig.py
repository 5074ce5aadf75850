"""A test client for a perception node in another process: the camera, its outputs, its services, its diagnostics."""
from __future__ import annotations

import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from g2vlm_ros import conversions as cv
from g2vlm_ros.msg import SceneGraph as SceneGraphMsg
from g2vlm_ros.qos import LATCHED, RELIABLE
from g2vlm_ros.srv import LoadMap, SaveMap, SpatialQuery

from .conftest import NodeProcess, call, spin_until
from .test_perception_node import Camera

# Fast start (no model: these tests are about the node, not the labels), a keyframe per frame handled before the
# frame's `processed` report, frequent outputs.
BASE_ARGS = ["-p", "sensor_reliable:=true", "-p", "keyframe_every_n:=1", "-p", "async_keyframes:=false",
             "-p", "recognizer:=none",
             "-p", "diagnostics_period_s:=0.2", "-p", "cloud_period_s:=0.3"]


def start_node(env: dict, map_dir: Path, *params: str) -> NodeProcess:
    args = [*BASE_ARGS, "-p", f"map_dir:={map_dir}"]
    for p in params:
        args += ["-p", p]
    return NodeProcess("g2vlm_ros.perception_node", args, env)


class Rig:
    def __init__(self, node, ex, proc: NodeProcess | None = None):
        self.node, self.ex, self.proc = node, ex, proc
        self.processed: list[Header] = []
        self.diags: list[DiagnosticArray] = []
        self.graphs: list[SceneGraphMsg] = []
        self.clouds: list[PointCloud2] = []
        node.create_subscription(Header, "processed", self.processed.append, RELIABLE)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, RELIABLE)
        node.create_subscription(SceneGraphMsg, "scene_graph", self.graphs.append, LATCHED)
        node.create_subscription(PointCloud2, "cloud", self.clouds.append, RELIABLE)
        self.cam = Camera(node)
        self.clients = {name: node.create_client(t, name) for name, t in
                        (("spatial_query", SpatialQuery), ("save_map", SaveMap), ("load_map", LoadMap),
                         ("reset", Trigger))}

    def wait_up(self, timeout_s: float = 90.0) -> None:
        ok = spin_until(self.ex, lambda: all(p.get_subscription_count() > 0 for p in self.cam.pubs.values()) and
                        all(c.service_is_ready() for c in self.clients.values()), timeout_s)
        assert ok, "node did not start" + ("" if self.proc is None else f":\n{self.proc.stop()[1]}")

    def spin(self, seconds: float) -> None:
        spin_until(self.ex, lambda: False, seconds)

    def outcome(self, t: float, timeout_s: float = 20.0) -> str:
        """frame_id of the `processed` report of the frame stamped t."""
        def find():
            return next((p.frame_id for p in self.processed if abs(cv.stamp_to_sec(p.stamp) - t) < 1e-6), None)
        assert spin_until(self.ex, lambda: find() is not None, timeout_s), f"no `processed` for the frame at {t}"
        return find()

    def send(self, **kw) -> str:
        return self.outcome(self.cam.send(**kw))

    def call(self, name: str, request=None, timeout_s: float = 30.0):
        client = self.clients[name]
        return call(self.ex, client, request if request is not None else client.srv_type.Request(), timeout_s)

    def diag(self, timeout_s: float = 10.0) -> dict[str, str]:
        """The key-values of a diagnostics message published after this call."""
        n = len(self.diags)
        assert spin_until(self.ex, lambda: len(self.diags) > n + 1, timeout_s), "no diagnostics"
        return {v.key: v.value for v in self.diags[-1].status[0].values}

    def cloud_points(self, timeout_s: float = 10.0) -> int:
        """Point count of a cloud published after this call."""
        n = len(self.clouds)
        assert spin_until(self.ex, lambda: len(self.clouds) > n + 1, timeout_s), "no cloud"
        return self.clouds[-1].width * self.clouds[-1].height

    def reset(self) -> None:
        assert self.call("reset").success


def wait_exit(proc: NodeProcess, timeout_s: float = 10.0) -> int | None:
    end = time.monotonic() + timeout_s
    while proc.alive() and time.monotonic() < end:
        time.sleep(0.02)
    return proc.proc.poll()
